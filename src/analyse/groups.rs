//! A process's connections grouped by what they mean, for a reader: the
//! sockets on a port the process listens on are a server's, grouped by that
//! port with the client hosts under it (a server that never closes has one
//! peer per client port, which says nothing); so are sockets that share
//! their local address with another of the process's (accepted on a
//! listener since closed: a client's sockets each have a local port of
//! their own). The others are a client's, grouped by the server they talk
//! to.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};

use super::held::PeerEnd;
use crate::model::TcpState;

/// Client hosts listed under a server group.
pub const MAX_HOSTS: usize = 5;

/// One socket, as grouping needs it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Conn {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub state: TcpState,
    pub age: Duration,
    pub recv_q: u32,
    pub end: Option<PeerEnd>,
}

/// Which side of the connections a group is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Accepted on this local address, which the process listens on.
    Server { local: SocketAddr },
    /// Made to this remote address.
    Client { remote: SocketAddr },
}

/// The sockets of one process on one side, in one state.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerGroup {
    pub side: Side,
    pub state: TcpState,
    pub count: u64,
    pub oldest: Duration,
    /// CLOSE_WAIT sockets whose EOF the program never read.
    pub fin_unread: u64,
    /// Data bytes queued and not read.
    pub unread_bytes: u64,
    /// A server's client hosts: (address, sockets, oldest), most first, at
    /// most [`MAX_HOSTS`].
    pub hosts: Vec<(IpAddr, u64, Duration)>,
    pub hosts_omitted: usize,
    /// A client's other end, when it is on this host.
    pub local: Option<PeerEnd>,
}

/// A socket's Recv-Q as (FINs not read, data bytes not read). For a
/// CLOSE_WAIT socket the kernel counts the peer's FIN (one sequence number)
/// until the program reads EOF, and EOF is read only after every byte
/// before it: anything queued means the FIN is still there.
pub fn queued(state: TcpState, recv_q: u32) -> (u64, u64) {
    let fin = u32::from(state == TcpState::CloseWait && recv_q > 0);
    (u64::from(fin), u64::from(recv_q - fin))
}

/// A server group's client hosts: sockets and the oldest, by address.
type Hosts = FxHashMap<IpAddr, (u64, Duration)>;

