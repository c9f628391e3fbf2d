//! Analysis judges synthetic snapshots: who is blamed (owners, shared sockets,
//! half-closes, orphans, unaccepted connections, incomplete attribution), ages
//! and thresholds, fd and host-table use, fd growth, deleted files, hints,
//! ordering and `--pid`. No clock and no kernel: `now` is a constant.

use std::time::{Duration, SystemTime};

use super::*;
use crate::collect::procfs::parse::credentials;
use crate::model::access::{Read, Refusal, Unreadable, UnreadableProcesses, UserNs};
use crate::model::{Listener, ProcessInfo, Skipped, TcpInfo, TcpSocket, TcpState};

const NS: NetnsId = NetnsId(4026531833);

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

/// A flagged socket `age_s` seconds old (by tcpi_last_ack_recv).
fn sock(
    state: TcpState,
    inode: u64,
    local: &str,
    remote: &str,
    age_s: u32,
    recv_q: u32,
) -> TcpSocket {
    TcpSocket {
        timer: 0,
        peer: None,
        netns: NS,
        state,
        local: addr(local),
        remote: addr(remote),
        cookie: inode + 1_000_000 + u64::from(addr(remote).port()),
        inode,
        uid: 0,
        recv_q,
        send_q: 0,
        info: (inode != 0 || state == TcpState::CloseWait).then_some(TcpInfo {
            state: state.kernel_number(),
            last_data_sent_ms: 0,
            last_data_recv_ms: age_s * 1000,
            last_ack_recv_ms: age_s * 1000,
        }),
    }
}

fn process(pid: u32, comm: &str, open: u64, limit: Option<u64>, inodes: &[u64]) -> ProcessInfo {
    ProcessInfo::synthetic(pid, comm, open, limit, inodes)
}

fn snapshot(sockets: Vec<TcpSocket>, processes: Vec<ProcessInfo>) -> Snapshot {
    Snapshot {
        scanned_at: now(),
        sockets,
        processes,
        host: crate::model::HostInfo {
            hostname: "test".into(),
            kernel: "6.18".into(),
            open_fds: Some(1000),
            max_fds: Some(100_000),
        },
        ..Snapshot::default()
    }
}

fn run(snap: &Snapshot, settings: &Settings) -> Analysis {
    let mut h = History::default();
    h.observe(snap, now(), Duration::from_secs(900));
    analyse(snap, &h, settings, now())
}

fn by_pid(a: &Analysis, snap: &Snapshot, pid: u32) -> ProcessAnalysis {
    a.processes
        .iter()
        .find(|p| snap.processes[p.index].key.pid == pid)
        .cloned()
        .unwrap_or_else(|| panic!("pid {pid} not listed"))
}

#[test]
fn stale_close_wait_is_blamed_on_its_owner() {
    let socks = (0..3)
        .map(|i| {
            sock(
                TcpState::CloseWait,
                100 + i,
                "127.0.0.1:80",
                &format!("127.0.0.1:{}", 5000 + i),
                120,
                0,
            )
        })
        .collect();
    let snap = snapshot(
        socks,
        vec![
            process(10, "leaky", 20, Some(1024), &[100, 101, 102]),
            process(11, "clean", 5, Some(1024), &[]),
        ],
    );
    let a = run(&snap, &Settings::default());
    assert_eq!(a.status, Status::Warning);
    assert_eq!(a.processes.len(), 1, "the clean process is not listed");
    let p = by_pid(&a, &snap, 10);
    assert_eq!(p.sockets.close_wait, 3);
    assert_eq!(p.sockets.close_wait_stale, 3);
    assert_eq!(p.sockets.oldest_close_wait, Some(Duration::from_secs(120)));
    assert_eq!(p.sockets.close_wait_recv_q.eof_read, 3);
    assert_eq!(p.findings.len(), 1);
    let f = &p.findings[0];
    assert_eq!(
        (f.check, f.severity),
        (Check::CloseWaitStale, Severity::Warning)
    );
    assert!(
        f.message
            .starts_with("3 sockets in CLOSE_WAIT for at least 1m"),
        "{}",
        f.message
    );
    assert!(f.hint.contains("read EOF"), "{}", f.hint);
    assert_eq!(p.netns, vec![NS]);
}

