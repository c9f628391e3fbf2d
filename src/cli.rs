//! Command-line flags. Every setting is optional here so that a flag given on
//! the command line overrides the config file, and one left out does not.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::collect::attribution::Mode as AttributionMode;
use crate::defaults;
use crate::export::http::address::ListenAddr;
use crate::logging::LogFormat;

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
    version = crate::build_info::LONG_VERSION,
    about,
    long_about,
    max_term_width = 100,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Scan once, print a report and exit with a Nagios status
    #[arg(long)]
    pub report: bool,

    /// Report format
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Report only this process (repeatable); the status weighs only these
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Report: list every process that holds something, not only those with
    /// a finding
    #[arg(long)]
    pub all: bool,

    /// Report: list at most N processes, worst first (JSON too)
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Report: sample for this long before printing, to judge fd growth
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub duration: Option<Duration>,

    /// TOML config file
    #[arg(short = 'c', long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Agent: HTTP listen address, repeatable: :PORT (every address, IPv4
    /// and IPv6), HOST:PORT, IPV4:PORT or [IPV6]:PORT (port 0 picks a free one)
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,

    /// Agent: serve on the sockets systemd passes (socket activation, a
    /// .socket unit) instead of --listen
    #[arg(long)]
    pub web_systemd_socket: bool,

    /// Agent: TLS and basic auth, in the Prometheus exporter-toolkit's
    /// web config format (node_exporter's --web.config.file)
    #[arg(long, value_name = "PATH")]
    pub web_config: Option<PathBuf>,

    /// Agent: time between scans
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub interval: Option<Duration>,

    /// CLOSE_WAIT older than this is stale
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub close_wait_age: Option<Duration>,

    /// Owned FIN_WAIT_2 older than this is stale
    #[arg(long = "fin-wait2-age", value_name = "DUR", value_parser = duration)]
    pub fin_wait2_age: Option<Duration>,

    /// Dead sockets (in no TCP table) and UNIX sockets whose peer closed,
    /// held this long, are stale
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub dead_socket_age: Option<Duration>,

    /// ESTABLISHED sockets that received nothing for this long, with no
    /// keepalive, are half-open
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub idle_age: Option<Duration>,

    /// Agent: cap on processes given per-process series
    #[arg(long, value_name = "N")]
    pub max_processes: Option<usize>,

    /// fd growth is judged over this window of samples
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub fd_growth_window: Option<Duration>,

    /// Where procfs is mounted (a container sees the host's at /host/proc)
    #[arg(long, value_name = "PATH")]
    pub proc_root: Option<PathBuf>,

    /// How sockets are mapped to processes: BPF iterators in the kernel
    /// when they load (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN),
    /// else the /proc walk
    #[arg(long, value_enum, value_name = "HOW")]
    pub attribution: Option<AttributionMode>,

    /// Validate the config, print the effective settings, exit 0 or 1
    #[arg(long)]
    pub check_config: bool,

    /// Log level: error, warn, info, debug, trace (RUST_LOG also works)
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format: text, logfmt or json (node_exporter's keys: time,
    /// level, source, msg); under journald each line starts with its
    /// syslog priority
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Print the manual page or a shell completion script (from these very
    /// flags) and exit
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<Generate>,

    /// Take TCP tables from a recording (examples/record_fixture.rs) instead of
    /// the kernel: for tests, and to replay a report from a bug report.
    #[arg(long, value_name = "DIR", hide = true)]
    pub replay_sockdiag: Option<PathBuf>,
}

/// The value `--help` shows as each flag's default, from [`defaults`]
/// (the one place each is written): `(flag id, value)`.
fn shown_defaults() -> [(&'static str, String); 15] {
    let d = |d: Duration| humantime::format_duration(d).to_string();
    [
        ("format", format!("{:?}", defaults::FORMAT).to_lowercase()),
        ("duration", d(defaults::DURATION)),
        ("config", format!("{} if present", defaults::CONFIG)),
        ("listen", defaults::LISTEN.to_string()),
        ("interval", d(defaults::INTERVAL)),
        ("close_wait_age", d(defaults::CLOSE_WAIT_AGE)),
        ("fin_wait2_age", d(defaults::FIN_WAIT2_AGE)),
        ("dead_socket_age", d(defaults::DEAD_SOCKET_AGE)),
        ("idle_age", d(defaults::IDLE_AGE)),
        ("max_processes", defaults::MAX_PROCESSES.to_string()),
        ("fd_growth_window", d(defaults::FD_GROWTH_WINDOW)),
        ("proc_root", defaults::PROC_ROOT.to_string()),
        ("attribution", defaults::ATTRIBUTION.name().to_string()),
        ("log_level", defaults::LOG_LEVEL.to_string()),
        ("log_format", defaults::LOG_FORMAT.name().to_string()),
    ]
}

/// The command line, with each flag's default appended to its help. (The
/// flags are `Option`s so that the config file can fill what they leave
/// out; the defaults are applied after both, in `config::merge`.)
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    shown_defaults()
        .into_iter()
        .fold(Cli::command(), |cmd, (id, value)| {
            cmd.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {value}]"))
            })
        })
}

