//! The attribution pass: which flagged sockets each process holds, summed up
//! per process (counts, ages, peers, how far the program read), and the
//! sockets no process is blamed for. The checks judge what this gathers.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use rustc_hash::{FxHashMap, FxHashSet};

use super::attribution::{self, ListenerIndex};
use super::{History, Settings};
use crate::model::{Listener, LocalPeer, NetnsId, Snapshot, TcpSocket, TcpState};

/// How far the program read the CLOSE_WAIT sockets it keeps (stale ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvQueueBreakdown {
    /// Recv-Q 0: read EOF, kept the socket.
    pub eof_read: u64,
    /// Recv-Q 1: only the FIN unread.
    pub fin_unread: u64,
    /// Recv-Q > 1: data unread.
    pub unread_data: u64,
}

/// The CLOSE_WAIT / FIN_WAIT_2 sockets of one process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SocketSummary {
    pub close_wait: u64,
    pub close_wait_stale: u64,
    /// Connections waiting, never accepted, in this process's listen queues.
    pub close_wait_unaccepted: u64,
    pub close_wait_unaccepted_stale: u64,
    pub fin_wait2: u64,
    pub fin_wait2_stale: u64,
    pub oldest_close_wait: Option<Duration>,
    pub oldest_fin_wait2: Option<Duration>,
    pub close_wait_recv_q: RecvQueueBreakdown,
    /// The local port most CLOSE_WAIT sockets share, and how many: for a
    /// server, the port its clients connected to.
    pub close_wait_top_local_port: Option<(u16, u64)>,
    /// Whether this process holds a listener on that port.
    pub listens_on_top_local_port: bool,
    /// FIN_WAIT_2 sockets whose other end this same process holds (in
    /// CLOSE_WAIT): it closes neither end.
    pub fin_wait2_to_self: u64,
    /// TCP sockets it holds that are in no TCP table (reset, never
    /// connected), and of those the ones held at least `dead_socket_age`.
    pub dead: u64,
    pub dead_stale: u64,
    pub oldest_dead: Option<Duration>,
    /// Half-open: ESTABLISHED connections that received nothing for at
    /// least `idle_age`, with no keepalive, whose peer is not known alive.
    pub idle_established: u64,
    /// Of those, the ones whose peer was on this host and is gone.
    pub idle_peer_gone: u64,
    pub oldest_idle: Option<Duration>,
    /// Connected UNIX stream/seqpacket sockets whose peer closed, and of
    /// those the ones seen so for at least `dead_socket_age`.
    pub unix_close_wait: u64,
    pub unix_close_wait_stale: u64,
    pub oldest_unix_close_wait: Option<Duration>,
}

impl SocketSummary {
    /// Every flagged socket it holds or keeps waiting in its queues.
    pub fn flagged(&self) -> u64 {
        self.close_wait
            + self.fin_wait2
            + self.close_wait_unaccepted
            + self.dead
            + self.idle_established
            + self.unix_close_wait
    }

    /// Of those, the ones old enough to count as leaks.
    pub fn stale(&self) -> u64 {
        self.close_wait_stale
            + self.fin_wait2_stale
            + self.close_wait_unaccepted_stale
            + self.dead_stale
            + self.idle_established
            + self.unix_close_wait_stale
    }
}

/// Sockets of one process to one remote address in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub remote: SocketAddr,
    pub state: TcpState,
    pub count: u64,
    pub oldest: Duration,
    /// The sum of their Recv-Q, as the kernel reports it: for a CLOSE_WAIT
    /// socket it counts the peer's FIN (one sequence number) until the
    /// program reads EOF.
    pub recv_q_bytes: u64,
    /// Of these CLOSE_WAIT sockets, those whose EOF the program never read
    /// (Recv-Q ≥ 1: the FIN, and any data before it, is still queued).
    pub fin_unread: u64,
    /// Data bytes received and not read: Recv-Q without those FINs.
    pub unread_bytes: u64,
    /// The other end, when it is on this host (that of the first socket of
    /// the group for which the scan could tell).
    pub local: Option<PeerEnd>,
}

/// The other end of a connection on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEnd {
    /// A socket held by a process (index into `Snapshot::processes`).
    Owned { process: usize, state: TcpState },
    /// A socket no file refers to: the peer closed it (a FIN_WAIT_2
    /// orphan the kernel times out, or a connection never accepted).
    Orphan { state: TcpState },
    /// A socket no readable process holds.
    Unowned { state: TcpState },
    /// No socket has the reverse addresses: the peer closed, or vanished.
    Gone,
}

