//! `--format json`: one object (schema_version 1), for scripts and other
//! tools. Its fields are declared here, as the contract they are, and
//! mapped from the analysis: renaming an analysis field cannot change the
//! JSON. docs/report.schema.json describes every field for its readers; the
//! tests validate every report they make against it, so a field added here
//! must be added there. The fields every consumer may rely on come first in
//! each struct; the extensions are marked.

use std::io;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::Report;
use crate::analyse::held::PeerEnd;
use crate::analyse::{self, ProcessAnalysis, Unattributed};
use crate::model::{Freshness, ProcessDetails, ProcessInfo, Snapshot, StateCounts};

#[derive(Serialize)]
struct Json<'a> {
    schema_version: u32,
    /// The version of the binary that wrote the report.
    closewatch_version: &'static str,
    status: &'static str,
    scanned_at: String,
    host: Host<'a>,
    tcp_states: States<'a>,
    unattributed: Unowned,
    processes: Vec<Process<'a>>,
    findings: Vec<Finding<'a>>,
    errors: Vec<Error<'a>>,
    // Extensions.
    /// Processes left out by `--top`.
    processes_omitted: usize,
    scan_duration_seconds: f64,
    /// How sockets were mapped to processes ("procfs").
    attribution: &'static str,
    attribution_complete: bool,
    skipped_processes: Skipped,
    namespaces: Vec<Namespace<'a>>,
    /// Processes whose network namespace could not be read.
    netns_unknown_processes: u64,
    /// Reads that failed without failing the scan, each leaving a figure
    /// unknown.
    read_failures: ReadFailures<'a>,
    /// The busiest destinations by ephemeral ports in use (at most 20).
    ports: Vec<Ports<'a>>,
    /// Whether idle connections were looked for (half_open), as for
    /// dead sockets.
    idle_checked: &'static str,
    /// "fresh" when every namespace's UNIX sockets were dumped, else "unknown".
    unix_checked: &'static str,
    /// Whether dead sockets were looked for: "fresh" (this scan), "carried"
    /// (the agent's last check, between all-states dumps) or "unknown".
    dead_sockets_checked: &'static str,
    /// The processes counted in `skipped_processes.permission_denied` and
    /// `netns_unknown_processes`, by pid, each with why and the remedy (at
    /// most MAX_SKIPPED; `skipped_omitted` counts the rest).
    skipped: Vec<SkippedProcess<'a>>,
    skipped_omitted: usize,
}

/// A process the scan could not read.
#[derive(Serialize)]
struct SkippedProcess<'a> {
    pid: u32,
    comm: &'a str,
    /// What could not be read, and the errno.
    reason: String,
    /// What refuses it, and what would let closewatch read it.
    cause: String,
    remedy: String,
    kernel_thread: bool,
    /// "uid_or_capabilities", "security_policy", "not_permission",
    /// "readable_again" or "unknown".
    cause_code: &'static str,
    /// The reads refused: "fd_directory", "fd_links", "netns".
    refused: Vec<&'static str>,
    errno: Option<String>,
    /// What the kernel's uid and capability rules need of closewatch.
    needs_capabilities: Vec<String>,
    /// Its permitted capabilities that closewatch's effective set lacks.
    missing_capabilities: Vec<String>,
    /// Its effective uid and capability sets (null: unknown).
    uid: Option<u32>,
    cap_permitted: Option<String>,
    cap_effective: Option<String>,
}

#[derive(Serialize)]
struct ReadFailures<'a> {
    /// Why /run/netns could not be read (null: it could).
    run_netns: Option<&'a str>,
    /// fds whose file may be deleted that could not be stat-ed.
    fd_stat: u64,
    /// Namespaces whose ephemeral port range could not be read.
    port_range: u64,
    /// Namespaces whose /proc/net/netstat could not be read.
    netstat: u64,
    /// Listed processes whose unit could not be read (`unit_error`).
    cgroup: u64,
}

#[derive(Serialize)]
struct Namespace<'a> {
    netns: u64,
    scanned: bool,
    /// Why it was not scanned (null when it was).
    reason: Option<&'a str>,
    processes: u64,
    tcp_states: Option<States<'a>>,
}

#[derive(Serialize)]
struct Host<'a> {
    hostname: &'a str,
    kernel: &'a str,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
}

/// Every named state in kernel order, zeros included.
struct States<'a>(&'a StateCounts);

