//! `closewatch --report`: scan, judge, describe the processes worth showing,
//! print, and return the Nagios exit status.

use std::io::Write;
use std::time::{Duration, Instant, SystemTime};

use crate::analyse::{self, History};
use crate::cli::Format;
use crate::collect::ScanCache;
use crate::config::Settings;
use crate::model::{ScanError, Stage};
use crate::report::{self, Report};

/// Time between scans while sampling for `--duration`: about 30 samples,
/// between 1 s and 15 s apart.
pub fn sample_interval(duration: Duration) -> Duration {
    (duration / 30).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// Runs the one-shot report and returns its exit status (0–3). With a
/// `--duration`, scans repeatedly first (a progress line on stderr when
/// `progress`), so the report can judge fd growth and socket ages over time.
pub fn run(
    settings: &Settings,
    out: &mut dyn Write,
    color: bool,
    progress: bool,
) -> std::io::Result<u8> {
    let collector = settings.collector();
    let mut history = History::default();
    let mut scan_cache = ScanCache::default();
    // Every sample of the run counts, however long it is.
    let window = settings.fd_growth_window.max(settings.duration);
    let started = Instant::now();
    let step = sample_interval(settings.duration);
    let mut scans = 0u32;
    let snapshot = loop {
        let scan_started = Instant::now();
        let snapshot = collector.scan_cached(&mut scan_cache);
        scans += 1;
        history.observe(
            &snapshot,
            snapshot.scanned_at.unwrap_or_else(SystemTime::now),
            window,
        );
        let elapsed = started.elapsed();
        if elapsed >= settings.duration {
            break snapshot;
        }
        if progress {
            eprint!(
                "\rsampling {:>4}s of {}s, {scans} scans…",
                elapsed.as_secs(),
                settings.duration.as_secs()
            );
        }
        let next = (scan_started + step).min(started + settings.duration);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    };
    if progress && scans > 1 {
        eprint!("\r\x1b[2K");
    }
    let now = snapshot.scanned_at.unwrap_or_else(SystemTime::now);
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
