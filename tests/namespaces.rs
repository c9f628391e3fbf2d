//! Every network namespace is scanned (real `ip netns` namespaces; root): a
//! leak in one and another in the host's each show in the report and /metrics
//! with pid and namespace; an empty namespace is scanned too, and its
//! CLOSE_WAIT count moves between all-state counts; without CAP_SYS_ADMIN (as
//! nobody) it is reported not scanned, and nobody is blamed.

mod common;

use std::time::Duration;

use common::agent::{sample, wait_for, Agent};
use common::{Backend, Fixture, Netns};
use serde_json::Value;

/// The report's entry for namespace `id`.
fn namespace(report: &Value, id: u64) -> Value {
    report["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .find(|n| n["netns"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("netns {id} not listed: {report:#}"))
}

fn process(report: &Value, pid: u32) -> Value {
    common::process(report, pid)
        .cloned()
        .unwrap_or_else(|| panic!("pid {pid} not in the report: {report:#}"))
}

#[test]
fn leaks_in_an_ip_netns_and_the_host_are_both_found() {
    if !common::root("ip netns add") {
        return;
    }
    let ns = Netns::add();
    let inside = Fixture::start_with(&["ip", "netns", "exec", &ns.name], "eof-server", Some(2));
    let outside = Fixture::start("eof-server", Some(1));
    let in_server = inside.info.role("server").pids[0];
    let out_server = outside.info.role("server").pids[0];

    let run = common::report_json(&[in_server, out_server]);
    let report = run.json();
    let p = process(&report, in_server);
    assert_eq!(p["sockets"]["close_wait"], 2, "{p:#}");
    assert_eq!(p["netns"][0], ns.id(), "{p:#}");
    let q = process(&report, out_server);
    assert_eq!(q["sockets"]["close_wait"], 1, "{q:#}");
    assert_ne!(q["netns"][0], ns.id());
    let entry = namespace(&report, ns.id());
    assert_eq!(entry["scanned"], true);
    assert!(entry["tcp_states"]["close_wait"].as_u64().expect("count") >= 2);
    assert_eq!(run.code, Some(1));

    let config = tempfile::NamedTempFile::new().expect("config");
    let agent = Agent::start(
        config.path(),
        &["--interval", "300ms", "--close-wait-age", "0s"],
    );
    let id = ns.id().to_string();
    let text = wait_for(Duration::from_secs(30), || {
        let text = agent.metrics();
        let by_pid = sample(
            &text,
            "closewatch_process_tcp_sockets",
            &[("pid", &in_server.to_string()), ("state", "close_wait")],
        );
        (by_pid == Some(2.0)).then_some(text)
    })
    .expect("the namespaced server's series");
    assert!(
        sample(
            &text,
            "closewatch_tcp_sockets",
            &[("netns", &id), ("state", "close_wait")]
        ) >= Some(2.0),
        "closewatch_tcp_sockets for netns {id}"
    );
    assert_eq!(
        sample(
            &text,
            "closewatch_process_tcp_sockets",
            &[("pid", &out_server.to_string()), ("state", "close_wait")]
        ),
        Some(1.0)
    );
}

#[test]
fn an_empty_ip_netns_is_scanned_too() {
    if !common::root("ip netns add") {
        return;
    }
    let ns = Netns::add();
    let report = common::report_json(&[]).json();
    let entry = namespace(&report, ns.id());
    assert_eq!(entry["scanned"], true);
    assert_eq!(entry["processes"], 0);
}

#[test]
fn without_cap_sys_admin_a_namespace_is_reported_not_scanned() {
    if !common::root("dropping to nobody") {
        return;
    }
    let ns = Netns::add();
    let _inside = Fixture::start_with(&["ip", "netns", "exec", &ns.name], "eof-server", Some(1));
    let out = common::closewatch_as_nobody(&["--report", "--format", "json"]);
    let report = common::report_json_of(&out.stdout, &out.stderr);
    let entry = namespace(&report, ns.id());
    assert_eq!(entry["scanned"], false);
    assert!(
        entry["reason"]
            .as_str()
            .expect("reason")
            .contains("CAP_SYS_ADMIN"),
        "{entry}"
    );
    assert!(report["netns_unknown_processes"].as_u64().expect("count") > 0);
    // As nobody no fd table of root's processes can be read: no process may
    // be blamed for a socket (sockets elsewhere, e.g. of tests running in
    // parallel, are then counted as of unknown owner).
    for p in report["processes"].as_array().expect("processes") {
        assert_eq!(p["sockets"]["close_wait"], 0, "{p:#}");
        assert_eq!(p["sockets"]["fin_wait2"], 0, "{p:#}");
    }
}

/// The agent counts every state at most once a minute (the all-states dump
/// emits every socket of the host); CLOSE_WAIT, FIN_WAIT_2 and LISTEN come
/// from the dump every scan makes. A leak that starts in a namespace whose
/// counts were taken seconds before must show in closewatch_tcp_sockets at
/// once, with the other states as last counted.
#[test]
fn close_wait_counts_move_between_all_state_counts() {
    if !common::root("ip netns add") {
        return;
    }
    let ns = Netns::add();
    let id = ns.id().to_string();
    let config = tempfile::NamedTempFile::new().expect("config");
    let agent = Agent::start(
        config.path(),
        &["--interval", "300ms", "--close-wait-age", "0s"],
    );
    let started = std::time::Instant::now();
    let count = |text: &str, state: &str| {
        sample(
            text,
            "closewatch_tcp_sockets",
            &[("netns", &id), ("state", state)],
        )
    };
    // The empty namespace counted (by the first scan), then one more scan.
    let scans = |text: &str| sample(text, "closewatch_scans_total", &[]);
    wait_for(Duration::from_secs(30), || {
        let text = agent.metrics();
        (count(&text, "close_wait") == Some(0.0) && scans(&text) >= Some(2.0)).then_some(())
    })
    .expect("the empty namespace counted");

    let clean = Fixture::start_with(&["ip", "netns", "exec", &ns.name], "clean", Some(2));
    let inside = Fixture::start_with(&["ip", "netns", "exec", &ns.name], "eof-server", Some(3));
    let server = inside.info.role("server").pids[0];
    let text = wait_for(Duration::from_secs(30), || {
        let text = agent.metrics();
        (count(&text, "close_wait") == Some(3.0)).then_some(text)
    })
    .expect("3 CLOSE_WAIT counted in the namespace");
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "too slow to be sure no all-states count ran in between"
    );
    assert_eq!(
        sample(
            &text,
            "closewatch_process_tcp_sockets",
            &[("pid", &server.to_string()), ("state", "close_wait")]
        ),
        Some(3.0)
    );
    // `clean`'s listener is counted by every scan too; its 4 ESTABLISHED
    // sockets wait for the next all-states count: ESTABLISHED is still as
    // counted when the namespace was empty.
    assert!(count(&text, "listen") >= Some(1.0), "{text}");
    assert_eq!(count(&text, "established"), Some(0.0));
    drop(clean);
}

/// A half-close pair between a namespace and the host, over a veth: neither
/// end's peer is local within its own namespace, and each is found as the
/// other's across the two (this test process holds both ends).
#[test]
fn a_half_close_pair_across_a_veth_names_each_other() {
    use std::io::Read;
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsFd;
    if !common::root("ip netns add") {
        return;
    }
    let ns = Netns::add();
    let me = std::process::id();
    let (host_if, ns_if) = (
        format!("cwh{}", me % 100_000),
        format!("cwn{}", me % 100_000),
    );
    let net = format!("10.231.{}", me % 200);
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("run ip");
        assert!(st.success(), "ip {args:?}");
    };
    // Deleting the namespace deletes ns_if, and with it host_if.
    ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns.name,
    ]);
    ip(&["addr", "add", &format!("{net}.1/30"), "dev", &host_if]);
    ip(&["link", "set", &host_if, "up"]);
    ip(&[
        "-n",
        &ns.name,
        "addr",
        "add",
        &format!("{net}.2/30"),
        "dev",
        &ns_if,
    ]);
    ip(&["-n", &ns.name, "link", "set", &ns_if, "up"]);

    let listener = TcpListener::bind(format!("{net}.1:0")).expect("bind on the veth");
    let addr = listener.local_addr().expect("addr");
    let handle = std::fs::File::open(format!("/run/netns/{}", ns.name)).expect("netns handle");
    let client = std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            handle.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect over the veth")
    })
    .join()
    .expect("the client thread");
    let (mut server, _) = listener.accept().expect("accept");
    client.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(server.read(&mut [0u8; 1]).expect("read EOF"), 0);
    common::wait_tcp_state(&client, 5); // FIN_WAIT_2

    let r = common::report_json(&[me]).json();
    let p = process(&r, me);
    let peer = |state: &str| -> Value {
        p["peers"]
            .as_array()
            .and_then(|ps| ps.iter().find(|x| x["state"] == state).cloned())
            .unwrap_or_else(|| panic!("no {state} peer: {p:#}"))
    };
    let fin_wait2 = peer("fin_wait2");
    assert_eq!(fin_wait2["peer_pid"], me, "{p:#}");
    assert_eq!(fin_wait2["peer_state"], "close_wait", "{p:#}");
    let close_wait = peer("close_wait");
    assert_eq!(close_wait["peer_pid"], me, "{p:#}");
    assert_eq!(close_wait["peer_state"], "fin_wait2", "{p:#}");
    drop((client, server));
}

