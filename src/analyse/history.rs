//! What closewatch remembers between scans: when each flagged socket was first
//! seen, and each process's recent fd counts. Pure state: the caller passes
//! the time.
//!
//! The kernel keeps no timestamp for entering CLOSE_WAIT. A socket seen for
//! the first time is given `first_seen = now - tcpi_last_ack_recv`: the peer's
//! FIN is the last ACK a leaked socket receives, so this is the time since the
//! peer closed (a lower bound: any later ACK resets it). From then on the
//! remembered value stands, so the age keeps growing even if an ACK arrives.

use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;

use super::growth::FdHistory;
use crate::model::{Freshness, ProcessKey, Snapshot, SocketKey, TcpSocket, UnixSocket};

/// When each socket of the last scan was first seen, keyed by (netns, cookie)
/// (a reused inode never inherits an age), and fd samples per process.
#[derive(Debug, Default, Clone)]
pub struct History {
    first_seen: FxHashMap<SocketKey, SystemTime>,
    /// When each dead socket (in no TCP table) was first seen held, by
    /// holder and inode: the kernel keeps no time for it (a socket inode's
    /// timestamps read 0 on Linux 6.18).
    dead_first_seen: FxHashMap<(ProcessKey, u64), SystemTime>,
    /// Since when each idle connection has received nothing: `now -
    /// tcpi_last_data_recv` at each look (data resets it).
    idle_since: FxHashMap<SocketKey, SystemTime>,
    /// When each UNIX socket whose peer closed was first seen so (no time
    /// from the kernel for it either).
    unix_first_seen: FxHashMap<SocketKey, SystemTime>,
    pub fds: FdHistory,
}

/// The first-seen estimate for a socket not seen before.
pub fn estimate_first_seen(socket: &TcpSocket, now: SystemTime) -> SystemTime {
    let since_ack = socket
        .info
        .map(|i| Duration::from_millis(u64::from(i.last_ack_recv_ms)))
        .unwrap_or_default();
    now.checked_sub(since_ack).unwrap_or(now)
}

impl History {
    /// Takes in a scan: remembers new sockets, forgets those that are gone, so
    /// the history never holds more than the live flagged sockets; adds an fd
    /// sample per process and keeps `fd_window` of them.
    pub fn observe(&mut self, snapshot: &Snapshot, now: SystemTime, fd_window: Duration) {
        self.fds.observe(snapshot, now, fd_window);
        let mut next =
            FxHashMap::with_capacity_and_hasher(snapshot.sockets.len(), Default::default());
        for s in &snapshot.sockets {
            let seen = self
                .first_seen
                .get(&s.key())
                .copied()
                .unwrap_or_else(|| estimate_first_seen(s, now));
            next.insert(s.key(), seen);
        }
        self.first_seen = next;
        let mut dead = FxHashMap::default();
        for p in &snapshot.processes {
            for s in &p.dead {
                let key = (p.key, s.inode);
                let seen = self.dead_first_seen.get(&key).copied().unwrap_or(now);
                dead.insert(key, seen);
            }
        }
        self.dead_first_seen = dead;
        let mut idle = FxHashMap::default();
        for s in &snapshot.idle {
            let looked = || {
                let since = s.info.map_or(0, |i| u64::from(i.last_data_recv_ms));
                now.checked_sub(Duration::from_millis(since)).unwrap_or(now)
            };
            let since = match snapshot.idle_check {
                Freshness::Fresh => looked(),
                _ => self
                    .idle_since
                    .get(&s.key())
                    .copied()
                    .unwrap_or_else(looked),
            };
            idle.insert(s.key(), since);
        }
        self.idle_since = idle;
        let mut unix = FxHashMap::default();
        for s in &snapshot.unix {
            let key = SocketKey {
                netns: s.netns,
                cookie: s.cookie,
            };
            let seen = self.unix_first_seen.get(&key).copied().unwrap_or(now);
            unix.insert(key, seen);
        }
        self.unix_first_seen = unix;
    }

