//! Ephemeral ports in use, by destination, tallied as the all-states dump
//! streams by: every socket (TIME_WAIT included) from a local port of the
//! namespace's ephemeral range to a remote `ip:port` holds that port; past
//! the range, `connect()` to that destination fails with EADDRNOTAVAIL.

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use crate::model::{Destination, PortRange, PortUse, TcpState};

/// How many destinations a namespace keeps: the busiest.
pub const MAX_DESTINATIONS: usize = 20;

/// The ports in use of one dump, by (local ip, remote ip:port).
#[derive(Debug)]
pub struct PortTally {
    range: PortRange,
    by_dest: FxHashMap<(IpAddr, SocketAddr), Destination>,
    /// Ports listened on: a connection accepted on one holds no port of
    /// its own. The kernel dumps the listening hash before the others
    /// (inet_diag_dump_icsk), so each listener is known before the
    /// connections it accepted.
    listening: rustc_hash::FxHashSet<u16>,
}

impl PortTally {
    pub fn new(range: PortRange) -> PortTally {
        PortTally {
            range,
            by_dest: FxHashMap::default(),
            listening: rustc_hash::FxHashSet::default(),
        }
    }

    /// Forgets what an interrupted dump delivered.
    pub fn clear(&mut self) {
        self.by_dest.clear();
        self.listening.clear();
    }

    /// One socket of the dump. Listeners, sockets without a peer and
    /// connections accepted on a listener hold no port of their own.
    pub fn add(&mut self, state: TcpState, local: SocketAddr, remote: SocketAddr, inode: u64) {
        if state == TcpState::Listen {
            self.listening.insert(local.port());
            return;
        }
        if remote.port() == 0
            || !self.range.contains(local.port())
            || self.listening.contains(&local.port())
        {
            return;
        }
        let d = self
            .by_dest
            .entry((local.ip(), remote))
            .or_insert_with(|| Destination {
                local_ip: local.ip(),
                remote,
                in_use: 0,
                time_wait: 0,
                inodes: Vec::new(),
            });
        d.in_use += 1;
        d.time_wait += u64::from(state == TcpState::TimeWait);
        if inode != 0 {
            d.inodes.push(inode);
        }
    }

    /// The inodes of the sockets to each destination using at least `floor`
    /// of the range: whose owners are worth naming.
    pub fn owner_inodes(&self, floor: f64) -> impl Iterator<Item = u64> + '_ {
        let size = self.range.size().max(1) as f64;
        self.by_dest
            .values()
            .filter(move |d| d.in_use as f64 / size >= floor)
            .flat_map(|d| d.inodes.iter().copied())
    }

    /// Adds another dump's tally (one family of a per-family dump).
    pub fn merge(&mut self, other: PortTally) {
        for (key, d) in other.by_dest {
            match self.by_dest.get_mut(&key) {
                Some(mine) => {
                    mine.in_use += d.in_use;
                    mine.time_wait += d.time_wait;
                    mine.inodes.extend(d.inodes);
                }
                None => {
                    self.by_dest.insert(key, d);
                }
            }
        }
    }

    /// The range and its [`MAX_DESTINATIONS`] busiest destinations.
    pub fn finish(self) -> PortUse {
        let mut destinations: Vec<Destination> = self.by_dest.into_values().collect();
        destinations.sort_by(|a, b| {
            b.in_use
                .cmp(&a.in_use)
                .then(a.remote.cmp(&b.remote))
                .then(a.local_ip.cmp(&b.local_ip))
        });
        destinations.truncate(MAX_DESTINATIONS);
        PortUse {
            range: self.range,
            destinations,
        }
    }
}

/// Parses `net.ipv4.ip_local_port_range` ("32768\t60999\n").
pub fn parse_range(text: &[u8]) -> Option<PortRange> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split_ascii_whitespace();
    let low = words.next()?.parse().ok()?;
    let high = words.next()?.parse().ok()?;
    words.next().is_none().then_some(PortRange { low, high })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn the_range_reads_as_the_kernel_writes_it() {
        let r = parse_range(b"32768\t60999\n").expect("range");
        assert_eq!((r.low, r.high, r.size()), (32768, 60999, 28232));
        assert_eq!(parse_range(b"40000 40099").map(PortRange::size), Some(100));
        assert_eq!(parse_range(b"40000"), None);
        assert_eq!(parse_range(b"1 2 3"), None);
        assert_eq!(parse_range(b"x y"), None);
        assert_eq!(PortRange { low: 5, high: 4 }.size(), 0);
    }

    #[test]
    fn ports_are_counted_per_local_ip_and_destination_in_the_range_only() {
        let mut t = PortTally::new(PortRange {
            low: 40000,
            high: 40099,
        });
        let db = a("10.0.0.5:5432");
        for port in 40000u16..40090 {
            t.add(
                TcpState::Established,
                a(&format!("10.0.0.1:{port}")),
                db,
                u64::from(port),
            );
        }
        t.add(TcpState::TimeWait, a("10.0.0.1:40095"), db, 0);
        t.add(TcpState::Established, a("10.0.0.2:40001"), db, 7);
        t.add(TcpState::Established, a("10.0.0.1:50000"), db, 8); // not ephemeral
        t.add(TcpState::Listen, a("10.0.0.1:40098"), a("0.0.0.0:0"), 9);
        // Accepted on that listener: its port is the listener's.
        t.add(
            TcpState::Established,
            a("10.0.0.1:40098"),
            a("10.0.0.9:1234"),
            11,
        );
        t.add(
            TcpState::TimeWait,
            a("10.0.0.1:40098"),
            a("10.0.0.9:1235"),
            0,
        );
        let mut other = PortTally::new(t.range);
        other.add(TcpState::SynSent, a("10.0.0.1:40096"), db, 10);
        t.merge(other);
        let used = t.finish();
        assert_eq!(used.destinations.len(), 2);
        let top = &used.destinations[0];
        assert_eq!((top.local_ip, top.remote), (a("10.0.0.1:0").ip(), db));
        assert_eq!((top.in_use, top.time_wait), (92, 1));
        assert_eq!(top.inodes.len(), 91, "TIME_WAIT has no inode");
        assert_eq!(used.destinations[1].in_use, 1);
    }

    #[test]
    fn only_the_busiest_destinations_are_kept() {
        let mut t = PortTally::new(PortRange {
            low: 1024,
            high: 65535,
        });
        for d in 0..30u16 {
            for i in 0..=d {
                let remote = a(&format!("10.1.0.{d}:80"));
                t.add(
                    TcpState::Established,
                    a(&format!("10.0.0.1:{}", 2000 + i)),
                    remote,
                    0,
                );
            }
        }
        let used = t.finish();
        assert_eq!(used.destinations.len(), MAX_DESTINATIONS);
        assert_eq!(used.destinations[0].in_use, 30);
        assert_eq!(used.destinations[MAX_DESTINATIONS - 1].in_use, 11);
    }
}
