//! Every metric family the agent exports, declared once as data: name, help,
//! type and labels. This table is the only place a metric name is written;
//! the rendering fills values into these families, and the packaging tests
//! check the alert rules and the dashboard against it (through the library).

/// The value type of a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A gauge with a float value (ages, ratios, seconds).
    Gauge,
    /// A gauge with an integer value (counts).
    IntGauge,
    /// A counter (`_total`), kept by the agent across scans.
    IntCounter,
    /// A counter with a float value (CPU seconds), read from the kernel.
    Counter,
}

impl Kind {
    /// As the exposition's `# TYPE` line spells it.
    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Gauge | Kind::IntGauge => "gauge",
            Kind::IntCounter | Kind::Counter => "counter",
        }
    }
}

/// One metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        help,
        kind,
        labels,
    }
}

const PROC: &[&str] = &["pid", "comm", "unit"];
const PROC_STATE: &[&str] = &["pid", "comm", "unit", "state"];
use Kind::{Counter, Gauge, IntCounter, IntGauge};

// The host's sockets and namespaces.
pub const TCP_SOCKETS: Family = family(
    "closewatch_tcp_sockets",
    IntGauge,
    &["netns", "state"],
    "TCP sockets by network namespace (inode of /proc/PID/ns/net) and state. close_wait, fin_wait2 and listen are counted every scan, the other states at least once a minute.",
);
pub const NETNS_SCANNED: Family = family(
    "closewatch_netns_scanned",
    IntGauge,
    &[],
    "Network namespaces dumped by the last scan.",
);
pub const NETNS_UNSCANNED: Family = family(
    "closewatch_netns_unscanned",
    IntGauge,
    &["netns", "reason"],
    "1 for each network namespace the last scan could not dump, by reason (open_denied: its handles could not be opened; setns_denied: needs CAP_SYS_ADMIN; failed).",
);
pub const NETNS_UNKNOWN_PROCESSES: Family = family(
    "closewatch_netns_unknown_processes",
    IntGauge,
    &[],
    "Processes whose network namespace could not be read (permission denied; closewatch --report names them and says why); namespaces only they are in are not scanned.",
);
pub const EPHEMERAL_PORTS_IN_USE: Family = family(
    "closewatch_ephemeral_ports_in_use",
    IntGauge,
    &["netns", "local_ip", "remote"],
    "Local ephemeral ports in use toward one remote ip:port (every state, TIME_WAIT included), for the 20 busiest destinations of the host; counted once a minute.",
);
pub const EPHEMERAL_PORT_RANGE_SIZE: Family = family(
    "closewatch_ephemeral_port_range_size",
    IntGauge,
    &["netns"],
    "Ports in the namespace's net.ipv4.ip_local_port_range.",
);
pub const LISTEN_OVERFLOWS: Family = family(
    "closewatch_listen_overflows_total",
    IntCounter,
    &["netns"],
    "The namespace's ListenOverflows (/proc/net/netstat): connections a listener dropped because its accept queue was full.",
);
pub const LISTEN_DROPS: Family = family(
    "closewatch_listen_drops_total",
    IntCounter,
    &["netns"],
    "The namespace's ListenDrops (/proc/net/netstat): every drop at a listener, the overflows included.",
);
pub const UNATTRIBUTED_TCP_SOCKETS: Family = family(
    "closewatch_unattributed_tcp_sockets",
    IntGauge,
    &["state", "reason"],
    "Sockets no process is blamed for: FIN_WAIT_2 orphans (closed, timing out), CLOSE_WAIT in accept queues, and sockets whose owner could not be read.",
);

