//! What the agent (and `--duration`) keep from one scan to the next, and
//! when each part is read again. Every cache and its refresh rule is here;
//! the time is always the caller's, so each rule is tested without sleeping.
//!
//! | what | read again |
//! |---|---|
//! | fd tables ([`WalkCache`]) | when a process's fd count changes, and all of them every [`FULL_WALK_EVERY`] |
//! | per-state socket counts of a namespace | every [`STATE_COUNTS_EVERY`] (CLOSE_WAIT, FIN_WAIT_2 and LISTEN every scan) |
//! | each process's network namespace | every [`PID_NETNS_EVERY`], and at once for a new process |
//! | each exported process's unit | every [`DETAILS_EVERY`] |
//! | the host name and kernel release | every [`DETAILS_EVERY`] |
//! | a namespace whose lookups fell back to a dump: dumped at once | for [`STATE_COUNTS_EVERY`] after |

use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use super::netns::PidNetns;
use super::procfs::WalkCache;
use crate::model::{Freshness, NetnsId, ProcessInfo, ProcessKey, StateCounts, TcpSocket};

/// How often a cached walk still reads every fd table, whatever the cache
/// holds: it bounds how stale the fd breakdown and the deleted files of a
/// process that swapped fds without changing their count can be.
pub const FULL_WALK_EVERY: Duration = Duration::from_secs(300);

/// How old the per-state counts of a cached scan may get: the all-states
/// dump emits every socket of the host, and is most of the cost of a scan
/// whose /proc walk came from the cache.
pub const STATE_COUNTS_EVERY: Duration = Duration::from_secs(60);

/// How often the agent looks for idle connections: the ESTABLISHED dump
/// with tcp_info costs about 1 µs of kernel time per connection, and an
/// idle age is an hour by default.
pub const IDLE_EVERY: Duration = Duration::from_secs(300);

/// How long the namespace read of a process is trusted: one that moves
/// into another namespace (`unshare`, `ip netns exec`), or a PID reused by
/// a process in another namespace, is found within this period.
pub const PID_NETNS_EVERY: Duration = Duration::from_secs(60);

/// How long the unit of a process (and the host name and kernel release)
/// is kept. A process keeps its PID and start time across `execve`, and its
/// cgroup can change: the details are re-read this often.
pub const DETAILS_EVERY: Duration = Duration::from_secs(60);

/// Whether something done `age` ago is due again every `period`. A second
/// early counts as due: with an interval that divides the period, timing
/// jitter would otherwise decide between this scan and the next.
fn due(age: Duration, period: Duration) -> bool {
    age + Duration::from_secs(1) >= period
}

/// A value and when it was read.
#[derive(Debug, Clone)]
struct Stamped<T> {
    at: Instant,
    value: T,
}

impl<T> Stamped<T> {
    /// The value, if read less than `period` before `now`.
    fn fresh(&self, now: Instant, period: Duration) -> Option<&T> {
        (now.saturating_duration_since(self.at) < period).then_some(&self.value)
    }
}

/// Everything a cached scan reuses.
#[derive(Debug, Default)]
pub struct ScanCache {
    walk: WalkCache,
    last_full_walk: Option<Instant>,
    /// Whether a walk has looked for dead sockets since the cache began.
    dead_checked: bool,
    /// The idle connections of the last ESTABLISHED dump, and when.
    idle: Option<Stamped<Vec<TcpSocket>>>,
    /// Per namespace: the last all-states counts.
    states: FxHashMap<NetnsId, Stamped<StateCounts>>,
    netns: PidNamespaces,
    units: FxHashMap<ProcessKey, Stamped<Option<String>>>,
    /// The host name and kernel release.
    host_names: Option<Stamped<(String, String)>>,
    /// Namespaces left for lookups and dumped after all, and when.
    dumped_anyway: FxHashMap<NetnsId, Instant>,
}

