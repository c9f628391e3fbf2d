//! The real binary's text report, JSON report and metrics on a recording equal
//! the golden files in tests/golden/ (times, the agent's own process_*
//! figures and the build's revision and compiler normalized): it replays the
//! sock_diag datagrams and reads the /proc tree of tests/fixtures/golden (the
//! scenarios of examples/fixture in a scratch namespace, recorded by
//! record.sh).
//!
//! The golden files are written by the binary itself:
//! `UPDATE_GOLDEN=1 cargo test --test golden`, then review the diff.

mod common;

use std::path::{Path, PathBuf};

use common::agent::Agent;
use serde_json::Value;

fn fixture() -> (PathBuf, PathBuf) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    (dir.join("proc"), dir.join("sockdiag"))
}

fn replay_args(extra: &[&str]) -> Vec<String> {
    let (proc_root, sockdiag) = fixture();
    let mut args = vec![
        "--proc-root".to_string(),
        proc_root.display().to_string(),
        "--replay-sockdiag".to_string(),
        sockdiag.display().to_string(),
        "--close-wait-age".to_string(),
        "1s".to_string(),
        "--fin-wait2-age".to_string(),
        "1s".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Compares with tests/golden/NAME, or rewrites it under UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden file");
        eprintln!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (generate it with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  golden: {e}\n  actual: {a}", i + 1))
            .collect();
        panic!(
            "{} differs from the binary's output ({} vs {} lines):\n{}\n\
             If the change is intended: UPDATE_GOLDEN=1 cargo test --test golden",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// The time of the scan and its duration change from run to run.
fn normalize_json(mut v: Value) -> String {
    v["scanned_at"] = Value::String("SCANNED_AT".into());
    v["scan_duration_seconds"] = Value::from(0.0);
    serde_json::to_string_pretty(&v).expect("serializes") + "\n"
}

fn normalize_text(text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(first) = lines.first_mut() {
        let (head, tail) = first.split_once(" — ").expect("summary line has a dash");
        let head: Vec<&str> = head
            .split(" · ")
            .map(|part| {
                if part.starts_with("scan ") {
                    "scan DURATION"
                } else if part.len() == 20 && part.ends_with('Z') && part.contains('T') {
                    "SCANNED_AT"
                } else {
                    part
                }
            })
            .collect();
        *first = format!("{} — {tail}", head.join(" · "));
    }
    lines.join("\n") + "\n"
}

#[test]
fn json_report_matches_golden() {
    let run = common::closewatch(&replay_args(&["--report", "--format", "json"]));
    assert_eq!(
        run.code,
        Some(2),
        "critical: the unaccepted listener's queue is at its backlog (accept_queue_full)\n{}",
        run.stderr
    );
    golden("report.json", &normalize_json(run.json()));
}

#[test]
fn text_report_matches_golden() {
    let run = common::closewatch(&replay_args(&["--report"]));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        !run.stdout.contains('\x1b'),
        "no colour when stdout is not a TTY"
    );
    golden("report.txt", &normalize_text(&run.stdout));
    // Piped, the text is laid out for 100 columns whatever the terminal.
    let longest = run.stdout.lines().map(|l| l.chars().count()).max();
    assert!(longest <= Some(100), "a line of {longest:?} columns");
}

/// At `COLUMNS=80` every line of the golden scenario fits in 80 columns:
/// prose wraps at spaces with a hanging indent, the table's columns close
/// up and its last cell (TOP PEER) is cut to what is left. Only a word
/// longer than a line, or a table row whose other cells alone pass the
/// width (a long unit name), could not be broken; the scenario has none.
#[test]
fn at_80_columns_no_line_passes_80() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_closewatch"))
        .args(["--config", "/dev/null"])
        .args(replay_args(&["--report"]))
        .env("COLUMNS", "80")
        .env_remove("NO_COLOR")
        .output()
        .expect("run closewatch");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let long: Vec<&str> = text.lines().filter(|l| l.chars().count() > 80).collect();
    assert!(long.is_empty(), "{long:#?}\n{text}");
    // The wrapping lost nothing: past the headline (its time and scan
    // duration change between runs) and outside the table, the same words
    // in the same order as at 100 columns.
    let wide = common::closewatch(&replay_args(&["--report"])).stdout;
    let words = |t: &str| -> Vec<String> {
        let mut in_table = false;
        t.lines()
            .skip_while(|l| !l.starts_with("  tcp "))
            .filter(|l| {
                in_table = l.starts_with("PID ") || (in_table && !l.is_empty());
                !in_table
            })
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(words(&text), words(&wide));
}

#[test]
fn metrics_match_golden() {
    let config = tempfile::NamedTempFile::new().expect("temp config");
    let agent = Agent::start(config.path(), &replay_args(&["--interval", "1h"]));
    let text = agent.metrics();
    let normalized: String = text
        .lines()
        .map(|l| {
            if l.starts_with("closewatch_scan_duration_seconds ") {
                "closewatch_scan_duration_seconds 0".to_string()
            } else if l.starts_with("closewatch_last_scan_timestamp_seconds ") {
                "closewatch_last_scan_timestamp_seconds 0".to_string()
            } else if l.starts_with("process_") {
                // The agent's own process: its figures, not the recording's.
                let name = l.split(' ').next().unwrap_or(l);
                format!("{name} 0")
            } else if l.starts_with("closewatch_build_info{") {
                use closewatch::build_info::{REVISION, RUSTC};
                l.replace(&format!("revision=\"{REVISION}\""), "revision=\"REVISION\"")
                    .replace(&format!("rustc=\"{RUSTC}\""), "rustc=\"RUSTC\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    golden("metrics.txt", &normalized);
}
