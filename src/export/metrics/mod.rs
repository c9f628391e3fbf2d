//! Prometheus metrics of one scan, rendered once and served until the next.
//!
//! The families are declared as data in [`families`]; rendering fills them,
//! one small section each. Each scan builds a fresh registry, so a process
//! that exits or recovers loses its series at the next scan without any
//! bookkeeping. Counters that must survive across scans (scans, errors,
//! reloads) are kept by the agent and written into each registry. Command
//! lines never become labels.

pub mod families;

use std::collections::BTreeMap;

use prometheus::core::Collector;
use prometheus::{
    CounterVec, Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::analyse::{
    Analysis, ProcessAnalysis, Severity, SocketSummary, Thresholds, Unattributed,
};
use crate::collect::own_process::OwnProcess;
use crate::model::{Attribution, Freshness, ProcessInfo, Snapshot, Stage, TcpState};
use families::{Family, Kind};

/// The Content-Type Prometheus expects for the text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the agent counts across scans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    pub scans: u64,
    /// Scans with errors, by stage.
    pub scan_errors: BTreeMap<&'static str, u64>,
    /// Scans by the backend that named the sockets' owners.
    pub scans_by_attribution: BTreeMap<&'static str, u64>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
    /// What the HTTP server counted, as of the scan.
    pub http: crate::export::http::HttpCounts,
}

impl AgentStats {
    /// Counts one scan, its backend, and each stage it had errors in (once
    /// per scan, however many errors the stage had).
    pub fn count_scan(&mut self, snap: &Snapshot) {
        self.scans += 1;
        *self
            .scans_by_attribution
            .entry(snap.attribution.name())
            .or_default() += 1;
        let mut stages: Vec<&'static str> = snap.errors.iter().map(|e| e.stage.name()).collect();
        stages.sort_unstable();
        stages.dedup();
        for stage in stages {
            *self.scan_errors.entry(stage).or_default() += 1;
        }
    }
}

/// One scan as the exporter sees it.
pub struct ScanView<'a> {
    pub snapshot: &'a Snapshot,
    pub analysis: &'a Analysis,
    /// The `unit` label of each of `analysis.processes` (at least the
    /// exported prefix): the only detail of a process the exporter gets, so
    /// no command line can become a label.
    pub units: &'a [Option<String>],
    /// Of those, how many are `None` because the cgroup could not be read.
    pub units_unreadable: u64,
    pub thresholds: &'a Thresholds,
    pub max_processes: usize,
    /// The agent's own process, read after the scan; `None` when it could
    /// not be read (counted in `closewatch_read_failures`).
    pub own_process: Option<OwnProcess>,
}

/// The registry of one scan, handing out the families of [`families`].
struct Metrics {
    registry: Registry,
    /// Every family handed out, in order.
    used: Vec<&'static str>,
}

impl Metrics {
    fn add<C: Collector + Clone + 'static>(
        &mut self,
        f: &Family,
        kind: Kind,
        make: impl FnOnce(Opts, &[&str]) -> Result<C, prometheus::Error>,
    ) -> Result<C, prometheus::Error> {
        if f.kind != kind {
            return Err(prometheus::Error::Msg(format!(
                "{} is declared a {:?}, used as a {kind:?}",
                f.name, f.kind
            )));
        }
        let c = make(Opts::new(f.name, f.help), f.labels)?;
        self.registry.register(Box::new(c.clone()))?;
        self.used.push(f.name);
        Ok(c)
    }

    fn gauge(&mut self, f: &Family) -> Result<GaugeVec, prometheus::Error> {
        self.add(f, Kind::Gauge, GaugeVec::new)
    }

    fn int_gauge(&mut self, f: &Family) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(f, Kind::IntGauge, IntGaugeVec::new)
    }

    fn counter(&mut self, f: &Family) -> Result<IntCounterVec, prometheus::Error> {
        self.add(f, Kind::IntCounter, IntCounterVec::new)
    }

    fn float_counter(&mut self, f: &Family) -> Result<CounterVec, prometheus::Error> {
        self.add(f, Kind::Counter, CounterVec::new)
    }

    /// A family without labels, set to `value`.
    fn set(&mut self, f: &Family, value: i64) -> Result<(), prometheus::Error> {
        self.int_gauge(f)?.with_label_values(NO_LABELS).set(value);
        Ok(())
    }
}