#[test]
fn young_close_wait_is_listed_but_not_a_finding() {
    let snap = snapshot(
        vec![sock(
            TcpState::CloseWait,
            100,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            5,
            1,
        )],
        vec![process(10, "srv", 20, Some(1024), &[100])],
    );
    let a = run(&snap, &Settings::default());
    assert_eq!(a.status, Status::Ok);
    let p = by_pid(&a, &snap, 10);
    assert_eq!((p.sockets.close_wait, p.sockets.close_wait_stale), (1, 0));
    assert!(p.findings.is_empty());
}

#[test]
fn the_age_threshold_is_inclusive_and_configurable() {
    let snap = snapshot(
        vec![sock(
            TcpState::CloseWait,
            100,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            30,
            1,
        )],
        vec![process(10, "srv", 20, Some(1024), &[100])],
    );
    let settings = Settings {
        close_wait_age: Duration::from_secs(30),
        ..Settings::default()
    };
    assert_eq!(run(&snap, &settings).status, Status::Warning);
}

#[test]
fn hundred_stale_sockets_are_critical() {
    let socks = (0..100)
        .map(|i| {
            sock(
                TcpState::CloseWait,
                100 + i,
                "127.0.0.1:80",
                &format!("127.0.0.1:{}", 5000 + i),
                90,
                0,
            )
        })
        .collect();
    let snap = snapshot(
        socks,
        vec![process(
            10,
            "leaky",
            200,
            Some(1024),
            &(100..200).collect::<Vec<_>>(),
        )],
    );
    let a = run(&snap, &Settings::default());
    assert_eq!(a.status, Status::Critical);
}

#[test]
fn a_shared_socket_belongs_to_every_holder() {
    let snap = snapshot(
        vec![sock(
            TcpState::CloseWait,
            100,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            90,
            0,
        )],
        vec![
            process(10, "parent", 5, Some(1024), &[100]),
            process(11, "child", 5, Some(1024), &[100, 100]),
        ],
    );
    let a = run(&snap, &Settings::default());
    assert_eq!(a.processes.len(), 2);
    assert_eq!(by_pid(&a, &snap, 10).sockets.close_wait, 1);
    // Two fds (dup) on one socket are still one socket.
    assert_eq!(by_pid(&a, &snap, 11).sockets.close_wait, 1);
}

#[test]
fn half_close_blames_the_owner_of_fin_wait2() {
    let snap = snapshot(
        vec![
            sock(
                TcpState::FinWait2,
                100,
                "127.0.0.1:80",
                "127.0.0.1:5000",
                300,
                0,
            ),
            sock(
                TcpState::CloseWait,
                101,
                "127.0.0.1:5000",
                "127.0.0.1:80",
                300,
                1,
            ),
        ],
        vec![
            process(10, "halfcloser", 5, Some(1024), &[100]),
            process(11, "peer", 5, Some(1024), &[101]),
        ],
    );
    let a = run(&snap, &Settings::default());
    let hc = by_pid(&a, &snap, 10);
    assert_eq!(
        (
            hc.sockets.fin_wait2,
            hc.sockets.fin_wait2_stale,
            hc.sockets.close_wait
        ),
        (1, 1, 0)
    );
    assert_eq!(hc.findings[0].check, Check::FinWait2Stale);
    assert!(hc.findings[0].hint.contains("shutdown(SHUT_WR)"));
    let peer = by_pid(&a, &snap, 11);
    assert_eq!((peer.sockets.close_wait, peer.sockets.fin_wait2), (1, 0));
    assert!(
        peer.findings[0].hint.contains("never read the peer's EOF"),
        "{}",
        peer.findings[0].hint
    );
}

#[test]
fn orphans_are_counted_never_blamed() {
    let snap = snapshot(
        vec![sock(
            TcpState::FinWait2,
            0,
            "127.0.0.1:5000",
            "127.0.0.1:80",
            30,
            0,
        )],
        vec![process(10, "client", 5, Some(1024), &[])],
    );
    let a = run(&snap, &Settings::default());
    assert_eq!(a.unattributed.fin_wait2_orphans, 1);
    assert!(a.processes.is_empty());
    assert_eq!(a.status, Status::Ok);
    assert!(a.attribution_complete);
}

