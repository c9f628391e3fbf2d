//! `closewatch --report` tells the truth about real kernel sockets on loopback
//! made by the scenario fixture (examples/fixture/): with `--pid`, exact
//! counts, owners, peers, findings, status and exit code; in the full report,
//! the fixture's holders listed and nobody else blamed. Also: an unknown
//! `--pid` exits 3, the text format has no ANSI off a TTY, and a reader gone
//! before the report is written leaves the report's own exit status.
//!
//! The scenarios: CLOSE_WAIT after EOF, a half-close (FIN_WAIT_2 + CLOSE_WAIT),
//! a client pool the server hung up on, a socket shared across fork,
//! connections never accepted, clean ESTABLISHED traffic, IPv6, 100 CLOSE_WAIT
//! (critical) and a CLOSE_WAIT in another network namespace.
//!
//! Every report on a fixture is made under both attribution backends
//! (`--attribution procfs` and `--attribution bpf`, [`Backend::ALL`]), on
//! the same fixture, and must say the same.

mod common;

use std::net::SocketAddr;

use common::{
    assert_full_report, assert_pid_report, closewatch, default_severity, exit_code_of, expected,
    expected_status, finding_checks, listed_pids, process, processes, report_json_by, u, Backend,
    Fixture,
};
use serde_json::Value;

/// Both views under `backend`, plus the status derived from the default
/// levels of close_wait_stale and fin_wait2_stale (for the scenarios whose
/// only findings are those two checks).
fn check_both(fx: &Fixture, backend: Backend) -> (Value, Option<i32>) {
    let (report, code) = assert_pid_report(fx, backend);
    let status = expected_status(&expected(&fx.info));
    assert_eq!(report["status"], status, "{report:#}");
    assert_eq!(code, Some(exit_code_of(status)), "{report:#}");
    assert_full_report(fx, backend);
    (report, code)
}

fn n_of(fx: &Fixture) -> u64 {
    fx.info.n.expect("scenario takes N")
}

#[test]
fn eof_server_holds_n_close_wait_with_empty_recv_q() {
    let fx = Fixture::start("eof-server", Some(3));
    let n = n_of(&fx);
    let server = fx.info.role("server");
    let client = fx.info.role("client");
    assert_eq!(server.sockets.len() as u64, n, "{:?}", fx.info);

    for backend in Backend::ALL {
        let (report, code) = check_both(&fx, backend);
        let p = process(&report, server.pids[0]).expect("server listed");
        assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), n);
        assert_eq!(u(&p["sockets"]["fin_wait2"], "fin_wait2"), 0);
        // Each connection came from its own client port: n peers of one
        // socket.
        let peers = p["peers"].as_array().expect("peers");
        assert_eq!(peers.len() as u64, n, "{p:#}");
        for peer in peers {
            assert_eq!(peer["state"], "close_wait");
            assert_eq!(peer["recv_q_bytes"], 0, "EOF was read: Recv-Q 0: {p:#}");
            let remote = peer["remote"].as_str().expect("remote");
            assert!(fx.info.endpoints.iter().any(|e| e == remote), "{remote}");
        }
        assert_eq!(finding_checks(p), vec!["close_wait_stale"]);
        // The clients closed: they hold nothing.
        let c = process(&report, client.pids[0]).expect("client listed under --pid");
        assert_eq!(u(&c["sockets"]["close_wait"], "close_wait"), 0);
        assert_eq!(u(&c["sockets"]["fin_wait2"], "fin_wait2"), 0);
        // N stale CLOSE_WAIT, judged by the default levels.
        let severity = default_severity(n).expect("N ≥ 1 fires");
        assert_eq!(code, Some(exit_code_of(severity)));
    }
}