impl ScanCache {
    /// The fd tables of the last walk, and whether this walk must read
    /// every one of them.
    pub(super) fn walk(&mut self, now: Instant) -> (&mut WalkCache, bool) {
        let full = self
            .last_full_walk
            .is_none_or(|t| due(now.saturating_duration_since(t), FULL_WALK_EVERY));
        (&mut self.walk, full)
    }

    /// Keeps of the remembered dead sockets only those `confirmed`.
    pub(super) fn keep_dead(&mut self, confirmed: &FxHashSet<u64>) {
        self.walk.keep_dead(confirmed);
    }

    /// What a walk's dead sockets are: fresh when it `checked` them, else
    /// carried from the last check (once there has been one).
    pub(super) fn dead_check(&mut self, checked: bool) -> Freshness {
        self.dead_checked |= checked;
        match (checked, self.dead_checked) {
            (true, _) => Freshness::Fresh,
            (false, true) => Freshness::Carried,
            (false, false) => Freshness::Unknown,
        }
    }

    /// Whether the scan at `now` looks for idle connections (the
    /// ESTABLISHED dump, with tcp_info for every connection): first, then
    /// every [`IDLE_EVERY`].
    pub(super) fn idle_due(&self, now: Instant) -> bool {
        self.idle
            .as_ref()
            .is_none_or(|i| due(now.saturating_duration_since(i.at), IDLE_EVERY))
    }

    pub(super) fn remember_idle(&mut self, now: Instant, idle: &[TcpSocket]) {
        self.idle = Some(Stamped {
            at: now,
            value: idle.to_vec(),
        });
    }

    /// The idle connections of the last look, if there was one.
    pub(super) fn idle(&self) -> Option<&[TcpSocket]> {
        self.idle.as_ref().map(|i| i.value.as_slice())
    }

    /// Records that the walk of the scan at `now` read every fd table.
    pub(super) fn walked_full(&mut self, now: Instant) {
        self.last_full_walk = Some(now);
    }

