//! Command-line flags. Every setting is optional here so that a flag given on
//! the command line overrides the config file, and one left out does not.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The end of `--help` and the EXTRA section of the manual page.
const AFTER_LONG_HELP: &str = "\
Exit status of --report (Nagios): 0 ok, 1 warning, 2 critical, 3 the scan failed \
or the flags or config were wrong. The agent exits 0 after SIGTERM or SIGINT, 1 when it \
cannot start (bad config, listen address in use).

Agent signals: SIGHUP reloads the config file (a broken file is logged and counted in \
closewatch_config_reloads_total, and the running config stays); SIGTERM and SIGINT stop.

Files: /etc/closewatch/closewatch.toml, the config (TOML; every key is optional, flags \
override it; `closewatch --check-config` prints the effective settings).

Privileges: run as root, or with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH to read other \
users' /proc/PID/fd, and CAP_SYS_ADMIN to enter other network namespaces. Without them the \
report still runs and says which owners it could not see.";

/// Report output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Json,
}

/// What `--generate` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The manual page (roff), as installed in man1
    Man,
    Bash,
    Zsh,
    Fish,
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (durations look like 90s, 5m, 1h)"))
}

/// Finds TCP sockets and file descriptors that programs forgot to close, and
/// names the process responsible.
///
/// Without --report, runs as an agent: scans every --interval and serves
/// Prometheus metrics on --listen. With --report, scans once, prints, and exits
/// 0 (ok), 1 (warning), 2 (critical) or 3 (the scan failed).
#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "closewatch",
    version,
    about,
    long_about,
    max_term_width = 100,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Scan once, print a report and exit with a Nagios status
    #[arg(long)]
    pub report: bool,

    /// Report format [default: text]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Report only this process (repeatable); the status weighs only these
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Report: sample for this long before printing, to judge fd growth [default: 0]
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub duration: Option<Duration>,

    /// TOML config file [default: /etc/closewatch/closewatch.toml if present]
    #[arg(short = 'c', long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Agent: HTTP listen address (127.0.0.1:0 picks a free port) [default: 0.0.0.0:9958]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Agent: time between scans [default: 15s]
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub interval: Option<Duration>,

    /// CLOSE_WAIT older than this is stale [default: 60s]
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub close_wait_age: Option<Duration>,

    /// Owned FIN_WAIT_2 older than this is stale [default: 60s]
    #[arg(long = "fin-wait2-age", value_name = "DUR", value_parser = duration)]
    pub fin_wait2_age: Option<Duration>,

    /// Agent: cap on processes given per-process series [default: 100]
    #[arg(long, value_name = "N")]
    pub max_processes: Option<usize>,

    /// fd growth is judged over this window of samples [default: 15m]
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub fd_growth_window: Option<Duration>,

    /// Where procfs is mounted (a container sees the host's at /host/proc) [default: /proc]
    #[arg(long, value_name = "PATH")]
    pub proc_root: Option<PathBuf>,

    /// Validate the config, print the effective settings, exit 0 or 1
    #[arg(long)]
    pub check_config: bool,

    /// Log level: error, warn, info, debug, trace (RUST_LOG also works) [default: info]
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Print the manual page or a shell completion script (from these very
    /// flags) and exit
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<Generate>,

    /// Take TCP tables from a recording (examples/record_fixture.rs) instead of
    /// the kernel: for tests, and to replay a report from a bug report.
    #[arg(long, value_name = "DIR", hide = true)]
    pub replay_sockdiag: Option<PathBuf>,
}

/// Writes what `--generate` asks for, made from the flags defined above (so
/// the packaged manual and completions cannot drift from them).
pub fn generate(what: Generate, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let mut cmd = Cli::command();
    let shell = match what {
        Generate::Man => return clap_mangen::Man::new(cmd).render(out),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "closewatch", out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_flags_parse() {
        let cli = Cli::try_parse_from([
            "closewatch",
            "--report",
            "--format",
            "json",
            "--pid",
            "1",
            "--pid",
            "2",
            "--duration",
            "30s",
            "-c",
            "/x.toml",
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "5m",
            "--close-wait-age",
            "90s",
            "--fin-wait2-age",
            "1h",
            "--max-processes",
            "7",
            "--proc-root",
            "/host/proc",
            "--check-config",
        ])
        .expect("parses");
        assert!(cli.report && cli.check_config);
        assert_eq!(cli.format, Some(Format::Json));
        assert_eq!(cli.pids, vec![1, 2]);
        assert_eq!(cli.duration, Some(Duration::from_secs(30)));
        assert_eq!(cli.interval, Some(Duration::from_secs(300)));
        assert_eq!(cli.fin_wait2_age, Some(Duration::from_secs(3600)));
        assert_eq!(cli.max_processes, Some(7));
    }

    #[test]
    fn bad_duration_is_rejected_with_an_example() {
        let err = Cli::try_parse_from(["closewatch", "--interval", "soon"]).expect_err("invalid");
        assert!(err.to_string().contains("90s"), "{err}");
    }

    #[test]
    fn manual_and_completions_carry_every_flag() {
        use clap::CommandFactory;
        let render = |what| {
            let mut out = Vec::new();
            generate(what, &mut out).expect("renders");
            String::from_utf8(out).expect("UTF-8")
        };
        let man = render(Generate::Man);
        let bash = render(Generate::Bash);
        let zsh = render(Generate::Zsh);
        let fish = render(Generate::Fish);
        assert!(man.contains(".TH closewatch 1"), "{man}");
        assert!(
            man.contains("Exit status of"),
            "the EXTRA section is missing"
        );
        for arg in Cli::command().get_arguments().filter(|a| !a.is_hide_set()) {
            let Some(long) = arg.get_long() else { continue };
            // roff escapes '-' as '\-'.
            let in_man = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(man.contains(&in_man), "man lacks --{long}");
            assert!(bash.contains(&format!("--{long}")), "bash lacks --{long}");
            assert!(zsh.contains(&format!("--{long}")), "zsh lacks --{long}");
            assert!(fish.contains(&format!("-l {long}")), "fish lacks --{long}");
        }
        assert!(
            !man.contains("replay"),
            "hidden flags stay out of the manual"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
