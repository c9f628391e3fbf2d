//! Prometheus metrics of one scan, rendered once and served until the next.
//!
//! Each scan builds a fresh registry, so a process that exits or recovers
//! loses its series at the next scan without any bookkeeping. Counters that
//! must survive across scans (scans, errors, reloads) are kept by the agent
//! and written into each registry. Command lines never become labels.

use std::collections::BTreeMap;

use prometheus::core::Collector;
use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::analyse::{Analysis, Thresholds};
use crate::model::{ScanError, Snapshot, TcpState};

/// The Content-Type Prometheus expects for the text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the agent counts across scans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    pub scans: u64,
    /// Scans with errors, by stage.
    pub scan_errors: BTreeMap<&'static str, u64>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub last_reload_ok: bool,
}

impl AgentStats {
    /// Counts one scan, and each stage it had errors in (once per scan,
    /// however many errors the stage had).
    pub fn count_scan(&mut self, errors: &[ScanError]) {
        self.scans += 1;
        let mut stages: Vec<&'static str> = errors.iter().map(|e| e.stage.name()).collect();
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
    pub thresholds: &'a Thresholds,
    pub max_processes: usize,
}

struct Metrics {
    registry: Registry,
}

impl Metrics {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> Result<C, prometheus::Error> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, prometheus::Error> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn int_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }
}

const NO_LABELS: &[&str] = &[];
const PROC: &[&str] = &["pid", "comm", "unit"];
const PROC_STATE: &[&str] = &["pid", "comm", "unit", "state"];

