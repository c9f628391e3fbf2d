//! Flags and the TOML config → one validated [`Settings`].
//!
//! Split as `load` (finds and reads the file) → `parse_str` (text → file
//! config, with line and column on error) → `merge` (file + flags → settings),
//! so the logic is tested with string literals. Unknown keys are errors: a
//! misspelt threshold must not silently keep its default.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, DeserializeSeed, MapAccess, Unexpected, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::analyse::{self, Amount, Check, Levels, Thresholds, Unit};
use crate::cli::{Cli, Format};
use crate::collect::attribution::Mode as AttributionMode;
use crate::defaults;
use crate::export::http::address::ListenAddr;
use crate::logging::LogFormat;

/// Everything closewatch runs with, after file and flags are merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The file the settings came from, if any.
    pub config_path: Option<PathBuf>,
    pub format: Format,
    pub pids: Vec<u32>,
    /// Which processes the report lists.
    pub listing: crate::report::Listing,
    pub duration: Duration,
    /// Every address the agent listens on (at least one).
    pub listen: Vec<ListenAddr>,
    /// TLS and basic auth for the agent's endpoint.
    pub web_config: Option<PathBuf>,
    /// Serve on the sockets systemd passes, not on `listen`.
    pub systemd_socket: bool,
    pub interval: Duration,
    pub close_wait_age: Duration,
    pub fin_wait2_age: Duration,
    pub dead_socket_age: Duration,
    pub idle_age: Duration,
    pub max_processes: usize,
    /// fd samples older than this are forgotten; growth is judged over it.
    pub fd_growth_window: Duration,
    pub proc_root: PathBuf,
    pub attribution: AttributionMode,
    pub log_level: String,
    pub log_format: LogFormat,
    pub thresholds: Thresholds,
    /// Hidden: TCP tables from a recording.
    pub replay_sockdiag: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_path: None,
            format: defaults::FORMAT,
            pids: Vec::new(),
            listing: crate::report::Listing::default(),
            duration: defaults::DURATION,
            listen: vec![defaults::LISTEN],
            web_config: None,
            systemd_socket: false,
            interval: defaults::INTERVAL,
            close_wait_age: defaults::CLOSE_WAIT_AGE,
            fin_wait2_age: defaults::FIN_WAIT2_AGE,
            dead_socket_age: defaults::DEAD_SOCKET_AGE,
            idle_age: defaults::IDLE_AGE,
            max_processes: defaults::MAX_PROCESSES,
            fd_growth_window: defaults::FD_GROWTH_WINDOW,
            proc_root: PathBuf::from(defaults::PROC_ROOT),
            attribution: defaults::ATTRIBUTION,
            log_level: defaults::LOG_LEVEL.to_string(),
            log_format: defaults::LOG_FORMAT,
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
        let c = Collector::new(ProcRoot::new(&self.proc_root))
            .with_idle_floor(self.idle_age)
            .with_attribution(self.attribution);
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
            dead_socket_age: self.dead_socket_age,
            idle_age: self.idle_age,
            thresholds: self.thresholds,
            only_pids: (!self.pids.is_empty()).then(|| self.pids.clone()),
            list_fd_utilization: None,
            list_growing: false,
            growth: analyse::GrowthRule {
                window: self.fd_growth_window,
                ..analyse::GrowthRule::default()
            },
            group_peers: true,
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
#[derive(Debug, Default, PartialEq)]
pub struct FileLevels {
    pub warning: Option<Amount>,
    pub critical: Option<Amount>,
}

/// `[thresholds]` as written: for each check named, the levels given, each
/// already in the check's unit. An unknown check is an error (a misspelt
/// name must not silently keep its default), and so is a level in another
/// unit, with the position of the offending key or value.
#[derive(Debug, Default, PartialEq)]
pub struct FileThresholds(pub BTreeMap<Check, FileLevels>);

impl<'de> Deserialize<'de> for FileThresholds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Checks;
        impl<'de> Visitor<'de> for Checks {
            type Value = FileThresholds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of checks")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileThresholds, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(CheckName(check)) = map.next_key()? {
                    let levels = map.next_value_seed(LevelsIn(check.spec().unit))?;
                    out.insert(check, levels);
                }
                Ok(FileThresholds(out))
            }
        }
        d.deserialize_map(Checks)
    }
}

/// A check's name as a key of `[thresholds]`.
struct CheckName(Check);

