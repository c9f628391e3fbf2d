//! On a busy host the text report lists the processes with a finding and
//! sums up the rest in one line: 25 servers holding fresh CLOSE_WAIT (real
//! sockets, younger than `--close-wait-age`) and one whose CLOSE_WAIT is
//! stale. The table has the leak's row alone and a line for the 25; `--all`
//! lists all 26; `--top 1` one row; JSON keeps every process unless `--top`
//! is given.
//!
//! Its own test binary: a full-host report sees every process, so no other
//! test of this binary may hold sockets at the same time.

mod common;

use std::time::{Duration, Instant};

use common::{closewatch, Fixture};
use serde_json::Value;

/// Stale after this long: the leak is made first and waited out; the 25
/// are made after, well within it.
const AGE: Duration = Duration::from_secs(10);
const FRESH: usize = 25;

/// The pid column of each table row (the lines after the header up to the
/// first blank line).
fn table_pids(text: &str) -> Vec<u32> {
    text.lines()
        .skip_while(|l| !l.starts_with("PID "))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with('…'))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn report(extra: &[&str]) -> String {
    let age = format!("{}s", AGE.as_secs());
    let mut args = vec!["--report", "--close-wait-age", age.as_str()];
    args.extend_from_slice(extra);
    let run = closewatch(&args);
    assert!(matches!(run.code, Some(0..=2)), "{}", run.stderr);
    run.stdout
}

#[test]
fn the_table_lists_the_findings_and_sums_up_the_rest() {
    let leak = Fixture::start("eof-server", Some(2));
    let leak_pid = leak.info.role("server").pids[0];
    std::thread::sleep(AGE + Duration::from_millis(500));
    let started = Instant::now();
    let fresh: Vec<Fixture> = (0..FRESH)
        .map(|_| Fixture::start("eof-server", Some(1)))
        .collect();
    let fresh_pids: Vec<u32> = fresh
        .iter()
        .map(|f| f.info.role("server").pids[0])
        .collect();
    let ours = |pids: &[u32]| -> Vec<u32> {
        pids.iter()
            .copied()
            .filter(|p| *p == leak_pid || fresh_pids.contains(p))
            .collect()
    };

    let text = report(&[]);
    assert!(
        started.elapsed() < AGE,
        "the premise failed: making the {FRESH} fresh servers took {:?}, past the age",
        started.elapsed()
    );
    assert_eq!(ours(&table_pids(&text)), vec![leak_pid], "{text}");
    let summary = text
        .lines()
        .find(|l| l.starts_with("… ") && l.contains(" more processes hold "))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"));
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("no finding — --all lists them"), "{text}");
    let more: usize = summary
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(more >= FRESH, "{summary}");

    let all = report(&["--all"]);
    let mut listed = ours(&table_pids(&all));
    listed.sort_unstable();
    let mut expected = fresh_pids.clone();
    expected.push(leak_pid);
    expected.sort_unstable();
    assert_eq!(listed, expected, "{all}");

    let top = report(&["--top", "1"]);
    assert_eq!(table_pids(&top).len(), 1, "{top}");

    let age = format!("{}s", AGE.as_secs());
    let json = |extra: &[&str]| -> Value {
        let mut args = vec!["--report", "--format", "json", "--close-wait-age", &age];
        args.extend_from_slice(extra);
        closewatch(&args).json()
    };
    let pids = |r: &Value| -> Vec<u32> {
        r["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter_map(|p| p["pid"].as_u64().map(|p| p as u32))
            .collect()
    };
    let every = json(&[]);
    assert_eq!(
        ours(&pids(&every)).len(),
        FRESH + 1,
        "JSON lists every process"
    );
    assert_eq!(every["processes_omitted"], 0);
    let one = json(&["--top", "1"]);
    assert_eq!(pids(&one).len(), 1, "{one:#}");
    let omitted = one["processes_omitted"]
        .as_u64()
        .expect("processes_omitted");
    assert!(omitted >= FRESH as u64, "{one:#}");
    drop((leak, fresh));
}