/// A namespace where every TCP socket is held by a process (a half-closed
/// pair, whose listener is closed once it accepted) is read by lookups of those sockets when the BPF
/// pass has named them, not by a dump's walk of the shared hash table: the
/// report says the same of it under both backends (the /proc walk always
/// dumps).
#[test]
fn a_namespace_whose_sockets_are_all_held_reads_the_same_by_lookups() {
    if !common::root("ip netns add, and BPF") {
        return;
    }
    let ns = Netns::add();
    let fx = Fixture::start_with(&["ip", "netns", "exec", &ns.name], "half-close", None);
    let said = format!("netns {}: TCP tables from 2 lookups, no dump", ns.id());
    let mut views = Vec::new();
    for backend in Backend::ALL {
        let run = common::report_json_by(backend, &fx.info.pids, &["--log-level", "debug"]);
        let report = run.json();
        assert_eq!(
            run.stderr.contains(&said),
            backend == Backend::Bpf,
            "--attribution {}: {said:?} in the log?\n{}",
            backend.name(),
            run.stderr
        );
        let entry = namespace(&report, ns.id());
        let sockets: Vec<Value> = fx
            .info
            .pids
            .iter()
            .filter_map(|&pid| common::process(&report, pid))
            .map(|p| {
                // Ages grow between the two reports.
                let mut counts = p["sockets"].clone();
                if let Some(fields) = counts.as_object_mut() {
                    fields.retain(|k, _| !k.starts_with("oldest_"));
                }
                counts
            })
            .collect();
        views.push((entry["tcp_states"].clone(), sockets));
    }
    assert_eq!(views[0], views[1], "procfs, then bpf");
    let (states, sockets) = &views[0];
    assert_eq!(
        (
            &states["listen"],
            &states["close_wait"],
            &states["fin_wait2"]
        ),
        (&Value::from(0), &Value::from(1), &Value::from(1)),
        "{states:#}"
    );
    let held = |field: &str| sockets.iter().filter(|s| s[field] == 1).count();
    assert_eq!(
        (held("close_wait"), held("fin_wait2")),
        (1, 1),
        "each end named: {sockets:?}"
    );
}
