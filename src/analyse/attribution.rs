//! Who holds what: socket inode → owning processes, and an accept queue →
//! the owners of its listener.

use std::net::{IpAddr, SocketAddr};

use rustc_hash::FxHashMap;

use crate::model::{Listener, NetnsId, Snapshot};

/// Indexes into `Snapshot::processes`. Most sockets have one owner; a socket
/// inherited across fork has several, and each is listed.
pub type Owners = Vec<usize>;

/// Maps every socket inode the walk found to the processes holding it.
pub fn owners_by_inode(snapshot: &Snapshot) -> FxHashMap<u64, Owners> {
    let mut map: FxHashMap<u64, Owners> = FxHashMap::default();
    for (i, p) in snapshot.processes.iter().enumerate() {
        for held in &p.sockets {
            let owners = map.entry(held.inode).or_default();
            // A process can hold one socket under several fds (dup).
            if owners.last() != Some(&i) {
                owners.push(i);
            }
        }
    }
    map
}

/// Normalises a v4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4, so a
/// connection in a dual-stack listener's queue matches its address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The listeners whose accept queue a connection with this local address
/// could be in, by (netns, port). The kernel prefers a listener bound to the
/// exact address over a wildcard one, and so does the match.
pub struct ListenerIndex<'a> {
    by_port: FxHashMap<(NetnsId, u16), Vec<&'a Listener>>,
}

impl<'a> ListenerIndex<'a> {
    pub fn new(listeners: &'a [Listener]) -> Self {
        let mut by_port: FxHashMap<(NetnsId, u16), Vec<&Listener>> = FxHashMap::default();
        for l in listeners {
            by_port
                .entry((l.netns, l.local.port()))
                .or_default()
                .push(l);
        }
        ListenerIndex { by_port }
    }

    /// The listeners that may hold a connection to `local`: the exact-address
    /// ones if any, else the wildcard ones. Several (SO_REUSEPORT) may match.
    pub fn matching(&self, netns: NetnsId, local: SocketAddr) -> Vec<&'a Listener> {
        let Some(candidates) = self.by_port.get(&(netns, local.port())) else {
            return Vec::new();
        };
        let ip = canonical(local.ip());
        let exact: Vec<&Listener> = candidates
            .iter()
            .copied()
            .filter(|l| canonical(l.local.ip()) == ip)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        candidates
            .iter()
            .copied()
            .filter(|l| match l.local.ip() {
                // 0.0.0.0 takes IPv4 only; :: takes both (unless V6ONLY, which
                // the dump does not show: then the v4 connection would sit in
                // a 0.0.0.0 listener, which the exact rule above prefers).
                IpAddr::V4(a) => a.is_unspecified() && ip.is_ipv4(),
                IpAddr::V6(a) => a.is_unspecified(),
            })
            .collect()
    }
}

/// The processes to name for a connection waiting in an accept queue: the
/// owners of the matching listener. When several listeners match and their
/// owners differ, the queue cannot be told apart and nobody is named: never
/// blame the wrong process.
pub fn queue_owners(listeners: &[&Listener], owners: &FxHashMap<u64, Owners>) -> Option<Owners> {
    let mut sets = listeners.iter().map(|l| {
        let mut o = owners.get(&l.inode).cloned().unwrap_or_default();
        o.sort_unstable();
        o
    });
    let first = sets.next()?;
    if first.is_empty() || sets.any(|o| o != first) {
        return None;
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(addr: &str, inode: u64) -> Listener {
        Listener {
            netns: NetnsId(7),
            local: addr.parse().expect("addr"),
            inode,
            queue: 0,
            backlog: 128,
        }
    }

    #[test]
    fn exact_address_beats_wildcard() {
        let ls = [
            l("0.0.0.0:80", 1),
            l("127.0.0.1:80", 2),
            l("127.0.0.1:81", 3),
        ];
        let idx = ListenerIndex::new(&ls);
        let m = idx.matching(NetnsId(7), "127.0.0.1:80".parse().expect("addr"));
        assert_eq!(m.iter().map(|l| l.inode).collect::<Vec<_>>(), vec![2]);
        let m = idx.matching(NetnsId(7), "10.0.0.1:80".parse().expect("addr"));
        assert_eq!(m.iter().map(|l| l.inode).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn v4_mapped_connection_matches_dual_stack_listener() {
        let ls = [l("[::]:8080", 9)];
        let idx = ListenerIndex::new(&ls);
        let m = idx.matching(NetnsId(7), "[::ffff:127.0.0.1]:8080".parse().expect("addr"));
        assert_eq!(m.len(), 1);
        let m = idx.matching(NetnsId(7), "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn other_namespace_does_not_match() {
        let ls = [l("0.0.0.0:80", 1)];
        let idx = ListenerIndex::new(&ls);
        assert!(idx
            .matching(NetnsId(8), "127.0.0.1:80".parse().expect("addr"))
            .is_empty());
    }

    #[test]
    fn reuseport_listeners_with_different_owners_name_nobody() {
        let ls = [l("0.0.0.0:80", 1), l("0.0.0.0:80", 2)];
        let refs: Vec<&Listener> = ls.iter().collect();
        let mut owners = FxHashMap::default();
        owners.insert(1, vec![0]);
        owners.insert(2, vec![1]);
        assert_eq!(queue_owners(&refs, &owners), None);
        owners.insert(2, vec![0]);
        assert_eq!(queue_owners(&refs, &owners), Some(vec![0]));
    }
}
