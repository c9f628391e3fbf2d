//! `closewatch --report`: scan (once, or for `--duration`), judge, describe
//! the processes worth showing. What it finds is a [`Done`], which prints
//! itself to any writer and knows its Nagios exit status; nothing here
//! writes to the terminal on its own.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::analyse::{self, Analysis, History};
use crate::cli::Format;
use crate::collect::{Collector, ScanCache, ScanTime};
use crate::config::Settings;
use crate::model::{ProcessDetails, ScanError, Snapshot, Stage};
use crate::report::{self, Report};

/// Time between scans while sampling for `--duration`: about 30 samples,
/// between 1 s and 15 s apart.
pub fn sample_interval(duration: Duration) -> Duration {
    (duration / 30).clamp(Duration::from_secs(1), Duration::from_secs(15))
}

/// A finished one-shot: the last scan, its verdict and what was read of the
/// processes it lists.
pub struct Done {
    snapshot: Snapshot,
    listing: report::Listing,
    analysis: Analysis,
    settings: analyse::Settings,
    details: Vec<Option<ProcessDetails>>,
    /// The scan's errors and the report's own (a `--pid` that does not
    /// exist).
    errors: Vec<ScanError>,
}

impl Done {
    fn report(&self) -> Report<'_> {
        Report {
            snapshot: &self.snapshot,
            listing: self.listing,
            analysis: &self.analysis,
            details: &self.details,
            settings: &self.settings,
            errors: &self.errors,
        }
    }

    /// Nagios: 0 ok, 1 warning, 2 critical, 3 the scan itself failed.
    pub fn exit_code(&self) -> u8 {
        self.report().exit_code()
    }

    /// The report's own errors, for stderr (the scan's are in the report).
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        self.errors
            .iter()
            .filter(|e| e.stage == Stage::Pid)
            .map(|e| e.message.as_str())
    }

    /// Prints the report in `format` (text laid out as `layout` says).
    pub fn write(
        &self,
        format: Format,
        out: &mut dyn Write,
        layout: report::text::Layout,
    ) -> std::io::Result<()> {
        let report = self.report();
        match format {
            Format::Text => report::text::write(&report, out, layout)?,
            Format::Json => report::json::write(&report, out)?,
        }
        out.flush()
    }
}

/// Runs the one-shot. With a `--duration`, scans repeatedly first, writing
/// a progress line to `progress` if given, so the report can judge fd
/// growth and socket ages over time.
pub fn run(settings: &Settings, collector: &Collector, progress: Option<&mut dyn Write>) -> Done {
    let (mut snapshot, history) = sample(settings, collector, progress);
    collector.examine_unreadable(&mut snapshot);
    let analysis_settings = settings.analysis();
    let analysis = analyse::analyse(&snapshot, &history, &analysis_settings, snapshot.scanned_at);
    let mut errors = snapshot.errors.clone();
    errors.extend(analysis.missing_pids.iter().map(|pid| ScanError {
        stage: Stage::Pid,
        message: format!("no process with pid {pid}"),
    }));
    let keys: Vec<_> = analysis
        .processes
        .iter()
        .map(|p| snapshot.processes.get(p.index).map(|s| s.key))
        .collect();
    let details = collector.describe_all(&keys);
    Done {
        snapshot,
        listing: settings.listing,
        analysis,
        settings: analysis_settings,
        details,
        errors,
    }
}

/// Scans until `--duration` has passed (once without one): the last scan,
/// and the history of all of them.
fn sample(
    settings: &Settings,
    collector: &Collector,
    mut progress: Option<&mut dyn Write>,
) -> (Snapshot, History) {
    let mut history = History::default();
    let mut cache = ScanCache::default();
    // Every sample of the run counts, however long it is.
    let window = settings.fd_growth_window.max(settings.duration);
    let started = Instant::now();
    let step = sample_interval(settings.duration);
    let mut scans = 0u32;
    let snapshot = loop {
        let at = ScanTime::now();
        let snapshot = collector.scan_cached(&mut cache, at);
        scans += 1;
        history.observe(&snapshot, at.wall, window);
        let elapsed = at.mono.saturating_duration_since(started);
        if elapsed >= settings.duration {
            break snapshot;
        }
        if let Some(p) = progress.as_deref_mut() {
            // Progress is a courtesy: a terminal gone does not stop the scan.
            let _ = write!(
                p,
                "\rsampling {:>4}s of {}s, {scans} scans…",
                elapsed.as_secs(),
                settings.duration.as_secs()
            );
        }
        let next = (at.mono + step).min(started + settings.duration);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    };
    if let Some(p) = progress.filter(|_| scans > 1) {
        let _ = write!(p, "\r\x1b[2K");
    }
    (snapshot, history)
}