/// Parses the command line (`args[0]` is the program).
pub fn parse(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let mut matches = command().try_get_matches_from(args)?;
    Cli::from_arg_matches_mut(&mut matches)
}

/// Whether a command line clap refused asks for `--report` (so that its
/// usage error exits as a failed report does). Clap stops at the first bad
/// value, so the words are looked at as given.
pub fn reporting(args: &[std::ffi::OsString]) -> bool {
    args.iter().skip(1).any(|a| a == "--report")
}

/// Writes what `--generate` asks for, made from the flags defined above (so
/// the packaged manual and completions cannot drift from them).
pub fn generate(what: Generate, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap_complete::Shell;
    let mut cmd = command();
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
        let args: Vec<std::ffi::OsString> = [
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
        ]
        .map(Into::into)
        .to_vec();
        let cli = parse(&args).expect("parses");
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
        command().debug_assert();
    }

    #[test]
    fn help_shows_each_default_as_the_settings_use_it() {
        let help = command().render_long_help().to_string();
        let settings = crate::config::Settings::default();
        let d = |d: Duration| humantime::format_duration(d).to_string();
        for (flag, value) in [
            ("--format", "text".to_string()),
            ("--duration", d(settings.duration)),
            ("--listen", settings.listen[0].to_string()),
            ("--interval", d(settings.interval)),
            ("--close-wait-age", d(settings.close_wait_age)),
            ("--fin-wait2-age", d(settings.fin_wait2_age)),
            ("--dead-socket-age", d(settings.dead_socket_age)),
            ("--idle-age", d(settings.idle_age)),
            ("--max-processes", settings.max_processes.to_string()),
            ("--fd-growth-window", d(settings.fd_growth_window)),
            ("--proc-root", settings.proc_root.display().to_string()),
            ("--attribution", settings.attribution.name().to_string()),
            ("--log-level", settings.log_level.clone()),
            ("--log-format", settings.log_format.name().to_string()),
            (
                "--config",
                "/etc/closewatch/closewatch.toml if present".into(),
            ),
        ] {
            let at = help
                .find(&format!("{flag} <"))
                .unwrap_or_else(|| panic!("{flag} not in --help"));
            let entry = &help[at..];
            let end = entry.find("\n\n").unwrap_or(entry.len());
            assert!(
                entry[..end].contains(&format!("[default: {value}]")),
                "{flag} should show [default: {value}]:\n{}",
                &entry[..end]
            );
        }
        let analysis = crate::analyse::Settings::default();
        assert_eq!(analysis.close_wait_age, settings.close_wait_age);
        assert_eq!(analysis.fin_wait2_age, settings.fin_wait2_age);
        assert_eq!(analysis.dead_socket_age, settings.dead_socket_age);
        assert_eq!(analysis.idle_age, settings.idle_age);
        assert_eq!(analysis.growth.window, settings.fd_growth_window);
    }

    #[test]
    fn a_refused_command_line_still_tells_whether_it_asked_for_a_report() {
        let args = |a: &[&str]| {
            a.iter()
                .map(Into::into)
                .collect::<Vec<std::ffi::OsString>>()
        };
        assert!(reporting(&args(&["closewatch", "--report", "--bogus"])));
        assert!(reporting(&args(&[
            "closewatch",
            "--interval",
            "soon",
            "--report"
        ])));
        assert!(!reporting(&args(&["closewatch", "--bogus"])));
        assert!(parse(&args(&["closewatch", "--report", "--bogus"])).is_err());
    }
}