    /// The namespaces whose all-states counts are recent enough to skip
    /// the all-states dump at `now`.
    /// The namespaces whose lookups fell back to a dump in the last
    /// [`STATE_COUNTS_EVERY`]: a scan dumps them at once instead of leaving
    /// them for the TCP pass (a socket no process holds usually stays).
    pub(super) fn dumped_anyway(&self, now: Instant) -> FxHashSet<NetnsId> {
        self.dumped_anyway
            .iter()
            .filter(|(_, &at)| !due(now.saturating_duration_since(at), STATE_COUNTS_EVERY))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Remembers the namespaces this scan left for lookups and then
    /// dumped; forgets those whose time is up.
    pub(super) fn remember_dumped_anyway(&mut self, now: Instant, ids: &[NetnsId]) {
        self.dumped_anyway
            .retain(|_, at| !due(now.saturating_duration_since(*at), STATE_COUNTS_EVERY));
        self.dumped_anyway.extend(ids.iter().map(|id| (*id, now)));
    }

    pub(super) fn counted_recently(&self, now: Instant) -> FxHashSet<NetnsId> {
        self.states
            .iter()
            .filter(|(_, c)| !due(now.saturating_duration_since(c.at), STATE_COUNTS_EVERY))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Takes in the counts of this scan's namespaces (each `(id, states,
    /// counted)`, `counted` when the all-states dump ran): those counted are
    /// remembered; the others get their other states from the last count.
    /// Namespaces gone are forgotten.
    pub(super) fn merge_counts<'a>(
        &mut self,
        now: Instant,
        scans: impl Iterator<Item = (NetnsId, &'a mut StateCounts, bool)>,
        every_scan_states: u32,
    ) {
        let mut seen = FxHashSet::default();
        for (id, states, counted) in scans {
            seen.insert(id);
            if counted {
                let value = *states;
                self.states.insert(id, Stamped { at: now, value });
            } else if let Some(last) = self.states.get(&id) {
                let mut merged = last.value;
                merged.replace(states, every_scan_states);
                *states = merged;
            }
        }
        self.states.retain(|id, _| seen.contains(id));
    }

    /// The namespace of each process, as last read.
    pub(super) fn netns(&mut self) -> &mut PidNamespaces {
        &mut self.netns
    }

    /// The host name and kernel release, if read recently.
    pub(super) fn host_names(&self, now: Instant) -> Option<(&str, &str)> {
        let names = self.host_names.as_ref()?.fresh(now, DETAILS_EVERY)?;
        Some((names.0.as_str(), names.1.as_str()))
    }

    pub(super) fn remember_host_names(&mut self, now: Instant, hostname: &str, kernel: &str) {
        self.host_names = Some(Stamped {
            at: now,
            value: (hostname.to_string(), kernel.to_string()),
        });
    }

    /// The unit of a process, if read recently (`Some(None)`: it has none).
    pub(super) fn unit(&self, key: ProcessKey, now: Instant) -> Option<Option<String>> {
        self.units.get(&key)?.fresh(now, DETAILS_EVERY).cloned()
    }

    pub(super) fn remember_unit(&mut self, key: ProcessKey, now: Instant, unit: Option<String>) {
        self.units.insert(
            key,
            Stamped {
                at: now,
                value: unit,
            },
        );
    }

    /// Forgets the units of processes no longer in `processes` (sorted by
    /// pid, as a walk returns them).
    pub(super) fn keep_units_of(&mut self, processes: &[ProcessInfo]) {
        self.units.retain(|key, _| {
            processes
                .binary_search_by_key(&key.pid, |p| p.key.pid)
                .is_ok_and(|i| processes[i].key == *key)
        });
    }
}

/// The namespace of each process, as read at most [`PID_NETNS_EVERY`] ago.
/// A process seen for the first time is always read, so a container started
/// in a new namespace is found at once.
#[derive(Debug, Default)]
pub struct PidNamespaces {
    by_pid: FxHashMap<u32, Stamped<PidNetns>>,
}

impl PidNamespaces {
    /// Forgets processes not in `pids` (sorted) and those read too long ago.
    pub(super) fn refresh(&mut self, pids: &[u32], now: Instant) {
        self.by_pid.retain(|pid, ns| {
            pids.binary_search(pid).is_ok() && ns.fresh(now, PID_NETNS_EVERY).is_some()
        });
    }

    pub(super) fn get(&self, pid: u32) -> Option<PidNetns> {
        self.by_pid.get(&pid).map(|ns| ns.value)
    }

    /// Remembers what `pid`'s namespace link said; an exited process is not
    /// remembered (its PID may be reused at once).
    pub(super) fn remember(&mut self, pid: u32, ns: PidNetns, now: Instant) {
        if ns != PidNetns::None {
            self.by_pid.insert(pid, Stamped { at: now, value: ns });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TcpState;

    fn t0() -> Instant {
        Instant::now()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_namespace_dumped_after_all_is_dumped_at_once_until_its_counts_are_due() {
        let mut c = ScanCache::default();
        let t = t0();
        assert!(c.dumped_anyway(t).is_empty());
        c.remember_dumped_anyway(t, &[NetnsId(7)]);
        c.remember_dumped_anyway(t + secs(30), &[NetnsId(8)]);
        let both: FxHashSet<NetnsId> = [NetnsId(7), NetnsId(8)].into_iter().collect();
        assert_eq!(c.dumped_anyway(t + secs(30)), both);
        let later = t + STATE_COUNTS_EVERY;
        assert_eq!(
            c.dumped_anyway(later),
            [NetnsId(8)].into_iter().collect(),
            "7's minute is up, a second early counting"
        );
        c.remember_dumped_anyway(later, &[]);
        assert_eq!(c.dumped_anyway.len(), 1, "7 forgotten");
        assert!(c
            .dumped_anyway(t + secs(30) + STATE_COUNTS_EVERY)
            .is_empty());
    }

    #[test]
    fn the_walk_is_full_first_then_every_five_minutes_a_second_early_counting() {
        let mut c = ScanCache::default();
        let t = t0();
        assert!(c.walk(t).1, "no full walk yet");
        c.walked_full(t);
        assert!(!c.walk(t + secs(1)).1);
        assert!(!c.walk(t + FULL_WALK_EVERY - secs(2)).1);
        assert!(c.walk(t + FULL_WALK_EVERY - secs(1)).1, "a second early");
        assert!(c.walk(t + FULL_WALK_EVERY).1);
    }

    fn counts(n: u64) -> StateCounts {
        let mut s = StateCounts::default();
        for _ in 0..n {
            s.add(TcpState::Established);
            s.add(TcpState::CloseWait);
        }
        s
    }

    #[test]
    fn state_counts_are_reused_for_a_minute_and_take_this_scans_flagged_states() {
        let mask = TcpState::CloseWait.mask();
        let (a, b) = (NetnsId(1), NetnsId(2));
        let mut c = ScanCache::default();
        let t = t0();
        assert!(c.counted_recently(t).is_empty());
        let (mut sa, mut sb) = (counts(5), counts(7));
        c.merge_counts(
            t,
            [(a, &mut sa, true), (b, &mut sb, true)].into_iter(),
            mask,
        );
        assert_eq!(c.counted_recently(t + secs(58)).len(), 2);
        assert!(c
            .counted_recently(t + STATE_COUNTS_EVERY - secs(1))
            .is_empty());

        // A cached scan of `a` counted only CLOSE_WAIT: the rest comes from
        // the last count; `b` is gone and forgotten.
        let mut only_flagged = StateCounts::default();
        only_flagged.add(TcpState::CloseWait);
        c.merge_counts(
            t + secs(15),
            [(a, &mut only_flagged, false)].into_iter(),
            mask,
        );
        assert_eq!(only_flagged.get(TcpState::Established), 5);
        assert_eq!(only_flagged.get(TcpState::CloseWait), 1);
        assert_eq!(
            c.counted_recently(t + secs(16))
                .into_iter()
                .collect::<Vec<_>>(),
            vec![a]
        );
    }

    #[test]
    fn units_and_host_names_are_kept_for_a_minute() {
        let mut c = ScanCache::default();
        let t = t0();
        let key = ProcessKey {
            pid: 7,
            start_time: 70,
        };
        assert_eq!(c.unit(key, t), None);
        c.remember_unit(key, t, Some("a.service".into()));
        assert_eq!(c.unit(key, t + secs(59)), Some(Some("a.service".into())));
        assert_eq!(c.unit(key, t + DETAILS_EVERY), None);
        c.keep_units_of(&[]);
        assert_eq!(c.unit(key, t), None, "a process gone is forgotten");

        assert_eq!(c.host_names(t), None);
        c.remember_host_names(t, "h", "6.18");
        assert_eq!(c.host_names(t + secs(59)), Some(("h", "6.18")));
        assert_eq!(c.host_names(t + DETAILS_EVERY), None);
    }

    #[test]
    fn a_processs_namespace_is_trusted_for_a_minute_while_it_lives() {
        let mut n = PidNamespaces::default();
        let t = t0();
        n.remember(10, PidNetns::In(4), t);
        n.remember(11, PidNetns::None, t);
        assert_eq!(n.get(10), Some(PidNetns::In(4)));
        assert_eq!(n.get(11), None, "an exited process is not remembered");
        n.refresh(&[10], t + secs(59));
        assert_eq!(n.get(10), Some(PidNetns::In(4)));
        n.refresh(&[10], t + PID_NETNS_EVERY);
        assert_eq!(n.get(10), None, "read again after the period");
        n.remember(10, PidNetns::In(4), t);
        n.refresh(&[], t);
        assert_eq!(n.get(10), None, "exited: forgotten");
    }
}
