//! The closewatch binary: parse flags, load the config, dispatch, and turn
//! every error into a message on stderr and an exit status.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use closewatch::cli::Cli;
use closewatch::{agent, config, oneshot};

/// Exit status when the report cannot run at all (Nagios UNKNOWN).
const REPORT_FAILED: u8 = 3;

fn init_logging(level: &str) {
    let env = env_logger::Env::default().filter_or("RUST_LOG", level);
    env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .format_target(false)
        .init();
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let reporting = args.iter().any(|a| a == "--report");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                // A usage error must not read as WARNING/CRITICAL to Nagios.
                _ if reporting => REPORT_FAILED,
                _ => 2,
            });
        }
    };
    if let Some(what) = cli.generate {
        let stdout = std::io::stdout();
        return match closewatch::cli::generate(what, &mut stdout.lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("closewatch: --generate: {e}");
                ExitCode::from(1)
            }
        };
    }
    let failed = if cli.check_config {
        1
    } else if cli.report {
        REPORT_FAILED
    } else {
        1
    };
    let settings = match config::load(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("closewatch: {e}");
            return ExitCode::from(failed);
        }
    };
    if cli.check_config {
        let origin = settings.config_path.as_ref().map_or_else(
            || "none (defaults and flags)".to_string(),
            |p| p.display().to_string(),
        );
        print!(
            "# closewatch effective settings; config file: {origin}\n{}",
            config::render(&settings)
        );
        return ExitCode::SUCCESS;
    }
    init_logging(&settings.log_level);
    if cli.report {
        let stdout = std::io::stdout();
        let color =
            stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let mut out = stdout.lock();
        let progress = std::io::stderr().is_terminal();
        return match oneshot::run(&settings, &mut out, color, progress) {
            Ok(code) => ExitCode::from(code),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(REPORT_FAILED),
            Err(e) => {
                eprintln!("closewatch: writing the report: {e}");
                ExitCode::from(REPORT_FAILED)
            }
        };
    }
    match agent::run(cli, settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}