impl PeerEnd {
    fn of(peer: Option<LocalPeer>, owners: &FxHashMap<u64, attribution::Owners>) -> Option<Self> {
        Some(match peer? {
            LocalPeer::Gone => PeerEnd::Gone,
            LocalPeer::Socket { state, inode: 0 } => PeerEnd::Orphan { state },
            LocalPeer::Socket { state, inode } => {
                match owners.get(&inode).and_then(|o| o.first()) {
                    Some(&process) => PeerEnd::Owned { process, state },
                    None => PeerEnd::Unowned { state },
                }
            }
        })
    }
}

/// A listener a process holds whose accept queue is not empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenQueue {
    pub local: SocketAddr,
    /// Connections waiting to be accepted.
    pub queue: u32,
    /// The listen backlog: past it, the kernel drops new connections.
    pub backlog: u32,
}

impl ListenQueue {
    /// How full the queue is: 1.0 at the backlog (a backlog of 0 still
    /// holds one connection).
    pub fn ratio(&self) -> f64 {
        f64::from(self.queue) / f64::from(self.backlog.max(1))
    }
}

/// Ephemeral ports in use from one local address to one destination, and
/// who holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct PortFact {
    pub netns: NetnsId,
    pub local_ip: IpAddr,
    pub remote: SocketAddr,
    /// Sockets in every state, TIME_WAIT included.
    pub in_use: u64,
    pub time_wait: u64,
    /// The size of the namespace's `ip_local_port_range`.
    pub range_size: u64,
    /// `in_use / range_size`: at 1, connect() fails with EADDRNOTAVAIL.
    pub ratio: f64,
    /// (index into `Snapshot::processes`, sockets it holds), most first;
    /// named only near exhaustion (`defaults::PORT_OWNER_FLOOR`): below it,
    /// only the sockets looked up for another check would be named.
    pub owners: Vec<(usize, u64)>,
}

/// How many destinations the analysis keeps: the busiest of the host.
pub const MAX_PORT_FACTS: usize = 20;

/// Sockets no process is blamed for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unattributed {
    /// FIN_WAIT_2 with no inode: the program closed; the kernel times it out.
    pub fin_wait2_orphans: u64,
    /// CLOSE_WAIT with no inode: in a listener's accept queue.
    pub close_wait_unaccepted: u64,
    /// Had an inode, but no process we could read held it.
    pub close_wait_unknown_owner: u64,
    pub fin_wait2_unknown_owner: u64,
    /// Of those without a known owner, the stale ones.
    pub close_wait_unknown_owner_stale: u64,
    pub fin_wait2_unknown_owner_stale: u64,
}

impl Unattributed {
    /// Stale sockets that no process we could read held.
    pub fn unknown_owner_stale(&self) -> u64 {
        self.close_wait_unknown_owner_stale + self.fin_wait2_unknown_owner_stale
    }
}

/// What one process holds, as the checks see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Held {
    pub sockets: SocketSummary,
    /// By count, then oldest.
    pub peers: Vec<Peer>,
    /// The same, grouped by what they mean.
    pub peer_groups: Vec<super::groups::PeerGroup>,
    /// Namespaces of the flagged sockets it holds.
    pub netns: Vec<NetnsId>,
    /// Listeners whose queues hold its unaccepted connections.
    pub queue_listeners: Vec<SocketAddr>,
    /// Its listeners with connections waiting to be accepted, fullest first.
    pub listeners: Vec<ListenQueue>,
}

/// The result of the pass: per process (index into `Snapshot::processes`),
/// and the rest.
#[derive(Default)]
pub struct Attribution {
    by_process: FxHashMap<usize, Acc>,
    /// (process, port) for every listener a process holds.
    listening: FxHashSet<(usize, u16)>,
    pub unattributed: Unattributed,
    /// The busiest destinations of the host, by share of their range.
    pub ports: Vec<PortFact>,
}

impl Attribution {
    /// What process `index` holds (empty if nothing flagged).
    /// `grouped`: with its [`Held::peer_groups`].
    pub fn take(&mut self, index: usize, grouped: bool) -> Held {
        match self.by_process.remove(&index) {
            Some(acc) => acc.finish(index, &self.listening, grouped),
            None => Held::default(),
        }
    }
}