// Per process: only those worth a look, at most --max-processes.
pub const PROCESS_TCP_SOCKETS: Family = family(
    "closewatch_process_tcp_sockets",
    IntGauge,
    PROC_STATE,
    "CLOSE_WAIT and owned FIN_WAIT_2 sockets held by the process, and dead ones: TCP sockets in no table (reset, or never connected), present once the scan could look for them.",
);
pub const PROCESS_STALE_TCP_SOCKETS: Family = family(
    "closewatch_process_stale_tcp_sockets",
    IntGauge,
    PROC_STATE,
    "Of the process's CLOSE_WAIT / FIN_WAIT_2 / dead sockets, those older than the configured age.",
);
pub const PROCESS_OLDEST_TCP_SOCKET_AGE: Family = family(
    "closewatch_process_oldest_tcp_socket_age_seconds",
    Gauge,
    PROC_STATE,
    "Age of the process's oldest CLOSE_WAIT / FIN_WAIT_2 / dead socket (time since the peer's FIN, or since first seen).",
);
pub const PROCESS_UNACCEPTED_TCP_SOCKETS: Family = family(
    "closewatch_process_unaccepted_tcp_sockets",
    IntGauge,
    PROC,
    "CLOSE_WAIT connections waiting, never accepted, in the process's listen queues.",
);
pub const PROCESS_IDLE_TCP_SOCKETS: Family = family(
    "closewatch_process_idle_tcp_sockets",
    IntGauge,
    PROC,
    "Half-open candidates: ESTABLISHED connections of the process that received nothing for at least idle_age with no keepalive, whose peer is not known alive (looked for every 5 minutes).",
);
pub const PROCESS_UNIX_SOCKETS: Family = family(
    "closewatch_process_unix_sockets",
    IntGauge,
    PROC_STATE,
    "Connected UNIX stream sockets of the process by state; close_wait: its peer closed and the process keeps it.",
);
pub const PROCESS_STALE_UNIX_SOCKETS: Family = family(
    "closewatch_process_stale_unix_sockets",
    IntGauge,
    PROC_STATE,
    "Of the process's UNIX sockets whose peer closed, those held at least dead_socket_age.",
);
pub const PROCESS_OPEN_FDS: Family = family(
    "closewatch_process_open_fds",
    IntGauge,
    PROC,
    "Open file descriptors of the process.",
);
pub const PROCESS_MAX_FDS: Family = family(
    "closewatch_process_max_fds",
    IntGauge,
    PROC,
    "Soft RLIMIT_NOFILE of the process (absent when unlimited).",
);
pub const PROCESS_FD_EXHAUSTION: Family = family(
    "closewatch_process_fd_exhaustion_seconds",
    Gauge,
    PROC,
    "Predicted time until the process reaches its fd limit at the observed growth (only while growing).",
);
pub const PROCESS_DELETED_OPEN_BYTES: Family = family(
    "closewatch_process_deleted_open_bytes",
    IntGauge,
    PROC,
    "Bytes held by files deleted but still open in the process.",
);
pub const PROCESS_LISTEN_QUEUE_RATIO: Family = family(
    "closewatch_listen_queue_ratio",
    Gauge,
    &["pid", "comm", "unit", "local"],
    "Connections waiting in the accept queue of each listener of the process that has any, over its backlog (1 = full: the kernel drops new connections).",
);
pub const PROCESS_FINDING: Family = family(
    "closewatch_process_finding",
    IntGauge,
    &["pid", "comm", "unit", "check", "severity"],
    "1 for each active finding of the process.",
);
pub const PROCESSES_TRUNCATED: Family = family(
    "closewatch_processes_truncated",
    IntGauge,
    &[],
    "Processes worth a series that were left out by --max-processes.",
);

// Configuration and the host.
pub const THRESHOLD: Family = family(
    "closewatch_threshold",
    Gauge,
    &["check", "severity"],
    "Configured thresholds, in each check's unit (sockets, ratio, seconds, bytes).",
);
pub const HOST_OPEN_FDS: Family = family(
    "closewatch_host_open_fds",
    IntGauge,
    &[],
    "File handles allocated host-wide (/proc/sys/fs/file-nr).",
);
pub const HOST_MAX_FDS: Family = family(
    "closewatch_host_max_fds",
    IntGauge,
    &[],
    "Maximum file handles host-wide (fs.file-max).",
);