impl Serialize for States<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(11))?;
        for (name, n) in self.0.named() {
            map.serialize_entry(name, &n)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Skipped {
    vanished: u64,
    permission_denied: u64,
    failed: u64,
}

#[derive(Serialize)]
struct Process<'a> {
    pid: u32,
    comm: &'a str,
    exe: Option<&'a str>,
    cmdline: Option<&'a str>,
    unit: Option<&'a str>,
    netns: Vec<u64>,
    fds: Fds,
    sockets: Sockets,
    peers: Vec<Peer<'a>>,
    /// Listeners with connections waiting to be accepted.
    listeners: Vec<Listening>,
    findings: Vec<Finding<'a>>,
    // Extensions.
    /// Peers beyond the first MAX_PEERS (a server's CLOSE_WAIT sockets each
    /// have a peer of their own: the clients' ephemeral ports).
    peers_omitted: usize,
    /// The same sockets grouped by what they mean: a server's by the local
    /// address it accepted them on, with the client hosts; a client's by
    /// the server.
    peer_groups: Vec<Group<'a>>,
    uid: Option<u32>,
    start_time_ticks: u64,
    /// Why the unit is unknown (null: `unit` is right, null or not).
    unit_error: Option<&'a str>,
    fd_growth: Option<FdGrowth>,
}

#[derive(Serialize)]
struct FdGrowth {
    per_second: f64,
    grew_by: i64,
    over_seconds: f64,
    sockets_grew_by: i64,
    /// Time to the soft limit at this rate; null when the limit is unknown.
    exhaustion_seconds: Option<f64>,
}

#[derive(Serialize)]
struct Fds {
    open: u64,
    limit: Option<u64>,
    sockets: u64,
    deleted_files: u64,
    deleted_bytes: u64,
    // Extensions: the rest of the breakdown, and false when the fd table could
    // not be read (counts only).
    pipes: u64,
    files: u64,
    anon_inodes: u64,
    readable: bool,
}

/// Peers listed per process; the rest are counted in `peers_omitted`.
pub const MAX_PEERS: usize = 100;

fn secs(d: Duration) -> f64 {
    // Milliseconds are the kernel's resolution.
    (d.as_millis() as f64) / 1000.0
}

#[derive(Serialize)]
struct Sockets {
    close_wait: u64,
    close_wait_stale: u64,
    close_wait_unaccepted: u64,
    fin_wait2: u64,
    fin_wait2_stale: u64,
    oldest_close_wait_seconds: Option<f64>,
    oldest_fin_wait2_seconds: Option<f64>,
    /// TCP sockets in no table; null when the scan could not look.
    dead: Option<u64>,
    dead_stale: Option<u64>,
    /// Half-open connections (the `half_open` count); null when the scan
    /// could not look.
    idle_established: Option<u64>,
    /// Connected UNIX stream sockets whose peer closed; null when the scan
    /// could not dump UNIX sockets.
    unix_close_wait: Option<u64>,
    unix_close_wait_stale: Option<u64>,
    // Extensions.
    close_wait_unaccepted_stale: u64,
    oldest_dead_seconds: Option<f64>,
    idle_peer_gone: u64,
    oldest_idle_seconds: Option<f64>,
}

#[derive(Serialize)]
struct Peer<'a> {
    remote: String,
    state: &'static str,
    count: u64,
    oldest_seconds: f64,
    recv_q_bytes: u64,
    /// CLOSE_WAIT sockets whose EOF the program never read.
    fin_unread: u64,
    /// Data bytes queued and not read (Recv-Q without those FINs).
    unread_bytes: u64,
    /// The other end, when it is on this host: its owner (null when no
    /// readable process holds it) and its state ("gone": no such socket).
    peer_pid: Option<u32>,
    peer_comm: Option<&'a str>,
    peer_state: Option<&'static str>,
}

/// Sockets no process is blamed for.
#[derive(Serialize)]
struct Unowned {
    fin_wait2_orphans: u64,
    close_wait_unaccepted: u64,
    // Extensions.
    close_wait_unknown_owner: u64,
    fin_wait2_unknown_owner: u64,
}

impl From<&Unattributed> for Unowned {
    fn from(u: &Unattributed) -> Self {
        Unowned {
            fin_wait2_orphans: u.fin_wait2_orphans,
            close_wait_unaccepted: u.close_wait_unaccepted,
            close_wait_unknown_owner: u.close_wait_unknown_owner,
            fin_wait2_unknown_owner: u.fin_wait2_unknown_owner,
        }
    }
}