#[test]
fn half_close_gives_fin_wait2_to_the_closer_and_close_wait_to_the_reader() {
    let fx = Fixture::start("half-close", None);
    let a = fx.info.role("half_closer");
    let b = fx.info.role("eof_reader");
    for backend in Backend::ALL {
        let (report, _) = check_both(&fx, backend);

        let pa = process(&report, a.pids[0]).expect("A listed");
        assert_eq!(u(&pa["sockets"]["fin_wait2"], "fin_wait2"), 1);
        assert_eq!(u(&pa["sockets"]["close_wait"], "close_wait"), 0);
        assert_eq!(pa["peers"][0]["remote"].as_str(), fx.info.listen.as_deref());
        assert_eq!(pa["peers"][0]["state"], "fin_wait2");
        assert_eq!(finding_checks(pa), vec!["fin_wait2_stale"]);

        let pb = process(&report, b.pids[0]).expect("B listed");
        assert_eq!(u(&pb["sockets"]["close_wait"], "close_wait"), 1);
        assert_eq!(u(&pb["sockets"]["fin_wait2"], "fin_wait2"), 0);
        assert_eq!(
            pb["peers"][0]["remote"].as_str(),
            Some(a.sockets[0].local.as_str())
        );
        assert_eq!(finding_checks(pb), vec!["close_wait_stale"]);
    }
}

#[test]
fn pool_holds_n_close_wait_all_to_the_server_address() {
    let fx = Fixture::start("pool", Some(4));
    let n = n_of(&fx);
    let pool = fx.info.role("pool");
    let server = fx.info.role("server");
    let listen = fx.info.listen.clone().expect("listen address");
    for backend in Backend::ALL {
        let (report, _) = check_both(&fx, backend);

        let p = process(&report, pool.pids[0]).expect("pool listed");
        assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), n);
        let peers = p["peers"].as_array().expect("peers");
        assert_eq!(peers.len(), 1, "{p:#}");
        assert_eq!(peers[0]["remote"].as_str(), Some(listen.as_str()));
        assert_eq!(peers[0]["state"], "close_wait");
        assert_eq!(u(&peers[0]["count"], "count"), n);
        // The pool never read its FINs: one sequence number each in Recv-Q.
        assert_eq!(u(&peers[0]["recv_q_bytes"], "recv_q_bytes"), n, "{p:#}");

        // The server closed (its sockets are orphans): it is blamed for
        // nothing.
        let s = process(&report, server.pids[0]).expect("server listed under --pid");
        assert_eq!(u(&s["sockets"]["close_wait"], "close_wait"), 0);
        assert_eq!(u(&s["sockets"]["fin_wait2"], "fin_wait2"), 0);
        assert!(finding_checks(s).is_empty(), "{s:#}");
    }
}

#[test]
fn fork_shared_socket_belongs_to_both_processes() {
    let fx = Fixture::start("fork-shared", None);
    let holder = fx.info.role("holder");
    assert_eq!(
        holder.pids.len(),
        2,
        "parent and forked child: {:?}",
        fx.info
    );
    let client = fx.info.role("client");
    for backend in Backend::ALL {
        let (report, _) = check_both(&fx, backend);
        for &pid in &holder.pids {
            let p = process(&report, pid).expect("holder listed");
            assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), 1, "{p:#}");
            assert_eq!(
                p["peers"][0]["remote"].as_str(),
                Some(holder.sockets[0].remote.as_str())
            );
        }
        let c = process(&report, client.pids[0]).expect("client listed under --pid");
        assert_eq!(u(&c["sockets"]["close_wait"], "close_wait"), 0);
    }
}

