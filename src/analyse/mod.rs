//! Pure analysis: `(Snapshot, History, Settings, now) → Analysis`.
//!
//! No clock, no I/O: every input is an argument, so every rule is tested on
//! synthetic snapshots. The output says, per process, what it holds, how old,
//! to whom, and which checks fire, worst process first.

pub mod attribution;
pub mod growth;
pub mod hints;
pub mod history;
pub mod thresholds;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::model::{NetnsId, Snapshot, StateCounts, TcpSocket, TcpState};

pub use growth::{Growth, GrowthRule};
pub use history::History;
pub use thresholds::{Check, Levels, Severity, Thresholds};

/// What the analysis is asked to judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// CLOSE_WAIT at least this old is stale.
    pub close_wait_age: Duration,
    /// Owned FIN_WAIT_2 at least this old is stale.
    pub fin_wait2_age: Duration,
    pub thresholds: Thresholds,
    /// List exactly these processes and weigh only them in the status.
    pub only_pids: Option<Vec<u32>>,
    /// Also list processes using at least this share of their fd limit (the
    /// agent exports series for them before they reach a finding).
    pub list_fd_utilization: Option<f64>,
    /// Also list processes whose fd count grows, however far the limit.
    pub list_growing: bool,
    /// What counts as sustained fd growth.
    pub growth: GrowthRule,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            close_wait_age: Duration::from_secs(60),
            fin_wait2_age: Duration::from_secs(60),
            thresholds: Thresholds::default(),
            only_pids: None,
            list_fd_utilization: None,
            list_growing: false,
            growth: GrowthRule::default(),
        }
    }
}

/// The overall verdict (and the Nagios exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
}

impl Status {
    pub fn from_severity(s: Option<Severity>) -> Status {
        match s {
            None => Status::Ok,
            Some(Severity::Warning) => Status::Warning,
            Some(Severity::Critical) => Status::Critical,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// Nagios plugin convention: 0 OK, 1 WARNING, 2 CRITICAL.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
        }
    }
}

/// One check that fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    pub message: String,
    pub hint: String,
}

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
}

/// Sockets of one process to one remote address in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub remote: SocketAddr,
    pub state: TcpState,
    pub count: u64,
    pub oldest: Duration,
    pub recv_q_bytes: u64,
}

/// One process worth showing.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessAnalysis {
    /// Index into `Snapshot::processes`.
    pub index: usize,
    pub sockets: SocketSummary,
    /// By count, then oldest.
    pub peers: Vec<Peer>,
    pub findings: Vec<Finding>,
    /// Namespaces of the flagged sockets it holds.
    pub netns: Vec<NetnsId>,
    /// Listeners whose queues hold its unaccepted connections.
    pub queue_listeners: Vec<SocketAddr>,
    /// Sustained fd growth over the history window.
    pub growth: Option<Growth>,
    /// When it reaches its fd limit at that rate (growing, limit known).
    pub fd_exhaustion: Option<Duration>,
}

impl ProcessAnalysis {
    pub fn severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Sockets no process is blamed for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Unattributed {
    /// FIN_WAIT_2 with no inode: the program closed; the kernel times it out.
    pub fin_wait2_orphans: u64,
    /// CLOSE_WAIT with no inode: in a listener's accept queue.
    pub close_wait_unaccepted: u64,
    /// Had an inode, but no process we could read held it.
    pub close_wait_unknown_owner: u64,
    pub fin_wait2_unknown_owner: u64,
}

/// The verdict on one snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub status: Status,
    pub tcp_states: StateCounts,
    pub unattributed: Unattributed,
    /// Listed processes, worst first.
    pub processes: Vec<ProcessAnalysis>,
    pub host_findings: Vec<Finding>,
    /// `only_pids` entries the snapshot does not hold.
    pub missing_pids: Vec<u32>,
    /// Stale CLOSE_WAIT / FIN_WAIT_2 sockets (older than their check's
    /// minimum age) that no process we could read held.
    pub unknown_owner_stale: u64,
    /// False when stale sockets lack an owner *and* some processes could not
    /// be read: a leak may then go unnamed (owners shown are never wrong).
    /// Fresh sockets without an owner do not count: most were closed between
    /// the dump and the walk, or sit under an fd a cached walk did not
    /// re-read (it looks for them at the next scan), and none of them can be
    /// a leak yet.
    pub attribution_complete: bool,
}

