//! fd growth: is a process's fd count climbing toward its limit, and when will
//! it get there? Pure: samples and time come in as arguments.
//!
//! Growth must be *sustained* to count. A least-squares slope alone calls a
//! burst that was released again (a batch job, a reconnect storm) or a pool
//! that warmed up once a leak, so over the window: the slope is positive; the
//! line explains the samples (R² ≥ 0.6: a burst that came back down does not
//! fit a line); most steps do not go down (a leak with an occasional cleanup
//! still passes); no single step carries more than half of the growth (a
//! one-off jump is not a leak); and the count at the end is still up by at
//! least half of what the slope predicts over the span.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;

use crate::model::{ProcessKey, Snapshot};

/// One observation of a process's fd table: 16 bytes, because the agent
/// keeps a window of them for every process (at a 15 s interval and a
/// 15-minute window, 61 a process: 10 MiB at 10,000 processes, where a
/// `SystemTime` and two `u64` took twice that).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FdSample {
    /// When, in milliseconds since the Unix epoch.
    at_ms: u64,
    /// No fd table holds more than `fs.nr_open` (at most 2^30) files.
    pub open: u32,
    pub sockets: u32,
}

impl FdSample {
    pub fn new(at: SystemTime, open: u64, sockets: u64) -> FdSample {
        let at_ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        FdSample {
            at_ms,
            open: u32::try_from(open).unwrap_or(u32::MAX),
            sockets: u32::try_from(sockets).unwrap_or(u32::MAX),
        }
    }

    /// The time from `earlier` to this sample (zero if it is not later).
    fn since(&self, earlier: &FdSample) -> Duration {
        Duration::from_millis(self.at_ms.saturating_sub(earlier.at_ms))
    }
}

/// What sustained growth looks like.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrowthRule {
    /// Samples older than this are forgotten.
    pub window: Duration,
    /// At least this many samples...
    pub min_samples: usize,
    /// ...spanning at least this long.
    pub min_span: Duration,
    /// Share of steps that must not go down.
    pub min_nondecreasing: f64,
    /// How well a line must fit (coefficient of determination).
    pub min_r_squared: f64,
    /// The largest step's share of the net growth, at most.
    pub max_step_share: f64,
}

impl Default for GrowthRule {
    fn default() -> Self {
        GrowthRule {
            window: crate::defaults::FD_GROWTH_WINDOW,
            min_samples: 5,
            min_span: Duration::from_secs(10),
            min_nondecreasing: 0.75,
            min_r_squared: 0.6,
            max_step_share: 0.5,
        }
    }
}

/// A process whose fd count is growing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Growth {
    /// fds per second, least squares over the window.
    pub per_second: f64,
    /// Last minus first sample, and the time between them.
    pub grew_by: i64,
    pub over: Duration,
    /// Of that change, how much was sockets.
    pub sockets_grew_by: i64,
}

impl Growth {
    /// Time until `open` reaches `limit` at this rate.
    pub fn time_to(&self, open: u64, limit: u64) -> Duration {
        let left = limit.saturating_sub(open) as f64;
        Duration::try_from_secs_f64(left / self.per_second).unwrap_or(Duration::MAX)
    }
}

/// Judges a series of samples (oldest first).
pub fn judge(samples: &[FdSample], rule: &GrowthRule) -> Option<Growth> {
    let (first, last) = (samples.first()?, samples.last()?);
    let span = last.since(first);
    if samples.len() < rule.min_samples.max(2) || span < rule.min_span || span.is_zero() {
        return None;
    }
    let t: Vec<f64> = samples
        .iter()
        .map(|s| s.since(first).as_secs_f64())
        .collect();
    let n = samples.len() as f64;
    let mean_t = t.iter().sum::<f64>() / n;
    let mean_y = samples.iter().map(|s| s.open as f64).sum::<f64>() / n;
    let (mut cov, mut var) = (0.0, 0.0);
    for (ti, s) in t.iter().zip(samples) {
        cov += (ti - mean_t) * (s.open as f64 - mean_y);
        var += (ti - mean_t) * (ti - mean_t);
    }
    if var <= 0.0 {
        return None;
    }
    let slope = cov / var;
    let (mut ss_tot, mut ss_res) = (0.0, 0.0);
    for (ti, s) in t.iter().zip(samples) {
        let y = s.open as f64;
        let fit = mean_y + slope * (ti - mean_t);
        ss_tot += (y - mean_y) * (y - mean_y);
        ss_res += (y - fit) * (y - fit);
    }
    let r_squared = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        0.0
    };
    let steps = samples.len() - 1;
    let nondecreasing = samples
        .windows(2)
        .filter(|w| w[1].open >= w[0].open)
        .count();
    let largest_step = samples
        .windows(2)
        .map(|w| w[1].open as i64 - w[0].open as i64)
        .max()
        .unwrap_or(0);
    let grew_by = last.open as i64 - first.open as i64;
    let sustained = grew_by > 0 && grew_by as f64 >= 0.5 * slope * span.as_secs_f64();
    if slope <= 0.0
        || !sustained
        || r_squared < rule.min_r_squared
        || (nondecreasing as f64) < rule.min_nondecreasing * steps as f64
        || largest_step as f64 > rule.max_step_share * grew_by as f64
    {
        return None;
    }
    Some(Growth {
        per_second: slope,
        grew_by,
        over: span,
        sockets_grew_by: last.sockets as i64 - first.sockets as i64,
    })
}

