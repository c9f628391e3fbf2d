//! The exposition of a synthetic scan: every family of the table is filled
//! once and nothing undeclared is exported; the core metrics, named one by
//! one so that renaming one in the table fails here, have HELP and TYPE
//! (host figures only when known, never a made-up 0); per-process series
//! only for processes worth a look, capped to the worst with the rest
//! counted; the agent's counters (scans, errors per stage, reloads) carried
//! across scans.

use std::time::{Duration, SystemTime};

use super::*;
use crate::analyse::{self, History};
use crate::model::{NetnsId, NetnsScan, ProcessInfo, StateCounts, TcpInfo, TcpSocket};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn proc(pid: u32, comm: &str, open: u64, inodes: &[u64]) -> ProcessInfo {
    ProcessInfo::synthetic(pid, comm, open, Some(1000), inodes)
}

fn close_wait(inode: u64, port: u16) -> TcpSocket {
    TcpSocket {
        timer: 0,
        peer: None,
        netns: NetnsId(7),
        state: TcpState::CloseWait,
        local: "127.0.0.1:80".parse().expect("addr"),
        remote: format!("127.0.0.1:{port}").parse().expect("addr"),
        cookie: inode,
        inode,
        uid: 0,
        recv_q: 0,
        send_q: 0,
        info: Some(TcpInfo {
            state: 8,
            last_data_sent_ms: 0,
            last_data_recv_ms: 0,
            last_ack_recv_ms: 90_000,
        }),
    }
}

fn scan() -> Snapshot {
    let mut states = StateCounts::default();
    states.add(TcpState::CloseWait);
    states.add(TcpState::CloseWait);
    states.add(TcpState::Established);
    Snapshot {
        scanned_at: now(),
        duration: Duration::from_millis(12),
        namespaces: vec![NetnsScan {
            id: NetnsId(7),
            states,
            processes: 4,
            listen_overflows: None,
            listen_drops: None,
            ports: None,
        }],
        sockets: vec![close_wait(100, 5000), close_wait(101, 5001)],
        processes: vec![
            proc(10, "worse", 20, &[100, 101]),
            proc(11, "bad", 20, &[100]),
            proc(12, "busy", 600, &[]),
            proc(13, "idle", 10, &[]),
        ],
        ..Snapshot::default()
    }
}

/// The agent's own process as a scan reads it.
fn own() -> OwnProcess {
    OwnProcess {
        usage: crate::collect::own_process::Usage {
            cpu_seconds: 3.75,
            resident_bytes: 8_388_608,
            virtual_bytes: 31_457_280,
            start_time_seconds: 1_700_000_050.5,
        },
        open_fds: 17,
        max_fds: Some(1024),
    }
}

/// Renders the synthetic scan with the agent's settings.
fn render_with(max_processes: usize) -> String {
    with_view(max_processes, |view| {
        render(view, &AgentStats::default()).expect("renders")
    })
}

fn with_view<T>(max_processes: usize, f: impl FnOnce(&ScanView<'_>) -> T) -> T {
    let snap = scan();
    let settings = analyse::Settings {
        list_fd_utilization: Some(0.5),
        ..analyse::Settings::default()
    };
    let mut history = History::default();
    history.observe(&snap, now(), Duration::from_secs(900));
    let analysis = analyse::analyse(&snap, &history, &settings, now());
    let units = vec![Some("worse.service".to_string()); analysis.processes.len()];
    let view = ScanView {
        snapshot: &snap,
        analysis: &analysis,
        units: &units,
        units_unreadable: 0,
        thresholds: &Thresholds::default(),
        max_processes,
        own_process: Some(own()),
    };
    f(&view)
}

#[test]
fn every_declared_family_is_filled_once_and_nothing_else_is_exported() {
    let used = with_view(100, |view| {
        fill(view, &AgentStats::default()).expect("fills").used
    });
    let mut declared: Vec<&str> = families::ALL.iter().map(|f| f.name).collect();
    let mut filled = used.clone();
    declared.sort_unstable();
    filled.sort_unstable();
    assert_eq!(filled, declared, "the table and the sections disagree");
    let mut distinct = filled.clone();
    distinct.dedup();
    assert_eq!(distinct, filled, "a family is filled twice");

    let text = render_with(100);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        let family = families::ALL.iter().find(|f| f.name == name);
        let family = family.unwrap_or_else(|| panic!("{name} is not declared"));
        assert!(
            text.contains(&format!("# TYPE {name} {}\n", family.kind.type_name())),
            "{name}"
        );
    }
}

