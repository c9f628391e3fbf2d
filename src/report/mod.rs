//! The one-shot report: one data model, two printers (text, JSON), each
//! writing to any `io::Write`. Printers never decide anything: the verdict is
//! the analysis's, the exit status is [`Report::exit_code`].

pub mod json;
pub mod text;

use crate::analyse::{Analysis, Settings};
use crate::model::{ProcessDetails, ScanError, Snapshot};

/// Everything a printer needs.
pub struct Report<'a> {
    pub snapshot: &'a Snapshot,
    pub analysis: &'a Analysis,
    /// Parallel to `analysis.processes`: what was read of each listed process
    /// (`None` when it exited before it could be described).
    pub details: &'a [Option<ProcessDetails>],
    pub settings: &'a Settings,
    /// Scan errors plus those of the report itself (e.g. a `--pid` that does
    /// not exist).
    pub errors: &'a [ScanError],
}

impl Report<'_> {
    /// Nagios: 0 ok, 1 warning, 2 critical, 3 the scan itself failed.
    pub fn exit_code(&self) -> u8 {
        if self.errors.is_empty() {
            self.analysis.status.exit_code()
        } else {
            3
        }
    }
}
