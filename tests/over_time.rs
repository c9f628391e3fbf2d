//! `closewatch --report` judges time right on real sockets and processes: a
//! CLOSE_WAIT socket's age is the time since the peer's FIN (within 1 s); fd
//! growth at a steady rate over `--duration 15s` predicts exhaustion within a
//! quarter of the truth (critical); a deleted 2 GiB sparse file held open is
//! reported with its exact size.

mod common;

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::Fixture;
use serde_json::Value;

fn process(report: &Value, pid: u32) -> Value {
    common::process(report, pid)
        .cloned()
        .unwrap_or_else(|| panic!("pid {pid} not in the report: {report:#}"))
}

#[test]
fn a_close_wait_socket_is_as_old_as_the_peers_fin() {
    // This test process holds the CLOSE_WAIT socket itself.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.shutdown(Shutdown::Write).expect("FIN");
    let fin_at = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(server.read(&mut buf).expect("EOF"), 0);
    std::thread::sleep(Duration::from_secs(3));

    let me = std::process::id();
    let run = common::closewatch(&["--report", "--format", "json", "--pid", &me.to_string()]);
    let truth = fin_at.elapsed().as_secs_f64();
    let report = run.json();
    let p = process(&report, me);
    assert_eq!(p["sockets"]["close_wait"], 1, "{p:#}");
    let age = p["sockets"]["oldest_close_wait_seconds"]
        .as_f64()
        .expect("an age");
    // The report ran between the FIN and `truth`: its age can only be lower,
    // by the time the scan took; the tolerance is the 1 s.
    assert!(
        age <= truth + 0.01 && truth - age < 1.0,
        "age {age} s, truth {truth} s"
    );
    drop((client, server));
}

#[test]
fn steady_fd_growth_predicts_exhaustion_within_a_quarter_of_the_truth() {
    const RATE: u32 = 10;
    let fixture = Fixture::start("fd-leak", Some(RATE));
    let leaker = fixture.info.role("leaker").pids[0];
    let run = common::closewatch(&[
        "--report",
        "--format",
        "json",
        "--duration",
        "15s",
        "--pid",
        &leaker.to_string(),
    ]);
    let report = run.json();
    let p = process(&report, leaker);
    let open = p["fds"]["open"].as_f64().expect("open fds");
    assert_eq!(p["fds"]["limit"], 1024);
    // The leaker opens RATE fds a second; at the last scan it had `open`.
    let truth = (1024.0 - open) / f64::from(RATE);
    let growth = &p["fd_growth"];
    let eta = growth["exhaustion_seconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no growth judged: {p:#}"));
    assert!(
        (eta - truth).abs() <= 0.25 * truth,
        "ETA {eta} s, truth {truth} s"
    );
    let per_second = growth["per_second"].as_f64().expect("rate");
    assert!(
        (per_second - f64::from(RATE)).abs() < 0.25 * f64::from(RATE),
        "{growth}"
    );
    let finding = p["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "fd_exhaustion")
        .unwrap_or_else(|| panic!("no fd_exhaustion finding: {p:#}"));
    // Well under an hour to go: critical.
    assert_eq!(finding["severity"], "critical");
    assert_eq!(report["status"], "critical");
    assert_eq!(run.code, Some(2));
}

#[test]
fn a_deleted_sparse_file_held_open_is_reported_with_its_exact_size() {
    let fixture = Fixture::start("deleted-file", Some(2));
    let holder = fixture.info.role("holder").pids[0];
    let run = common::closewatch(&["--report", "--format", "json", "--pid", &holder.to_string()]);
    let report = run.json();
    let p = process(&report, holder);
    assert_eq!(p["fds"]["deleted_files"], 1);
    assert_eq!(p["fds"]["deleted_bytes"], 2u64 << 30);
    let f = &p["findings"][0];
    assert_eq!(f["check"], "deleted_open_files");
    assert_eq!(f["severity"], "warning", "2 GiB: over 1 GiB, under 10 GiB");
    let path = format!("closewatch-fixture-{holder}.log");
    assert!(
        f["message"].as_str().expect("message").contains(&path),
        "{f}"
    );
    assert_eq!(run.code, Some(1));
}
