//! The rest of the connection lifecycle, end to end: the real `closewatch
//! --report` against real kernel sockets made by the scenario fixture
//! (examples/fixture/). Sockets reset by their peer or refused and kept are
//! dead; UNIX stream sockets whose peer went away are unix_close_wait;
//! connections whose client vanished without FIN or RST (TCP_REPAIR) are
//! half-open, their peer gone, unless keepalive is on; 90 of 100 ephemeral
//! ports toward one server in a namespace of their own are 0.90 of the
//! range, the client named; a listener with backlog 4 and 12 clients has a
//! full queue; and a half-close pair names each other. Healthy connections
//! raise none of it. Every report is made under both attribution backends
//! (`--attribution procfs` and `--attribution bpf`), on the same fixture.

mod common;

use common::{process, report_json_by, u, Backend, Fixture};
use serde_json::Value;

/// `--report --format json` for `pids` under `backend`, every age at 0 s.
fn report(backend: Backend, pids: &[u32]) -> Value {
    let run = report_json_by(
        backend,
        pids,
        &["--dead-socket-age", "0s", "--idle-age", "0s"],
    );
    assert!(
        matches!(run.code, Some(0..=2)),
        "--attribution {}: exit {:?}\n{}",
        backend.name(),
        run.code,
        run.stderr
    );
    run.json()
}

fn findings(p: &Value) -> Vec<(String, String)> {
    p["findings"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    (
                        f["check"].as_str().unwrap_or_default().to_string(),
                        f["severity"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(p: &Value, check: &str, severity: &str) -> bool {
    findings(p).iter().any(|(c, s)| c == check && s == severity)
}

#[test]
fn sockets_reset_by_the_peer_and_kept_are_dead() {
    let fx = Fixture::start("reset", Some(3));
    let holder = fx.info.role("holder").pids[0];
    let server = fx.info.role("server").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[holder, server]);
        assert_eq!(r["dead_sockets_checked"], "fresh", "{r:#}");
        let p = process(&r, holder).expect("the holder is listed");
        assert_eq!(u(&p["sockets"]["dead"], "dead"), 3, "{p:#}");
        assert_eq!(u(&p["sockets"]["dead_stale"], "dead_stale"), 3, "{p:#}");
        assert!(has(p, "dead_sockets", "warning"), "{p:#}");
        let s = process(&r, server).expect("listed with --pid");
        assert_eq!(u(&s["sockets"]["dead"], "dead"), 0, "a listener is alive");
    }
}

#[test]
fn sockets_whose_connect_was_refused_and_kept_are_dead() {
    let fx = Fixture::start("refused", Some(2));
    let holder = fx.info.role("holder").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[holder]);
        let p = process(&r, holder).expect("the holder is listed");
        assert_eq!(u(&p["sockets"]["dead"], "dead"), 2, "{p:#}");
        assert!(has(p, "dead_sockets", "warning"), "{p:#}");
    }
}

#[test]
fn healthy_connections_are_neither_dead_nor_half_open_with_a_live_local_peer() {
    let fx = Fixture::start("clean", Some(3));
    let pids = fx.info.pids.clone();
    for backend in Backend::ALL {
        let r = report(backend, &pids);
        for &pid in &pids {
            let Some(p) = process(&r, pid) else { continue };
            assert_eq!(u(&p["sockets"]["dead"], "dead"), 0, "{p:#}");
            assert_eq!(
                u(&p["sockets"]["idle_established"], "idle_established"),
                0,
                "idle, but the peer is alive: {p:#}"
            );
            assert!(findings(p).is_empty(), "{p:#}");
        }
    }
}

#[test]
fn unix_sockets_whose_peer_went_away_are_unix_close_wait() {
    let fx = Fixture::start("unix-close", Some(6));
    let holder = fx.info.role("holder").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[holder]);
        assert_eq!(r["unix_checked"], "fresh", "{r:#}");
        let p = process(&r, holder).expect("the holder is listed");
        assert_eq!(
            u(&p["sockets"]["unix_close_wait"], "unix_close_wait"),
            6,
            "{p:#}"
        );
        assert!(has(p, "unix_close_wait", "warning"), "{p:#}");
    }
}

/// One such socket per process is below the default warning (5): an sshd
/// session holds one for its whole life (its privilege-separation monitor's
/// end of the pair the login helper used), which is no leak that grows.
#[test]
fn one_unix_socket_whose_peer_went_away_is_counted_not_a_finding() {
    let fx = Fixture::start("unix-close", Some(1));
    let holder = fx.info.role("holder").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[holder]);
        let p = process(&r, holder).expect("the holder is listed");
        assert_eq!(
            u(&p["sockets"]["unix_close_wait"], "unix_close_wait"),
            1,
            "{p:#}"
        );
        assert!(!has(p, "unix_close_wait", "warning"), "{p:#}");
    }
}