/// Attributes every flagged socket of the snapshot, aged with `history`.
pub fn attribute(
    snapshot: &Snapshot,
    history: &History,
    settings: &Settings,
    now: SystemTime,
) -> Attribution {
    let pass = Pass {
        snapshot,
        history,
        settings,
        now,
        owners: attribution::owners_by_inode(snapshot),
    };
    let mut out = Attribution {
        listening: snapshot
            .listeners
            .iter()
            .flat_map(|l| pass.holders(l.inode).map(move |o| (o, l.local.port())))
            .collect(),
        ..Attribution::default()
    };
    out.ports = port_facts(snapshot, &pass.owners);
    pass.queues(&mut out);
    pass.dead(&mut out);
    pass.unix(&mut out);
    pass.idle(&mut out);
    pass.flagged(&mut out);
    out
}

/// What the attribution pass reads.
struct Pass<'a> {
    snapshot: &'a Snapshot,
    history: &'a History,
    settings: &'a Settings,
    now: SystemTime,
    owners: FxHashMap<u64, attribution::Owners>,
}

impl Pass<'_> {
    /// The processes holding socket `inode`.
    fn holders(&self, inode: u64) -> impl Iterator<Item = usize> + '_ {
        self.owners.get(&inode).into_iter().flatten().copied()
    }

    /// Listeners with connections waiting, to their owners.
    fn queues(&self, out: &mut Attribution) {
        for l in self.snapshot.listeners.iter().filter(|l| l.queue > 0) {
            for o in self.holders(l.inode) {
                out.by_process.entry(o).or_default().listening(l);
            }
        }
    }

    /// Each process's dead sockets, aged from first sight.
    fn dead(&self, out: &mut Attribution) {
        for (i, p) in self.snapshot.processes.iter().enumerate() {
            for s in &p.dead {
                let age = self.history.dead_age(p.key, s.inode, self.now);
                let stale = age >= self.settings.dead_socket_age;
                out.by_process.entry(i).or_default().dead(age, stale);
            }
        }
    }

    /// UNIX sockets whose peer closed, to their owners.
    fn unix(&self, out: &mut Attribution) {
        for s in &self.snapshot.unix {
            let age = self.history.unix_age(s, self.now);
            let stale = age >= self.settings.dead_socket_age;
            for o in self.holders(s.inode) {
                out.by_process.entry(o).or_default().unix(age, stale);
            }
        }
    }

    /// Idle connections whose peer is not known alive, to their owners.
    fn idle(&self, out: &mut Attribution) {
        for s in &self.snapshot.idle {
            let idle = self.history.idle_for(s, self.now);
            let alive = matches!(
                s.peer,
                Some(LocalPeer::Socket {
                    state: TcpState::Established,
                    ..
                })
            );
            if idle < self.settings.idle_age || alive {
                continue;
            }
            let end = PeerEnd::of(s.peer, &self.owners);
            for o in self.holders(s.inode) {
                out.by_process.entry(o).or_default().half_open(s, idle, end);
            }
        }
    }

    /// CLOSE_WAIT and FIN_WAIT_2 sockets: to their owners, to the owner of
    /// the listener whose queue holds them, or counted as no one's.
    fn flagged(&self, out: &mut Attribution) {
        let listeners = ListenerIndex::new(&self.snapshot.listeners);
        let settings = self.settings;
        for s in &self.snapshot.sockets {
            let age = self.history.age(s, self.now);
            let un = &mut out.unattributed;
            match (s.state, s.inode) {
                (TcpState::CloseWait, 0) => {
                    un.close_wait_unaccepted += 1;
                    let matching = listeners.matching(s.netns, s.local);
                    let stale = age >= settings.close_wait_age;
                    let owners = attribution::queue_owners(&matching, &self.owners);
                    for o in owners.unwrap_or_default() {
                        let listening = matching.iter().map(|l| l.local);
                        out.by_process
                            .entry(o)
                            .or_default()
                            .queued(s, stale, listening);
                    }
                }
                (TcpState::FinWait2, 0) => un.fin_wait2_orphans += 1,
                (TcpState::CloseWait, inode) if !self.owners.contains_key(&inode) => {
                    un.close_wait_unknown_owner += 1;
                    un.close_wait_unknown_owner_stale += u64::from(age >= settings.close_wait_age);
                }
                (TcpState::FinWait2, inode) if !self.owners.contains_key(&inode) => {
                    un.fin_wait2_unknown_owner += 1;
                    un.fin_wait2_unknown_owner_stale += u64::from(age >= settings.fin_wait2_age);
                }
                (state @ (TcpState::CloseWait | TcpState::FinWait2), inode) => {
                    let min_age = if state == TcpState::CloseWait {
                        settings.close_wait_age
                    } else {
                        settings.fin_wait2_age
                    };
                    let end = PeerEnd::of(s.peer, &self.owners);
                    for o in self.holders(inode) {
                        let acc = out.by_process.entry(o).or_default();
                        acc.owned(s, age, age >= min_age, end);
                    }
                }
                _ => {} // the filtered dump holds only the two states above
            }
        }
    }
}

