//! The checks, one per file, behind one narrow interface, as
//! node_exporter keeps one collector per file.
//!
//! A check reads the facts the attribution pass gathered about one process
//! ([`ProcessFacts`]) or about the host ([`HostFacts`]) and says whether,
//! how badly and why something is wrong ([`Rule`]). Its name, unit and
//! default levels are its [`Spec`]. Everything else follows from the table
//! at the bottom of this file: the [`Check`] names, `[thresholds]` in the
//! config and its validation, `--check-config`, `closewatch_threshold`,
//! `closewatch_process_finding`, and the order findings are listed in.
//!
//! # Adding a check
//! 1. Write `checks/NAME.rs` with `pub(super) const RULE: Rule`: its
//!    [`Spec`] (the name as users write it in `[thresholds]`, the unit and
//!    the default levels, e.g. `Spec::count("NAME", 1, 100)`) and a `process`
//!    or `host` function (or both), which measures an [`Amount`] from the
//!    facts, asks [`Judge::severity`] how bad it is, and only then writes
//!    the message and the hint.
//! 2. Add `mod NAME;` and one line, `Variant => NAME,`, to the `table!`
//!    below.
//!
//! A check that needs a fact the facts do not carry yet gets it added to
//! [`ProcessFacts`] or [`HostFacts`] (and to the pass that gathers it):
//! facts are data, gathered once for every check.

mod accept_queue_full;
mod close_wait_stale;
mod close_wait_unaccepted;
mod dead_sockets;
mod deleted_open_files;
mod fd_exhaustion;
mod fd_utilization;
mod fin_wait2_stale;
mod half_open;
mod host_fd_utilization;
mod port_exhaustion;
mod unix_close_wait;

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::held::{ListenQueue, Peer, PortFact, SocketSummary, Unattributed};
use super::thresholds::{Amount, Levels, Severity, Unit};
use super::{Finding, Growth, Settings};
use crate::model::{HostInfo, ProcessInfo};

/// What a check is, apart from what it does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    /// As in `[thresholds]`, findings, metrics and the JSON report.
    pub name: &'static str,
    pub unit: Unit,
    pub default: Levels<Amount>,
}

impl Spec {
    /// A check that counts things (fires at ≥ its levels).
    pub const fn count(name: &'static str, warning: u64, critical: u64) -> Spec {
        Spec::new(name, Amount::Count(warning), Amount::Count(critical))
    }

    /// A check of a share, 1.0 being all (fires at ≥ its levels).
    pub const fn ratio(name: &'static str, warning: f64, critical: f64) -> Spec {
        Spec::new(name, Amount::Ratio(warning), Amount::Ratio(critical))
    }

    /// A check of time left (fires at ≤ its levels).
    pub const fn time_left(name: &'static str, warning: Duration, critical: Duration) -> Spec {
        Spec::new(name, Amount::TimeLeft(warning), Amount::TimeLeft(critical))
    }

    /// A check of bytes (fires at ≥ its levels).
    pub const fn bytes(name: &'static str, warning: u64, critical: u64) -> Spec {
        Spec::new(name, Amount::Bytes(warning), Amount::Bytes(critical))
    }

    const fn new(name: &'static str, warning: Amount, critical: Amount) -> Spec {
        let unit = match warning {
            Amount::Count(_) => Unit::Count,
            Amount::Ratio(_) => Unit::Ratio,
            Amount::TimeLeft(_) => Unit::TimeLeft,
            Amount::Bytes(_) => Unit::Bytes,
        };
        Spec {
            name,
            unit,
            default: Levels { warning, critical },
        }
    }
}

/// Judges one process: a verdict, or nothing to say.
pub type ProcessRule = fn(&ProcessFacts<'_>, &Judge<'_>) -> Option<Verdict>;
/// Judges the host as a whole.
pub type HostRule = fn(&HostFacts<'_>, &Judge<'_>) -> Option<Verdict>;

/// One check: its spec, and how it judges a process, the host, or both.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub spec: Spec,
    process: Option<ProcessRule>,
    host: Option<HostRule>,
}

impl Rule {
    pub const fn new(spec: Spec) -> Rule {
        Rule {
            spec,
            process: None,
            host: None,
        }
    }

    /// Judges each process with `f`.
    pub const fn process(self, f: ProcessRule) -> Rule {
        Rule {
            process: Some(f),
            ..self
        }
    }

    /// Judges the host with `f`.
    pub const fn host(self, f: HostRule) -> Rule {
        Rule {
            host: Some(f),
            ..self
        }
    }
}

/// What a check says when it fires.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub severity: Severity,
    /// What was found, in numbers.
    pub message: String,
    /// Which bug the evidence points at, and what to do.
    pub hint: String,
}

impl Verdict {
    pub fn new(severity: Severity, message: String, hint: String) -> Verdict {
        Verdict {
            severity,
            message,
            hint,
        }
    }
}