/// Groups `conns` of process `index`; `listening` holds (process, port) of
/// every listener. Most sockets first, then oldest.
pub(super) fn group(
    conns: &[Conn],
    index: usize,
    listening: &FxHashSet<(usize, u16)>,
) -> Vec<PeerGroup> {
    let mut groups: FxHashMap<(Side, TcpState), (PeerGroup, Hosts)> = FxHashMap::default();
    let mut sharing: FxHashMap<SocketAddr, u32> = FxHashMap::default();
    for c in conns {
        *sharing.entry(c.local).or_default() += 1;
    }
    for c in conns {
        let served = listening.contains(&(index, c.local.port())) || sharing[&c.local] > 1;
        let side = if served {
            Side::Server { local: c.local }
        } else {
            Side::Client { remote: c.remote }
        };
        let (g, hosts) = groups.entry((side, c.state)).or_insert_with(|| {
            let g = PeerGroup {
                side,
                state: c.state,
                count: 0,
                oldest: Duration::ZERO,
                fin_unread: 0,
                unread_bytes: 0,
                hosts: Vec::new(),
                hosts_omitted: 0,
                local: None,
            };
            (g, FxHashMap::default())
        });
        g.count += 1;
        g.oldest = g.oldest.max(c.age);
        let (fin, bytes) = queued(c.state, c.recv_q);
        g.fin_unread += fin;
        g.unread_bytes += bytes;
        match side {
            Side::Server { .. } => {
                let h = hosts.entry(c.remote.ip()).or_default();
                h.0 += 1;
                h.1 = h.1.max(c.age);
            }
            Side::Client { .. } => g.local = g.local.or(c.end),
        }
    }
    let mut out: Vec<PeerGroup> = groups
        .into_values()
        .map(|(mut g, hosts)| {
            let mut hosts: Vec<(IpAddr, u64, Duration)> = hosts
                .into_iter()
                .map(|(ip, (n, age))| (ip, n, age))
                .collect();
            hosts.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
            g.hosts_omitted = hosts.len().saturating_sub(MAX_HOSTS);
            hosts.truncate(MAX_HOSTS);
            g.hosts = hosts;
            g
        })
        .collect();
    out.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.oldest.cmp(&a.oldest))
            .then(a.side.cmp(&b.side))
            .then(a.state.cmp(&b.state))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(local: &str, remote: &str, state: TcpState, age: u64, recv_q: u32) -> Conn {
        Conn {
            local: local.parse().expect("addr"),
            remote: remote.parse().expect("addr"),
            state,
            age: Duration::from_secs(age),
            recv_q,
            end: None,
        }
    }

    #[test]
    fn a_servers_sockets_group_by_listening_port_and_a_clients_by_server() {
        let mut conns: Vec<Conn> = (0..8)
            .map(|i| {
                let remote = format!("10.0.0.{}:{}", 1 + i % 2, 40000 + i);
                conn("10.0.0.9:8080", &remote, TcpState::CloseWait, 10 + i, 1)
            })
            .collect();
        conns.push(conn(
            "10.0.0.9:41000",
            "10.0.0.5:6379",
            TcpState::CloseWait,
            5,
            7,
        ));
        conns.push(conn(
            "10.0.0.9:41001",
            "10.0.0.5:6379",
            TcpState::CloseWait,
            3,
            0,
        ));
        let listening: FxHashSet<(usize, u16)> = [(0, 8080), (1, 6379)].into_iter().collect();
        let groups = group(&conns, 0, &listening);
        assert_eq!(groups.len(), 2, "{groups:#?}");
        let server = &groups[0];
        assert_eq!(
            server.side,
            Side::Server {
                local: "10.0.0.9:8080".parse().expect("addr")
            }
        );
        assert_eq!(
            (server.count, server.fin_unread, server.unread_bytes),
            (8, 8, 0)
        );
        assert_eq!(server.oldest, Duration::from_secs(17));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(
            server.hosts,
            vec![
                (ip("10.0.0.2"), 4, Duration::from_secs(17)),
                (ip("10.0.0.1"), 4, Duration::from_secs(16)),
            ]
        );
        let client = &groups[1];
        assert_eq!(
            client.side,
            Side::Client {
                remote: "10.0.0.5:6379".parse().expect("addr")
            }
        );
        assert_eq!(
            (client.count, client.fin_unread, client.unread_bytes),
            (2, 1, 6)
        );
        // Another process listening on 6379 makes no server of this one.
        assert!(client.hosts.is_empty());
    }

    #[test]
    fn at_most_five_hosts_are_listed() {
        let conns: Vec<Conn> = (0..7)
            .map(|i| {
                conn(
                    "[::1]:80",
                    &format!("[fe80::{}]:5000", i + 1),
                    TcpState::CloseWait,
                    i,
                    0,
                )
            })
            .collect();
        let listening: FxHashSet<(usize, u16)> = [(3, 80)].into_iter().collect();
        let groups = group(&conns, 3, &listening);
        assert_eq!(groups.len(), 1);
        assert_eq!(
            (groups[0].hosts.len(), groups[0].hosts_omitted),
            (MAX_HOSTS, 2)
        );
        // Its listener closed: the shared local address still makes it a
        // server's; a lone socket without a listener is a client's.
        let groups = group(&conns, 3, &FxHashSet::default());
        assert_eq!(groups.len(), 1);
        assert!(matches!(groups[0].side, Side::Server { .. }));
        let lone = group(&conns[..1], 3, &FxHashSet::default());
        assert!(matches!(lone[0].side, Side::Client { .. }));
    }
}
