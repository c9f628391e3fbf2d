//! The real agent's log lines on stderr: under journald (JOURNAL_STREAM names
//! the very pipe its stderr is) each line starts with the syslog priority of
//! its level and text has no timestamp; with a JOURNAL_STREAM naming another
//! file, the usual timestamped lines; `--log-format json` and `logfmt` lines
//! parse, with time, level and msg. One scenario for every run logs at each
//! level: start (info), a scan (debug), a reload that changes log_format
//! (warn: it stays until restart, and the lines after it prove it) and a
//! broken reload (error).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What JOURNAL_STREAM says.
#[derive(Clone, Copy, PartialEq)]
enum Journal {
    Unset,
    /// The device and inode of the agent's stderr.
    ItsStderr,
    /// Another file's (as a child of a journald unit whose stderr was
    /// redirected inherits it).
    Elsewhere,
}

/// The agent, killed by pid and reaped if the test fails midway.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the line containing `needle`; every line read goes to `seen`.
fn wait_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {needle:?} in {seen:#?}"));
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return;
        }
    }
}

/// Runs the scenario and returns every line the agent wrote to stderr: the
/// level and format from the config file (`flag`: the format from
/// `--log-format`, the file asking for another).
fn agent_log(format: &str, flag: bool, journal: Journal) -> Vec<String> {
    let other_format = if format == "json" { "logfmt" } else { "json" };
    let config = tempfile::NamedTempFile::new().expect("temp config");
    let in_file = if flag { other_format } else { format };
    let file = |format: &str| format!("log_level = \"debug\"\nlog_format = \"{format}\"\n");
    std::fs::write(config.path(), file(in_file)).expect("write");
    let (reader, writer) = std::io::pipe().expect("pipe");
    let st = rustix::fs::fstat(&writer).expect("fstat the pipe");
    let other = rustix::fs::fstat(config.as_file()).expect("fstat the config");
    let mut command = Command::new(env!("CARGO_BIN_EXE_closewatch"));
    command
        .arg("--config")
        .arg(config.path())
        .args(["--listen", "127.0.0.1:0", "--interval", "1h"])
        .args(if flag {
            vec!["--log-format", format]
        } else {
            vec![]
        })
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer);
    match journal {
        Journal::Unset => {}
        Journal::ItsStderr => {
            command.env("JOURNAL_STREAM", format!("{}:{}", st.st_dev, st.st_ino));
        }
        Journal::Elsewhere => {
            command.env(
                "JOURNAL_STREAM",
                format!("{}:{}", other.st_dev, other.st_ino),
            );
        }
    }
    let child = Running(command.spawn().expect("start the agent"));
    drop(command); // our copy of the pipe's write end: EOF when the agent exits
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let pid = child.0.id();
    let mut seen = Vec::new();
    wait_line(&rx, &mut seen, "scan 1 took");
    std::fs::write(config.path(), file(other_format)).expect("write");
    common::agent::signal(pid, libc::SIGHUP);
    wait_line(&rx, &mut seen, "config reloaded");
    std::fs::write(config.path(), "interval = \n").expect("write");
    common::agent::signal(pid, libc::SIGHUP);
    wait_line(&rx, &mut seen, "config reload failed");
    common::agent::signal(pid, libc::SIGTERM);
    wait_line(&rx, &mut seen, "stopped");
    // The rest, until the agent exits and the pipe closes.
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        seen.push(line);
    }
    seen
}

/// Whether a text line starts with env_logger's `[RFC 3339 timestamp`.
fn timestamped(line: &str) -> bool {
    line.strip_prefix('[')
        .and_then(|l| l.split(' ').next())
        .is_some_and(|stamp| humantime::parse_rfc3339(stamp).is_ok())
}

/// The line with `needle`, which must be there.
fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"))
}

/// The messages of the scenario and the level each is logged at, as
/// (needle, syslog priority, slog level).
const LEVELS: [(&str, u8, &str); 5] = [
    ("listening on http://", 6, "INFO"),
    ("scan 1 took", 7, "DEBUG"),
    ("until restart", 4, "WARN"),
    ("config reload failed", 3, "ERROR"),
    ("stopped", 6, "INFO"),
];