#[derive(Serialize)]
struct Finding<'a> {
    check: &'static str,
    severity: &'static str,
    message: &'a str,
    hint: &'a str,
}

fn findings(findings: &[analyse::Finding]) -> Vec<Finding<'_>> {
    findings
        .iter()
        .map(|f| Finding {
            check: f.check.name(),
            severity: f.severity.name(),
            message: &f.message,
            hint: &f.hint,
        })
        .collect()
}

#[derive(Serialize)]
struct Ports<'a> {
    netns: u64,
    local_ip: String,
    remote: String,
    in_use: u64,
    time_wait: u64,
    range_size: u64,
    ratio: f64,
    /// Named near exhaustion only (at half the range or more).
    owners: Vec<PortOwner<'a>>,
}

#[derive(Serialize)]
struct PortOwner<'a> {
    pid: u32,
    comm: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct Listening {
    local: String,
    queue: u32,
    backlog: u32,
}

#[derive(Serialize)]
struct Error<'a> {
    stage: &'static str,
    message: &'a str,
}

/// Writes the report as one pretty-printed JSON object and a newline.
pub fn write(report: &Report<'_>, out: &mut dyn io::Write) -> io::Result<()> {
    let snap = report.snapshot;
    let a = report.analysis;
    // Every process the analysis kept, worst first, unless `--top` caps them.
    let top = report.listing.top.unwrap_or(usize::MAX);
    let processes: Vec<Process<'_>> = a
        .processes
        .iter()
        .zip(report.details.iter().chain(std::iter::repeat(&None)))
        .take(top)
        .filter_map(|(p, d)| process(p, snap.processes.get(p.index)?, d.as_ref(), snap))
        .collect();
    let processes_omitted = a.processes.len().saturating_sub(top);
    let json = Json {
        schema_version: 1,
        closewatch_version: env!("CARGO_PKG_VERSION"),
        status: a.status.name(),
        scanned_at: humantime::format_rfc3339_seconds(snap.scanned_at).to_string(),
        host: Host {
            hostname: &snap.host.hostname,
            kernel: &snap.host.kernel,
            open_fds: snap.host.open_fds,
            max_fds: snap.host.max_fds,
        },
        tcp_states: States(&a.tcp_states),
        unattributed: Unowned::from(&a.unattributed),
        processes,
        processes_omitted,
        findings: findings(&a.host_findings),
        errors: report
            .errors
            .iter()
            .map(|e| Error {
                stage: e.stage.name(),
                message: &e.message,
            })
            .collect(),
        scan_duration_seconds: snap.duration.as_secs_f64(),
        attribution: snap.attribution.name(),
        attribution_complete: a.attribution_complete,
        skipped_processes: Skipped {
            vanished: snap.skipped.vanished,
            permission_denied: snap.skipped.permission_denied,
            failed: snap.skipped.failed,
        },
        namespaces: namespaces(snap),
        netns_unknown_processes: snap.netns_unknown_processes,
        ports: a.ports.iter().map(|p| ports(p, snap)).collect(),
        dead_sockets_checked: freshness(snap.dead),
        idle_checked: freshness(snap.idle_check),
        unix_checked: freshness(snap.unix_check),
        skipped: skipped(a),
        skipped_omitted: a
            .skipped
            .as_ref()
            .map_or(0, |s| s.processes.len().saturating_sub(super::MAX_SKIPPED)),
        read_failures: read_failures(report),
    };
    // Rendered first so that a write error keeps its kind (EPIPE stays EPIPE).
    let mut bytes = serde_json::to_vec_pretty(&json).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes)
}

