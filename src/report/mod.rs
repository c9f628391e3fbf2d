//! The one-shot report: one data model, two printers (text, JSON), each
//! writing to any `io::Write`. Printers never decide anything: the verdict is
//! the analysis's, the exit status is [`Report::exit_code`].

pub mod json;
pub mod text;

use crate::analyse::{Analysis, Settings};

/// Processes the scan could not read that a report names (by pid); the
/// rest are counted.
pub const MAX_SKIPPED: usize = 20;
use crate::model::{ProcessDetails, ScanError, Snapshot};

/// Everything a printer needs.
pub struct Report<'a> {
    pub snapshot: &'a Snapshot,
    pub listing: Listing,
    pub analysis: &'a Analysis,
    /// Parallel to `analysis.processes`: what was read of each listed process
    /// (`None` when it exited before it could be described).
    pub details: &'a [Option<ProcessDetails>],
    pub settings: &'a Settings,
    /// Scan errors plus those of the report itself (e.g. a `--pid` that does
    /// not exist).
    pub errors: &'a [ScanError],
}

/// Which processes a report lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The text table lists every process the analysis kept, not only those
    /// with a finding (`--all`).
    pub all: bool,
    /// At most this many, worst first, in text and JSON (`--top`).
    pub top: Option<usize>,
}

impl Report<'_> {
    /// The indices into `analysis.processes` the text report lists: those
    /// with a finding (every one asked for with `--pid`, or with `--all`),
    /// worst first, at most `--top`.
    pub fn listed(&self) -> Vec<usize> {
        let everyone = self.listing.all || self.settings.only_pids.is_some();
        let mut listed: Vec<usize> = (0..self.analysis.processes.len())
            .filter(|&i| everyone || !self.analysis.processes[i].findings.is_empty())
            .collect();
        if let Some(top) = self.listing.top {
            listed.truncate(top);
        }
        listed
    }

    /// Nagios: 0 ok, 1 warning, 2 critical, 3 the scan itself failed.
    pub fn exit_code(&self) -> u8 {
        if self.errors.is_empty() {
            self.analysis.status.exit_code()
        } else {
            3
        }
    }
}