#[test]
fn under_journald_every_line_carries_its_priority_and_no_timestamp() {
    let lines = agent_log("text", false, Journal::ItsStderr);
    for line in &lines {
        let rest = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .unwrap_or_else(|| panic!("no <N> prefix: {line:?}"));
        assert!(
            matches!(rest.0, "3" | "4" | "6" | "7"),
            "priority {:?} in {line:?}",
            rest.0
        );
        assert!(!timestamped(rest.1), "a timestamp under journald: {line:?}");
        // The reload asked for JSON: logging stays as it started.
        assert!(
            !rest.1.starts_with('{'),
            "the format changed on reload: {line:?}"
        );
    }
    for (needle, priority, _) in LEVELS {
        let line = line_with(&lines, needle);
        assert!(line.starts_with(&format!("<{priority}>")), "{line:?}");
    }
}

#[test]
fn a_journal_stream_that_is_not_stderr_leaves_the_usual_lines() {
    let lines = agent_log("text", false, Journal::Elsewhere);
    // "[2026-12-04T05:22:15.123Z INFO ] …" (a message of several lines, as
    // a dependency's debug dump, continues on lines of its own).
    for (needle, _, level) in LEVELS {
        let line = line_with(&lines, needle);
        assert!(timestamped(line), "{line:?}");
        assert!(line.contains(&format!(" {level:<5}] ")), "{line:?}");
    }
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with('<') && !l.starts_with('{')),
        "{lines:#?}"
    );
}

#[test]
fn json_lines_parse_with_time_level_and_msg() {
    let lines = agent_log("json", false, Journal::Unset);
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    for v in &parsed {
        let time = v["time"].as_str().expect("time");
        humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time:?}: {e}"));
        assert!(v["level"].is_string() && v["msg"].is_string(), "{v}");
        assert!(
            v["source"].as_str().is_some_and(|s| s.contains(".rs:")),
            "{v}"
        );
    }
    for (needle, _, level) in LEVELS {
        let v = parsed
            .iter()
            .find(|v| v["msg"].as_str().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"));
        assert_eq!(v["level"], level, "{v}");
    }
}

/// Splits a logfmt line into its pairs: `key=bare` or `key="quoted \" text"`.
fn logfmt(line: &str) -> BTreeMap<String, String> {
    let mut pairs = BTreeMap::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .unwrap_or_else(|| panic!("no key=value at {rest:?} in {line:?}"));
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .char_indices()
                .scan(false, |escaped, (i, c)| {
                    let at_end = c == '"' && !*escaped;
                    *escaped = c == '\\' && !*escaped;
                    Some((i, at_end))
                })
                .find_map(|(i, end)| end.then_some(i))
                .unwrap_or_else(|| panic!("unterminated value in {line:?}"));
            let value: String = serde_json::from_str(&after[..end + 2]).expect("a quoted value");
            (value, &quoted[end + 1..])
        } else {
            let end = after.find(' ').unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        assert!(
            !key.contains(' ') && !key.is_empty(),
            "key {key:?} in {line:?}"
        );
        pairs.insert(key.to_string(), value);
        rest = after.trim_start_matches(' ');
    }
    pairs
}

#[test]
fn logfmt_lines_are_key_value_pairs_with_time_level_and_msg() {
    let lines = agent_log("logfmt", false, Journal::Unset);
    let parsed: Vec<BTreeMap<String, String>> = lines.iter().map(|l| logfmt(l)).collect();
    for (pairs, line) in parsed.iter().zip(&lines) {
        assert!(line.starts_with("time="), "{line:?}");
        let time = &pairs["time"];
        humantime::parse_rfc3339(time).unwrap_or_else(|e| panic!("{time:?}: {e}"));
        assert!(
            pairs.contains_key("level") && pairs.contains_key("msg"),
            "{line:?}"
        );
    }
    let listening = parsed
        .iter()
        .find(|p| p["msg"].contains("listening on http://"))
        .expect("the start line");
    assert_eq!(listening["level"], "INFO");
    let failed = parsed
        .iter()
        .find(|p| p["msg"].contains("config reload failed"))
        .expect("the failed reload");
    assert_eq!(failed["level"], "ERROR");
}

#[test]
fn json_under_journald_is_prefixed_and_still_json_and_the_flag_wins_over_the_file() {
    let lines = agent_log("json", true, Journal::ItsStderr);
    for line in &lines {
        let (priority, rest) = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .unwrap_or_else(|| panic!("no <N> prefix: {line:?}"));
        let v: serde_json::Value =
            serde_json::from_str(rest).unwrap_or_else(|e| panic!("{rest:?}: {e}"));
        let expected = match v["level"].as_str() {
            Some("ERROR") => "3",
            Some("WARN") => "4",
            Some("INFO") => "6",
            _ => "7",
        };
        assert_eq!(priority, expected, "{line:?}");
    }
}