#[test]
fn unaccepted_connections_name_the_listeners_owner() {
    let mut snap = snapshot(
        (0..4)
            .map(|i| {
                sock(
                    TcpState::CloseWait,
                    0,
                    "127.0.0.1:8080",
                    &format!("127.0.0.1:{}", 6000 + i),
                    120,
                    1,
                )
            })
            .collect(),
        vec![
            process(20, "stuck", 5, Some(1024), &[777]),
            process(21, "other", 5, Some(1024), &[778]),
        ],
    );
    snap.listeners = vec![
        Listener {
            netns: NS,
            local: addr("0.0.0.0:8080"),
            inode: 777,
            queue: 0,
            backlog: 128,
        },
        Listener {
            netns: NS,
            local: addr("0.0.0.0:9090"),
            inode: 778,
            queue: 0,
            backlog: 128,
        },
    ];
    let a = run(&snap, &Settings::default());
    assert_eq!(a.unattributed.close_wait_unaccepted, 4);
    assert_eq!(a.processes.len(), 1);
    let p = by_pid(&a, &snap, 20);
    assert_eq!(
        (
            p.sockets.close_wait_unaccepted,
            p.sockets.close_wait_unaccepted_stale
        ),
        (4, 4)
    );
    assert_eq!(p.sockets.close_wait, 0);
    assert_eq!(p.findings[0].check, Check::CloseWaitUnaccepted);
    assert!(
        p.findings[0].message.contains("0.0.0.0:8080"),
        "{}",
        p.findings[0].message
    );
    assert!(p.peers.is_empty());
}

/// One CLOSE_WAIT `age_s` old that no process holds, while 3 processes
/// could not be read.
fn unowned_close_wait(age_s: u32) -> Snapshot {
    let mut snap = snapshot(
        vec![sock(
            TcpState::CloseWait,
            100,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            age_s,
            0,
        )],
        vec![process(10, "mine", 5, Some(1024), &[])],
    );
    snap.skipped = Skipped {
        permission_denied: 3,
        ..Skipped::default()
    };
    snap
}

#[test]
fn unknown_owners_while_processes_were_unreadable_mean_incomplete_attribution() {
    let mut snap = unowned_close_wait(300);
    let a = run(&snap, &Settings::default());
    assert!(!a.attribution_complete);
    assert_eq!(a.unattributed.close_wait_unknown_owner, 1);
    assert!(
        a.processes.is_empty(),
        "nobody is blamed for a socket we could not attribute"
    );
    assert_eq!(a.host_findings.len(), 1);
    assert_eq!(a.host_findings[0].check, Check::CloseWaitStale);
    // Not examined (the agent): the hint claims no remedy.
    assert!(
        a.host_findings[0].hint.contains("closewatch --report"),
        "{}",
        a.host_findings[0].hint
    );
    assert!(!a.host_findings[0].hint.contains("root"));
    assert_eq!(a.status, Status::Warning);

    assert_eq!(a.unattributed.unknown_owner_stale(), 1);

    // Every process readable: a missing owner is a socket closed mid-scan.
    snap.skipped.permission_denied = 0;
    assert!(run(&snap, &Settings::default()).attribution_complete);
}

/// What the report examined: `targets` (status text, refused read) as seen
/// by a process with status `ours`.
fn examined(ours: &str, targets: &[&str]) -> UnreadableProcesses {
    let creds = |text: &str| credentials(text.as_bytes()).expect("captured status");
    UnreadableProcesses {
        ours: Ok(creds(ours)),
        initial_user_ns: Some(true),
        processes: targets
            .iter()
            .zip(1..)
            .map(|(text, pid)| Unreadable {
                pid,
                comm: "target".into(),
                kernel_thread: false,
                fds: true,
                netns: false,
                refused: vec![Refusal {
                    read: Read::FdLinks,
                    errno: 13,
                }],
                target: Ok(creds(text)),
                owner_uid: Some(0),
                user_ns: UserNs::Unknown,
            })
            .collect(),
        vanished: 0,
    }
}

#[test]
fn the_unknown_owner_hint_says_what_the_unreadable_processes_need() {
    let nobody = include_str!("../../tests/fixtures/status/nobody.txt");
    let root = include_str!("../../tests/fixtures/status/root.txt");
    let pid1 = include_str!("../../tests/fixtures/status/pid1-process_api.txt");
    let mut snap = unowned_close_wait(300);
    snap.unreadable = Some(examined(nobody, &[root, root, root]));
    let a = run(&snap, &Settings::default());
    let hint = &a.host_findings[0].hint;
    assert!(
        hint.contains("3 need CAP_SYS_PTRACE (run as root, or grant it)"),
        "{hint}"
    );
    assert_eq!(a.skipped.as_ref().map(|s| s.processes.len()), Some(3));

    // Root holding CAP_SYS_PTRACE, refused by pid 1 here: no capability
    // helps, and the hint does not pretend one would.
    snap.unreadable = Some(examined(root, &[pid1]));
    let a = run(&snap, &Settings::default());
    let hint = &a.host_findings[0].hint;
    assert!(hint.contains("security policy"), "{hint}");
    assert!(!hint.contains("root") && !hint.contains("needs"), "{hint}");
}

