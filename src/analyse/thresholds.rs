//! Levels: the amounts a check measures, the warning and critical levels at
//! which it fires, and every check's levels together (`[thresholds]`).
//!
//! Amounts keep their own type (a count is a `u64`, time left a
//! `Duration`): a level read from the config is compared and written back
//! exactly as given.

use std::fmt;
use std::time::Duration;

use super::checks::Check;

/// How bad a finding is (Nagios: WARNING, CRITICAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 2] = [Severity::Warning, Severity::Critical];

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

/// What a check measures: how its levels are written in the config, how
/// they are exported, and which way is worse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A number of things (sockets, connections); more is worse.
    Count,
    /// A share, 1.0 being all of it; more is worse.
    Ratio,
    /// Time left before something runs out; less is worse.
    TimeLeft,
    /// Bytes; more is worse.
    Bytes,
}

impl Unit {
    /// Whether a smaller amount is the worse one.
    pub fn less_is_worse(self) -> bool {
        self == Unit::TimeLeft
    }

    /// How `closewatch_threshold` and the docs name the unit.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Ratio => "ratio",
            Unit::TimeLeft => "seconds",
            Unit::Bytes => "bytes",
        }
    }
}

/// An amount in one of the [`Unit`]s.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub enum Amount {
    Count(u64),
    Ratio(f64),
    TimeLeft(Duration),
    Bytes(u64),
}

impl Amount {
    pub fn unit(self) -> Unit {
        match self {
            Amount::Count(_) => Unit::Count,
            Amount::Ratio(_) => Unit::Ratio,
            Amount::TimeLeft(_) => Unit::TimeLeft,
            Amount::Bytes(_) => Unit::Bytes,
        }
    }

    /// As `closewatch_threshold` exports it: a count, a ratio, seconds or
    /// bytes.
    pub fn as_f64(self) -> f64 {
        match self {
            Amount::Count(n) | Amount::Bytes(n) => n as f64,
            Amount::Ratio(r) => r,
            Amount::TimeLeft(d) => d.as_secs_f64(),
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Count(n) | Amount::Bytes(n) => write!(f, "{n}"),
            Amount::Ratio(r) => write!(f, "{r}"),
            Amount::TimeLeft(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
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

impl Levels<Amount> {
    /// The severity of `measured`, which way is worse following its unit.
    /// An amount in another unit than the levels' never fires (each
    /// check's tests catch a check that measures in the wrong unit).
    pub fn judge(&self, measured: Amount) -> Option<Severity> {
        let unit = measured.unit();
        if unit != self.warning.unit() || unit != self.critical.unit() {
            return None;
        }
        if unit.less_is_worse() {
            self.at_most(measured)
        } else {
            self.at_least(measured)
        }
    }

    /// Why these levels make no sense for their unit, if they do not.
    fn problem(&self) -> Option<String> {
        let Levels { warning, critical } = *self;
        match warning.unit() {
            Unit::Count | Unit::Bytes if critical < warning => Some(format!(
                "critical ({critical}) is below warning ({warning})"
            )),
            Unit::Ratio if !(warning > Amount::Ratio(0.0) && warning <= critical) => Some(format!(
                "need 0 < warning ({warning}) <= critical ({critical})"
            )),
            Unit::TimeLeft if critical > warning => Some(format!(
                "critical ({critical}) is longer than warning ({warning}); less time left is worse"
            )),
            _ if critical.unit() != warning.unit() => Some(format!(
                "warning ({warning}) and critical ({critical}) are in different units"
            )),
            _ => None,
        }
    }
}

/// Every check's levels: the defaults of each check's spec, or what
/// `[thresholds]` set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    levels: [Levels<Amount>; Check::COUNT],
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            levels: Check::ALL.map(|c| c.spec().default),
        }
    }
}

impl Thresholds {
    pub fn get(&self, check: Check) -> Levels<Amount> {
        self.levels[check as usize]
    }

    pub fn set(&mut self, check: Check, levels: Levels<Amount>) {
        self.levels[check as usize] = levels;
    }

    /// Every check with its levels, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = (Check, Levels<Amount>)> + '_ {
        Check::ALL.into_iter().zip(self.levels.iter().copied())
    }

    /// Checks that each check's levels are in its unit and ordered: a
    /// critical level is at least as bad as the warning level.
    pub fn validate(&self) -> Result<(), String> {
        let problems: Vec<String> = self
            .iter()
            .filter_map(|(check, levels)| {
                let unit = check.spec().unit;
                if levels.warning.unit() != unit || levels.critical.unit() != unit {
                    return Some(format!("{check}: levels are not in {}", unit.name()));
                }
                levels.problem().map(|p| format!("{check}: {p}"))
            })
            .collect();
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
    fn less_is_worse_for_time_left() {
        let l = Thresholds::default().get(Check::FdExhaustion);
        let hours = |h: u64| Amount::TimeLeft(Duration::from_secs(h * 3600));
        assert_eq!(l.judge(hours(25)), None);
        assert_eq!(l.judge(hours(24)), Some(Severity::Warning));
        assert_eq!(l.judge(hours(1)), Some(Severity::Critical));
    }

    #[test]
    fn an_amount_in_another_unit_never_fires() {
        let l = Thresholds::default().get(Check::CloseWaitStale);
        assert_eq!(l.judge(Amount::Count(1)), Some(Severity::Warning));
        assert_eq!(l.judge(Amount::Ratio(1e9)), None);
    }

    #[test]
    fn every_default_is_in_its_checks_unit_and_valid() {
        let t = Thresholds::default();
        assert!(t.validate().is_ok(), "{:?}", t.validate());
        for (check, levels) in t.iter() {
            assert_eq!(levels.warning.unit(), check.spec().unit, "{check}");
        }
    }

    #[test]
    fn inverted_levels_are_named_with_their_check() {
        let mut t = Thresholds::default();
        t.set(
            Check::CloseWaitStale,
            Levels {
                warning: Amount::Count(1),
                critical: Amount::Count(0),
            },
        );
        t.set(
            Check::FdUtilization,
            Levels {
                warning: Amount::Ratio(0.99),
                critical: Amount::Ratio(0.95),
            },
        );
        t.set(
            Check::FdExhaustion,
            Levels {
                warning: Amount::TimeLeft(Duration::from_secs(60)),
                critical: Amount::TimeLeft(Duration::from_secs(3600)),
            },
        );
        let err = t.validate().expect_err("invalid");
        assert!(
            err.contains("close_wait_stale: critical (0) is below warning (1)"),
            "{err}"
        );
        assert!(
            err.contains("fd_utilization: need 0 < warning (0.99) <= critical (0.95)"),
            "{err}"
        );
        assert!(
            err.contains("fd_exhaustion: critical (1h) is longer than warning (1m)"),
            "{err}"
        );
    }

    #[test]
    fn levels_in_the_wrong_unit_are_rejected() {
        let mut t = Thresholds::default();
        t.set(
            Check::DeletedOpenFiles,
            Levels {
                warning: Amount::Count(1),
                critical: Amount::Count(2),
            },
        );
        let err = t.validate().expect_err("invalid");
        assert!(err.contains("deleted_open_files"), "{err}");
    }
}