/// One listed process, with what was read of it (`details`).
fn process<'a>(
    p: &'a ProcessAnalysis,
    info: &'a ProcessInfo,
    details: Option<&'a ProcessDetails>,
    snap: &'a Snapshot,
) -> Option<Process<'a>> {
    let mut netns: Vec<u64> = p.netns.iter().map(|n| n.0).collect();
    if let Some(own) = details.and_then(|d| d.netns) {
        if !netns.contains(&own.0) {
            netns.insert(0, own.0);
        }
    }
    Some(Process {
        pid: info.key.pid,
        comm: &info.comm,
        exe: details.and_then(|d| d.exe.as_deref()),
        cmdline: details.map(|d| d.cmdline.as_str()),
        unit: details.and_then(|d| d.unit.as_deref()),
        netns,
        fds: fds(info),
        sockets: sockets(&p.sockets, snap),
        peers_omitted: p.peers.len().saturating_sub(MAX_PEERS),
        peers: p
            .peers
            .iter()
            .take(MAX_PEERS)
            .map(|peer| peer_of(peer, snap))
            .collect(),
        peer_groups: p
            .peer_groups
            .iter()
            .take(MAX_PEERS)
            .map(|g| group_of(g, snap))
            .collect(),
        listeners: p
            .listeners
            .iter()
            .map(|q| Listening {
                local: q.local.to_string(),
                queue: q.queue,
                backlog: q.backlog,
            })
            .collect(),
        findings: findings(&p.findings),
        uid: info.uid,
        start_time_ticks: info.key.start_time,
        unit_error: details.and_then(|d| d.unit_error.as_deref()),
        fd_growth: p.growth.map(|g| FdGrowth {
            per_second: g.per_second,
            grew_by: g.grew_by,
            over_seconds: secs(g.over),
            sockets_grew_by: g.sockets_grew_by,
            exhaustion_seconds: p.fd_exhaustion.map(secs),
        }),
    })
}

/// One destination's ephemeral ports, its owners named.
fn ports<'a>(p: &'a crate::analyse::PortFact, snap: &'a Snapshot) -> Ports<'a> {
    Ports {
        netns: p.netns.0,
        local_ip: p.local_ip.to_string(),
        remote: p.remote.to_string(),
        in_use: p.in_use,
        time_wait: p.time_wait,
        range_size: p.range_size,
        ratio: p.ratio,
        owners: p
            .owners
            .iter()
            .filter_map(|&(i, count)| {
                let info = snap.processes.get(i)?;
                Some(PortOwner {
                    pid: info.key.pid,
                    comm: &info.comm,
                    count,
                })
            })
            .collect(),
    }
}

fn fds(info: &ProcessInfo) -> Fds {
    Fds {
        open: info.fds.open,
        limit: info.fds.limit,
        sockets: info.fds.sockets,
        deleted_files: info.fds.deleted_files,
        deleted_bytes: info.fds.deleted_bytes,
        pipes: info.fds.pipes,
        files: info.fds.files,
        anon_inodes: info.fds.anon_inodes,
        readable: info.fds_walked,
    }
}

/// The socket counts; those a scan did not look for are null.
fn sockets(s: &crate::analyse::SocketSummary, snap: &Snapshot) -> Sockets {
    let dead_known = snap.dead != Freshness::Unknown;
    let idle_known = snap.idle_check != Freshness::Unknown;
    let unix_known = snap.unix_check != Freshness::Unknown;
    Sockets {
        close_wait: s.close_wait,
        close_wait_stale: s.close_wait_stale,
        close_wait_unaccepted: s.close_wait_unaccepted,
        fin_wait2: s.fin_wait2,
        fin_wait2_stale: s.fin_wait2_stale,
        oldest_close_wait_seconds: s.oldest_close_wait.map(secs),
        oldest_fin_wait2_seconds: s.oldest_fin_wait2.map(secs),
        close_wait_unaccepted_stale: s.close_wait_unaccepted_stale,
        dead: dead_known.then_some(s.dead),
        dead_stale: dead_known.then_some(s.dead_stale),
        oldest_dead_seconds: s.oldest_dead.map(secs),
        idle_established: idle_known.then_some(s.idle_established),
        unix_close_wait: unix_known.then_some(s.unix_close_wait),
        unix_close_wait_stale: unix_known.then_some(s.unix_close_wait_stale),
        idle_peer_gone: s.idle_peer_gone,
        oldest_idle_seconds: s.oldest_idle.map(secs),
    }
}

/// One peer, and its other end when it is on this host.
#[derive(Serialize)]
struct Group<'a> {
    side: &'static str,
    local: Option<String>,
    remote: Option<String>,
    state: &'static str,
    count: u64,
    oldest_seconds: f64,
    fin_unread: u64,
    unread_bytes: u64,
    hosts: Vec<GroupHost>,
    hosts_omitted: usize,
    peer_pid: Option<u32>,
    peer_comm: Option<&'a str>,
    peer_state: Option<&'static str>,
}

#[derive(Serialize)]
struct GroupHost {
    ip: String,
    count: u64,
    oldest_seconds: f64,
}

