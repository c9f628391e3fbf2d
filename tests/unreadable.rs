//! The cause and remedy the report gives for a process it could not read
//! are checked against the real kernel: the capability sets are read from
//! /proc/PID/status here, independently of closewatch, and each remedy
//! the report names is tried (the process gets read once it is granted)
//! or shown not to exist (a process that holds it is refused too).
//!
//! pid 1 of this sandbox is refused even to root holding CAP_SYS_PTRACE:
//! where pid 1 is readable (a normal host) that part says so and checks
//! nothing.

mod common;

use std::process::Command;

use closewatch::model::access::CapSet;
use common::Fixture;
use serde_json::Value;

/// `setpriv` to root without CAP_SYS_PTRACE (dropped from the bounding
/// set too, so no exec can gain it back).
const WITHOUT_PTRACE: [&str; 3] = [
    "setpriv",
    "--inh-caps=-sys_ptrace",
    "--bounding-set=-sys_ptrace",
];

/// `CapPrm`, `CapEff` and `Uid` of a /proc/PID/status.
struct Status {
    permitted: CapSet,
    effective: CapSet,
    uid: u32,
}

fn parse_status(text: &str) -> Status {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_string()
    };
    let hex = |name: &str| CapSet(u64::from_str_radix(&field(name), 16).expect("hex"));
    Status {
        permitted: hex("CapPrm:"),
        effective: hex("CapEff:"),
        uid: field("Uid:")
            .split_whitespace()
            .nth(1)
            .and_then(|u| u.parse().ok())
            .expect("euid"),
    }
}

fn status_of(pid: &str) -> Status {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status"))
}

/// The status a process started under `wrapper` has (it reads its own).
fn status_under(wrapper: &[&str]) -> Status {
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .args(["cat", "/proc/self/status"])
        .output()
        .expect("run cat under the wrapper");
    assert!(out.status.success(), "{out:?}");
    parse_status(&String::from_utf8_lossy(&out.stdout))
}

/// The names of `set`, decoded by capsh (libcap) when it is installed, an
/// oracle independent of closewatch's table; else by that table.
fn names(set: CapSet) -> Vec<String> {
    let capsh = Command::new("capsh")
        .arg(format!("--decode={:x}", set.0))
        .output();
    match capsh {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let list = text.trim().split_once('=').map_or("", |(_, l)| l);
            let mut names: Vec<String> = list
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| n.to_uppercase())
                .collect();
            names.sort_by_key(|n| set.iter().position(|c| c.name() == *n));
            names
        }
        _ => set.names(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn skipped(report: &Value, pid: u32) -> Option<&Value> {
    report["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no skipped array: {report:#}"))
        .iter()
        .find(|s| s["pid"].as_u64() == Some(u64::from(pid)))
}

/// Whether this process (root, holding CAP_SYS_PTRACE) can read pid `pid`'s
/// fd links; the errno if not.
fn read_fds(pid: u32) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        std::fs::read_link(entry?.path())?;
    }
    Ok(())
}