/// The self-metrics every Prometheus client library exports, by the names
/// client_golang gives them.
const CLIENT_LIBRARY_NAMES: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

#[test]
fn names_carry_the_prefix_and_counters_end_in_total() {
    for f in families::ALL {
        assert!(
            f.name.starts_with("closewatch_") || CLIENT_LIBRARY_NAMES.contains(&f.name),
            "{}",
            f.name
        );
        assert_eq!(
            matches!(f.kind, families::Kind::IntCounter | families::Kind::Counter),
            f.name.ends_with("_total"),
            "{}",
            f.name
        );
        assert!(!f.labels.contains(&"cmdline"), "{}", f.name);
    }
}

#[test]
fn every_core_metric_has_help_and_type() {
    let text = render_with(100);
    for name in [
        "closewatch_tcp_sockets",
        "closewatch_process_tcp_sockets",
        "closewatch_process_stale_tcp_sockets",
        "closewatch_process_oldest_tcp_socket_age_seconds",
        "closewatch_process_open_fds",
        "closewatch_process_max_fds",
        "closewatch_process_deleted_open_bytes",
        "closewatch_process_finding",
        "closewatch_unattributed_tcp_sockets",
        "closewatch_threshold",
        "closewatch_host_open_fds",
        "closewatch_host_max_fds",
        "closewatch_scan_duration_seconds",
        "closewatch_scans_total",
        "closewatch_scan_errors_total",
        "closewatch_last_scan_timestamp_seconds",
        "closewatch_processes_skipped",
        "closewatch_build_info",
    ] {
        // Host figures are absent here (the snapshot has none): present only
        // when known, never as a made-up 0.
        if name.starts_with("closewatch_host_") {
            assert!(!text.contains(&format!("\n{name} ")), "{name} without data");
            continue;
        }
        assert!(text.contains(&format!("# HELP {name} ")), "HELP {name}");
        assert!(text.contains(&format!("# TYPE {name} ")), "TYPE {name}");
    }
}