/// Every namespace's busiest destinations, fullest first, with their owners.
fn port_facts(snapshot: &Snapshot, owners: &FxHashMap<u64, attribution::Owners>) -> Vec<PortFact> {
    let mut facts: Vec<PortFact> = snapshot
        .namespaces
        .iter()
        .filter_map(|ns| Some((ns.id, ns.ports.as_ref()?)))
        .flat_map(|(netns, used)| {
            let size = used.range.size();
            used.destinations.iter().map(move |d| PortFact {
                netns,
                local_ip: d.local_ip,
                remote: d.remote,
                in_use: d.in_use,
                time_wait: d.time_wait,
                range_size: size,
                ratio: d.in_use as f64 / size.max(1) as f64,
                owners: Vec::new(),
            })
        })
        .collect();
    facts.sort_by(|a, b| b.ratio.total_cmp(&a.ratio).then(b.in_use.cmp(&a.in_use)));
    facts.truncate(MAX_PORT_FACTS);
    for f in facts
        .iter_mut()
        .filter(|f| f.ratio >= crate::defaults::PORT_OWNER_FLOOR)
    {
        let Some(d) = snapshot
            .namespaces
            .iter()
            .find(|ns| ns.id == f.netns)
            .and_then(|ns| ns.ports.as_ref())
            .and_then(|u| {
                u.destinations
                    .iter()
                    .find(|d| d.local_ip == f.local_ip && d.remote == f.remote)
            })
        else {
            continue;
        };
        let mut by_owner: FxHashMap<usize, u64> = FxHashMap::default();
        for inode in &d.inodes {
            for &o in owners.get(inode).into_iter().flatten() {
                *by_owner.entry(o).or_default() += 1;
            }
        }
        f.owners = by_owner.into_iter().collect();
        f.owners.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    facts
}

/// Accumulates one process's sockets.
#[derive(Default)]
struct Acc {
    summary: SocketSummary,
    peers: FxHashMap<(SocketAddr, TcpState), Peer>,
    conns: Vec<super::groups::Conn>,
    netns: Vec<NetnsId>,
    queue_listeners: Vec<SocketAddr>,
    listeners: Vec<ListenQueue>,
    close_wait_local_ports: FxHashMap<u16, u64>,
    /// (netns, local, remote) of owned CLOSE_WAIT and FIN_WAIT_2 sockets.
    close_wait_ends: FxHashSet<(NetnsId, SocketAddr, SocketAddr)>,
    fin_wait2_ends: Vec<(NetnsId, SocketAddr, SocketAddr)>,
}

fn older(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.max(b)))
}

impl Acc {
    fn in_netns(&mut self, netns: NetnsId) {
        if !self.netns.contains(&netns) {
            self.netns.push(netns);
        }
    }

    /// A UNIX socket of this process whose peer closed, seen so `age`.
    fn unix(&mut self, age: Duration, stale: bool) {
        let sum = &mut self.summary;
        sum.unix_close_wait += 1;
        sum.unix_close_wait_stale += u64::from(stale);
        sum.oldest_unix_close_wait = older(sum.oldest_unix_close_wait, age);
    }

    /// A TCP socket of this process in no table, held `age`.
    fn dead(&mut self, age: Duration, stale: bool) {
        let sum = &mut self.summary;
        sum.dead += 1;
        sum.dead_stale += u64::from(stale);
        sum.oldest_dead = older(sum.oldest_dead, age);
    }

    /// A listener of this process with connections waiting in its queue.
    fn listening(&mut self, l: &Listener) {
        if !self.listeners.iter().any(|q| q.local == l.local) {
            self.listeners.push(ListenQueue {
                local: l.local,
                queue: l.queue,
                backlog: l.backlog,
            });
        }
        self.in_netns(l.netns);
    }