#[test]
fn fresh_sockets_without_an_owner_leave_attribution_complete() {
    // 5 s old, under the 60 s default: closed mid-scan, or not yet placed by
    // a cached walk; it cannot be a leak yet, whoever holds it.
    let snap = unowned_close_wait(5);
    let a = run(&snap, &Settings::default());
    assert_eq!(a.unattributed.close_wait_unknown_owner, 1);
    assert_eq!(a.unattributed.unknown_owner_stale(), 0);
    assert!(a.attribution_complete);
    assert!(a.host_findings.is_empty());

    // The same socket under a 0 s minimum age is stale: incomplete.
    let zero = Settings {
        close_wait_age: Duration::ZERO,
        ..Settings::default()
    };
    let a = run(&snap, &zero);
    assert_eq!(a.unattributed.unknown_owner_stale(), 1);
    assert!(!a.attribution_complete);
}

#[test]
fn fd_utilization_thresholds() {
    let snap = snapshot(
        vec![],
        vec![
            process(10, "near", 820, Some(1000), &[]),
            process(11, "full", 960, Some(1000), &[]),
            process(12, "fine", 790, Some(1000), &[]),
            process(13, "unlimited", 1_000_000, None, &[]),
        ],
    );
    let a = run(&snap, &Settings::default());
    assert_eq!(a.status, Status::Critical);
    let pids: Vec<u32> = a
        .processes
        .iter()
        .map(|p| snap.processes[p.index].key.pid)
        .collect();
    assert_eq!(
        pids,
        vec![11, 10],
        "worst first; fine and unlimited not listed"
    );
    assert_eq!(
        by_pid(&a, &snap, 11).findings[0].severity,
        Severity::Critical
    );
    assert!(by_pid(&a, &snap, 10).findings[0]
        .message
        .contains("820 of 1000"));
}

#[test]
fn host_file_table_utilization() {
    let mut snap = snapshot(vec![], vec![]);
    snap.host.open_fds = Some(96_000);
    let a = run(&snap, &Settings::default());
    assert_eq!(a.host_findings[0].check, Check::HostFdUtilization);
    assert_eq!(a.status, Status::Critical);
}

#[test]
fn only_pids_lists_exactly_those_and_weighs_only_them() {
    let mut snap = snapshot(
        vec![sock(
            TcpState::CloseWait,
            100,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            300,
            0,
        )],
        vec![
            process(10, "leaky", 5, Some(1024), &[100]),
            process(11, "clean", 5, Some(1024), &[]),
        ],
    );
    snap.host.open_fds = Some(99_000); // a critical host finding
    let settings = Settings {
        only_pids: Some(vec![11, 999]),
        ..Settings::default()
    };
    let a = run(&snap, &settings);
    assert_eq!(a.processes.len(), 1);
    assert_eq!(snap.processes[a.processes[0].index].key.pid, 11);
    assert_eq!(
        a.status,
        Status::Ok,
        "host findings are listed, not weighed"
    );
    assert_eq!(a.host_findings.len(), 1);
    assert_eq!(a.missing_pids, vec![999]);
}

#[test]
fn pool_hint_names_the_server_and_peers_are_grouped() {
    let mut socks: Vec<TcpSocket> = (0..9)
        .map(|i| {
            sock(
                TcpState::CloseWait,
                100 + i,
                &format!("127.0.0.1:{}", 40000 + i),
                "10.0.0.5:6379",
                600 + i as u32,
                1,
            )
        })
        .collect();
    socks.push(sock(
        TcpState::CloseWait,
        200,
        "127.0.0.1:41000",
        "10.0.0.6:5432",
        60,
        7,
    ));
    let inodes: Vec<u64> = socks.iter().map(|s| s.inode).collect();
    let snap = snapshot(socks, vec![process(10, "app", 50, Some(1024), &inodes)]);
    let a = run(&snap, &Settings::default());
    let p = by_pid(&a, &snap, 10);
    assert_eq!(p.peers.len(), 2);
    assert_eq!(p.peers[0].remote, addr("10.0.0.5:6379"));
    assert_eq!(p.peers[0].count, 9);
    assert_eq!(p.peers[0].oldest, Duration::from_secs(608));
    assert_eq!(p.peers[0].recv_q_bytes, 9);
    assert_eq!(p.peers[1].recv_q_bytes, 7);
    // Recv-Q 1 on CLOSE_WAIT is the unread FIN, not a byte of data.
    assert_eq!((p.peers[0].fin_unread, p.peers[0].unread_bytes), (9, 0));
    assert_eq!((p.peers[1].fin_unread, p.peers[1].unread_bytes), (1, 6));
    let hint = &p.findings[0].hint;
    assert!(hint.contains("9 of 10 go to 10.0.0.5:6379"), "{hint}");
    assert!(hint.contains("connection pool"), "{hint}");
    assert!(hint.contains("1 holds still unread data"), "{hint}");
}