    /// How long a UNIX socket has been seen with its peer closed, at `now`.
    pub fn unix_age(&self, socket: &UnixSocket, now: SystemTime) -> Duration {
        let key = SocketKey {
            netns: socket.netns,
            cookie: socket.cookie,
        };
        self.unix_first_seen
            .get(&key)
            .and_then(|seen| now.duration_since(*seen).ok())
            .unwrap_or_default()
    }

    /// How long an idle connection has received nothing at `now`.
    pub fn idle_for(&self, socket: &TcpSocket, now: SystemTime) -> Duration {
        self.idle_since
            .get(&socket.key())
            .and_then(|since| now.duration_since(*since).ok())
            .unwrap_or_else(|| {
                Duration::from_millis(socket.info.map_or(0, |i| u64::from(i.last_data_recv_ms)))
            })
    }

    /// How long `holder` has held the dead socket `inode` at `now`, as far
    /// as this history has seen (zero when first seen now).
    pub fn dead_age(&self, holder: ProcessKey, inode: u64, now: SystemTime) -> Duration {
        self.dead_first_seen
            .get(&(holder, inode))
            .and_then(|seen| now.duration_since(*seen).ok())
            .unwrap_or_default()
    }

    pub fn first_seen(&self, key: &SocketKey) -> Option<SystemTime> {
        self.first_seen.get(key).copied()
    }

    /// The age of a socket at `now`: from history, or estimated.
    pub fn age(&self, socket: &TcpSocket, now: SystemTime) -> Duration {
        let seen = self
            .first_seen(&socket.key())
            .unwrap_or_else(|| estimate_first_seen(socket, now));
        now.duration_since(seen).unwrap_or_default()
    }

    /// Sockets remembered.
    pub fn len(&self) -> usize {
        self.first_seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.first_seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NetnsId, TcpInfo, TcpState};

    const W: Duration = Duration::from_secs(900);

    fn sock(cookie: u64, last_ack_recv_ms: u32) -> TcpSocket {
        TcpSocket {
            timer: 0,
            peer: None,
            netns: NetnsId(1),
            state: TcpState::CloseWait,
            local: "127.0.0.1:80".parse().expect("addr"),
            remote: "127.0.0.1:5000".parse().expect("addr"),
            cookie,
            inode: cookie + 1000,
            uid: 0,
            recv_q: 1,
            send_q: 0,
            info: Some(TcpInfo {
                state: 8,
                last_data_sent_ms: 0,
                last_data_recv_ms: last_ack_recv_ms,
                last_ack_recv_ms,
            }),
        }
    }

    fn snap(sockets: Vec<TcpSocket>) -> Snapshot {
        Snapshot {
            sockets,
            ..Snapshot::default()
        }
    }

    #[test]
    fn first_sight_is_estimated_from_last_ack_recv() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = History::default();
        assert_eq!(h.age(&sock(1, 42_000), t0), Duration::from_secs(42));
    }

    #[test]
    fn remembered_first_seen_wins_over_a_later_ack() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = History::default();
        h.observe(&snap(vec![sock(1, 10_000)]), t0, W);
        // 60 s later an ACK arrived 1 s ago: the age still counts from t0-10s.
        let t1 = t0 + Duration::from_secs(60);
        let later = sock(1, 1_000);
        h.observe(&snap(vec![later.clone()]), t1, W);
        assert_eq!(h.age(&later, t1), Duration::from_secs(70));
    }

    #[test]
    fn gone_sockets_are_evicted_and_a_new_cookie_starts_fresh() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = History::default();
        h.observe(&snap((0..1000).map(|c| sock(c, 5_000)).collect()), t0, W);
        assert_eq!(h.len(), 1000);
        let t1 = t0 + Duration::from_secs(30);
        // Same inode, new cookie: a different socket.
        let mut reused = sock(5000, 0);
        reused.inode = sock(1, 0).inode;
        h.observe(&snap(vec![reused.clone()]), t1, W);
        assert_eq!(h.len(), 1);
        assert_eq!(h.age(&reused, t1), Duration::ZERO);
    }
}