#[test]
fn unaccepted_connections_are_charged_to_the_listener() {
    let fx = Fixture::start("unaccepted", Some(3));
    let n = n_of(&fx);
    let listener = fx.info.role("listener");
    assert_eq!(listener.queued, n, "the accept queue held N: {:?}", fx.info);

    for backend in Backend::ALL {
        let (report, code) = assert_pid_report(&fx, backend);
        assert!(matches!(code, Some(0..=2)), "{report:#}");
        let p = process(&report, listener.pids[0]).expect("listener listed");
        assert_eq!(
            u(
                &p["sockets"]["close_wait_unaccepted"],
                "close_wait_unaccepted"
            ),
            n
        );
        assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), 0);
        // The listener's queue is at its backlog of N: full.
        let listeners = p["listeners"].as_array().expect("listeners");
        assert_eq!(listeners.len(), 1, "{p:#}");
        assert_eq!(
            listeners[0]["local"],
            fx.info.listen.as_deref().unwrap_or(""),
            "{p:#}"
        );
        assert_eq!(
            (
                u(&listeners[0]["queue"], "queue"),
                u(&listeners[0]["backlog"], "backlog")
            ),
            (n, n)
        );
        assert_eq!(code, Some(2), "a full accept queue is critical: {report:#}");
        assert!(
            u(
                &report["unattributed"]["close_wait_unaccepted"],
                "close_wait_unaccepted"
            ) >= n
        );

        let full = assert_full_report(&fx, backend);
        let p = process(&full, listener.pids[0]).expect("the listener is named in the full report");
        assert_eq!(
            u(
                &p["sockets"]["close_wait_unaccepted"],
                "close_wait_unaccepted"
            ),
            n
        );
        assert!(
            u(
                &full["unattributed"]["close_wait_unaccepted"],
                "close_wait_unaccepted"
            ) >= n
        );
    }
}

#[test]
fn clean_connections_raise_nothing() {
    let fx = Fixture::start("clean", Some(3));
    for role in &fx.info.roles {
        assert!(
            role.sockets.iter().all(|s| s.state == "established"),
            "{:?}",
            fx.info
        );
    }
    for backend in Backend::ALL {
        let (report, code) = check_both(&fx, backend);
        assert_eq!(report["status"], "ok", "{report:#}");
        for p in processes(&report) {
            assert!(finding_checks(p).is_empty(), "{p:#}");
            assert_eq!(p["peers"], Value::Array(vec![]), "{p:#}");
        }
        assert_eq!(code, Some(0));
    }
}

#[test]
fn ipv6_close_wait_has_ipv6_peers() {
    let fx = Fixture::start("ipv6", Some(2));
    let n = n_of(&fx);
    let server = fx.info.role("server");
    for backend in Backend::ALL {
        let (report, _) = check_both(&fx, backend);
        let p = process(&report, server.pids[0]).expect("server listed");
        assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), n);
        let peers = p["peers"].as_array().expect("peers");
        assert_eq!(peers.len() as u64, n);
        for peer in peers {
            let remote: SocketAddr = peer["remote"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("remote is ip:port: {peer}"));
            assert!(remote.is_ipv6() && remote.ip().is_loopback(), "{remote}");
        }
    }
}

#[test]
fn a_hundred_close_wait_is_critical() {
    let fx = Fixture::start("eof-server", Some(100));
    let n = n_of(&fx);
    let server = fx.info.role("server").pids[0];
    for backend in Backend::ALL {
        let (report, code) = check_both(&fx, backend);
        let p = process(&report, server).expect("server listed");
        assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), n);
        // close_wait_stale is critical at ≥ 100 by default.
        let severity = default_severity(n).expect("fires");
        assert_eq!(p["findings"][0]["severity"], severity, "{p:#}");
        assert_eq!(report["status"], severity);
        assert_eq!(code, Some(exit_code_of(severity)));
    }
}

#[test]
fn close_wait_in_another_network_namespace_is_found() {
    // Every network namespace on the host is scanned, not only ours.
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: making a network namespace needs root");
        return;
    }
    let fx = Fixture::start("netns", Some(2));
    let n = n_of(&fx);
    let server = fx.info.role("server");
    let ns = server.netns.expect("the fixture reports its namespace");
    for backend in Backend::ALL {
        let (report, _) = check_both(&fx, backend);
        let p = process(&report, server.pids[0]).expect("server listed");
        assert_eq!(u(&p["sockets"]["close_wait"], "close_wait"), n, "{p:#}");
        let netns: Vec<u64> = p["netns"]
            .as_array()
            .expect("netns array")
            .iter()
            .map(|v| u(v, "netns"))
            .collect();
        assert!(netns.contains(&ns), "netns {ns} missing: {p:#}");
    }
}

