//! Flags and the TOML config → one validated [`Settings`].
//!
//! Split as `load` (finds and reads the file) → `parse_str` (text → file
//! config, with line and column on error) → `merge` (file + flags → settings),
//! so the logic is tested with string literals. Unknown keys are errors: a
//! misspelt threshold must not silently keep its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::analyse::{self, Levels, Thresholds};
use crate::cli::{Cli, Format};

/// Where the config is looked for when `-c` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/closewatch/closewatch.toml";

/// Everything closewatch runs with, after file and flags are merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The file the settings came from, if any.
    pub config_path: Option<PathBuf>,
    pub format: Format,
    pub pids: Vec<u32>,
    pub duration: Duration,
    pub listen: SocketAddr,
    pub interval: Duration,
    pub close_wait_age: Duration,
    pub fin_wait2_age: Duration,
    pub max_processes: usize,
    /// fd samples older than this are forgotten; growth is judged over it.
    pub fd_growth_window: Duration,
    pub proc_root: PathBuf,
    pub log_level: String,
    pub thresholds: Thresholds,
    /// Hidden: TCP tables from a recording.
    pub replay_sockdiag: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_path: None,
            format: Format::Text,
            pids: Vec::new(),
            duration: Duration::ZERO,
            listen: SocketAddr::from(([0, 0, 0, 0], 9958)),
            interval: Duration::from_secs(15),
            close_wait_age: Duration::from_secs(60),
            fin_wait2_age: Duration::from_secs(60),
            max_processes: 100,
            fd_growth_window: Duration::from_secs(15 * 60),
            proc_root: PathBuf::from("/proc"),
            log_level: "info".to_string(),
            thresholds: Thresholds::default(),
            replay_sockdiag: None,
        }
    }
}

impl Settings {
    /// The collector these settings describe: /proc at `proc_root`, sockets
    /// from the kernel (or from a recording, with the hidden replay flag).
    pub fn collector(&self) -> crate::collect::Collector {
        use crate::collect::{Collector, ProcRoot, Recorded};
        let c = Collector::new(ProcRoot::new(&self.proc_root));
        match &self.replay_sockdiag {
            Some(dir) => c.with_sockets(std::sync::Arc::new(Recorded { dir: dir.clone() })),
            None => c,
        }
    }