impl<'de> Deserialize<'de> for CheckName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Check::from_name(&name)
            .map(CheckName)
            .ok_or_else(|| de::Error::unknown_field(&name, &Check::NAMES))
    }
}

/// `{ warning = …, critical = … }` in a check's unit.
struct LevelsIn(Unit);

impl<'de> DeserializeSeed<'de> for LevelsIn {
    type Value = FileLevels;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FileLevels, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LevelsIn {
    type Value = FileLevels;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table with warning and critical")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FileLevels, A::Error> {
        let mut levels = FileLevels::default();
        while let Some(level) = map.next_key()? {
            let slot = match level {
                Level::Warning => &mut levels.warning,
                Level::Critical => &mut levels.critical,
            };
            *slot = Some(map.next_value_seed(AmountIn(self.0))?);
        }
        Ok(levels)
    }
}

/// A key of a check's levels (an unknown one is an error at the key).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Level {
    Warning,
    Critical,
}

/// One level, in a check's unit: counts and bytes are non-negative
/// integers (bytes also "1 GiB"), ratios numbers, time left a duration
/// ("24h").
struct AmountIn(Unit);

impl<'de> DeserializeSeed<'de> for AmountIn {
    type Value = Amount;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Amount, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AmountIn {
    type Value = Amount;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Unit::Count => "a non-negative integer",
            Unit::Ratio => "a number",
            Unit::TimeLeft => "a duration such as \"24h\"",
            Unit::Bytes => "a number of bytes or a size such as \"1 GiB\"",
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
        match self.0 {
            Unit::Count => Ok(Amount::Count(v)),
            Unit::Bytes => Ok(Amount::Bytes(v)),
            Unit::Ratio => Ok(Amount::Ratio(v as f64)),
            Unit::TimeLeft => Err(E::invalid_type(Unexpected::Unsigned(v), &self)),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
        match (self.0, u64::try_from(v)) {
            (Unit::Ratio, _) => Ok(Amount::Ratio(v as f64)),
            (Unit::Count | Unit::Bytes, Ok(v)) => self.visit_u64(v),
            (Unit::Count | Unit::Bytes, Err(_)) => {
                Err(E::invalid_value(Unexpected::Signed(v), &self))
            }
            (Unit::TimeLeft, _) => Err(E::invalid_type(Unexpected::Signed(v), &self)),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
        match self.0 {
            Unit::Ratio => Ok(Amount::Ratio(v)),
            _ => Err(E::invalid_type(Unexpected::Float(v), &self)),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
        match self.0 {
            Unit::TimeLeft => humantime::parse_duration(v)
                .map(Amount::TimeLeft)
                .map_err(|e| E::custom(format!("{e} (durations look like 90s, 5m, 24h)"))),
            Unit::Bytes => v
                .parse::<bytesize::ByteSize>()
                .map(|b| Amount::Bytes(b.as_u64()))
                .map_err(|e| E::custom(format!("{v:?}: {e}"))),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }
}

/// The config file as written: every key optional.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub format: Option<Format>,
    pub listen: Option<OneOrMore<ListenAddr>>,
    pub web_config: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub close_wait_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub fin_wait2_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub dead_socket_age: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_age: Option<Duration>,
    pub max_processes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub fd_growth_window: Option<Duration>,
    pub proc_root: Option<PathBuf>,
    pub attribution: Option<AttributionMode>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    #[serde(default)]
    pub thresholds: FileThresholds,
}

/// A key that takes one value or a list of them (`listen = ":9958"` or
/// `listen = [":9958", "[::1]:9959"]`); a list is not empty.
#[derive(Debug, PartialEq)]
pub struct OneOrMore<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMore<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            One(T),
            More(Vec<T>),
        }
        // Untagged enums hide the inner error; try each shape in turn.
        let value = toml::Value::deserialize(d)?;
        let either = match value {
            toml::Value::Array(_) => Vec::<T>::deserialize(value).map(Either::More),
            _ => T::deserialize(value).map(Either::One),
        }
        .map_err(de::Error::custom)?;
        match either {
            Either::One(v) => Ok(OneOrMore(vec![v])),
            Either::More(v) if v.is_empty() => Err(de::Error::custom("the list is empty")),
            Either::More(v) => Ok(OneOrMore(v)),
        }
    }
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

/// The defaults, with each level the file gives in place of its default.
fn merge_thresholds(file: &FileThresholds) -> Thresholds {
    let mut t = Thresholds::default();
    for (&check, given) in &file.0 {
        let d = t.get(check);
        t.set(
            check,
            Levels {
                warning: given.warning.unwrap_or(d.warning),
                critical: given.critical.unwrap_or(d.critical),
            },
        );
    }
    t
}

/// File settings, then flags on top; then validation.
pub fn merge(file: FileConfig, path: Option<PathBuf>, cli: &Cli) -> Result<Settings, ConfigError> {
    let d = Settings::default();
    let settings = Settings {
        format: cli.format.or(file.format).unwrap_or(d.format),
        pids: cli.pids.clone(),
        listing: crate::report::Listing {
            all: cli.all,
            top: cli.top,
        },
        duration: cli.duration.unwrap_or(d.duration),
        listen: if cli.listen.is_empty() {
            file.listen.map_or(d.listen, |l| l.0)
        } else {
            cli.listen.clone()
        },
        web_config: cli.web_config.clone().or(file.web_config),
        systemd_socket: cli.web_systemd_socket,
        interval: cli.interval.or(file.interval).unwrap_or(d.interval),
        close_wait_age: cli
            .close_wait_age
            .or(file.close_wait_age)
            .unwrap_or(d.close_wait_age),
        fin_wait2_age: cli
            .fin_wait2_age
            .or(file.fin_wait2_age)
            .unwrap_or(d.fin_wait2_age),
        dead_socket_age: cli
            .dead_socket_age
            .or(file.dead_socket_age)
            .unwrap_or(d.dead_socket_age),
        idle_age: cli.idle_age.or(file.idle_age).unwrap_or(d.idle_age),
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
        attribution: cli
            .attribution
            .or(file.attribution)
            .unwrap_or(d.attribution),
        log_level: cli
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or(d.log_level),
        log_format: cli.log_format.or(file.log_format).unwrap_or(d.log_format),
        thresholds: merge_thresholds(&file.thresholds),
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
        None => (PathBuf::from(defaults::CONFIG), false),
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
    struct Out {
        format: Format,
        listen: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        web_config: Option<String>,
        interval: String,
        close_wait_age: String,
        fin_wait2_age: String,
        dead_socket_age: String,
        idle_age: String,
        max_processes: usize,
        fd_growth_window: String,
        proc_root: String,
        attribution: &'static str,
        log_level: String,
        log_format: LogFormat,
        thresholds: RenderedThresholds,
    }
    let hd = |d: Duration| humantime::format_duration(d).to_string();
    let out = Out {
        format: s.format,
        listen: s.listen.iter().map(ToString::to_string).collect(),
        web_config: s.web_config.as_ref().map(|p| p.display().to_string()),
        interval: hd(s.interval),
        close_wait_age: hd(s.close_wait_age),
        fin_wait2_age: hd(s.fin_wait2_age),
        dead_socket_age: hd(s.dead_socket_age),
        idle_age: hd(s.idle_age),
        max_processes: s.max_processes,
        fd_growth_window: hd(s.fd_growth_window),
        proc_root: s.proc_root.display().to_string(),
        attribution: s.attribution.name(),
        log_level: s.log_level.clone(),
        log_format: s.log_format,
        thresholds: RenderedThresholds(s.thresholds),
    };
    toml::to_string(&out).unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
}

/// `[thresholds]` in table order, each level written as the file takes it.
struct RenderedThresholds(Thresholds);

impl Serialize for RenderedThresholds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        #[derive(Serialize)]
        struct L {
            warning: RenderedAmount,
            critical: RenderedAmount,
        }
        let mut map = s.serialize_map(Some(Check::COUNT))?;
        for (check, l) in self.0.iter() {
            let levels = L {
                warning: RenderedAmount(l.warning),
                critical: RenderedAmount(l.critical),
            };
            map.serialize_entry(check.name(), &levels)?;
        }
        map.end()
    }
}

struct RenderedAmount(Amount);

impl Serialize for RenderedAmount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Amount::Count(n) | Amount::Bytes(n) => s.serialize_u64(n),
            Amount::Ratio(r) => s.serialize_f64(r),
            Amount::TimeLeft(d) => s.collect_str(&humantime::format_duration(d)),
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "config_prop_tests.rs"]
mod prop_tests;