/// fd samples per process, keyed by (pid, start time): a reused PID starts a
/// fresh series and never looks like growth.
#[derive(Debug, Default, Clone)]
pub struct FdHistory {
    series: FxHashMap<ProcessKey, VecDeque<FdSample>>,
}

impl FdHistory {
    /// Adds a scan: one sample per process whose fd table was read; drops
    /// samples older than the window and processes that are gone.
    pub fn observe(&mut self, snapshot: &Snapshot, now: SystemTime, window: Duration) {
        let mut next: FxHashMap<ProcessKey, VecDeque<FdSample>> =
            FxHashMap::with_capacity_and_hasher(snapshot.processes.len(), Default::default());
        for p in &snapshot.processes {
            if p.fds.open == 0 {
                continue; // kernel threads, zombies
            }
            let mut series = self.series.remove(&p.key).unwrap_or_default();
            let sample = FdSample::new(now, p.fds.open, p.fds.sockets);
            series.push_back(sample);
            while series.front().is_some_and(|s| sample.since(s) > window) {
                series.pop_front();
            }
            next.insert(p.key, series);
        }
        self.series = next;
    }

    pub fn samples(&self, key: &ProcessKey) -> Option<&VecDeque<FdSample>> {
        self.series.get(key)
    }

    /// Growth of one process, if sustained.
    pub fn growth(&self, key: &ProcessKey, rule: &GrowthRule) -> Option<Growth> {
        let series = self.series.get(key)?;
        let (a, b) = series.as_slices();
        if b.is_empty() {
            judge(a, rule)
        } else {
            judge(&series.iter().copied().collect::<Vec<_>>(), rule)
        }
    }