#[test]
fn worst_process_comes_first() {
    let socks = vec![
        sock(
            TcpState::CloseWait,
            100,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            300,
            0,
        ),
        sock(
            TcpState::CloseWait,
            101,
            "127.0.0.1:80",
            "127.0.0.1:5001",
            300,
            0,
        ),
        sock(
            TcpState::CloseWait,
            102,
            "127.0.0.1:80",
            "127.0.0.1:5002",
            5,
            0,
        ),
    ];
    let snap = snapshot(
        socks,
        vec![
            process(10, "young", 5, Some(1024), &[102]),
            process(11, "one", 5, Some(1024), &[100]),
            process(12, "two", 5, Some(1024), &[101, 100]),
            process(13, "full", 990, Some(1000), &[]),
        ],
    );
    let a = run(&snap, &Settings::default());
    let pids: Vec<u32> = a
        .processes
        .iter()
        .map(|p| snap.processes[p.index].key.pid)
        .collect();
    // Critical fd use first, then by stale sockets, then the one with none stale.
    assert_eq!(pids, vec![13, 12, 11, 10]);
}

#[test]
fn ages_come_from_history_when_present() {
    let s = sock(
        TcpState::CloseWait,
        100,
        "127.0.0.1:80",
        "127.0.0.1:5000",
        10,
        0,
    );
    let snap = snapshot(
        vec![s.clone()],
        vec![process(10, "srv", 5, Some(1024), &[100])],
    );
    let mut h = History::default();
    // Seen 10 minutes ago (by an earlier scan), though the last ACK is 10 s old.
    h.observe(
        &snap,
        now() - Duration::from_secs(600),
        Duration::from_secs(900),
    );
    let a = analyse(&snap, &h, &Settings::default(), now());
    assert_eq!(
        by_pid(&a, &snap, 10).sockets.oldest_close_wait,
        Some(Duration::from_secs(610))
    );
    assert_eq!(a.status, Status::Warning);
}

#[test]
fn steady_fd_growth_raises_fd_exhaustion_with_its_eta() {
    // 10 fds a second for 100 s, limit 4096: 4096 - 1100 = 2996 left = 299.6 s.
    let mut h = History::default();
    let window = Duration::from_secs(900);
    let mut snap = Snapshot::default();
    for i in 0..=20u64 {
        let mut p = process(10, "leaky", 100 + 50 * i, Some(4096), &[]);
        p.fds.sockets = 40 * i;
        snap = snapshot(vec![], vec![p, process(11, "steady", 300, Some(4096), &[])]);
        h.observe(&snap, now() - Duration::from_secs(100 - 5 * i), window);
    }
    let a = analyse(&snap, &h, &Settings::default(), now());
    let p = by_pid(&a, &snap, 10);
    let g = p.growth.expect("growing");
    assert!((g.per_second - 10.0).abs() < 1e-6, "{g:?}");
    let eta = p.fd_exhaustion.expect("eta");
    assert!((eta.as_secs_f64() - 299.6).abs() < 0.01, "{eta:?}");
    let f = &p.findings[0];
    assert_eq!(
        (f.check, f.severity),
        (Check::FdExhaustion, Severity::Critical)
    );
    assert!(
        f.message.contains("grew by 1000 in 1m 40s"),
        "{}",
        f.message
    );
    assert!(
        f.hint.starts_with("80% of the growth is sockets"),
        "{}",
        f.hint
    );
    assert!(a
        .processes
        .iter()
        .all(|p| snap.processes[p.index].key.pid != 11));
}