#[test]
fn a_client_that_vanished_without_fin_or_rst_leaves_the_server_half_open() {
    let fx = Fixture::start("half-open", Some(3));
    let server = fx.info.role("server").pids[0];
    let keepalive = Fixture::start("half-open-keepalive", Some(3));
    let kept_alive = keepalive.info.role("server").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[server]);
        assert_eq!(r["idle_checked"], "fresh", "{r:#}");
        let p = process(&r, server).expect("the server is listed");
        assert_eq!(
            u(&p["sockets"]["idle_established"], "idle_established"),
            3,
            "{p:#}"
        );
        let peers = p["peers"].as_array().expect("peers");
        let established: Vec<&Value> = peers
            .iter()
            .filter(|x| x["state"] == "established")
            .collect();
        assert_eq!(established.len(), 3, "{p:#}");
        assert!(
            established.iter().all(|x| x["peer_state"] == "gone"),
            "{p:#}"
        );
        assert!(has(p, "half_open", "warning"), "{p:#}");

        let r = report(backend, &[kept_alive]);
        let p = process(&r, kept_alive).expect("listed with --pid");
        assert_eq!(
            u(&p["sockets"]["idle_established"], "idle_established"),
            0,
            "keepalive will find the dead peer: {p:#}"
        );
        assert!(!has(p, "half_open", "warning"), "{p:#}");
    }
}

#[test]
fn ninety_of_a_hundred_ephemeral_ports_to_one_server_is_a_warning_naming_the_client() {
    let fx = Fixture::start("port-exhaustion", Some(90));
    let role = fx.info.role("holder");
    let holder = role.pids[0];
    let netns = role.netns.expect("the holder's own namespace");
    for backend in Backend::ALL {
        let r = report(backend, &[holder]);
        let ports = r["ports"].as_array().expect("ports");
        let dest = ports
            .iter()
            .find(|p| p["netns"] == netns && p["remote"] == "127.0.0.1:40100")
            .unwrap_or_else(|| panic!("no destination 127.0.0.1:40100 in netns {netns}: {r:#}"));
        assert_eq!(u(&dest["in_use"], "in_use"), 90, "{dest:#}");
        assert_eq!(u(&dest["range_size"], "range_size"), 100, "{dest:#}");
        assert_eq!(dest["ratio"].as_f64(), Some(0.9), "{dest:#}");
        let owners = dest["owners"].as_array().expect("owners");
        assert_eq!(owners.len(), 1, "{dest:#}");
        assert_eq!(u(&owners[0]["pid"], "pid"), u64::from(holder));
        assert_eq!(u(&owners[0]["count"], "count"), 90);
        let host = r["findings"].as_array().expect("host findings");
        assert!(
            host.iter().any(|f| f["check"] == "port_exhaustion"
                && f["severity"] == "warning"
                && f["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("127.0.0.1:40100"))),
            "{host:#?}"
        );
    }
}

#[test]
fn a_listener_with_backlog_4_and_12_clients_has_a_full_accept_queue() {
    let fx = Fixture::start("accept-queue", Some(12));
    let listener = fx.info.role("listener").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[listener]);
        let p = process(&r, listener).expect("the listener is listed");
        let queues = p["listeners"].as_array().expect("listeners");
        assert_eq!(queues.len(), 1, "{p:#}");
        assert_eq!(
            (
                u(&queues[0]["queue"], "queue"),
                u(&queues[0]["backlog"], "backlog")
            ),
            (5, 4),
            "the kernel queues backlog + 1"
        );
        assert!(has(p, "accept_queue_full", "critical"), "{p:#}");
        assert_eq!(r["status"], "critical");
    }
}

#[test]
fn each_end_of_a_half_close_pair_names_the_other() {
    let fx = Fixture::start("half-close", None);
    let closer = fx.info.role("half_closer").pids[0];
    let reader = fx.info.role("eof_reader").pids[0];
    for backend in Backend::ALL {
        let r = report(backend, &[closer, reader]);
        let peer_of = |pid: u32, state: &str| -> Value {
            let p = process(&r, pid).expect("listed");
            p["peers"]
                .as_array()
                .and_then(|ps| ps.iter().find(|x| x["state"] == state).cloned())
                .unwrap_or_else(|| panic!("no {state} peer: {p:#}"))
        };
        let fin_wait2 = peer_of(closer, "fin_wait2");
        assert_eq!(u(&fin_wait2["peer_pid"], "peer_pid"), u64::from(reader));
        assert_eq!(fin_wait2["peer_state"], "close_wait");
        let close_wait = peer_of(reader, "close_wait");
        assert_eq!(u(&close_wait["peer_pid"], "peer_pid"), u64::from(closer));
        assert_eq!(close_wait["peer_state"], "fin_wait2");
    }
}

/// The text report gives each kind its own line under the process.
#[test]
fn the_text_report_has_a_line_for_dead_and_unix_sockets() {
    let reset = Fixture::start("reset", Some(2));
    let unix = Fixture::start("unix-close", Some(3));
    let (a, b) = (
        reset.info.role("holder").pids[0],
        unix.info.role("holder").pids[0],
    );
    let (a, b) = (a.to_string(), b.to_string());
    for backend in Backend::ALL {
        let mut args = vec![
            "--report",
            "--dead-socket-age",
            "0s",
            "--pid",
            a.as_str(),
            "--pid",
            b.as_str(),
        ];
        args.extend(backend.flags());
        let run = common::closewatch(&args);
        assert!(matches!(run.code, Some(0..=2)), "{args:?}: {}", run.stderr);
        let has_line = |start: &str| run.stdout.lines().any(|l| l.starts_with(start));
        assert!(
            has_line("  dead   2 TCP sockets in no TCP table (reset or never connected), 2 held ≥ 0ms, oldest "),
            "{args:?}: {}",
            run.stdout
        );
        assert!(
            has_line("  unix   3 UNIX stream sockets whose peer closed, 3 held ≥ 0ms, oldest "),
            "{args:?}: {}",
            run.stdout
        );
    }
}