// The scan itself.
pub const SCAN_DURATION: Family = family(
    "closewatch_scan_duration_seconds",
    Gauge,
    &[],
    "Duration of the last scan.",
);
pub const SCAN_FD_LINKS_READ: Family = family(
    "closewatch_scan_fd_links_read",
    IntGauge,
    &[],
    "fd links the last scan's /proc walk read; fd tables whose count did not change are taken from the previous scan.",
);
pub const SCAN_FD_TABLES_REUSED: Family = family(
    "closewatch_scan_fd_tables_reused",
    IntGauge,
    &[],
    "Processes whose fd table the last scan took from the previous one (fd count unchanged).",
);
pub const SCANS: Family = family(
    "closewatch_scans_total",
    IntCounter,
    &[],
    "Scans completed since start.",
);
pub const SCANS_BY_ATTRIBUTION: Family = family(
    "closewatch_scans_by_attribution_total",
    IntCounter,
    &["attribution"],
    "Scans completed since start, by how sockets were mapped to processes (bpf: iterators in the kernel; procfs: the /proc walk).",
);
pub const SCAN_ERRORS: Family = family(
    "closewatch_scan_errors_total",
    IntCounter,
    &["stage"],
    "Scans that recorded an error, by stage (sockdiag, procfs, host, bpf).",
);
pub const LAST_SCAN_TIMESTAMP: Family = family(
    "closewatch_last_scan_timestamp_seconds",
    Gauge,
    &[],
    "When the last scan started, in seconds since the epoch.",
);
pub const PROCESSES_SKIPPED: Family = family(
    "closewatch_processes_skipped",
    IntGauge,
    &["reason"],
    "Processes the last scan could not read, by reason (vanished mid-scan, permission denied, failed).",
);
pub const READ_FAILURES: Family = family(
    "closewatch_read_failures",
    IntGauge,
    &["source"],
    "Reads that failed in the last scan without failing it, by source, each leaving a figure unknown (run_netns: namespaces made by ip netns may be missing; fd_stat: files that may be deleted, of unknown size; port_range: namespaces whose ephemeral port range is unknown; netstat: namespaces whose listen counters are unknown; cgroup: exported processes whose unit label is empty because their cgroup could not be read; own_process: the agent's process_* figures are missing).",
);
pub const ATTRIBUTION_COMPLETE: Family = family(
    "closewatch_attribution_complete",
    IntGauge,
    &[],
    "0 when stale sockets lack a known owner while some processes could not be read (closewatch --report names them and says why).",
);

// The agent.
pub const CONFIG_RELOADS: Family = family(
    "closewatch_config_reloads_total",
    IntCounter,
    &["result"],
    "Config reloads (SIGHUP) by result.",
);
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: Family = family(
    "closewatch_config_last_reload_successful",
    IntGauge,
    &[],
    "1 if the last config reload succeeded (or none was attempted).",
);
pub const HTTP_REFUSED: Family = family(
    "closewatch_http_requests_refused_total",
    IntCounter,
    &["reason"],
    "Requests refused by the web config: no_credentials and wrong_credentials \
     (401), auth_throttled (429: a new credential beyond the bcrypt check rate), \
     rate_limited (429: rate_limit). Counted up to the last scan.",
);
pub const TLS_HANDSHAKE_FAILURES: Family = family(
    "closewatch_http_tls_handshake_failures_total",
    IntCounter,
    &[],
    "Connections to the TLS port that never completed a handshake (errors, \
     timeouts, plain HTTP). Counted up to the last scan.",
);
pub const BUILD_INFO: Family = family(
    "closewatch_build_info",
    IntGauge,
    &["version", "revision", "rustc"],
    "Always 1; the version, the git commit it was built from (\"unknown\" outside a git checkout) and the compiler's version are labels.",
);