#[test]
fn deleted_open_files_by_bytes() {
    let gib = 1024 * 1024 * 1024;
    let mut p = process(10, "logger", 10, Some(1024), &[]);
    p.fds.deleted_files = 2;
    p.fds.deleted_bytes = 2 * gib;
    p.largest_deleted = Some(("/var/log/app.log".into(), gib + 1));
    let mut q = process(11, "hoarder", 10, Some(1024), &[]);
    q.fds.deleted_files = 1;
    q.fds.deleted_bytes = 10 * gib;
    let snap = snapshot(
        vec![],
        vec![p, q, process(12, "small", 10, Some(1024), &[])],
    );
    let a = run(&snap, &Settings::default());
    let w = &by_pid(&a, &snap, 10).findings[0];
    assert_eq!(
        (w.check, w.severity),
        (Check::DeletedOpenFiles, Severity::Warning)
    );
    assert!(
        w.message
            .contains("2 files deleted but still open, holding 2.0 GiB"),
        "{}",
        w.message
    );
    assert!(w.message.contains("/var/log/app.log"), "{}", w.message);
    assert_eq!(
        by_pid(&a, &snap, 11).findings[0].severity,
        Severity::Critical
    );
    assert_eq!(a.processes.len(), 2);
}

#[test]
fn server_side_close_wait_is_grouped_by_its_local_port() {
    // A server's leaked connections: one local port, a peer each.
    let socks: Vec<TcpSocket> = (0..20)
        .map(|i| {
            sock(
                TcpState::CloseWait,
                100 + i,
                "10.0.0.1:8443",
                &format!("10.0.9.{}:{}", i, 40000 + i),
                300,
                0,
            )
        })
        .collect();
    let mut inodes: Vec<u64> = socks.iter().map(|s| s.inode).collect();
    inodes.push(999); // the listener
    let mut snap = snapshot(socks, vec![process(10, "api", 50, Some(1024), &inodes)]);
    snap.listeners = vec![Listener {
        netns: NS,
        local: addr("0.0.0.0:8443"),
        inode: 999,
        queue: 0,
        backlog: 128,
    }];
    let a = run(&snap, &Settings::default());
    let p = by_pid(&a, &snap, 10);
    assert_eq!(p.sockets.close_wait_top_local_port, Some((8443, 20)));
    assert!(p.sockets.listens_on_top_local_port);
    assert_eq!(p.peers.len(), 20);
    let hint = &p.findings[0].hint;
    assert!(
        hint.contains("20 of 20 were accepted on port 8443, where this process listens"),
        "{hint}"
    );
    assert!(!hint.contains("connection pool"), "{hint}");
}

#[test]
fn a_process_holding_both_ends_is_told_so() {
    // Half-closed to itself: FIN_WAIT_2 on one end, CLOSE_WAIT on the other.
    let socks = vec![
        sock(
            TcpState::FinWait2,
            100,
            "127.0.0.1:5000",
            "127.0.0.1:80",
            300,
            0,
        ),
        sock(
            TcpState::CloseWait,
            101,
            "127.0.0.1:80",
            "127.0.0.1:5000",
            300,
            1,
        ),
        sock(
            TcpState::FinWait2,
            102,
            "127.0.0.1:5001",
            "127.0.0.1:81",
            300,
            0,
        ),
    ];
    let snap = snapshot(
        socks,
        vec![process(10, "selfish", 50, Some(1024), &[100, 101, 102])],
    );
    let a = run(&snap, &Settings::default());
    let p = by_pid(&a, &snap, 10);
    assert_eq!(p.sockets.fin_wait2_to_self, 1);
    let f = p
        .findings
        .iter()
        .find(|f| f.check == Check::FinWait2Stale)
        .expect("finding");
    assert!(
        f.hint
            .contains("1 of them is connected to this same process"),
        "{}",
        f.hint
    );
}

#[test]
fn a_full_accept_queue_is_charged_to_the_listeners_owner() {
    let listener = |queue, backlog| Listener {
        netns: NS,
        local: addr("127.0.0.1:8080"),
        inode: 777,
        queue,
        backlog,
    };
    let judge = |queue, backlog| {
        let mut snap = snapshot(
            Vec::new(),
            vec![
                process(20, "stuck", 5, Some(1024), &[777]),
                process(21, "other", 5, Some(1024), &[]),
            ],
        );
        snap.listeners = vec![listener(queue, backlog)];
        let a = run(&snap, &Settings::default());
        (snap, a)
    };
    let (snap, a) = judge(5, 4);
    assert_eq!(a.status, Status::Critical);
    assert_eq!(a.processes.len(), 1, "only the owner");
    let p = by_pid(&a, &snap, 20);
    assert_eq!(p.listeners.len(), 1);
    let f = &p.findings[0];
    assert_eq!(
        (f.check, f.severity),
        (Check::AcceptQueueFull, Severity::Critical)
    );
    assert!(
        f.message
            .starts_with("5 connections waiting to be accepted on 127.0.0.1:8080, backlog 4 (full"),
        "{}",
        f.message
    );
    assert!(f.hint.contains("accept()"), "{}", f.hint);
    assert_eq!(judge(4, 5).1.status, Status::Warning, "0.8 of the backlog");
    let (_, calm) = judge(3, 5);
    assert_eq!(calm.status, Status::Ok, "0.6");
    assert!(
        calm.processes.is_empty(),
        "a queue below the levels lists nobody"
    );
    assert!(
        judge(0, 0).1.processes.is_empty(),
        "an empty queue is no fact"
    );
}

