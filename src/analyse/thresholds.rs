//! The checks closewatch runs and the levels at which they fire.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// How bad a finding is (Nagios: WARNING, CRITICAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A check, named as in the SPEC and in `[thresholds]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    CloseWaitStale,
    FinWait2Stale,
    /// Stale CLOSE_WAIT connections never accepted from a listener's queue.
    CloseWaitUnaccepted,
    FdUtilization,
    FdExhaustion,
    DeletedOpenFiles,
    HostFdUtilization,
}

impl Check {
    pub const ALL: [Check; 7] = [
        Check::CloseWaitStale,
        Check::FinWait2Stale,
        Check::CloseWaitUnaccepted,
        Check::FdUtilization,
        Check::FdExhaustion,
        Check::DeletedOpenFiles,
        Check::HostFdUtilization,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::CloseWaitStale => "close_wait_stale",
            Check::FinWait2Stale => "fin_wait2_stale",
            Check::CloseWaitUnaccepted => "close_wait_unaccepted",
            Check::FdUtilization => "fd_utilization",
            Check::FdExhaustion => "fd_exhaustion",
            Check::DeletedOpenFiles => "deleted_open_files",
            Check::HostFdUtilization => "host_fd_utilization",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A warning and a critical level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels<T> {
    pub warning: T,
    pub critical: T,
}

impl<T: PartialOrd + Copy> Levels<T> {
    /// For checks where more is worse: fires at `value ≥ level`.
    pub fn at_least(&self, value: T) -> Option<Severity> {
        if value >= self.critical {
            Some(Severity::Critical)
        } else if value >= self.warning {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// For checks where less is worse (time left): fires at `value ≤ level`.
    pub fn at_most(&self, value: T) -> Option<Severity> {
        if value <= self.critical {
            Some(Severity::Critical)
        } else if value <= self.warning {
            Some(Severity::Warning)
        } else {
            None
        }
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

/// Every threshold, with the SPEC's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Stale CLOSE_WAIT sockets held by one process.
    pub close_wait_stale: Levels<u64>,
    /// Stale owned FIN_WAIT_2 sockets held by one process.
    pub fin_wait2_stale: Levels<u64>,
    /// Stale CLOSE_WAIT connections waiting in one process's listen queues.
    pub close_wait_unaccepted: Levels<u64>,
    /// Open fds / soft RLIMIT_NOFILE.
    pub fd_utilization: Levels<f64>,
    /// Predicted time until the fd limit.
    pub fd_exhaustion: Levels<Duration>,
    /// Bytes held by deleted-but-open files.
    pub deleted_open_files: Levels<u64>,
    /// file-nr / file-max.
    pub host_fd_utilization: Levels<f64>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            close_wait_stale: Levels {
                warning: 1,
                critical: 100,
            },
            fin_wait2_stale: Levels {
                warning: 1,
                critical: 100,
            },
            close_wait_unaccepted: Levels {
                warning: 1,
                critical: 100,
            },
            fd_utilization: Levels {
                warning: 0.80,
                critical: 0.95,
            },
            fd_exhaustion: Levels {
                warning: Duration::from_secs(24 * 3600),
                critical: Duration::from_secs(3600),
            },
            deleted_open_files: Levels {
                warning: GIB,
                critical: 10 * GIB,
            },
            host_fd_utilization: Levels {
                warning: 0.80,
                critical: 0.95,
            },
        }
    }
}

impl Thresholds {
    /// `(check, warning, critical)` as numbers, in the unit each check is
    /// measured in (count, ratio, seconds, bytes): what `closewatch_threshold`
    /// exports.
    pub fn as_numbers(&self) -> [(Check, f64, f64); 7] {
        let n = |l: Levels<u64>| (l.warning as f64, l.critical as f64);
        let r = |l: Levels<f64>| (l.warning, l.critical);
        let d = |l: Levels<Duration>| (l.warning.as_secs_f64(), l.critical.as_secs_f64());
        let rows = [
            (Check::CloseWaitStale, n(self.close_wait_stale)),
            (Check::FinWait2Stale, n(self.fin_wait2_stale)),
            (Check::CloseWaitUnaccepted, n(self.close_wait_unaccepted)),
            (Check::FdUtilization, r(self.fd_utilization)),
            (Check::FdExhaustion, d(self.fd_exhaustion)),
            (Check::DeletedOpenFiles, n(self.deleted_open_files)),
            (Check::HostFdUtilization, r(self.host_fd_utilization)),
        ];
        rows.map(|(c, (w, k))| (c, w, k))
    }

    /// Checks that the levels are ordered: a critical level must be at least
    /// as bad as the warning level.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut counts = |name: &str, l: Levels<u64>| {
            if l.critical < l.warning {
                problems.push(format!(
                    "{name}: critical ({}) is below warning ({})",
                    l.critical, l.warning
                ));
            }
        };
        counts("close_wait_stale", self.close_wait_stale);
        counts("fin_wait2_stale", self.fin_wait2_stale);
        counts("close_wait_unaccepted", self.close_wait_unaccepted);
        counts("deleted_open_files", self.deleted_open_files);
        for (name, l) in [
            ("fd_utilization", self.fd_utilization),
            ("host_fd_utilization", self.host_fd_utilization),
        ] {
            if !(l.warning > 0.0 && l.warning <= l.critical) {
                problems.push(format!(
                    "{name}: need 0 < warning ({}) <= critical ({})",
                    l.warning, l.critical
                ));
            }
        }
        if self.fd_exhaustion.critical > self.fd_exhaustion.warning {
            problems.push(format!(
                "fd_exhaustion: critical ({}) is longer than warning ({}); less time left is worse",
                humantime::format_duration(self.fd_exhaustion.critical),
                humantime::format_duration(self.fd_exhaustion.warning)
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_is_worse() {
        let l = Levels {
            warning: 1u64,
            critical: 100,
        };
        assert_eq!(l.at_least(0), None);
        assert_eq!(l.at_least(1), Some(Severity::Warning));
        assert_eq!(l.at_least(99), Some(Severity::Warning));
        assert_eq!(l.at_least(100), Some(Severity::Critical));
    }

    #[test]
    fn less_is_worse() {
        let l = Thresholds::default().fd_exhaustion;
        assert_eq!(l.at_most(Duration::from_secs(25 * 3600)), None);
        assert_eq!(
            l.at_most(Duration::from_secs(24 * 3600)),
            Some(Severity::Warning)
        );
        assert_eq!(
            l.at_most(Duration::from_secs(3600)),
            Some(Severity::Critical)
        );
    }

    #[test]
    fn defaults_are_valid_and_inverted_levels_are_not() {
        assert!(Thresholds::default().validate().is_ok());
        let mut t = Thresholds::default();
        t.close_wait_stale.critical = 0;
        t.fd_utilization.warning = 0.99;
        let err = t.validate().expect_err("invalid");
        assert!(err.contains("close_wait_stale"), "{err}");
        assert!(err.contains("fd_utilization"), "{err}");
    }
}