    /// Processes tracked, and samples held in all (memory is bounded by the
    /// live processes times the window).
    pub fn size(&self) -> (usize, usize) {
        (
            self.series.len(),
            self.series.values().map(VecDeque::len).sum(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn series(values: &[u64], every: Duration) -> Vec<FdSample> {
        values
            .iter()
            .enumerate()
            .map(|(i, &open)| FdSample::new(t0() + every * i as u32, open, open / 2))
            .collect()
    }

    #[test]
    fn a_sample_takes_16_bytes() {
        // The agent keeps a window of them per process: see FdSample.
        assert_eq!(std::mem::size_of::<FdSample>(), 16);
        let s = FdSample::new(t0(), u64::MAX, 7);
        assert_eq!((s.open, s.sockets), (u32::MAX, 7), "counts saturate");
    }

    #[test]
    fn steady_growth_predicts_the_right_eta() {
        // 2 fds a second from 100, sampled every 15 s for 5 minutes.
        let values: Vec<u64> = (0..=20).map(|i| 100 + 30 * i).collect();
        let g = judge(
            &series(&values, Duration::from_secs(15)),
            &GrowthRule::default(),
        )
        .expect("growing");
        assert!((g.per_second - 2.0).abs() < 1e-9, "{g:?}");
        assert_eq!(g.grew_by, 600);
        assert_eq!(g.over, Duration::from_secs(300));
        // 700 open, limit 1024: 324 left at 2/s = 162 s.
        assert_eq!(g.time_to(700, 1024), Duration::from_secs(162));
    }

    #[test]
    fn a_burst_that_is_released_is_not_growth() {
        let every = Duration::from_secs(15);
        for values in [
            vec![100, 100, 500, 500, 100, 100],
            vec![100, 100, 100, 100, 500, 100],
            vec![100, 900, 900, 900, 900, 120],
        ] {
            assert_eq!(
                judge(&series(&values, every), &GrowthRule::default()),
                None,
                "{values:?}"
            );
        }
    }

    #[test]
    fn a_leak_with_periodic_cleanup_is_still_growth() {
        // +10 a step, 5 given back every fourth step.
        let mut v = vec![100u64];
        for i in 1..40 {
            let prev = v[i - 1];
            v.push(if i % 4 == 0 { prev - 5 } else { prev + 10 });
        }
        let g =
            judge(&series(&v, Duration::from_secs(15)), &GrowthRule::default()).expect("growing");
        assert!(g.per_second > 0.4 && g.per_second < 0.5, "{g:?}");
    }

    #[test]
    fn a_pool_that_warms_up_once_is_not_growth_but_a_slow_leak_is() {
        let every = Duration::from_secs(15);
        let rule = GrowthRule::default();
        let warmup = [10, 10, 10, 410, 410, 410, 410, 410];
        assert_eq!(judge(&series(&warmup, every), &rule), None);
        // One fd a minute, sampled every 15 s for 15 minutes.
        let slow: Vec<u64> = (0..=60).map(|i| 40 + i / 4).collect();
        let g = judge(&series(&slow, every), &rule).expect("a slow steady leak");
        assert!((g.per_second * 60.0 - 1.0).abs() < 0.05, "{g:?}");
    }

    #[test]
    fn flat_noisy_or_short_series_are_not_growth() {
        let every = Duration::from_secs(15);
        let rule = GrowthRule::default();
        assert_eq!(
            judge(&series(&[50, 51, 50, 51, 50, 51, 50], every), &rule),
            None
        );
        assert_eq!(
            judge(&series(&[50, 60, 70, 80], every), &rule),
            None,
            "too few samples"
        );
        assert_eq!(
            judge(
                &series(&[50, 60, 70, 80, 90, 100], Duration::from_secs(1)),
                &rule
            ),
            None,
            "5 s is too short a span"
        );
        assert_eq!(
            judge(&series(&[80, 70, 60, 50, 40, 30], every), &rule),
            None
        );
    }

    fn snap(procs: &[(u32, u64, u64)]) -> Snapshot {
        use crate::model::{FdStats, ProcessInfo};
        Snapshot {
            processes: procs
                .iter()
                .map(|&(pid, start_time, open)| ProcessInfo {
                    key: ProcessKey { pid, start_time },
                    comm: "p".into(),
                    uid: None,
                    fds: FdStats {
                        open,
                        limit: Some(1024),
                        ..FdStats::default()
                    },
                    fds_walked: true,
                    sockets: vec![],
                    largest_deleted: None,
                    dead: Vec::new(),
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_reused_pid_starts_a_fresh_series() {
        let mut h = FdHistory::default();
        let window = Duration::from_secs(900);
        let every = Duration::from_secs(15);
        for i in 0..10u32 {
            h.observe(
                &snap(&[(7, 1, 100 + 50 * u64::from(i))]),
                t0() + every * i,
                window,
            );
        }
        let old = ProcessKey {
            pid: 7,
            start_time: 1,
        };
        assert!(h.growth(&old, &GrowthRule::default()).is_some());
        // pid 7 exits; a new process gets pid 7 with 5 fds, then 1000.
        for i in 10..20u32 {
            let open = if i < 15 { 5 } else { 1000 };
            h.observe(&snap(&[(7, 999, open)]), t0() + every * i, window);
        }
        let new = ProcessKey {
            pid: 7,
            start_time: 999,
        };
        assert_eq!(h.samples(&old), None, "the old process's series is evicted");
        assert_eq!(h.samples(&new).map(VecDeque::len), Some(10));
        assert_eq!(
            h.growth(&new, &GrowthRule::default()),
            None,
            "a jump once is not growth"
        );
    }

    #[test]
    fn history_stays_bounded_by_the_window_and_the_live_processes() {
        let mut h = FdHistory::default();
        let window = Duration::from_secs(60);
        for i in 0..1000u32 {
            // 100 processes; each lives for 100 scans.
            let procs: Vec<(u32, u64, u64)> =
                (0..100).map(|p| (p, u64::from(i / 100), 10)).collect();
            h.observe(
                &snap(&procs),
                t0() + Duration::from_secs(u64::from(i)),
                window,
            );
        }
        let (processes, samples) = h.size();
        assert_eq!(processes, 100);
        assert_eq!(
            samples,
            100 * 61,
            "one sample a second for a 60 s window, inclusive"
        );
    }
}
