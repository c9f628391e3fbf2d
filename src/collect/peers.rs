//! Local peers: when the other end of a connection is on this host, the
//! socket with the reverse addresses in the same namespace, or proof that
//! there is none (the peer is gone); or, between namespaces (a container
//! and the host, over a veth), the one flagged socket of another namespace
//! with the reverse addresses.

use std::net::SocketAddr;

use rustc_hash::{FxHashMap, FxHashSet};

use super::sockdiag::{remote_is_local, TcpTables};
use crate::model::{LocalPeer, NetnsId, NetnsScan, TcpState};

/// Sets the local peer of every flagged socket and idle connection of one
/// namespace's tables. With the ESTABLISHED dump (`tables.idle`) every
/// connection between two addresses of this host is known, so a peer not
/// found is gone; without it, a peer is found only among the flagged
/// sockets and is otherwise left unknown.
pub(super) fn resolve(tables: &mut TcpTables) {
    // Only the tuples some socket here would find as its peer are indexed:
    // the ESTABLISHED dump holds every local connection of the host (360k
    // at the large bench load, a 64 MB map), of which a few are wanted.
    let sought: FxHashSet<(SocketAddr, SocketAddr)> = tables
        .flagged
        .iter()
        .map(|s| (s.local, s.remote))
        .chain(
            tables
                .idle
                .iter()
                .flat_map(|i| i.candidates.iter().map(|s| (s.local, s.remote))),
        )
        .filter(|&(local, remote)| remote_is_local(local, remote))
        .map(|(local, remote)| (remote, local))
        .collect();
    let mut index: FxHashMap<(SocketAddr, SocketAddr), (TcpState, u64)> = FxHashMap::default();
    for s in &tables.flagged {
        if sought.contains(&(s.local, s.remote)) {
            index.insert((s.local, s.remote), (s.state, s.inode));
        }
    }
    let complete = tables.idle.is_some();
    if let Some(idle) = &tables.idle {
        for &(local, remote, inode) in &idle.local {
            if sought.contains(&(local, remote)) {
                index.insert((local, remote), (TcpState::Established, inode));
            }
        }
    }
    let peer_of = |local: SocketAddr, remote: SocketAddr| -> Option<LocalPeer> {
        if !remote_is_local(local, remote) {
            return None;
        }
        match index.get(&(remote, local)) {
            Some(&(state, inode)) => Some(LocalPeer::Socket { state, inode }),
            None if complete => Some(LocalPeer::Gone),
            None => None,
        }
    };
    for s in &mut tables.flagged {
        s.peer = peer_of(s.local, s.remote);
    }
    if let Some(idle) = &mut tables.idle {
        for s in &mut idle.candidates {
            s.peer = peer_of(s.local, s.remote);
        }
    }
}