/// The other end of a connection on this host: its owner, if readable,
/// and its state ("gone": no such socket).
fn end_of(end: Option<PeerEnd>, snap: &Snapshot) -> (Option<&ProcessInfo>, Option<&'static str>) {
    match end {
        Some(PeerEnd::Owned { process, state }) => {
            (snap.processes.get(process), Some(state.name()))
        }
        Some(PeerEnd::Orphan { state } | PeerEnd::Unowned { state }) => (None, Some(state.name())),
        Some(PeerEnd::Gone) => (None, Some("gone")),
        None => (None, None),
    }
}

fn group_of<'a>(g: &crate::analyse::groups::PeerGroup, snap: &'a Snapshot) -> Group<'a> {
    use crate::analyse::groups::Side;
    let (side, local, remote) = match g.side {
        Side::Server { local } => ("server", Some(local.to_string()), None),
        Side::Client { remote } => ("client", None, Some(remote.to_string())),
    };
    let (owner, state) = end_of(g.local, snap);
    Group {
        side,
        local,
        remote,
        state: g.state.name(),
        count: g.count,
        oldest_seconds: secs(g.oldest),
        fin_unread: g.fin_unread,
        unread_bytes: g.unread_bytes,
        hosts: g
            .hosts
            .iter()
            .map(|&(ip, count, oldest)| GroupHost {
                ip: ip.to_string(),
                count,
                oldest_seconds: secs(oldest),
            })
            .collect(),
        hosts_omitted: g.hosts_omitted,
        peer_pid: owner.map(|o| o.key.pid),
        peer_comm: owner.map(|o| o.comm.as_str()),
        peer_state: state,
    }
}

fn peer_of<'a>(peer: &crate::analyse::Peer, snap: &'a Snapshot) -> Peer<'a> {
    let (owner, state) = end_of(peer.local, snap);
    Peer {
        remote: peer.remote.to_string(),
        state: peer.state.name(),
        count: peer.count,
        oldest_seconds: secs(peer.oldest),
        recv_q_bytes: peer.recv_q_bytes,
        fin_unread: peer.fin_unread,
        unread_bytes: peer.unread_bytes,
        peer_pid: owner.map(|o| o.key.pid),
        peer_comm: owner.map(|o| o.comm.as_str()),
        peer_state: state,
    }
}

/// The first MAX_SKIPPED processes the scan could not read.
fn skipped(a: &analyse::Analysis) -> Vec<SkippedProcess<'_>> {
    let Some(skipped) = a.skipped.as_ref() else {
        return Vec::new();
    };
    skipped
        .processes
        .iter()
        .take(super::MAX_SKIPPED)
        .map(|p| {
            let d = &p.diagnosis;
            let target = p.process.target.as_ref().ok();
            SkippedProcess {
                pid: p.process.pid,
                comm: &p.process.comm,
                reason: p.reason(),
                cause: d.cause(),
                remedy: d.remedy(),
                kernel_thread: p.process.kernel_thread,
                cause_code: d.code(),
                refused: p.process.refused.iter().map(|r| r.read.name()).collect(),
                errno: d.errno.map(analyse::access::errno_name),
                needs_capabilities: d.needs.names(),
                missing_capabilities: d.missing.names(),
                uid: target.map(|t| t.euid()),
                cap_permitted: target.map(|t| t.permitted.to_string()),
                cap_effective: target.map(|t| t.effective.to_string()),
            }
        })
        .collect()
}

/// Reads that failed without failing the scan.
fn read_failures<'a>(report: &Report<'a>) -> ReadFailures<'a> {
    let snap = report.snapshot;
    ReadFailures {
        run_netns: snap.unread.run_netns.as_deref(),
        fd_stat: snap.unread.fd_stat,
        port_range: snap.unread.port_range,
        netstat: snap.unread.netstat,
        cgroup: report
            .details
            .iter()
            .flatten()
            .filter(|d| d.unit_error.is_some())
            .count() as u64,
    }
}

fn freshness(f: Freshness) -> &'static str {
    match f {
        Freshness::Fresh => "fresh",
        Freshness::Carried => "carried",
        Freshness::Unknown => "unknown",
    }
}

/// Every namespace: those scanned, with their counts, then those not.
fn namespaces(snap: &Snapshot) -> Vec<Namespace<'_>> {
    snap.namespaces
        .iter()
        .map(|ns| Namespace {
            netns: ns.id.0,
            scanned: true,
            reason: None,
            processes: ns.processes,
            tcp_states: Some(States(&ns.states)),
        })
        .chain(snap.unscanned_netns.iter().map(|u| Namespace {
            netns: u.id.0,
            scanned: false,
            reason: Some(&u.message),
            processes: u.processes,
            tcp_states: None,
        }))
        .collect()
}