#[test]
fn full_report_names_the_fixture_process() {
    let fx = Fixture::start("eof-server", Some(1));
    let server = fx.info.role("server").pids[0];
    for backend in Backend::ALL {
        let report = assert_full_report(&fx, backend);
        assert!(
            listed_pids(&report).contains(&server),
            "pid {server} absent from the full report: {report:#}"
        );
        // Not listed: the coordinator and the client hold nothing.
        assert!(process(&report, fx.info.coordinator).is_none());
        assert!(process(&report, fx.info.role("client").pids[0]).is_none());
    }
}

/// A pid that existed a moment ago and is gone now (reaped).
fn vanished_pid() -> u32 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("start true");
    let pid = child.id();
    child.wait().expect("reap true");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} was reused already"
    );
    pid
}

#[test]
fn unknown_pid_is_an_error_with_exit_3() {
    for backend in Backend::ALL {
        let pid = vanished_pid();
        let run = report_json_by(backend, &[pid], &[]);
        assert_eq!(
            run.code,
            Some(3),
            "stdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
        assert!(
            run.stderr.contains(&pid.to_string()),
            "stderr names the pid: {}",
            run.stderr
        );
        let report = run.json();
        let errors = report["errors"].as_array().expect("errors array");
        assert!(
            errors.iter().any(|e| {
                e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&pid.to_string())
                    && e["stage"].as_str().is_some_and(|s| !s.is_empty())
            }),
            "errors has an entry for pid {pid}: {report:#}"
        );
        assert!(process(&report, pid).is_none());
        assert!(processes(&report).is_empty(), "{report:#}");
    }
}

#[test]
fn unknown_pid_alongside_a_real_one_still_exits_3() {
    let fx = Fixture::start("eof-server", Some(1));
    let server = fx.info.role("server").pids[0];
    for backend in Backend::ALL {
        let gone = vanished_pid();
        let run = report_json_by(backend, &[server, gone], &[]);
        assert_eq!(run.code, Some(3), "stderr:\n{}", run.stderr);
        assert!(run.stderr.contains(&gone.to_string()), "{}", run.stderr);
        let report = run.json();
        assert_eq!(listed_pids(&report), vec![server], "{report:#}");
        assert_eq!(
            u(
                &process(&report, server).expect("server")["sockets"]["close_wait"],
                "close_wait"
            ),
            1
        );
    }
}

#[test]
fn text_report_shows_the_pid_without_ansi_off_a_tty() {
    let fx = Fixture::start("eof-server", Some(2));
    let server = fx.info.role("server").pids[0];
    let exp = expected(&fx.info);
    let status = expected_status(&exp.into_iter().filter(|(p, _)| *p == server).collect());
    let pid = server.to_string();
    for backend in Backend::ALL {
        let mut args = vec![
            "--report",
            "--format",
            "text",
            "--close-wait-age",
            "0s",
            "--fin-wait2-age",
            "0s",
            "--pid",
            &pid,
        ];
        args.extend(backend.flags());
        let run = closewatch(&args);
        assert_eq!(
            run.code,
            Some(exit_code_of(status)),
            "{args:?}\nstdout:\n{}\nstderr:\n{}",
            run.stdout,
            run.stderr
        );
        assert!(
            !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
            "ANSI escape off a TTY:\n{:?}",
            run.stdout
        );
        assert!(
            run.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(pid.as_str())),
            "no table row for pid {pid} ({args:?}):\n{}",
            run.stdout
        );
    }
}