#[test]
fn dead_sockets_are_judged_by_how_long_they_have_been_held() {
    let mut snap = snapshot(
        Vec::new(),
        vec![
            process(30, "client", 20, Some(1024), &[]),
            process(31, "clean", 5, Some(1024), &[]),
        ],
    );
    snap.processes[0].dead = (0..3)
        .map(|i| crate::model::HeldSocket {
            inode: 900 + i,
            fd: 10 + i as u32,
        })
        .collect();
    // First sight: held, but for no time yet.
    let mut h = History::default();
    h.observe(&snap, now(), Duration::from_secs(900));
    let a = analyse(&snap, &h, &Settings::default(), now());
    let p = by_pid(&a, &snap, 30);
    assert_eq!((p.sockets.dead, p.sockets.dead_stale), (3, 0));
    assert!(p.findings.is_empty());
    assert_eq!(a.processes.len(), 1, "the clean process is not listed");
    // Still held 2 minutes later: stale, a warning.
    let later = now() + Duration::from_secs(120);
    snap.scanned_at = later;
    h.observe(&snap, later, Duration::from_secs(900));
    let a = analyse(&snap, &h, &Settings::default(), later);
    let p = by_pid(&a, &snap, 30);
    assert_eq!((p.sockets.dead, p.sockets.dead_stale), (3, 3));
    assert_eq!(p.sockets.oldest_dead, Some(Duration::from_secs(120)));
    let f = &p.findings[0];
    assert_eq!(
        (f.check, f.severity),
        (Check::DeadSockets, Severity::Warning)
    );
    assert!(
        f.message
            .starts_with("3 TCP sockets held for at least 1m (oldest 2m)"),
        "{}",
        f.message
    );
    // Closed: forgotten, so a new socket on a reused inode starts afresh.
    snap.processes[0].dead.truncate(1);
    h.observe(&snap, later, Duration::from_secs(900));
    snap.processes[0].dead[0].inode = 950;
    h.observe(&snap, later, Duration::from_secs(900));
    let a = analyse(&snap, &h, &Settings::default(), later);
    assert_eq!(by_pid(&a, &snap, 30).sockets.dead_stale, 0);
}

#[test]
fn ephemeral_ports_near_the_end_of_the_range_are_a_host_finding_naming_the_owner() {
    let inodes: Vec<u64> = (1000..1090).collect();
    let mut snap = snapshot(
        Vec::new(),
        vec![
            process(40, "client", 100, Some(1024), &inodes),
            // Holds the two sockets to :9090, looked up for another check.
            process(41, "server", 100, Some(1024), &[2000, 2001]),
        ],
    );
    let destination = |remote: &str, in_use: u64, inodes: Vec<u64>| crate::model::Destination {
        local_ip: addr("127.0.0.1:0").ip(),
        remote: addr(remote),
        in_use,
        time_wait: 3,
        inodes,
    };
    snap.namespaces = vec![crate::model::NetnsScan {
        id: NS,
        states: crate::model::StateCounts::default(),
        processes: 2,
        listen_overflows: None,
        listen_drops: None,
        ports: Some(crate::model::PortUse {
            range: crate::model::PortRange {
                low: 40000,
                high: 40099,
            },
            destinations: vec![
                destination("127.0.0.1:8080", 90, inodes.clone()),
                destination("127.0.0.1:9090", 2, vec![2000, 2001]),
            ],
        }),
    }];
    let a = run(&snap, &Settings::default());
    assert_eq!(a.status, Status::Warning);
    assert_eq!(a.ports.len(), 2);
    assert_eq!(a.ports[0].ratio, 0.9);
    assert_eq!(a.ports[0].owners, vec![(0, 90)]);
    assert!(
        a.ports[1].owners.is_empty(),
        "2% of the range: owners not named"
    );
    let f = &a.host_findings[0];
    assert_eq!(
        (f.check, f.severity),
        (Check::PortExhaustion, Severity::Warning)
    );
    assert!(
        f.message.starts_with(
            "90 of 100 ephemeral ports (90%) in use from 127.0.0.1 to 127.0.0.1:8080 in netns"
        ) && f.message.contains("held by pid 40 (client) ×90"),
        "{}",
        f.message
    );
    assert!(f.hint.contains("EADDRNOTAVAIL"), "{}", f.hint);
}