/// Sets the peer of the flagged sockets whose peer is still unknown to the
/// flagged socket with the reverse addresses in another namespace, when
/// exactly one namespace has one. Only flagged sockets are indexed (the
/// ESTABLISHED dump keeps the tuples between this namespace's own
/// addresses), and a peer not found is never called gone: NAT between
/// namespaces rewrites the addresses, and the same tuple may exist in two
/// namespaces on separate networks.
pub(super) fn resolve_across(tables: &mut [(NetnsScan, TcpTables)]) {
    if tables.len() < 2 {
        return;
    }
    type Ends = Vec<(NetnsId, TcpState, u64)>;
    let mut index: FxHashMap<(SocketAddr, SocketAddr), Ends> = FxHashMap::default();
    for (scan, t) in tables.iter() {
        for s in &t.flagged {
            index
                .entry((s.local, s.remote))
                .or_default()
                .push((scan.id, s.state, s.inode));
        }
    }
    for (scan, t) in tables.iter_mut() {
        for s in t.flagged.iter_mut().filter(|s| s.peer.is_none()) {
            let Some(ends) = index.get(&(s.remote, s.local)) else {
                continue;
            };
            let mut others = ends.iter().filter(|e| e.0 != scan.id);
            if let (Some(&(_, state, inode)), None) = (others.next(), others.next()) {
                s.peer = Some(LocalPeer::Socket { state, inode });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::sockdiag::Idle;
    use crate::model::{NetnsId, TcpSocket};

    fn sock(state: TcpState, local: &str, remote: &str, inode: u64) -> TcpSocket {
        TcpSocket {
            netns: NetnsId(1),
            state,
            local: local.parse().expect("addr"),
            remote: remote.parse().expect("addr"),
            cookie: inode,
            inode,
            uid: 0,
            recv_q: 0,
            send_q: 0,
            info: None,
            timer: 0,
            peer: None,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn scan(id: u64) -> NetnsScan {
        NetnsScan {
            id: NetnsId(id),
            states: crate::model::StateCounts::default(),
            processes: 1,
            listen_overflows: None,
            listen_drops: None,
            ports: None,
        }
    }

    #[test]
    fn a_half_close_pair_across_a_veth_finds_each_other_when_unambiguous() {
        let tables = |flagged| TcpTables {
            flagged,
            ..TcpTables::default()
        };
        let mut all = vec![
            // The container (10.0.0.2) half-closed toward the host.
            (
                scan(1),
                tables(vec![sock(
                    TcpState::FinWait2,
                    "10.0.0.2:5000",
                    "10.0.0.1:80",
                    1,
                )]),
            ),
            // The host (10.0.0.1) holds the CLOSE_WAIT; and one more whose
            // reverse tuple is in two other namespaces.
            (
                scan(2),
                tables(vec![
                    sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.2:5000", 2),
                    sock(TcpState::CloseWait, "10.0.0.1:81", "10.0.0.3:6000", 3),
                ]),
            ),
            (
                scan(3),
                tables(vec![sock(
                    TcpState::FinWait2,
                    "10.0.0.3:6000",
                    "10.0.0.1:81",
                    4,
                )]),
            ),
            (
                scan(4),
                tables(vec![sock(
                    TcpState::FinWait2,
                    "10.0.0.3:6000",
                    "10.0.0.1:81",
                    5,
                )]),
            ),
        ];
        for (_, t) in &mut all {
            resolve(t);
        }
        assert_eq!(
            all[0].1.flagged[0].peer, None,
            "not local within its namespace"
        );
        resolve_across(&mut all);
        let socket = |state, inode| Some(LocalPeer::Socket { state, inode });
        assert_eq!(all[0].1.flagged[0].peer, socket(TcpState::CloseWait, 2));
        assert_eq!(all[1].1.flagged[0].peer, socket(TcpState::FinWait2, 1));
        assert_eq!(
            all[1].1.flagged[1].peer, None,
            "two namespaces match: ambiguous"
        );
    }

    #[test]
    fn a_half_close_pair_finds_each_other_without_the_established_dump() {
        let mut t = TcpTables {
            flagged: vec![
                sock(TcpState::FinWait2, "127.0.0.1:5000", "127.0.0.1:80", 1),
                sock(TcpState::CloseWait, "127.0.0.1:80", "127.0.0.1:5000", 2),
                // Its peer is somewhere else, or not dumped: unknown.
                sock(TcpState::CloseWait, "127.0.0.1:80", "127.0.0.1:5001", 3),
                sock(TcpState::CloseWait, "10.0.0.1:80", "10.9.9.9:5001", 4),
            ],
            ..TcpTables::default()
        };
        resolve(&mut t);
        let peer = |i: usize| t.flagged[i].peer;
        let socket = |state, inode| Some(LocalPeer::Socket { state, inode });
        assert_eq!(peer(0), socket(TcpState::CloseWait, 2));
        assert_eq!(peer(1), socket(TcpState::FinWait2, 1));
        assert_eq!(
            peer(2),
            None,
            "not proven gone without the ESTABLISHED dump"
        );
        assert_eq!(peer(3), None, "not on this host");
    }

    #[test]
    fn with_the_established_dump_a_missing_local_peer_is_gone_and_a_live_one_found() {
        let mut t = TcpTables {
            flagged: vec![sock(
                TcpState::CloseWait,
                "127.0.0.1:80",
                "127.0.0.1:5001",
                3,
            )],
            idle: Some(Idle {
                candidates: vec![
                    sock(TcpState::Established, "127.0.0.1:80", "127.0.0.1:6000", 10),
                    sock(TcpState::Established, "127.0.0.1:80", "127.0.0.1:6001", 11),
                    sock(TcpState::Established, "10.0.0.1:22", "10.0.0.1:40000", 12),
                ],
                local: vec![
                    (addr("127.0.0.1:6001"), addr("127.0.0.1:80"), 20),
                    (addr("127.0.0.1:80"), addr("127.0.0.1:6001"), 11),
                ],
            }),
            ..TcpTables::default()
        };
        resolve(&mut t);
        assert_eq!(t.flagged[0].peer, Some(LocalPeer::Gone));
        let idle = &t.idle.as_ref().expect("idle").candidates;
        assert_eq!(idle[0].peer, Some(LocalPeer::Gone));
        assert_eq!(
            idle[1].peer,
            Some(LocalPeer::Socket {
                state: TcpState::Established,
                inode: 20
            })
        );
        assert_eq!(
            idle[2].peer,
            Some(LocalPeer::Gone),
            "its own address is this host's"
        );
    }
}
