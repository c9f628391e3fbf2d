//! The combined TCPDIAG_GETSOCK request against this machine's kernel: a
//! report of an IPv4 and an IPv6 leak must come from it, not from the
//! fallback to one request per family (which would hide a broken encoding:
//! the answer would be the same).

mod common;

use common::Fixture;

#[test]
fn both_families_come_from_one_combined_dump() {
    let v4 = Fixture::start("eof-server", Some(2));
    let v6 = Fixture::start("ipv6", Some(1));
    let v4_server = v4.info.role("server").pids[0];
    let v6_server = v6.info.role("server").pids[0];
    let run = common::report_json_with(&[v4_server, v6_server], &["--log-level", "debug"]);
    assert!(
        !run.stderr.contains("TCPDIAG_GETSOCK dump failed"),
        "the kernel refused the combined request:\n{}",
        run.stderr
    );
    let report = run.json();
    for (pid, n) in [(v4_server, 2), (v6_server, 1)] {
        let p = common::process(&report, pid)
            .unwrap_or_else(|| panic!("pid {pid} not in the report: {report:#}"));
        assert_eq!(p["sockets"]["close_wait"], n, "{p:#}");
    }
}
