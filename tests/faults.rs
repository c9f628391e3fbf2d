//! The real agent keeps scanning when its procfs goes away and comes back
//! (`--proc-root` on a symlink to /proc, removed and restored, as a container's
//! /host/proc mount can be lost): each scan without it counts one `procfs` and
//! one `host` error in `closewatch_scan_errors_total` and logs it, /healthz
//! stays 200, and once procfs is back the errors stop and host figures return.
//!
//! Faults of the netlink dump are injected in src/collect/fault_tests.rs.

mod common;

use std::time::Duration;

use common::agent::{sample, wait_for, Agent};

/// Generous: a bound on a hang, never a measure of speed.
const WITHIN: Duration = Duration::from_secs(30);

struct Counts {
    scans: u64,
    procfs: u64,
    host: u64,
    sockdiag: u64,
}

fn counts(agent: &Agent) -> Counts {
    let text = agent.metrics();
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?} in:\n{text}"))
            as u64
    };
    Counts {
        scans: get("closewatch_scans_total", &[]),
        procfs: get("closewatch_scan_errors_total", &[("stage", "procfs")]),
        host: get("closewatch_scan_errors_total", &[("stage", "host")]),
        sockdiag: get("closewatch_scan_errors_total", &[("stage", "sockdiag")]),
    }
}

/// Waits until `done` holds for the agent's counters; returns them.
fn until(agent: &Agent, what: &str, done: impl Fn(&Counts) -> bool) -> Counts {
    wait_for(WITHIN, || Some(counts(agent)).filter(|c| done(c)))
        .unwrap_or_else(|| panic!("{what}: not within {WITHIN:?}"))
}

#[test]
fn procfs_lost_and_back_is_counted_per_scan_and_scanning_goes_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let proc_root = dir.path().join("proc");
    std::os::unix::fs::symlink("/proc", &proc_root).expect("symlink to /proc");
    let config = tempfile::NamedTempFile::new().expect("temp config");
    let agent = Agent::start(
        config.path(),
        &[
            "--interval".as_ref(),
            "100ms".as_ref(),
            "--proc-root".as_ref(),
            proc_root.as_os_str(),
        ],
    );

    let healthy = until(&agent, "two scans", |c| c.scans >= 2);
    assert_eq!(
        (healthy.procfs, healthy.host),
        (0, 0),
        "no procfs or host errors while /proc is there"
    );

    std::fs::remove_file(&proc_root).expect("remove the symlink");
    // The first scan to count a procfs error read /proc after the symlink
    // went; every scan after it began after that: each must count exactly
    // one error per stage. (Counting from `healthy` instead would depend on
    // how many scans began before this thread got to remove_file.)
    let first = until(&agent, "a procfs error", |c| c.procfs > healthy.procfs);
    let lost = until(&agent, "three scans without procfs", |c| {
        c.scans >= first.scans + 3
    });
    let without = lost.scans - first.scans;
    assert_eq!(
        (lost.procfs - first.procfs, lost.host - first.host),
        (without, without),
        "procfs and host errors over the {without} scans that began without procfs"
    );
    assert_eq!(lost.sockdiag, healthy.sockdiag, "the dumps need no procfs");
    let line = agent.wait_log("scan error (procfs)", WITHIN);
    assert!(line.contains("proc"), "the log names the path: {line}");
    let health = agent.request("GET", "/healthz").expect("/healthz answers");
    assert_eq!(health.status, 200, "scans still complete: {health:?}");

    std::os::unix::fs::symlink("/proc", &proc_root).expect("symlink back");
    // A scan still running when this scrape is answered may have begun
    // without procfs; every scan after it began with procfs back.
    let restored = counts(&agent);
    let back = until(&agent, "a scan with procfs back", |c| {
        c.scans > restored.scans
    });
    let later = until(&agent, "three more scans", |c| c.scans >= back.scans + 3);
    assert_eq!(
        (later.procfs, later.host),
        (back.procfs, back.host),
        "no errors once procfs is back"
    );
    let text = agent.metrics();
    assert!(
        sample(&text, "closewatch_host_open_fds", &[]).is_some_and(|v| v > 0.0),
        "host figures back: {text}"
    );
}