/// Renders the metrics text of one scan.
pub fn render(view: &ScanView<'_>, stats: &AgentStats) -> Result<String, prometheus::Error> {
    let m = Metrics {
        registry: Registry::new(),
    };
    let snap = view.snapshot;
    let a = view.analysis;

    let tcp = m.int_gauge(
        "closewatch_tcp_sockets",
        "TCP sockets by network namespace (inode of /proc/PID/ns/net) and state. close_wait, fin_wait2 and listen are counted every scan, the other states at least once a minute.",
        &["netns", "state"],
    )?;
    for ns in &snap.namespaces {
        let netns = ns.id.to_string();
        for (state, n) in ns.states.named() {
            tcp.with_label_values(&[netns.as_str(), state])
                .set(n as i64);
        }
    }

    m.int_gauge(
        "closewatch_netns_scanned",
        "Network namespaces dumped by the last scan.",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(snap.namespaces.len() as i64);
    let unscanned = m.int_gauge(
        "closewatch_netns_unscanned",
        "1 for each network namespace the last scan could not dump, by reason (open_denied: needs CAP_SYS_PTRACE; setns_denied: needs CAP_SYS_ADMIN; failed).",
        &["netns", "reason"],
    )?;
    for u in &snap.unscanned_netns {
        unscanned
            .with_label_values(&[u.id.to_string().as_str(), u.reason])
            .set(1);
    }
    m.int_gauge(
        "closewatch_netns_unknown_processes",
        "Processes whose network namespace could not be read (needs CAP_SYS_PTRACE); namespaces only they are in are not scanned.",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(snap.netns_unknown_processes as i64);

    let held = m.int_gauge(
        "closewatch_process_tcp_sockets",
        "CLOSE_WAIT and owned FIN_WAIT_2 sockets held by the process.",
        PROC_STATE,
    )?;
    let stale = m.int_gauge(
        "closewatch_process_stale_tcp_sockets",
        "Of the process's CLOSE_WAIT / FIN_WAIT_2 sockets, those older than the configured age.",
        PROC_STATE,
    )?;
    let oldest = m.gauge(
        "closewatch_process_oldest_tcp_socket_age_seconds",
        "Age of the process's oldest CLOSE_WAIT / FIN_WAIT_2 socket (time since the peer's FIN, or since first seen).",
        PROC_STATE,
    )?;
    let unaccepted = m.int_gauge(
        "closewatch_process_unaccepted_tcp_sockets",
        "CLOSE_WAIT connections waiting, never accepted, in the process's listen queues.",
        PROC,
    )?;
    let open_fds = m.int_gauge(
        "closewatch_process_open_fds",
        "Open file descriptors of the process.",
        PROC,
    )?;
    let max_fds = m.int_gauge(
        "closewatch_process_max_fds",
        "Soft RLIMIT_NOFILE of the process (absent when unlimited).",
        PROC,
    )?;
    let exhaustion = m.gauge(
        "closewatch_process_fd_exhaustion_seconds",
        "Predicted time until the process reaches its fd limit at the observed growth (only while growing).",
        PROC,
    )?;
    let deleted = m.int_gauge(
        "closewatch_process_deleted_open_bytes",
        "Bytes held by files deleted but still open in the process.",
        PROC,
    )?;
    let finding = m.int_gauge(
        "closewatch_process_finding",
        "1 for each active finding of the process.",
        &["pid", "comm", "unit", "check", "severity"],
    )?;
    let truncated = m.int_gauge(
        "closewatch_processes_truncated",
        "Processes worth a series that were left out by --max-processes.",
        &[],
    )?;

    let shown = a.processes.len().min(view.max_processes);
    truncated
        .with_label_values(NO_LABELS)
        .set((a.processes.len() - shown) as i64);
    for (i, p) in a.processes.iter().take(shown).enumerate() {
        let Some(info) = snap.processes.get(p.index) else {
            continue;
        };
        let pid = info.key.pid.to_string();
        let unit = view.units.get(i).and_then(|u| u.as_deref()).unwrap_or("");
        let labels = [pid.as_str(), info.comm.as_str(), unit];
        let s = &p.sockets;
        for (state, total, n_stale, age) in [
            (
                TcpState::CloseWait,
                s.close_wait,
                s.close_wait_stale,
                s.oldest_close_wait,
            ),
            (
                TcpState::FinWait2,
                s.fin_wait2,
                s.fin_wait2_stale,
                s.oldest_fin_wait2,
            ),
        ] {
            let l = [labels[0], labels[1], labels[2], state.name()];
            held.with_label_values(&l).set(total as i64);
            stale.with_label_values(&l).set(n_stale as i64);
            if let Some(age) = age {
                oldest.with_label_values(&l).set(age.as_secs_f64());
            }
        }
        if s.close_wait_unaccepted > 0 {
            unaccepted
                .with_label_values(&labels)
                .set(s.close_wait_unaccepted as i64);
        }
        open_fds
            .with_label_values(&labels)
            .set(info.fds.open as i64);
        if let Some(limit) = info.fds.limit {
            max_fds.with_label_values(&labels).set(limit as i64);
        }
        if info.fds_walked {
            deleted
                .with_label_values(&labels)
                .set(info.fds.deleted_bytes as i64);
        }
        if let Some(eta) = p.fd_exhaustion {
            exhaustion.with_label_values(&labels).set(eta.as_secs_f64());
        }
        for f in &p.findings {
            finding
                .with_label_values(&[
                    labels[0],
                    labels[1],
                    labels[2],
                    f.check.name(),
                    f.severity.name(),
                ])
                .set(1);
        }
    }

    let un = m.int_gauge(
        "closewatch_unattributed_tcp_sockets",
        "Sockets no process is blamed for: FIN_WAIT_2 orphans (closed, timing out), CLOSE_WAIT in accept queues, and sockets whose owner could not be read.",
        &["state", "reason"],
    )?;
    let u = &a.unattributed;
    for (state, reason, n) in [
        ("fin_wait2", "orphan", u.fin_wait2_orphans),
        ("close_wait", "unaccepted", u.close_wait_unaccepted),
        ("close_wait", "unknown_owner", u.close_wait_unknown_owner),
        ("fin_wait2", "unknown_owner", u.fin_wait2_unknown_owner),
    ] {
        un.with_label_values(&[state, reason]).set(n as i64);
    }

    let thresholds = m.gauge(
        "closewatch_threshold",
        "Configured thresholds, in each check's unit (sockets, ratio, seconds, bytes).",
        &["check", "severity"],
    )?;
    for (check, warning, critical) in view.thresholds.as_numbers() {
        thresholds
            .with_label_values(&[check.name(), "warning"])
            .set(warning);
        thresholds
            .with_label_values(&[check.name(), "critical"])
            .set(critical);
    }

    let host_open = m.int_gauge(
        "closewatch_host_open_fds",
        "File handles allocated host-wide (/proc/sys/fs/file-nr).",
        &[],
    )?;
    let host_max = m.int_gauge(
        "closewatch_host_max_fds",
        "Maximum file handles host-wide (fs.file-max).",
        &[],
    )?;
    if let Some(n) = snap.host.open_fds {
        host_open.with_label_values(NO_LABELS).set(n as i64);
    }
    if let Some(n) = snap.host.max_fds {
        host_max.with_label_values(NO_LABELS).set(n as i64);
    }

    m.gauge(
        "closewatch_scan_duration_seconds",
        "Duration of the last scan.",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(snap.duration.as_secs_f64());
    m.int_gauge(
        "closewatch_scan_fd_links_read",
        "fd links the last scan's /proc walk read; fd tables whose count did not change are taken from the previous scan.",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(snap.walk.links_read as i64);
    m.int_gauge(
        "closewatch_scan_fd_tables_reused",
        "Processes whose fd table the last scan took from the previous one (fd count unchanged).",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(snap.walk.processes_reused as i64);
    m.counter(
        "closewatch_scans_total",
        "Scans completed since start.",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .inc_by(stats.scans);
    let errors = m.counter(
        "closewatch_scan_errors_total",
        "Scans that recorded an error, by stage (sockdiag, procfs, host).",
        &["stage"],
    )?;
    for stage in ["sockdiag", "procfs", "host"] {
        errors
            .with_label_values(&[stage])
            .inc_by(stats.scan_errors.get(stage).copied().unwrap_or(0));
    }
    if let Some(t) = snap.scanned_at {
        let secs = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        m.gauge(
            "closewatch_last_scan_timestamp_seconds",
            "When the last scan started, in seconds since the epoch.",
            &[],
        )?
        .with_label_values(NO_LABELS)
        .set(secs);
    }
    let skipped = m.int_gauge(
        "closewatch_processes_skipped",
        "Processes the last scan could not read, by reason (vanished mid-scan, permission denied, failed).",
        &["reason"],
    )?;
    skipped
        .with_label_values(&["vanished"])
        .set(snap.skipped.vanished as i64);
    skipped
        .with_label_values(&["permission_denied"])
        .set(snap.skipped.permission_denied as i64);
    skipped
        .with_label_values(&["failed"])
        .set(snap.skipped.failed as i64);
    m.int_gauge(
        "closewatch_attribution_complete",
        "0 when stale sockets lack a known owner while some processes could not be read (run as root).",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(i64::from(a.attribution_complete));
    let reloads = m.counter(
        "closewatch_config_reloads_total",
        "Config reloads (SIGHUP) by result.",
        &["result"],
    )?;
    reloads
        .with_label_values(&["success"])
        .inc_by(stats.reloads_ok);
    reloads
        .with_label_values(&["failure"])
        .inc_by(stats.reloads_failed);
    m.int_gauge(
        "closewatch_config_last_reload_successful",
        "1 if the last config reload succeeded (or none was attempted).",
        &[],
    )?
    .with_label_values(NO_LABELS)
    .set(i64::from(stats.last_reload_ok));
    m.int_gauge(
        "closewatch_build_info",
        "Always 1; the version is a label.",
        &["version"],
    )?
    .with_label_values(&[env!("CARGO_PKG_VERSION")])
    .set(1);

    let mut out = Vec::with_capacity(16 * 1024);
    TextEncoder::new().encode(&m.registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