    /// A connection waiting, never accepted, in a queue of this process's
    /// listeners (those at `listening`).
    fn queued(&mut self, s: &TcpSocket, stale: bool, listening: impl Iterator<Item = SocketAddr>) {
        self.summary.close_wait_unaccepted += 1;
        self.summary.close_wait_unaccepted_stale += u64::from(stale);
        for local in listening {
            if !self.queue_listeners.contains(&local) {
                self.queue_listeners.push(local);
            }
        }
        self.in_netns(s.netns);
    }

    /// An ESTABLISHED connection idle `idle`, no keepalive, peer not known
    /// alive.
    fn half_open(&mut self, s: &TcpSocket, idle: Duration, end: Option<PeerEnd>) {
        let sum = &mut self.summary;
        sum.idle_established += 1;
        sum.idle_peer_gone += u64::from(end == Some(PeerEnd::Gone));
        sum.oldest_idle = older(sum.oldest_idle, idle);
        self.peer(s, idle, end);
        self.in_netns(s.netns);
    }

    /// Counts `s` in the group of its remote address and state.
    fn peer(&mut self, s: &TcpSocket, age: Duration, end: Option<PeerEnd>) {
        let peer = self.peers.entry((s.remote, s.state)).or_insert(Peer {
            remote: s.remote,
            state: s.state,
            count: 0,
            oldest: Duration::ZERO,
            recv_q_bytes: 0,
            fin_unread: 0,
            unread_bytes: 0,
            local: None,
        });
        peer.count += 1;
        peer.oldest = peer.oldest.max(age);
        peer.recv_q_bytes += u64::from(s.recv_q);
        let (fin, bytes) = super::groups::queued(s.state, s.recv_q);
        peer.fin_unread += fin;
        peer.unread_bytes += bytes;
        peer.local = peer.local.or(end);
        self.conns.push(super::groups::Conn {
            local: s.local,
            remote: s.remote,
            state: s.state,
            age,
            recv_q: s.recv_q,
            end,
        });
    }

    fn owned(&mut self, s: &TcpSocket, age: Duration, stale: bool, end: Option<PeerEnd>) {
        let sum = &mut self.summary;
        match s.state {
            TcpState::CloseWait => {
                sum.close_wait += 1;
                sum.oldest_close_wait = older(sum.oldest_close_wait, age);
                *self
                    .close_wait_local_ports
                    .entry(s.local.port())
                    .or_default() += 1;
                self.close_wait_ends.insert((s.netns, s.local, s.remote));
                if stale {
                    sum.close_wait_stale += 1;
                    match s.recv_q {
                        0 => sum.close_wait_recv_q.eof_read += 1,
                        1 => sum.close_wait_recv_q.fin_unread += 1,
                        _ => sum.close_wait_recv_q.unread_data += 1,
                    }
                }
            }
            _ => {
                sum.fin_wait2 += 1;
                sum.oldest_fin_wait2 = older(sum.oldest_fin_wait2, age);
                self.fin_wait2_ends.push((s.netns, s.local, s.remote));
                if stale {
                    sum.fin_wait2_stale += 1;
                }
            }
        }
        self.peer(s, age, end);
        self.in_netns(s.netns);
    }

    /// The summary of process `index`, with what needs all its sockets:
    /// its top local port, its sockets to itself, its peers in order.
    fn finish(self, index: usize, listening: &FxHashSet<(usize, u16)>, grouped: bool) -> Held {
        let mut summary = self.summary;
        summary.close_wait_top_local_port = self
            .close_wait_local_ports
            .iter()
            .max_by_key(|(port, n)| (**n, std::cmp::Reverse(**port)))
            .map(|(port, n)| (*port, *n));
        summary.listens_on_top_local_port = summary
            .close_wait_top_local_port
            .is_some_and(|(port, _)| listening.contains(&(index, port)));
        summary.fin_wait2_to_self = self
            .fin_wait2_ends
            .iter()
            .filter(|(ns, local, remote)| self.close_wait_ends.contains(&(*ns, *remote, *local)))
            .count() as u64;
        let mut peers: Vec<Peer> = self.peers.into_values().collect();
        peers.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.oldest.cmp(&a.oldest))
                .then(a.remote.cmp(&b.remote))
                .then(a.state.cmp(&b.state))
        });
        let mut listeners = self.listeners;
        listeners.sort_by(|a, b| b.ratio().total_cmp(&a.ratio()).then(a.local.cmp(&b.local)));
        Held {
            sockets: summary,
            peer_groups: if grouped {
                super::groups::group(&self.conns, index, listening)
            } else {
                Vec::new()
            },
            peers,
            netns: self.netns,
            queue_listeners: self.queue_listeners,
            listeners,
        }
    }
}