#[test]
fn idle_connections_without_keepalive_are_half_open_unless_their_local_peer_lives() {
    use crate::model::{Freshness, LocalPeer};
    let idle = |inode: u64, remote: &str, idle_s: u32, peer: Option<LocalPeer>| TcpSocket {
        state: TcpState::Established,
        info: Some(TcpInfo {
            state: 1,
            last_data_sent_ms: idle_s * 1000,
            last_data_recv_ms: idle_s * 1000,
            last_ack_recv_ms: idle_s * 1000,
        }),
        peer,
        ..sock(
            TcpState::Established,
            inode,
            "127.0.0.1:80",
            remote,
            idle_s,
            0,
        )
    };
    let mut snap = snapshot(
        Vec::new(),
        vec![
            process(50, "server", 10, Some(1024), &[1, 2, 3, 4]),
            process(51, "client", 10, Some(1024), &[9]),
        ],
    );
    let alive = LocalPeer::Socket {
        state: TcpState::Established,
        inode: 9,
    };
    snap.idle = vec![
        idle(1, "127.0.0.1:6000", 7200, Some(LocalPeer::Gone)),
        idle(2, "10.9.9.9:6001", 7200, None),
        idle(3, "127.0.0.1:6002", 7200, Some(alive)),
        idle(4, "10.9.9.9:6003", 60, None), // idle, but not for an hour
    ];
    snap.idle_check = Freshness::Fresh;
    let a = run(&snap, &Settings::default());
    let p = by_pid(&a, &snap, 50);
    assert_eq!(
        (p.sockets.idle_established, p.sockets.idle_peer_gone),
        (2, 1)
    );
    let f = &p.findings[0];
    assert_eq!((f.check, f.severity), (Check::HalfOpen, Severity::Warning));
    assert!(
        f.message
            .starts_with("2 ESTABLISHED connections received nothing for at least 1h"),
        "{}",
        f.message
    );
    assert!(
        f.message
            .contains("1 to a peer on this host that no longer exists"),
        "{}",
        f.message
    );
    let gone = p
        .peers
        .iter()
        .find(|g| g.remote == addr("127.0.0.1:6000"))
        .expect("peer");
    assert_eq!(gone.local, Some(crate::analyse::held::PeerEnd::Gone));
    assert!(
        p.peers.iter().all(|g| g.remote != addr("127.0.0.1:6002")),
        "a live peer is no concern"
    );
}

#[test]
fn a_half_close_pair_names_each_other_in_peers_and_hints() {
    use crate::analyse::held::PeerEnd;
    use crate::model::LocalPeer;
    let mut fw2 = sock(
        TcpState::FinWait2,
        100,
        "127.0.0.1:5000",
        "127.0.0.1:80",
        300,
        0,
    );
    fw2.peer = Some(LocalPeer::Socket {
        state: TcpState::CloseWait,
        inode: 101,
    });
    let mut cw = sock(
        TcpState::CloseWait,
        101,
        "127.0.0.1:80",
        "127.0.0.1:5000",
        300,
        0,
    );
    cw.peer = Some(LocalPeer::Socket {
        state: TcpState::FinWait2,
        inode: 100,
    });
    let snap = snapshot(
        vec![fw2, cw],
        vec![
            process(10, "halfcloser", 5, Some(1024), &[100]),
            process(11, "reader", 5, Some(1024), &[101]),
        ],
    );
    let a = run(&snap, &Settings::default());
    let hc = by_pid(&a, &snap, 10);
    assert_eq!(
        hc.peers[0].local,
        Some(PeerEnd::Owned {
            process: 1,
            state: TcpState::CloseWait
        })
    );
    assert!(
        hc.findings[0]
            .hint
            .contains("The other end is pid 11 (reader)"),
        "{}",
        hc.findings[0].hint
    );
    let reader = by_pid(&a, &snap, 11);
    assert!(
        reader.findings[0]
            .hint
            .starts_with("The peer is pid 10 (halfcloser), on this host"),
        "{}",
        reader.findings[0].hint
    );
}
