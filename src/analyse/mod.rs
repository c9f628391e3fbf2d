//! Pure analysis: `(Snapshot, History, Settings, now) → Analysis`.
//!
//! No clock, no I/O: every input is an argument, so every rule is tested on
//! synthetic snapshots. One attribution pass ([`held`]) sums up what each
//! process holds; then every check of the table in [`checks`] judges each
//! process and the host; the output lists, worst process first, what each
//! holds, how old, to whom, and which checks fire.

pub mod access;
pub mod attribution;
pub mod checks;
pub mod groups;
pub mod growth;
pub mod held;
pub mod hints;
pub mod history;
pub mod thresholds;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::defaults;
use crate::model::{NetnsId, ProcessInfo, Snapshot, StateCounts};

pub use checks::Check;
pub use growth::{Growth, GrowthRule};
pub use held::{ListenQueue, Peer, PortFact, RecvQueueBreakdown, SocketSummary, Unattributed};
pub use history::History;
pub use thresholds::{Amount, Levels, Severity, Thresholds, Unit};

/// What the analysis is asked to judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// CLOSE_WAIT at least this old is stale.
    pub close_wait_age: Duration,
    /// Owned FIN_WAIT_2 at least this old is stale.
    pub fin_wait2_age: Duration,
    /// Dead TCP sockets and UNIX sockets whose peer closed, held at least
    /// this long, are stale.
    pub dead_socket_age: Duration,
    /// ESTABLISHED sockets idle at least this long without keepalive are
    /// half-open.
    pub idle_age: Duration,
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
    /// Group each process's sockets by meaning (`peer_groups`: the report's
    /// view; the agent, which exports no peers, leaves it off).
    pub group_peers: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            close_wait_age: defaults::CLOSE_WAIT_AGE,
            fin_wait2_age: defaults::FIN_WAIT2_AGE,
            dead_socket_age: defaults::DEAD_SOCKET_AGE,
            idle_age: defaults::IDLE_AGE,
            thresholds: Thresholds::default(),
            only_pids: None,
            list_fd_utilization: None,
            list_growing: false,
            growth: GrowthRule::default(),
            group_peers: true,
        }
    }
}

/// The overall verdict (and the Nagios exit status).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    pub message: String,
    pub hint: String,
}

/// One process worth showing.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessAnalysis {
    /// Index into `Snapshot::processes`.
    pub index: usize,
    pub sockets: SocketSummary,
    /// By count, then oldest.
    pub peers: Vec<Peer>,
    /// The same sockets grouped by what they mean (server by listening
    /// address, client by server), most first.
    pub peer_groups: Vec<groups::PeerGroup>,
    pub findings: Vec<Finding>,
    /// Namespaces of the flagged sockets it holds.
    pub netns: Vec<NetnsId>,
    /// Listeners whose queues hold its unaccepted connections.
    pub queue_listeners: Vec<SocketAddr>,
    /// Its listeners with connections waiting to be accepted, fullest first.
    pub listeners: Vec<ListenQueue>,
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
    /// The host's busiest destinations by ephemeral ports in use.
    pub ports: Vec<PortFact>,
    /// False when stale sockets lack an owner *and* some processes could not
    /// be read: a leak may then go unnamed (owners shown are never wrong).
    /// Fresh sockets without an owner do not count: most were closed between
    /// the dump and the walk, or sit under an fd a cached walk did not
    /// re-read (it looks for them at the next scan), and none of them can be
    /// a leak yet.
    pub attribution_complete: bool,
    /// The processes the scan could not read, each with why and what would
    /// let closewatch read it, when the report examined them (`None`: the
    /// agent, which does not).
    pub skipped: Option<access::Skipped>,
}