/// `--report --format json` under `wrapper`, of `pids` only (`--pid`: the
/// report names at most 20 skipped processes, and every kernel thread of
/// the host may be one of them).
fn report_under(wrapper: &[&str], pids: &[u32]) -> Value {
    let mut args: Vec<String> = ["--report", "--format", "json", "--close-wait-age", "0s"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for pid in pids {
        args.extend(["--pid".to_string(), pid.to_string()]);
    }
    let run = common::closewatch_under(wrapper, &args);
    let report = run.json();
    assert_eq!(report["errors"], Value::Array(vec![]), "{}", run.stderr);
    report
}

#[test]
fn pid_1_is_named_with_exactly_the_capabilities_it_holds_that_we_lack() {
    if !common::root("reading pid 1 as root") {
        return;
    }
    let ours = status_of("self");
    let pid1 = status_of("1");
    match read_fds(1) {
        Ok(()) => {
            eprintln!("**** pid 1 is readable here: nothing to check ****");
            return;
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}"),
    }
    let report = report_under(&[], &[1]);
    let entry = skipped(&report, 1).unwrap_or_else(|| panic!("pid 1 not named: {report:#}"));
    let missing = pid1.permitted.minus(ours.effective);
    assert_eq!(
        strings(&entry["missing_capabilities"]),
        names(missing),
        "{entry:#}"
    );
    assert_eq!(entry["cap_permitted"], pid1.permitted.to_string());
    assert_eq!(entry["cap_effective"], pid1.effective.to_string());
    assert_eq!(entry["uid"], pid1.uid);
    assert_eq!(entry["errno"], "EACCES", "{entry:#}");
    let cause = entry["cause"].as_str().expect("cause");
    let remedy = entry["remedy"].as_str().expect("remedy");
    for name in names(missing) {
        assert!(cause.contains(&name), "{cause}");
    }
    assert!(
        cause.contains(&format!(
            "CapPrm {} vs our CapEff {}",
            pid1.permitted, ours.effective
        )),
        "{cause}"
    );
    // We hold CAP_SYS_PTRACE, as root: the kernel's uid and capability
    // rules are met, and this process (the same credentials) was refused
    // all the same, so no capability is a remedy and none is named.
    assert!(ours.effective.iter().any(|c| c.name() == "CAP_SYS_PTRACE"));
    assert_eq!(ours.uid, pid1.uid);
    assert_eq!(entry["cause_code"], "security_policy", "{entry:#}");
    assert_eq!(entry["needs_capabilities"], Value::Array(vec![]));
    assert!(
        !remedy.contains("CAP_") && !remedy.contains("root"),
        "{remedy}"
    );
}

#[test]
fn without_cap_sys_ptrace_the_remedy_is_cap_sys_ptrace_and_it_is_true() {
    if !common::root("setpriv") {
        return;
    }
    // A root process holding every capability we hold, and one that holds
    // all but CAP_SYS_PTRACE.
    let full = Fixture::start("eof-server", Some(1));
    let modest = Fixture::start_with(&WITHOUT_PTRACE, "eof-server", Some(1));
    let full_server = full.info.role("server").pids[0];
    let modest_server = modest.info.role("server").pids[0];
    let dropped = status_under(&WITHOUT_PTRACE);
    let report = report_under(&WITHOUT_PTRACE, &[full_server, modest_server]);

    let target = status_of(&full_server.to_string());
    let missing = target.permitted.minus(dropped.effective);
    assert_eq!(names(missing), ["CAP_SYS_PTRACE"]);
    let entry = skipped(&report, full_server)
        .unwrap_or_else(|| panic!("pid {full_server} not named: {report:#}"));
    assert_eq!(entry["cause_code"], "uid_or_capabilities", "{entry:#}");
    assert_eq!(strings(&entry["needs_capabilities"]), ["CAP_SYS_PTRACE"]);
    assert_eq!(strings(&entry["missing_capabilities"]), names(missing));
    let remedy = entry["remedy"].as_str().expect("remedy");
    assert!(remedy.contains("needs CAP_SYS_PTRACE"), "{remedy}");
    // We are root already, and the bounding set excludes it: "run as root"
    // would be no remedy.
    assert!(!remedy.contains("run as root"), "{remedy}");
    assert!(remedy.contains("bounding set"), "{remedy}");

    // True: with CAP_SYS_PTRACE (this test process, and closewatch run as
    // it is) the same process is read, its socket attributed.
    read_fds(full_server).expect("CAP_SYS_PTRACE reads it");
    let granted = report_under(&[], &[full_server]);
    assert!(skipped(&granted, full_server).is_none(), "{granted:#}");
    assert_eq!(close_wait_of(&granted, full_server), 1, "{granted:#}");

    // And only where it is needed: a process whose capabilities are a
    // subset of ours is read without it.
    assert!(skipped(&report, modest_server).is_none(), "{report:#}");
    assert_eq!(close_wait_of(&report, modest_server), 1, "{report:#}");
    drop(modest);
    drop(full);
}

#[test]
fn as_nobody_each_capability_named_is_needed_and_together_they_are_enough() {
    if !common::root("setpriv to nobody") {
        return;
    }
    let fixture = Fixture::start("eof-server", Some(1));
    let server = fixture.info.role("server").pids[0];
    let nobody = |caps: &str| {
        vec![
            "setpriv".to_string(),
            "--reuid=65534".to_string(),
            "--regid=65534".to_string(),
            "--clear-groups".to_string(),
            format!("--inh-caps=-all{caps}"),
            format!("--ambient-caps=-all{caps}"),
        ]
    };
    let run = |caps: &str| {
        let wrapper = nobody(caps);
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        report_under(&wrapper, &[server])
    };
    let needs = |report: &Value| {
        let entry = skipped(report, server).unwrap_or_else(|| panic!("{report:#}"));
        strings(&entry["needs_capabilities"])
    };

    let bare = run("");
    assert_eq!(needs(&bare), ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]);
    let entry = skipped(&bare, server).expect("named");
    assert!(
        entry["remedy"]
            .as_str()
            .is_some_and(|r| r.contains("run as root")),
        "{entry:#}"
    );
    // Each alone is not enough, and the report says which one is left.
    assert_eq!(needs(&run(",+sys_ptrace")), ["CAP_DAC_READ_SEARCH"]);
    assert_eq!(needs(&run(",+dac_read_search")), ["CAP_SYS_PTRACE"]);
    // Both are: the process is read and its socket attributed.
    let both = run(",+sys_ptrace,+dac_read_search");
    assert!(skipped(&both, server).is_none(), "{both:#}");
    assert_eq!(close_wait_of(&both, server), 1, "{both:#}");
    drop(fixture);
}

fn close_wait_of(report: &Value, pid: u32) -> u64 {
    common::process(report, pid)
        .map(|p| common::u(&p["sockets"]["close_wait"], "close_wait"))
        .unwrap_or(0)
}