// The agent's own process, named as every Prometheus client library names
// it (client_golang's process collector) so that the dashboards and alerts
// written for any exporter work here too. The only names without the
// closewatch_ prefix. Read at each scan, with the rest of the text.
pub const OWN_CPU_SECONDS: Family = family(
    "process_cpu_seconds_total",
    Counter,
    &[],
    "Total user and system CPU time spent in seconds (the agent's, read at each scan).",
);
pub const OWN_RESIDENT_MEMORY: Family = family(
    "process_resident_memory_bytes",
    IntGauge,
    &[],
    "Resident memory size in bytes (the agent's, read at each scan).",
);
pub const OWN_VIRTUAL_MEMORY: Family = family(
    "process_virtual_memory_bytes",
    IntGauge,
    &[],
    "Virtual memory size in bytes (the agent's, read at each scan).",
);
pub const OWN_OPEN_FDS: Family = family(
    "process_open_fds",
    IntGauge,
    &[],
    "Number of open file descriptors (the agent's, read at each scan).",
);
pub const OWN_MAX_FDS: Family = family(
    "process_max_fds",
    IntGauge,
    &[],
    "Maximum number of open file descriptors: the agent's soft RLIMIT_NOFILE (absent when unlimited).",
);
pub const OWN_START_TIME: Family = family(
    "process_start_time_seconds",
    Gauge,
    &[],
    "Start time of the process since unix epoch in seconds.",
);

/// Every family, in the order of the sections above.
pub const ALL: &[&Family] = &[
    &TCP_SOCKETS,
    &NETNS_SCANNED,
    &NETNS_UNSCANNED,
    &NETNS_UNKNOWN_PROCESSES,
    &EPHEMERAL_PORTS_IN_USE,
    &EPHEMERAL_PORT_RANGE_SIZE,
    &LISTEN_OVERFLOWS,
    &LISTEN_DROPS,
    &UNATTRIBUTED_TCP_SOCKETS,
    &PROCESS_TCP_SOCKETS,
    &PROCESS_STALE_TCP_SOCKETS,
    &PROCESS_OLDEST_TCP_SOCKET_AGE,
    &PROCESS_UNACCEPTED_TCP_SOCKETS,
    &PROCESS_IDLE_TCP_SOCKETS,
    &PROCESS_UNIX_SOCKETS,
    &PROCESS_STALE_UNIX_SOCKETS,
    &PROCESS_OPEN_FDS,
    &PROCESS_MAX_FDS,
    &PROCESS_FD_EXHAUSTION,
    &PROCESS_DELETED_OPEN_BYTES,
    &PROCESS_LISTEN_QUEUE_RATIO,
    &PROCESS_FINDING,
    &PROCESSES_TRUNCATED,
    &THRESHOLD,
    &HOST_OPEN_FDS,
    &HOST_MAX_FDS,
    &SCAN_DURATION,
    &SCAN_FD_LINKS_READ,
    &SCAN_FD_TABLES_REUSED,
    &SCANS,
    &SCANS_BY_ATTRIBUTION,
    &SCAN_ERRORS,
    &LAST_SCAN_TIMESTAMP,
    &PROCESSES_SKIPPED,
    &READ_FAILURES,
    &ATTRIBUTION_COMPLETE,
    &CONFIG_RELOADS,
    &CONFIG_LAST_RELOAD_SUCCESSFUL,
    &HTTP_REFUSED,
    &TLS_HANDSHAKE_FAILURES,
    &BUILD_INFO,
    &OWN_CPU_SECONDS,
    &OWN_RESIDENT_MEMORY,
    &OWN_VIRTUAL_MEMORY,
    &OWN_OPEN_FDS,
    &OWN_MAX_FDS,
    &OWN_START_TIME,
];