    /// What the analysis needs of these settings.
    pub fn analysis(&self) -> analyse::Settings {
        analyse::Settings {
            close_wait_age: self.close_wait_age,
            fin_wait2_age: self.fin_wait2_age,
            thresholds: self.thresholds,
            only_pids: (!self.pids.is_empty()).then(|| self.pids.clone()),
            list_fd_utilization: None,
            list_growing: false,
            growth: analyse::GrowthRule {
                window: self.fd_growth_window,
                ..analyse::GrowthRule::default()
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A syntax or type error, with its position.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Warning and critical levels as written in the file; either may be left out.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileLevels<T> {
    pub warning: Option<T>,
    pub critical: Option<T>,
}

/// A duration written as a humantime string ("24h").
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Dur(#[serde(with = "humantime_serde")] pub Duration);

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileThresholds {
    pub close_wait_stale: Option<FileLevels<u64>>,
    pub fin_wait2_stale: Option<FileLevels<u64>>,
    pub close_wait_unaccepted: Option<FileLevels<u64>>,
    pub fd_utilization: Option<FileLevels<f64>>,
    pub fd_exhaustion: Option<FileLevels<Dur>>,
    /// Bytes: an integer or a string such as "1 GiB".
    pub deleted_open_files: Option<FileLevels<ByteSize>>,
    pub host_fd_utilization: Option<FileLevels<f64>>,
}

/// The config file as written: every key optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub format: Option<Format>,
    pub listen: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub close_wait_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub fin_wait2_age: Option<Duration>,
    pub max_processes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub fd_growth_window: Option<Duration>,
    pub proc_root: Option<PathBuf>,
    pub log_level: Option<String>,
    pub thresholds: Option<FileThresholds>,
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses config text; `path` only names it in errors.
pub fn parse_str(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| position(text, s.start));
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

fn levels<T: Copy>(base: Levels<T>, file: &Option<FileLevels<T>>) -> Levels<T> {
    match file {
        None => base,
        Some(f) => Levels {
            warning: f.warning.unwrap_or(base.warning),
            critical: f.critical.unwrap_or(base.critical),
        },
    }
}

fn merge_thresholds(t: &FileThresholds) -> Thresholds {
    let d = Thresholds::default();
    let bytes = t.deleted_open_files.as_ref().map(|l| FileLevels {
        warning: l.warning.map(|b| b.as_u64()),
        critical: l.critical.map(|b| b.as_u64()),
    });
    let exhaustion = t.fd_exhaustion.as_ref().map(|l| FileLevels {
        warning: l.warning.map(|d| d.0),
        critical: l.critical.map(|d| d.0),
    });
    Thresholds {
        close_wait_stale: levels(d.close_wait_stale, &t.close_wait_stale),
        fin_wait2_stale: levels(d.fin_wait2_stale, &t.fin_wait2_stale),
        close_wait_unaccepted: levels(d.close_wait_unaccepted, &t.close_wait_unaccepted),
        fd_utilization: levels(d.fd_utilization, &t.fd_utilization),
        fd_exhaustion: levels(d.fd_exhaustion, &exhaustion),
        deleted_open_files: levels(d.deleted_open_files, &bytes),
        host_fd_utilization: levels(d.host_fd_utilization, &t.host_fd_utilization),
    }
}

/// File settings, then flags on top; then validation.
pub fn merge(file: FileConfig, path: Option<PathBuf>, cli: &Cli) -> Result<Settings, ConfigError> {
    let d = Settings::default();
    let settings = Settings {
        format: cli.format.or(file.format).unwrap_or(d.format),
        pids: cli.pids.clone(),
        duration: cli.duration.unwrap_or(d.duration),
        listen: cli.listen.or(file.listen).unwrap_or(d.listen),
        interval: cli.interval.or(file.interval).unwrap_or(d.interval),
        close_wait_age: cli
            .close_wait_age
            .or(file.close_wait_age)
            .unwrap_or(d.close_wait_age),
        fin_wait2_age: cli
            .fin_wait2_age
            .or(file.fin_wait2_age)
            .unwrap_or(d.fin_wait2_age),
        max_processes: cli
            .max_processes
            .or(file.max_processes)
            .unwrap_or(d.max_processes),
        fd_growth_window: cli
            .fd_growth_window
            .or(file.fd_growth_window)
            .unwrap_or(d.fd_growth_window),
        proc_root: cli
            .proc_root
            .clone()
            .or(file.proc_root)
            .unwrap_or(d.proc_root),
        log_level: cli
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or(d.log_level),
        thresholds: file
            .thresholds
            .as_ref()
            .map_or(d.thresholds, merge_thresholds),
        replay_sockdiag: cli.replay_sockdiag.clone(),
        config_path: path,
    };
    validate(&settings)?;
    Ok(settings)
}

fn validate(s: &Settings) -> Result<(), ConfigError> {
    let origin = s
        .config_path
        .as_ref()
        .map_or_else(|| "settings".to_string(), |p| p.display().to_string());
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.clone(),
        message,
    };
    if s.interval < Duration::from_millis(100) {
        return Err(invalid(format!(
            "interval {} is too short (minimum 100ms)",
            humantime::format_duration(s.interval)
        )));
    }
    if s.fd_growth_window < Duration::from_secs(10) {
        return Err(invalid(format!(
            "fd_growth_window {} is too short to judge growth (minimum 10s)",
            humantime::format_duration(s.fd_growth_window)
        )));
    }
    if s.max_processes == 0 {
        return Err(invalid("max_processes must be at least 1".to_string()));
    }
    if !matches!(
        s.log_level.to_ascii_lowercase().as_str(),
        "off" | "error" | "warn" | "info" | "debug" | "trace"
    ) {
        return Err(invalid(format!(
            "log_level {:?} is not one of error, warn, info, debug, trace, off",
            s.log_level
        )));
    }
    s.thresholds
        .validate()
        .map_err(|m| invalid(format!("thresholds: {m}")))
}

/// Finds, reads and merges the config: `-c PATH` must exist; the default path
/// is used only if present.
pub fn load(cli: &Cli) -> Result<Settings, ConfigError> {
    let (path, required) = match &cli.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let file = parse_str(&text, &path)?;
            merge(file, Some(path), cli)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            merge(FileConfig::default(), None, cli)
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

/// The effective settings as TOML, as `--check-config` prints them: a valid
/// config file in its own right.
pub fn render(s: &Settings) -> String {
    #[derive(Serialize)]
    struct L<T> {
        warning: T,
        critical: T,
    }
    #[derive(Serialize)]
    struct T {
        close_wait_stale: L<u64>,
        fin_wait2_stale: L<u64>,
        close_wait_unaccepted: L<u64>,
        fd_utilization: L<f64>,
        fd_exhaustion: L<String>,
        deleted_open_files: L<u64>,
        host_fd_utilization: L<f64>,
    }
    #[derive(Serialize)]
    struct Out {
        format: Format,
        listen: String,
        interval: String,
        close_wait_age: String,
        fin_wait2_age: String,
        max_processes: usize,
        fd_growth_window: String,
        proc_root: String,
        log_level: String,
        thresholds: T,
    }
    let hd = |d: Duration| humantime::format_duration(d).to_string();
    let l = |x: Levels<u64>| L {
        warning: x.warning,
        critical: x.critical,
    };
    let f = |x: Levels<f64>| L {
        warning: x.warning,
        critical: x.critical,
    };
    let t = &s.thresholds;
    let out = Out {
        format: s.format,
        listen: s.listen.to_string(),
        interval: hd(s.interval),
        close_wait_age: hd(s.close_wait_age),
        fin_wait2_age: hd(s.fin_wait2_age),
        max_processes: s.max_processes,
        fd_growth_window: hd(s.fd_growth_window),
        proc_root: s.proc_root.display().to_string(),
        log_level: s.log_level.clone(),
        thresholds: T {
            close_wait_stale: l(t.close_wait_stale),
            fin_wait2_stale: l(t.fin_wait2_stale),
            close_wait_unaccepted: l(t.close_wait_unaccepted),
            fd_utilization: f(t.fd_utilization),
            fd_exhaustion: L {
                warning: hd(t.fd_exhaustion.warning),
                critical: hd(t.fd_exhaustion.critical),
            },
            deleted_open_files: l(t.deleted_open_files),
            host_fd_utilization: f(t.host_fd_utilization),
        },
    };
    toml::to_string(&out).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "config_prop_tests.rs"]
mod prop_tests;