const NO_LABELS: &[&str] = &[];

/// Renders the metrics text of one scan.
pub fn render(view: &ScanView<'_>, stats: &AgentStats) -> Result<String, prometheus::Error> {
    let m = fill(view, stats)?;
    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&m.registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// Every section's families, filled.
fn fill(view: &ScanView<'_>, stats: &AgentStats) -> Result<Metrics, prometheus::Error> {
    let mut m = Metrics {
        registry: Registry::new(),
        used: Vec::with_capacity(families::ALL.len()),
    };
    namespaces(&mut m, view.snapshot)?;
    ports(&mut m, view.snapshot, view.analysis)?;
    unattributed(&mut m, &view.analysis.unattributed)?;
    processes(&mut m, view)?;
    host(&mut m, view.snapshot, view.thresholds)?;
    scan(&mut m, view, stats)?;
    agent(&mut m, stats)?;
    own_process(&mut m, view.own_process.as_ref())?;
    Ok(m)
}

/// Sockets by state per namespace, and the namespaces not scanned.
fn namespaces(m: &mut Metrics, snap: &Snapshot) -> Result<(), prometheus::Error> {
    let tcp = m.int_gauge(&families::TCP_SOCKETS)?;
    for ns in &snap.namespaces {
        let netns = ns.id.to_string();
        for (state, n) in ns.states.named() {
            tcp.with_label_values(&[netns.as_str(), state])
                .set(n as i64);
        }
    }
    m.set(&families::NETNS_SCANNED, snap.namespaces.len() as i64)?;
    let overflows = m.counter(&families::LISTEN_OVERFLOWS)?;
    let drops = m.counter(&families::LISTEN_DROPS)?;
    for ns in &snap.namespaces {
        let netns = ns.id.to_string();
        if let Some(n) = ns.listen_overflows {
            overflows.with_label_values(&[netns.as_str()]).inc_by(n);
        }
        if let Some(n) = ns.listen_drops {
            drops.with_label_values(&[netns.as_str()]).inc_by(n);
        }
    }
    let unscanned = m.int_gauge(&families::NETNS_UNSCANNED)?;
    for u in &snap.unscanned_netns {
        unscanned
            .with_label_values(&[u.id.to_string().as_str(), u.reason])
            .set(1);
    }
    m.set(
        &families::NETNS_UNKNOWN_PROCESSES,
        snap.netns_unknown_processes as i64,
    )
}

/// Ephemeral ports in use by the busiest destinations, and each
/// namespace's range.
fn ports(m: &mut Metrics, snap: &Snapshot, a: &Analysis) -> Result<(), prometheus::Error> {
    let in_use = m.int_gauge(&families::EPHEMERAL_PORTS_IN_USE)?;
    for p in &a.ports {
        let (netns, local_ip, remote) = (
            p.netns.to_string(),
            p.local_ip.to_string(),
            p.remote.to_string(),
        );
        in_use
            .with_label_values(&[netns.as_str(), local_ip.as_str(), remote.as_str()])
            .set(p.in_use as i64);
    }
    let size = m.int_gauge(&families::EPHEMERAL_PORT_RANGE_SIZE)?;
    for ns in &snap.namespaces {
        if let Some(used) = &ns.ports {
            size.with_label_values(&[ns.id.to_string().as_str()])
                .set(used.range.size() as i64);
        }
    }
    Ok(())
}

/// Sockets no process is blamed for, by state and reason.
fn unattributed(m: &mut Metrics, u: &Unattributed) -> Result<(), prometheus::Error> {
    let un = m.int_gauge(&families::UNATTRIBUTED_TCP_SOCKETS)?;
    for (state, reason, n) in [
        ("fin_wait2", "orphan", u.fin_wait2_orphans),
        ("close_wait", "unaccepted", u.close_wait_unaccepted),
        ("close_wait", "unknown_owner", u.close_wait_unknown_owner),
        ("fin_wait2", "unknown_owner", u.fin_wait2_unknown_owner),
    ] {
        un.with_label_values(&[state, reason]).set(n as i64);
    }
    Ok(())
}

/// The per-process families, for the processes worth a look (worst first,
/// at most `max_processes`).
fn processes(m: &mut Metrics, view: &ScanView<'_>) -> Result<(), prometheus::Error> {
    let f = ProcessFamilies {
        held: m.int_gauge(&families::PROCESS_TCP_SOCKETS)?,
        stale: m.int_gauge(&families::PROCESS_STALE_TCP_SOCKETS)?,
        oldest: m.gauge(&families::PROCESS_OLDEST_TCP_SOCKET_AGE)?,
        unaccepted: m.int_gauge(&families::PROCESS_UNACCEPTED_TCP_SOCKETS)?,
        open_fds: m.int_gauge(&families::PROCESS_OPEN_FDS)?,
        max_fds: m.int_gauge(&families::PROCESS_MAX_FDS)?,
        exhaustion: m.gauge(&families::PROCESS_FD_EXHAUSTION)?,
        deleted: m.int_gauge(&families::PROCESS_DELETED_OPEN_BYTES)?,
        listen_queue: m.gauge(&families::PROCESS_LISTEN_QUEUE_RATIO)?,
        idle: m.int_gauge(&families::PROCESS_IDLE_TCP_SOCKETS)?,
        unix: m.int_gauge(&families::PROCESS_UNIX_SOCKETS)?,
        unix_stale: m.int_gauge(&families::PROCESS_STALE_UNIX_SOCKETS)?,
        finding: m.int_gauge(&families::PROCESS_FINDING)?,
    };
    let (snap, a) = (view.snapshot, view.analysis);
    let shown = a.processes.len().min(view.max_processes);
    m.set(
        &families::PROCESSES_TRUNCATED,
        (a.processes.len() - shown) as i64,
    )?;
    for (i, p) in a.processes.iter().take(shown).enumerate() {
        if let Some(info) = snap.processes.get(p.index) {
            let unit = view.units.get(i).and_then(|u| u.as_deref()).unwrap_or("");
            f.fill(p, info, unit, snap);
        }
    }
    Ok(())
}

/// The per-process families of one scan.
struct ProcessFamilies {
    held: IntGaugeVec,
    stale: IntGaugeVec,
    oldest: GaugeVec,
    unaccepted: IntGaugeVec,
    open_fds: IntGaugeVec,
    max_fds: IntGaugeVec,
    exhaustion: GaugeVec,
    deleted: IntGaugeVec,
    listen_queue: GaugeVec,
    idle: IntGaugeVec,
    unix: IntGaugeVec,
    unix_stale: IntGaugeVec,
    finding: IntGaugeVec,
}

impl ProcessFamilies {
    /// The series of one process, labelled with its pid, comm and `unit`.
    fn fill(&self, p: &ProcessAnalysis, info: &ProcessInfo, unit: &str, snap: &Snapshot) {
        let pid = info.key.pid.to_string();
        let labels = [pid.as_str(), info.comm.as_str(), unit];
        self.tcp(&labels, &p.sockets, snap);
        self.fds(&labels, p, info);
        for q in &p.listeners {
            let local = q.local.to_string();
            let l = [labels[0], labels[1], labels[2], local.as_str()];
            self.listen_queue.with_label_values(&l).set(q.ratio());
        }
        for f in &p.findings {
            let l = [
                labels[0],
                labels[1],
                labels[2],
                f.check.name(),
                f.severity.name(),
            ];
            self.finding.with_label_values(&l).set(1);
        }
    }

    /// Held, stale and oldest by state (dead sockets only when the scan
    /// knows them); UNIX and idle counts when the scan looked.
    fn tcp(&self, labels: &[&str; 3], s: &SocketSummary, snap: &Snapshot) {
        let with = |extra: &'static str| [labels[0], labels[1], labels[2], extra];
        let dead = ("dead", s.dead, s.dead_stale, s.oldest_dead);
        for (state, total, n_stale, age) in [
            (
                TcpState::CloseWait.name(),
                s.close_wait,
                s.close_wait_stale,
                s.oldest_close_wait,
            ),
            (
                TcpState::FinWait2.name(),
                s.fin_wait2,
                s.fin_wait2_stale,
                s.oldest_fin_wait2,
            ),
        ]
        .into_iter()
        .chain((snap.dead != Freshness::Unknown).then_some(dead))
        {
            let l = with(state);
            self.held.with_label_values(&l).set(total as i64);
            self.stale.with_label_values(&l).set(n_stale as i64);
            if let Some(age) = age {
                self.oldest.with_label_values(&l).set(age.as_secs_f64());
            }
        }
        if snap.unix_check != Freshness::Unknown {
            let l = with("close_wait");
            self.unix
                .with_label_values(&l)
                .set(s.unix_close_wait as i64);
            self.unix_stale
                .with_label_values(&l)
                .set(s.unix_close_wait_stale as i64);
        }
        if snap.idle_check != Freshness::Unknown {
            self.idle
                .with_label_values(labels)
                .set(s.idle_established as i64);
        }
        if s.close_wait_unaccepted > 0 {
            self.unaccepted
                .with_label_values(labels)
                .set(s.close_wait_unaccepted as i64);
        }
    }

    /// Open fds, the limit, deleted bytes and the time to exhaustion.
    fn fds(&self, labels: &[&str; 3], p: &ProcessAnalysis, info: &ProcessInfo) {
        self.open_fds
            .with_label_values(labels)
            .set(info.fds.open as i64);
        if let Some(limit) = info.fds.limit {
            self.max_fds.with_label_values(labels).set(limit as i64);
        }
        if info.fds_walked {
            self.deleted
                .with_label_values(labels)
                .set(info.fds.deleted_bytes as i64);
        }
        if let Some(eta) = p.fd_exhaustion {
            self.exhaustion
                .with_label_values(labels)
                .set(eta.as_secs_f64());
        }
    }
}

/// The configured thresholds and the host's file handles.
fn host(m: &mut Metrics, snap: &Snapshot, t: &Thresholds) -> Result<(), prometheus::Error> {
    let thresholds = m.gauge(&families::THRESHOLD)?;
    for (check, levels) in t.iter() {
        for (severity, level) in [
            (Severity::Warning, levels.warning),
            (Severity::Critical, levels.critical),
        ] {
            thresholds
                .with_label_values(&[check.name(), severity.name()])
                .set(level.as_f64());
        }
    }
    let host_open = m.int_gauge(&families::HOST_OPEN_FDS)?;
    let host_max = m.int_gauge(&families::HOST_MAX_FDS)?;
    if let Some(n) = snap.host.open_fds {
        host_open.with_label_values(NO_LABELS).set(n as i64);
    }
    if let Some(n) = snap.host.max_fds {
        host_max.with_label_values(NO_LABELS).set(n as i64);
    }
    Ok(())
}

/// What the scan cost and could not see.
fn scan(m: &mut Metrics, view: &ScanView<'_>, stats: &AgentStats) -> Result<(), prometheus::Error> {
    let snap = view.snapshot;
    m.gauge(&families::SCAN_DURATION)?
        .with_label_values(NO_LABELS)
        .set(snap.duration.as_secs_f64());
    m.set(&families::SCAN_FD_LINKS_READ, snap.walk.links_read as i64)?;
    m.set(
        &families::SCAN_FD_TABLES_REUSED,
        snap.walk.processes_reused as i64,
    )?;
    m.counter(&families::SCANS)?
        .with_label_values(NO_LABELS)
        .inc_by(stats.scans);
    let by = m.counter(&families::SCANS_BY_ATTRIBUTION)?;
    for backend in Attribution::ALL {
        let name = backend.name();
        by.with_label_values(&[name])
            .inc_by(stats.scans_by_attribution.get(name).copied().unwrap_or(0));
    }
    let errors = m.counter(&families::SCAN_ERRORS)?;
    for stage in Stage::SCAN {
        errors
            .with_label_values(&[stage.name()])
            .inc_by(stats.scan_errors.get(stage.name()).copied().unwrap_or(0));
    }
    let secs = snap
        .scanned_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    m.gauge(&families::LAST_SCAN_TIMESTAMP)?
        .with_label_values(NO_LABELS)
        .set(secs);
    let skipped = m.int_gauge(&families::PROCESSES_SKIPPED)?;
    for (reason, n) in [
        ("vanished", snap.skipped.vanished),
        ("permission_denied", snap.skipped.permission_denied),
        ("failed", snap.skipped.failed),
    ] {
        skipped.with_label_values(&[reason]).set(n as i64);
    }
    let unread = m.int_gauge(&families::READ_FAILURES)?;
    for (source, n) in [
        ("run_netns", u64::from(snap.unread.run_netns.is_some())),
        ("fd_stat", snap.unread.fd_stat),
        ("port_range", snap.unread.port_range),
        ("netstat", snap.unread.netstat),
        ("cgroup", view.units_unreadable),
        ("own_process", u64::from(view.own_process.is_none())),
    ] {
        unread.with_label_values(&[source]).set(n as i64);
    }
    m.set(
        &families::ATTRIBUTION_COMPLETE,
        i64::from(view.analysis.attribution_complete),
    )
}

/// The agent's own state: reloads and build.
fn agent(m: &mut Metrics, stats: &AgentStats) -> Result<(), prometheus::Error> {
    let reloads = m.counter(&families::CONFIG_RELOADS)?;
    reloads
        .with_label_values(&["success"])
        .inc_by(stats.reloads_ok);
    reloads
        .with_label_values(&["failure"])
        .inc_by(stats.reloads_failed);
    m.set(
        &families::CONFIG_LAST_RELOAD_SUCCESSFUL,
        i64::from(stats.last_reload_ok),
    )?;
    let refused = m.counter(&families::HTTP_REFUSED)?;
    for (reason, n) in stats.http.refused() {
        refused.with_label_values(&[reason]).inc_by(n);
    }
    m.counter(&families::TLS_HANDSHAKE_FAILURES)?
        .with_label_values(NO_LABELS)
        .inc_by(stats.http.tls_handshake_failures);
    m.int_gauge(&families::BUILD_INFO)?
        .with_label_values(&[
            crate::build_info::VERSION,
            crate::build_info::REVISION,
            crate::build_info::RUSTC,
        ])
        .set(1);
    Ok(())
}

/// The agent's own process, as client libraries export theirs; nothing
/// when it could not be read (never a made-up 0).
fn own_process(m: &mut Metrics, own: Option<&OwnProcess>) -> Result<(), prometheus::Error> {
    let cpu = m.float_counter(&families::OWN_CPU_SECONDS)?;
    let resident = m.int_gauge(&families::OWN_RESIDENT_MEMORY)?;
    let virt = m.int_gauge(&families::OWN_VIRTUAL_MEMORY)?;
    let open = m.int_gauge(&families::OWN_OPEN_FDS)?;
    let max = m.int_gauge(&families::OWN_MAX_FDS)?;
    let start = m.gauge(&families::OWN_START_TIME)?;
    let Some(own) = own else { return Ok(()) };
    let u = &own.usage;
    cpu.with_label_values(NO_LABELS).inc_by(u.cpu_seconds);
    resident
        .with_label_values(NO_LABELS)
        .set(i64::try_from(u.resident_bytes).unwrap_or(i64::MAX));
    virt.with_label_values(NO_LABELS)
        .set(i64::try_from(u.virtual_bytes).unwrap_or(i64::MAX));
    open.with_label_values(NO_LABELS)
        .set(i64::try_from(own.open_fds).unwrap_or(i64::MAX));
    if let Some(n) = own.max_fds {
        max.with_label_values(NO_LABELS)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    start.with_label_values(NO_LABELS).set(u.start_time_seconds);
    Ok(())
}

#[cfg(test)]
mod tests;