/// Accumulates one process's sockets.
#[derive(Default)]
struct Acc {
    summary: SocketSummary,
    peers: FxHashMap<(SocketAddr, TcpState), Peer>,
    netns: Vec<NetnsId>,
    queue_listeners: Vec<SocketAddr>,
    close_wait_local_ports: FxHashMap<u16, u64>,
    /// (netns, local, remote) of owned CLOSE_WAIT and FIN_WAIT_2 sockets.
    close_wait_ends: rustc_hash::FxHashSet<(NetnsId, SocketAddr, SocketAddr)>,
    fin_wait2_ends: Vec<(NetnsId, SocketAddr, SocketAddr)>,
}

fn older(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.max(b)))
}

impl Acc {
    fn owned(&mut self, s: &TcpSocket, age: Duration, stale: bool) {
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
        let peer = self.peers.entry((s.remote, s.state)).or_insert(Peer {
            remote: s.remote,
            state: s.state,
            count: 0,
            oldest: Duration::ZERO,
            recv_q_bytes: 0,
        });
        peer.count += 1;
        peer.oldest = peer.oldest.max(age);
        peer.recv_q_bytes += u64::from(s.recv_q);
        if !self.netns.contains(&s.netns) {
            self.netns.push(s.netns);
        }
    }
}