#[test]
fn processes_worth_a_look_get_series_and_others_do_not() {
    let text = render_with(100);
    assert!(text.contains(r#"closewatch_process_tcp_sockets{comm="worse",pid="10",state="close_wait",unit="worse.service"} 2"#), "{text}");
    assert!(text.contains(r#"closewatch_process_stale_tcp_sockets{comm="bad",pid="11",state="close_wait",unit="worse.service"} 1"#));
    assert!(
        text.contains(
            r#"closewatch_process_open_fds{comm="busy",pid="12",unit="worse.service"} 600"#
        ),
        "≥ 50 % of the limit"
    );
    assert!(!text.contains(r#"pid="13""#), "idle process has no series");
    assert!(text.contains(r#"closewatch_process_finding{check="close_wait_stale",comm="worse",pid="10",severity="warning",unit="worse.service"} 1"#));
    assert!(text.contains(r#"closewatch_process_oldest_tcp_socket_age_seconds{comm="worse",pid="10",state="close_wait",unit="worse.service"} 90"#));
    assert!(text.contains(r#"closewatch_tcp_sockets{netns="7",state="close_wait"} 2"#));
    assert!(text.contains(r#"closewatch_tcp_sockets{netns="7",state="time_wait"} 0"#));
    assert!(text.contains("closewatch_processes_truncated 0"));
}

#[test]
fn the_cap_keeps_the_worst_and_counts_the_rest() {
    let text = render_with(1);
    assert!(text.contains(r#"pid="10""#));
    assert!(!text.contains(r#"pid="11""#));
    assert!(!text.contains(r#"pid="12""#));
    assert!(text.contains("closewatch_processes_truncated 2"));
}

/// `snap` judged without history (the one-shot settings) and rendered with
/// `stats`; `units_unreadable` as the agent would count them.
fn render_scan(snap: &Snapshot, units_unreadable: u64, stats: &AgentStats) -> String {
    let analysis = analyse::analyse(
        snap,
        &History::default(),
        &analyse::Settings::default(),
        now(),
    );
    let view = ScanView {
        snapshot: snap,
        analysis: &analysis,
        units: &[],
        units_unreadable,
        thresholds: &Thresholds::default(),
        max_processes: 10,
        own_process: None,
    };
    render(&view, stats).expect("renders")
}

#[test]
fn agent_counters_carry_across_scans() {
    let mut stats = AgentStats {
        scans: 41,
        reloads_failed: 2,
        ..AgentStats::default()
    };
    stats.scan_errors.insert("sockdiag", 3);
    let text = render_scan(&scan(), 0, &stats);
    assert!(text.contains("closewatch_scans_total 41"));
    assert!(text.contains(r#"closewatch_scan_errors_total{stage="sockdiag"} 3"#));
    assert!(text.contains(r#"closewatch_scan_errors_total{stage="procfs"} 0"#));
    assert!(text.contains(r#"closewatch_config_reloads_total{result="failure"} 2"#));
    assert!(text.contains("closewatch_config_last_reload_successful 0"));
    assert!(
        text.contains(r#"closewatch_threshold{check="fd_exhaustion",severity="warning"} 86400"#)
    );
}

#[test]
fn failed_reads_are_exported_by_source() {
    let mut snap = scan();
    snap.unread.run_netns = Some("/run/netns: Permission denied".into());
    snap.unread.fd_stat = 2;
    let text = render_scan(&snap, 3, &AgentStats::default());
    for line in [
        r#"closewatch_read_failures{source="run_netns"} 1"#,
        r#"closewatch_read_failures{source="fd_stat"} 2"#,
        r#"closewatch_read_failures{source="cgroup"} 3"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

#[test]
fn the_agents_own_process_is_exported_as_client_libraries_name_it() {
    let text = render_with(100);
    for line in [
        "# TYPE process_cpu_seconds_total counter",
        "process_cpu_seconds_total 3.75",
        "process_resident_memory_bytes 8388608",
        "process_virtual_memory_bytes 31457280",
        "process_open_fds 17",
        "process_max_fds 1024",
        "process_start_time_seconds 1700000050.5",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line} in:\n{text}");
    }
    let declared: Vec<&str> = families::ALL
        .iter()
        .map(|f| f.name)
        .filter(|n| !n.starts_with("closewatch_"))
        .collect();
    assert_eq!(declared, CLIENT_LIBRARY_NAMES);
}

#[test]
fn an_unlimited_fd_limit_is_absent_not_a_number() {
    let text = with_view(100, |view| {
        let own = view.own_process.map(|o| OwnProcess { max_fds: None, ..o });
        let view = ScanView {
            own_process: own,
            ..*view
        };
        render(&view, &AgentStats::default()).expect("renders")
    });
    assert!(text.contains("\nprocess_open_fds 17\n"));
    assert!(!text.contains("\nprocess_max_fds "), "{text}");
}

#[test]
fn an_unreadable_own_process_is_counted_and_exports_no_figure() {
    let text = render_scan(&scan(), 0, &AgentStats::default());
    assert!(text.contains(r#"closewatch_read_failures{source="own_process"} 1"#));
    for name in CLIENT_LIBRARY_NAMES {
        assert!(!text.contains(&format!("\n{name} ")), "{name} without data");
    }
}

#[test]
fn build_info_names_the_version_revision_and_compiler() {
    let text = render_with(100);
    let line = format!(
        r#"closewatch_build_info{{revision="{}",rustc="{}",version="{}"}} 1"#,
        crate::build_info::REVISION,
        crate::build_info::RUSTC,
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&line), "{line} in:\n{text}");
    assert!(!crate::build_info::RUSTC.is_empty());
}