/// Judges a snapshot.
pub fn analyse(
    snapshot: &Snapshot,
    history: &History,
    settings: &Settings,
    now: SystemTime,
) -> Analysis {
    let mut attributed = held::attribute(snapshot, history, settings, now);
    let mut processes: Vec<ProcessAnalysis> = snapshot
        .processes
        .iter()
        .enumerate()
        .filter_map(|(index, info)| {
            let p = judge_process(
                index,
                &snapshot.processes,
                attributed.take(index, settings.group_peers),
                history,
                settings,
            );
            listed(&p, info, settings).then_some(p)
        })
        .collect();
    processes.sort_by(|a, b| worse(snapshot, a, b));

    let unattributed = attributed.unattributed;
    let ports = std::mem::take(&mut attributed.ports);
    let skipped = snapshot
        .unreadable
        .as_ref()
        .map(|u| access::judge(u, settings.only_pids.as_deref()));
    let unreadable = skipped.as_ref().and_then(access::Skipped::summary);
    let host_findings = checks::judge_host(
        &checks::HostFacts {
            host: &snapshot.host,
            unattributed: &unattributed,
            ports: &ports,
            processes: &snapshot.processes,
            unreadable: unreadable.as_deref(),
        },
        settings,
    );
    // Without owners (the walk, or forced BPF, failed) no stale socket's
    // owner is known.
    let no_owners = snapshot.owners_unknown();
    let missing_pids = missing_pids(snapshot, settings);
    let process_worst = processes.iter().filter_map(ProcessAnalysis::severity).max();
    let host_worst = host_findings.iter().map(|f| f.severity).max();
    let status = Status::from_severity(if settings.only_pids.is_some() {
        process_worst
    } else {
        process_worst.max(host_worst)
    });
    Analysis {
        status,
        tcp_states: snapshot.state_counts(),
        unattributed,
        processes,
        host_findings,
        missing_pids,
        ports,
        attribution_complete: unattributed.unknown_owner_stale() == 0
            || (snapshot.skipped.permission_denied == 0 && !no_owners),
        skipped,
    }
}

/// The `--pid`s that are no process of the snapshot. None when no owner
/// was looked up (the walk, or forced BPF, failed): nothing is known then.
fn missing_pids(snapshot: &Snapshot, settings: &Settings) -> Vec<u32> {
    if snapshot.owners_unknown() {
        return Vec::new();
    }
    settings
        .only_pids
        .iter()
        .flatten()
        .copied()
        .filter(|pid| !snapshot.processes.iter().any(|p| p.key.pid == *pid))
        // It exists, but its fd table could not be read (skipped says why).
        .filter(|pid| snapshot.denied.fds.binary_search(pid).is_err())
        .collect()
}

/// Runs every check on one process (index `index` of the snapshot).
fn judge_process(
    index: usize,
    processes: &[ProcessInfo],
    held: held::Held,
    history: &History,
    settings: &Settings,
) -> ProcessAnalysis {
    let info = &processes[index];
    let growth = history.fds.growth(&info.key, &settings.growth);
    let fd_exhaustion = growth
        .zip(info.fds.limit)
        .map(|(g, limit)| g.time_to(info.fds.open, limit));
    let findings = checks::judge_process(
        &checks::ProcessFacts {
            info,
            sockets: &held.sockets,
            peers: &held.peers,
            queue_listeners: &held.queue_listeners,
            listeners: &held.listeners,
            growth,
            fd_exhaustion,
            processes,
        },
        settings,
    );
    ProcessAnalysis {
        index,
        sockets: held.sockets,
        peers: held.peers,
        peer_groups: held.peer_groups,
        findings,
        netns: held.netns,
        queue_listeners: held.queue_listeners,
        listeners: held.listeners,
        growth,
        fd_exhaustion,
    }
}

/// Whether a process is listed: exactly those of `--pid` if given; else
/// those holding flagged sockets, with a finding, or (for the agent) busy
/// or growing.
fn listed(p: &ProcessAnalysis, info: &ProcessInfo, settings: &Settings) -> bool {
    if let Some(pids) = &settings.only_pids {
        return pids.contains(&info.key.pid);
    }
    let busy = settings
        .list_fd_utilization
        .zip(info.fds.utilization())
        .is_some_and(|(at, u)| u >= at);
    let growing = settings.list_growing && p.growth.is_some();
    p.sockets.flagged() > 0 || busy || growing || !p.findings.is_empty()
}

/// Worst first: severity, stale sockets, all flagged sockets, fd use, then pid.
fn worse(snapshot: &Snapshot, a: &ProcessAnalysis, b: &ProcessAnalysis) -> std::cmp::Ordering {
    let stale = |p: &ProcessAnalysis| p.sockets.stale();
    let total = |p: &ProcessAnalysis| p.sockets.flagged();
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