/// Judges a snapshot.
pub fn analyse(
    snapshot: &Snapshot,
    history: &History,
    settings: &Settings,
    now: SystemTime,
) -> Analysis {
    let owners = attribution::owners_by_inode(snapshot);
    let listeners = attribution::ListenerIndex::new(&snapshot.listeners);
    // (process, port) for every listener a process holds.
    let listening: rustc_hash::FxHashSet<(usize, u16)> = snapshot
        .listeners
        .iter()
        .flat_map(|l| {
            owners
                .get(&l.inode)
                .into_iter()
                .flatten()
                .map(move |&o| (o, l.local.port()))
        })
        .collect();
    let mut accs: FxHashMap<usize, Acc> = FxHashMap::default();
    let mut un = Unattributed::default();
    let (mut cw_unknown_stale, mut fw2_unknown_stale) = (0u64, 0u64);

    for s in &snapshot.sockets {
        let age = history.age(s, now);
        match (s.state, s.inode) {
            (TcpState::CloseWait, 0) => {
                un.close_wait_unaccepted += 1;
                let matching = listeners.matching(s.netns, s.local);
                if let Some(queue_owners) = attribution::queue_owners(&matching, &owners) {
                    let stale = age >= settings.close_wait_age;
                    for o in queue_owners {
                        let acc = accs.entry(o).or_default();
                        acc.summary.close_wait_unaccepted += 1;
                        if stale {
                            acc.summary.close_wait_unaccepted_stale += 1;
                        }
                        for l in &matching {
                            if !acc.queue_listeners.contains(&l.local) {
                                acc.queue_listeners.push(l.local);
                            }
                        }
                        if !acc.netns.contains(&s.netns) {
                            acc.netns.push(s.netns);
                        }
                    }
                }
            }
            (TcpState::FinWait2, 0) => un.fin_wait2_orphans += 1,
            (state @ (TcpState::CloseWait | TcpState::FinWait2), inode) => {
                let min_age = if state == TcpState::CloseWait {
                    settings.close_wait_age
                } else {
                    settings.fin_wait2_age
                };
                let stale = age >= min_age;
                match owners.get(&inode) {
                    Some(os) => {
                        for &o in os {
                            accs.entry(o).or_default().owned(s, age, stale);
                        }
                    }
                    None if state == TcpState::CloseWait => {
                        un.close_wait_unknown_owner += 1;
                        cw_unknown_stale += u64::from(stale);
                    }
                    None => {
                        un.fin_wait2_unknown_owner += 1;
                        fw2_unknown_stale += u64::from(stale);
                    }
                }
            }
            _ => {} // the filtered dump holds only the two states above
        }
    }

    let t = &settings.thresholds;
    let mut processes = Vec::new();
    for (index, p) in snapshot.processes.iter().enumerate() {
        let wanted = settings
            .only_pids
            .as_ref()
            .map(|pids| pids.contains(&p.key.pid));
        let acc = accs.remove(&index);
        let mut findings = Vec::new();
        let (summary, mut peers, netns, queue_listeners) = match acc {
            Some(a) => {
                let mut summary = a.summary;
                summary.close_wait_top_local_port = a
                    .close_wait_local_ports
                    .iter()
                    .max_by_key(|(port, n)| (**n, std::cmp::Reverse(**port)))
                    .map(|(port, n)| (*port, *n));
                summary.listens_on_top_local_port = summary
                    .close_wait_top_local_port
                    .is_some_and(|(port, _)| listening.contains(&(index, port)));
                summary.fin_wait2_to_self = a
                    .fin_wait2_ends
                    .iter()
                    .filter(|(ns, local, remote)| {
                        a.close_wait_ends.contains(&(*ns, *remote, *local))
                    })
                    .count() as u64;
                (
                    summary,
                    a.peers.into_values().collect::<Vec<_>>(),
                    a.netns,
                    a.queue_listeners,
                )
            }
            None => Default::default(),
        };
        peers.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.oldest.cmp(&a.oldest))
                .then(a.remote.cmp(&b.remote))
                .then(a.state.cmp(&b.state))
        });
        if let Some(severity) = t.close_wait_stale.at_least(summary.close_wait_stale) {
            let (message, hint) = hints::close_wait(&summary, &peers, settings.close_wait_age);
            findings.push(Finding {
                check: Check::CloseWaitStale,
                severity,
                message,
                hint,
            });
        }
        if let Some(severity) = t.fin_wait2_stale.at_least(summary.fin_wait2_stale) {
            let (message, hint) = hints::fin_wait2(&summary, &peers, settings.fin_wait2_age);
            findings.push(Finding {
                check: Check::FinWait2Stale,
                severity,
                message,
                hint,
            });
        }
        if let Some(severity) = t
            .close_wait_unaccepted
            .at_least(summary.close_wait_unaccepted_stale)
        {
            let (message, hint) = hints::unaccepted(
                summary.close_wait_unaccepted_stale,
                &queue_listeners,
                settings.close_wait_age,
            );
            findings.push(Finding {
                check: Check::CloseWaitUnaccepted,
                severity,
                message,
                hint,
            });
        }
        if let (Some(ratio), Some(limit)) = (p.fds.utilization(), p.fds.limit) {
            if let Some(severity) = t.fd_utilization.at_least(ratio) {
                let (message, hint) =
                    hints::fd_utilization(p.fds.open, limit, p.fds.sockets, p.fds.deleted_files);
                findings.push(Finding {
                    check: Check::FdUtilization,
                    severity,
                    message,
                    hint,
                });
            }
        }
        let growth = history.fds.growth(&p.key, &settings.growth);
        let fd_exhaustion = growth
            .zip(p.fds.limit)
            .map(|(g, limit)| g.time_to(p.fds.open, limit));
        if let (Some(g), Some(eta), Some(limit)) = (growth, fd_exhaustion, p.fds.limit) {
            if let Some(severity) = t.fd_exhaustion.at_most(eta) {
                let (message, hint) =
                    hints::fd_exhaustion(&g, eta, p.fds.open, limit, &summary, &peers);
                findings.push(Finding {
                    check: Check::FdExhaustion,
                    severity,
                    message,
                    hint,
                });
            }
        }
        if let Some(severity) = t.deleted_open_files.at_least(p.fds.deleted_bytes) {
            let (message, hint) = hints::deleted_open_files(
                p.fds.deleted_files,
                p.fds.deleted_bytes,
                p.largest_deleted.as_ref(),
            );
            findings.push(Finding {
                check: Check::DeletedOpenFiles,
                severity,
                message,
                hint,
            });
        }
        let holds_any = summary.close_wait + summary.fin_wait2 + summary.close_wait_unaccepted > 0;
        let busy = settings
            .list_fd_utilization
            .zip(p.fds.utilization())
            .is_some_and(|(at, u)| u >= at);
        let growing = settings.list_growing && growth.is_some();
        let listed = wanted.unwrap_or(holds_any || busy || growing || !findings.is_empty());
        if listed {
            processes.push(ProcessAnalysis {
                index,
                sockets: summary,
                peers,
                findings,
                netns,
                queue_listeners,
                growth,
                fd_exhaustion,
            });
        }
    }
    processes.sort_by(|a, b| worse(snapshot, a, b));

    let mut host_findings = Vec::new();
    if let (Some(open), Some(max)) = (snapshot.host.open_fds, snapshot.host.max_fds) {
        if max > 0 {
            if let Some(severity) = t.host_fd_utilization.at_least(open as f64 / max as f64) {
                let (message, hint) = hints::host_fd_utilization(open, max);
                host_findings.push(Finding {
                    check: Check::HostFdUtilization,
                    severity,
                    message,
                    hint,
                });
            }
        }
    }
    for (check, state, stale, levels, min_age) in [
        (
            Check::CloseWaitStale,
            TcpState::CloseWait,
            cw_unknown_stale,
            t.close_wait_stale,
            settings.close_wait_age,
        ),
        (
            Check::FinWait2Stale,
            TcpState::FinWait2,
            fw2_unknown_stale,
            t.fin_wait2_stale,
            settings.fin_wait2_age,
        ),
    ] {
        if let Some(severity) = levels.at_least(stale) {
            let (message, hint) = hints::unknown_owner(state, stale, min_age);
            host_findings.push(Finding {
                check,
                severity,
                message,
                hint,
            });
        }
    }

    let missing_pids = settings
        .only_pids
        .iter()
        .flatten()
        .copied()
        .filter(|pid| !snapshot.processes.iter().any(|p| p.key.pid == *pid))
        .collect();
    let process_worst = processes.iter().filter_map(ProcessAnalysis::severity).max();
    let host_worst = host_findings.iter().map(|f| f.severity).max();
    let status = Status::from_severity(if settings.only_pids.is_some() {
        process_worst
    } else {
        process_worst.max(host_worst)
    });
    let unknown_owner_stale = cw_unknown_stale + fw2_unknown_stale;
    Analysis {
        status,
        tcp_states: snapshot.state_counts(),
        unattributed: un,
        processes,
        host_findings,
        missing_pids,
        unknown_owner_stale,
        attribution_complete: unknown_owner_stale == 0 || snapshot.skipped.permission_denied == 0,
    }
}

/// Worst first: severity, stale sockets, all flagged sockets, fd use, then pid.
fn worse(snapshot: &Snapshot, a: &ProcessAnalysis, b: &ProcessAnalysis) -> std::cmp::Ordering {
    let stale = |p: &ProcessAnalysis| {
        p.sockets.close_wait_stale
            + p.sockets.fin_wait2_stale
            + p.sockets.close_wait_unaccepted_stale
    };
    let total = |p: &ProcessAnalysis| {
        p.sockets.close_wait + p.sockets.fin_wait2 + p.sockets.close_wait_unaccepted
    };
    let util = |p: &ProcessAnalysis| {
        snapshot
            .processes
            .get(p.index)
            .and_then(|p| p.fds.utilization())
            .unwrap_or(0.0)
    };
    let pid = |p: &ProcessAnalysis| snapshot.processes.get(p.index).map_or(0, |p| p.key.pid);
    b.severity()
        .cmp(&a.severity())
        .then(stale(b).cmp(&stale(a)))
        .then(total(b).cmp(&total(a)))
        .then(util(b).total_cmp(&util(a)))
        .then(pid(a).cmp(&pid(b)))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