/// What a check is given besides the facts: the analysis settings and its
/// own levels.
pub struct Judge<'a> {
    pub settings: &'a Settings,
    levels: Levels<Amount>,
}

impl Judge<'_> {
    /// How bad `measured` is at this check's levels (`None`: not at all).
    pub fn severity(&self, measured: Amount) -> Option<Severity> {
        self.levels.judge(measured)
    }
}

/// What the checks know of one process.
pub struct ProcessFacts<'a> {
    pub info: &'a ProcessInfo,
    pub sockets: &'a SocketSummary,
    /// By count, then oldest.
    pub peers: &'a [Peer],
    /// Listeners whose queues hold its unaccepted connections.
    pub queue_listeners: &'a [SocketAddr],
    /// Its listeners with connections waiting, fullest first.
    pub listeners: &'a [ListenQueue],
    /// Sustained fd growth over the history window.
    pub growth: Option<Growth>,
    /// When it reaches its fd limit at that rate.
    pub fd_exhaustion: Option<Duration>,
    /// Every process of the scan (peers' owners are indexes into it).
    pub processes: &'a [ProcessInfo],
}

/// What the checks know of the host.
pub struct HostFacts<'a> {
    pub host: &'a HostInfo,
    pub unattributed: &'a Unattributed,
    /// The busiest destinations by ephemeral ports in use, fullest first.
    pub ports: &'a [PortFact],
    /// Every process of the scan (owners are indexes into it).
    pub processes: &'a [ProcessInfo],
    /// What the processes that could not be read need, when the report
    /// examined them (`access::Skipped::summary`).
    pub unreadable: Option<&'a str>,
}

/// Every process finding, in table order.
pub fn judge_process(facts: &ProcessFacts<'_>, settings: &Settings) -> Vec<Finding> {
    judge_each(settings, |rule, judge| (rule.process?)(facts, judge))
}

/// Every host-wide finding, in table order.
pub fn judge_host(facts: &HostFacts<'_>, settings: &Settings) -> Vec<Finding> {
    judge_each(settings, |rule, judge| (rule.host?)(facts, judge))
}

fn judge_each(
    settings: &Settings,
    mut one: impl FnMut(&Rule, &Judge<'_>) -> Option<Verdict>,
) -> Vec<Finding> {
    Check::ALL
        .iter()
        .filter_map(|&check| {
            let judge = Judge {
                settings,
                levels: settings.thresholds.get(check),
            };
            let v = one(check.rule(), &judge)?;
            Some(Finding {
                check,
                severity: v.severity,
                message: v.message,
                hint: v.hint,
            })
        })
        .collect()
}

/// The table: one line per check, `Variant => file`, in the order its
/// findings are listed.
macro_rules! table {
    ($($variant:ident => $module:ident),+ $(,)?) => {
        /// A check, by name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Check {
            $($variant),+
        }

        impl Check {
            pub const COUNT: usize = [$(Check::$variant),+].len();
            pub const ALL: [Check; Check::COUNT] = [$(Check::$variant),+];
            /// Every name, in table order.
            pub const NAMES: [&'static str; Check::COUNT] = [$($module::RULE.spec.name),+];

            pub fn rule(self) -> &'static Rule {
                match self {
                    $(Check::$variant => &$module::RULE),+
                }
            }
        }
    };
}

table! {
    CloseWaitStale => close_wait_stale,
    FinWait2Stale => fin_wait2_stale,
    CloseWaitUnaccepted => close_wait_unaccepted,
    FdUtilization => fd_utilization,
    FdExhaustion => fd_exhaustion,
    DeletedOpenFiles => deleted_open_files,
    HostFdUtilization => host_fd_utilization,
    AcceptQueueFull => accept_queue_full,
    DeadSockets => dead_sockets,
    PortExhaustion => port_exhaustion,
    HalfOpen => half_open,
    UnixCloseWait => unix_close_wait,
}

impl Check {
    pub fn spec(self) -> &'static Spec {
        &self.rule().spec
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The check of this name, as written in `[thresholds]`.
    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_snake_case_and_match_the_table() {
        for (i, check) in Check::ALL.iter().enumerate() {
            assert_eq!(*check as usize, i, "ALL is in table order");
            assert_eq!(Check::NAMES[i], check.name());
            assert_eq!(Check::from_name(check.name()), Some(*check));
            assert!(
                check
                    .name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{check}"
            );
        }
        let mut names = Check::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Check::COUNT);
        assert_eq!(Check::from_name("close_wait_stael"), None);
    }

    #[test]
    fn every_default_is_in_the_checks_unit() {
        for check in Check::ALL {
            let spec = check.spec();
            assert_eq!(spec.default.warning.unit(), spec.unit, "{check}");
            assert_eq!(spec.default.critical.unit(), spec.unit, "{check}");
        }
    }
}
