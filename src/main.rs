//! The closewatch binary: parse the flags, decide the [`Mode`], run it. One
//! place, [`try_main`], decides the exit status: every failure carries its
//! own, and `main` only prints it.

use std::io::IsTerminal;
use std::process::ExitCode;

use closewatch::cli::{self, Cli, Generate};
use closewatch::{agent, config, oneshot};

/// Exit status when the report cannot run at all (Nagios UNKNOWN).
const REPORT_FAILED: u8 = 3;
/// Exit status of the agent and `--check-config` when they cannot start.
const FAILED: u8 = 1;
/// Exit status of a usage error outside `--report`.
const USAGE: u8 = 2;

/// What this run of the binary does, decided from the parsed flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Generate(Generate),
    CheckConfig,
    Report,
    Agent,
}

impl Mode {
    fn of(cli: &Cli) -> Mode {
        match cli.generate {
            Some(what) => Mode::Generate(what),
            None if cli.check_config => Mode::CheckConfig,
            None if cli.report => Mode::Report,
            None => Mode::Agent,
        }
    }

    /// The status of a run that could not do its job: a report must not
    /// read as WARNING or CRITICAL to Nagios.
    fn failed(self) -> u8 {
        match self {
            Mode::Report => REPORT_FAILED,
            _ => FAILED,
        }
    }
}

/// Why the run stopped, and the status it exits with.
struct Failure {
    status: u8,
    /// For stderr; `None` when already said (by clap, or in the log).
    message: Option<String>,
}

impl Failure {
    fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: Some(message.into()),
        }
    }
}

fn main() -> ExitCode {
    closewatch::malloc::tune();
    match try_main() {
        Ok(status) => ExitCode::from(status),
        Err(failure) => {
            if let Some(message) = failure.message {
                eprintln!("closewatch: {message}");
            }
            ExitCode::from(failure.status)
        }
    }
}

fn try_main() -> Result<u8, Failure> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = cli::parse(&args).map_err(|e| usage(e, cli::reporting(&args)))?;
    let mode = Mode::of(&cli);
    match mode {
        Mode::Generate(what) => {
            let stdout = std::io::stdout();
            cli::generate(what, &mut stdout.lock())
                .map_err(|e| Failure::new(FAILED, format!("--generate: {e}")))?;
            Ok(0)
        }
        Mode::CheckConfig => {
            let settings = load(&cli, mode)?;
            if let Some(path) = &settings.web_config {
                closewatch::export::http::web_config::load(path)
                    .map_err(|e| Failure::new(FAILED, e.to_string()))?;
            }
            let origin = settings.config_path.as_ref().map_or_else(
                || "none (defaults and flags)".to_string(),
                |p| p.display().to_string(),
            );
            print!(
                "# closewatch effective settings; config file: {origin}\n{}",
                config::render(&settings)
            );
            Ok(0)
        }
        Mode::Report => report(&load(&cli, mode)?),
        Mode::Agent => {
            let settings = load(&cli, mode)?;
            agent::run(cli, settings).map_err(|e| {
                log::error!("{e:#}");
                Failure {
                    status: FAILED,
                    message: None,
                }
            })?;
            Ok(0)
        }
    }
}

/// The settings of flags and config file; logging starts with them.
fn load(cli: &Cli, mode: Mode) -> Result<config::Settings, Failure> {
    let settings = config::load(cli).map_err(|e| Failure::new(mode.failed(), e.to_string()))?;
    if mode != Mode::CheckConfig {
        closewatch::logging::init(&settings.log_level, settings.log_format);
    }
    Ok(settings)
}

/// A flag clap refused (or `--help`, `--version`: printed, exit 0).
fn usage(e: clap::Error, reporting: bool) -> Failure {
    let _ = e.print();
    let status = match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
        // A usage error must not read as WARNING/CRITICAL to Nagios.
        _ if reporting => REPORT_FAILED,
        _ => USAGE,
    };
    Failure {
        status,
        message: None,
    }
}

/// The width the text report is wrapped to: `COLUMNS` if set, else the
/// terminal's on a TTY, else a fixed width (a pipe's output does not depend
/// on where it was made); never under [`Layout::MIN_WIDTH`].
fn text_width(stdout: &std::io::Stdout) -> usize {
    use closewatch::report::text::Layout;
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok());
    let from_tty = || {
        stdout
            .is_terminal()
            .then(|| rustix::termios::tcgetwinsize(stdout).ok())
            .flatten()
            .map(|w| usize::from(w.ws_col))
            .filter(|&c| c > 0)
    };
    from_env
        .or_else(from_tty)
        .unwrap_or(Layout::PIPED_WIDTH)
        .max(Layout::MIN_WIDTH)
}

/// The one-shot report on stdout, progress and its own errors on stderr.
/// A reader that goes away early (`| head`) is a normal end: the status is
/// the report's.
fn report(settings: &config::Settings) -> Result<u8, Failure> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let layout = closewatch::report::text::Layout {
        color: stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        width: text_width(&stdout),
    };
    // Not locked for the run: the scan's threads log to it.
    let mut err = stderr;
    let progress = err.is_terminal();
    let mut collector = settings.collector().reporting();
    if settings.duration.is_zero() {
        collector = collector.lone();
    }
    let done = oneshot::run(
        settings,
        &collector,
        progress.then_some(&mut err as &mut dyn std::io::Write),
    );
    for message in done.messages() {
        eprintln!("closewatch: {message}");
    }
    match done.write(settings.format, &mut stdout.lock(), layout) {
        Ok(()) => Ok(done.exit_code()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(done.exit_code()),
        Err(e) => Err(Failure::new(
            REPORT_FAILED,
            format!("writing the report: {e}"),
        )),
    }
}