#[test]
fn a_reader_gone_before_the_report_ends_it_with_the_reports_own_status() {
    // `closewatch --report | head -0`: the pipe has no reader when the report
    // is written (EPIPE). The scan is sound: the status is the report's
    // (WARNING: one stale CLOSE_WAIT), and nothing is said of the pipe.
    let fx = Fixture::start("eof-server", Some(1));
    let server = fx.info.role("server").pids[0];
    for backend in Backend::ALL {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_closewatch"))
            .args(["--report", "--close-wait-age", "0s", "--pid"])
            .arg(server.to_string())
            .args(backend.flags())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend:?}, stderr:\n{stderr}");
        assert!(!stderr.contains("writing the report"), "{stderr}");
    }
}

/// A process that renamed itself (setproctitle: its title over its argv
/// area, the rest NUL padding, as redis-server and nginx workers do) shows
/// its title and nothing after it, in JSON and in text.
#[test]
fn a_renamed_process_has_its_padding_trimmed() {
    let fx = Fixture::start("argv-padded", None);
    let pid = fx.info.role("renamed").pids[0];
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).expect("read its cmdline");
    assert!(
        raw.ends_with(b"\0\0"),
        "the fixture pads its argv area: {raw:?}"
    );
    let pid_arg = pid.to_string();
    for backend in Backend::ALL {
        let r = report_json_by(backend, &[pid], &[]).json();
        let p = process(&r, pid).expect("listed with --pid");
        assert_eq!(p["cmdline"], "cw-renamed: worker process", "{p:#}");
        let mut args = vec!["--report", "--pid", pid_arg.as_str()];
        args.extend(backend.flags());
        let text = closewatch(&args).stdout;
        assert!(
            text.lines()
                .any(|l| l == "  cmd    cw-renamed: worker process"),
            "{backend:?}: {text}"
        );
    }
}

/// The peer lines of `pid`'s details in the text report.
fn peer_lines(pid: u32, backend: Backend) -> Vec<String> {
    let pid = pid.to_string();
    let mut args = vec!["--report", "--close-wait-age", "0s", "--pid", pid.as_str()];
    args.extend(backend.flags());
    let run = closewatch(&args);
    run.stdout
        .lines()
        .filter(|l| l.starts_with("  server ") || l.starts_with("  peer   "))
        .map(str::to_string)
        .collect()
}

/// A server that never closes has one peer per client port; the report
/// groups them under the address it accepted them on, with the client
/// hosts, in one line (JSON `peer_groups`); a pool's leak names the server
/// it talks to.
#[test]
fn a_server_leak_is_one_line_and_a_pool_leak_names_its_server() {
    let fx = Fixture::start("eof-server", Some(8));
    let server = fx.info.role("server").pids[0];
    let listen = fx.info.listen.clone().expect("listen address");
    let pool = Fixture::start("pool", Some(4));
    let client = pool.info.role("pool").pids[0];
    let pool_listen = pool.info.listen.clone().expect("listen address");
    for backend in Backend::ALL {
        let lines = peer_lines(server, backend);
        assert!(lines.len() <= 2, "{backend:?}: {lines:#?}");
        assert!(
            lines[0].starts_with(&format!("  server {listen} close_wait ×8, ")),
            "{backend:?}: {lines:#?}"
        );
        let r = report_json_by(backend, &[server], &[]).json();
        let p = process(&r, server).expect("listed");
        let g = &p["peer_groups"][0];
        assert_eq!(
            (&g["side"], &g["local"], &g["count"]),
            (&"server".into(), &listen.as_str().into(), &8.into()),
            "{p:#}"
        );
        assert_eq!(u(&g["hosts"][0]["count"], "hosts count"), 8, "{p:#}");
        assert_eq!(
            p["peers"].as_array().map(Vec::len),
            Some(8),
            "one per client port"
        );

        let lines = peer_lines(client, backend);
        assert_eq!(lines.len(), 1, "{backend:?}: {lines:#?}");
        assert!(
            lines[0].starts_with(&format!("  peer   {pool_listen} close_wait ×4, ")),
            "{backend:?}: {lines:#?}"
        );
        assert!(lines[0].contains("FIN not read ×4"), "{lines:#?}");
    }
}
