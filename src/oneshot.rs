//! `closewatch --report`: scan, judge, describe the processes worth showing,
//! print, and return the Nagios exit status.

use std::io::Write;
use std::sync::Arc;
use std::time::SystemTime;

use crate::analyse::{self, History};
use crate::cli::Format;
use crate::collect::{Collector, ProcRoot, Recorded};
use crate::config::Settings;
use crate::model::{ScanError, Stage};
use crate::report::{self, Report};

/// Runs the one-shot report and returns its exit status (0–3).
pub fn run(settings: &Settings, out: &mut dyn Write, color: bool) -> std::io::Result<u8> {
    let mut collector = Collector::new(ProcRoot::new(&settings.proc_root));
    if let Some(dir) = &settings.replay_sockdiag {
        collector = collector.with_sockets(Arc::new(Recorded { dir: dir.clone() }));
    }
    let snapshot = collector.scan();
    let now = snapshot.scanned_at.unwrap_or_else(SystemTime::now);
    let mut history = History::default();
    history.observe(&snapshot, now);
    let analysis_settings = settings.analysis();
    let analysis = analyse::analyse(&snapshot, &history, &analysis_settings, now);

    let mut errors = snapshot.errors.clone();
    for pid in &analysis.missing_pids {
        let message = format!("no process with pid {pid}");
        eprintln!("closewatch: {message}");
        errors.push(ScanError {
            stage: Stage::Pid,
            message,
        });
    }
    let details: Vec<_> = analysis
        .processes
        .iter()
        .map(|p| {
            let key = snapshot.processes.get(p.index)?.key;
            collector.describe(key).ok()
        })
        .collect();
    let report = Report {
        snapshot: &snapshot,
        analysis: &analysis,
        details: &details,
        settings: &analysis_settings,
        errors: &errors,
    };
    match settings.format {
        Format::Text => report::text::write(&report, out, color)?,
        Format::Json => report::json::write(&report, out)?,
    }
    out.flush()?;
    Ok(report.exit_code())
}
