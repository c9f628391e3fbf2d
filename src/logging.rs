//! Log lines on stderr, one per event, in one of three formats
//! (`--log-format`, config `log_format`):
//!
//! - `text`: env_logger's own (`[2026-12-04T05:22:15.123Z WARN ] message`).
//! - `logfmt`: node_exporter's `--log.format=logfmt` (Go's slog through
//!   prometheus/common/promslog): `time=… level=WARN source=agent.rs:191
//!   msg="…"`, values quoted only when they must be.
//! - `json`: the same keys, one JSON object a line, as node_exporter's
//!   `--log.format=json`.
//!
//! Under journald (stderr is the stream named by `JOURNAL_STREAM`, the check
//! systemd documents in systemd.exec(5)), every line starts with its syslog
//! priority `<N>` (sd-daemon(3)): journald strips it and stores it as the
//! entry's PRIORITY, so `journalctl -p warning` works. Then `text` drops its
//! timestamp (journald stamps each entry) and level (the priority says it),
//! and writes each line of a message as its own entry, prefixed. `logfmt` and
//! `json` keep every field (a shipper reading MESSAGE gets the whole
//! record) and gain the prefix too, unlike node_exporter, which leaves
//! every line at the unit's default priority.

use std::ffi::OsStr;
use std::io::{self, Write};

use log::Level;

/// How log lines are written.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Logfmt,
    Json,
}

impl LogFormat {
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Logfmt => "logfmt",
            LogFormat::Json => "json",
        }
    }
}

/// The syslog priority of a level (sd-daemon(3): `SD_ERR` is `<3>`…).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The level as slog spells it (slog has no trace level: ours says TRACE).
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// Whether `JOURNAL_STREAM` ("DEV:INODE", both decimal) names the file
/// whose device and inode are `stderr`: systemd sets it for the unit's
/// stderr, and a child that inherits the variable but not the stream (its
/// stderr redirected) must not take its lines for journald's.
pub fn is_journal_stream(journal_stream: Option<&OsStr>, stderr: (u64, u64)) -> bool {
    let Some((dev, ino)) = journal_stream
        .and_then(OsStr::to_str)
        .and_then(|v| v.split_once(':'))
    else {
        return false;
    };
    dev.parse() == Ok(stderr.0) && ino.parse() == Ok(stderr.1)
}

/// Whether this process's stderr is journald's stream.
fn stderr_is_journal() -> bool {
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(st) => is_journal_stream(Some(&var), (st.st_dev, st.st_ino)),
        Err(_) => false,
    }
}

/// One event, as the formats see it.
pub struct Event<'a> {
    /// RFC 3339 UTC with milliseconds.
    pub time: &'a str,
    pub level: Level,
    /// `file:line` of the call, when known.
    pub source: Option<&'a str>,
    pub msg: &'a str,
}

/// A logfmt value: bare when it can be, else a quoted string with `"`,
/// `\` and control characters escaped (go-logfmt's rule: quote what is
/// empty or holds a space, `=`, `"` or anything not printable).
fn logfmt_value(v: &str) -> String {
    let bare = !v.is_empty()
        && !v
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if bare {
        v.to_string()
    } else {
        json_string(v)
    }
}

fn json_string(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_string())
}

/// Writes `e` in `format`, `<N>`-prefixed when `journal`.
pub fn write_event(
    out: &mut dyn Write,
    format: LogFormat,
    journal: bool,
    e: &Event<'_>,
) -> io::Result<()> {
    let prefix = if journal {
        format!("<{}>", priority(e.level))
    } else {
        String::new()
    };
    match format {
        LogFormat::Text => {
            if journal {
                for line in e.msg.lines() {
                    writeln!(out, "{prefix}{line}")?;
                }
                Ok(())
            } else {
                writeln!(out, "[{} {:<5}] {}", e.time, e.level, e.msg)
            }
        }
        LogFormat::Logfmt => {
            write!(out, "{prefix}time={} level={}", e.time, level_name(e.level))?;
            if let Some(source) = e.source {
                write!(out, " source={}", logfmt_value(source))?;
            }
            writeln!(out, " msg={}", logfmt_value(e.msg))
        }
        LogFormat::Json => {
            write!(
                out,
                "{prefix}{{\"time\":{},\"level\":{}",
                json_string(e.time),
                json_string(level_name(e.level))
            )?;
            if let Some(source) = e.source {
                write!(out, ",\"source\":{}", json_string(source))?;
            }
            writeln!(out, ",\"msg\":{}}}", json_string(e.msg))
        }
    }
}

/// `file:line` of a record: the crate-relative path of our own files, the
/// file name of a dependency's (whose path is in cargo's registry).
fn source(record: &log::Record<'_>) -> Option<String> {
    let file = record.file()?;
    let file = if file.starts_with('/') {
        file.rsplit('/').next().unwrap_or(file)
    } else {
        file
    };
    Some(match record.line() {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    })
}

/// Starts logging at `level` (`RUST_LOG`, when set, wins) in `format`.
pub fn init(level: &str, format: LogFormat) {
    let env = env_logger::Env::default().filter_or("RUST_LOG", level);
    let mut builder = env_logger::Builder::from_env(env);
    let journal = stderr_is_journal();
    if format == LogFormat::Text && !journal {
        // env_logger's own format, colour on a terminal included.
        builder.format_timestamp_millis().format_target(false);
    } else {
        builder.format(move |buf, record| {
            let time = buf.timestamp_millis().to_string();
            let msg = record.args().to_string();
            let source = source(record);
            let event = Event {
                time: &time,
                level: record.level(),
                source: source.as_deref(),
                msg: &msg,
            };
            write_event(buf, format, journal, &event)
        });
    }
    builder.init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(level: Level, msg: &str) -> Event<'_> {
        Event {
            time: "2026-12-04T05:22:15.123Z",
            level,
            source: Some("src/agent.rs:191"),
            msg,
        }
    }

    fn written(format: LogFormat, journal: bool, e: &Event<'_>) -> String {
        let mut out = Vec::new();
        write_event(&mut out, format, journal, e).expect("writes");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn journal_stream_must_name_stderr_itself() {
        let var = |s: &str| Some(OsStr::new(s).to_owned());
        assert!(is_journal_stream(var("8:12345").as_deref(), (8, 12345)));
        assert!(!is_journal_stream(var("8:12346").as_deref(), (8, 12345)));
        assert!(!is_journal_stream(var("9:12345").as_deref(), (8, 12345)));
        assert!(!is_journal_stream(var("8").as_deref(), (8, 12345)));
        assert!(!is_journal_stream(var("").as_deref(), (8, 12345)));
        assert!(!is_journal_stream(None, (8, 12345)));
    }

    #[test]
    fn priorities_are_syslogs() {
        let p: Vec<u8> = [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .into_iter()
        .map(priority)
        .collect();
        assert_eq!(p, [3, 4, 6, 7, 7]);
    }

    #[test]
    fn text_under_journald_is_the_priority_and_the_message_line_by_line() {
        let e = event(Level::Warn, "config reload failed:\n  line 3: bad");
        assert_eq!(
            written(LogFormat::Text, true, &e),
            "<4>config reload failed:\n<4>  line 3: bad\n"
        );
        assert_eq!(
            written(LogFormat::Text, false, &event(Level::Info, "started")),
            "[2026-12-04T05:22:15.123Z INFO ] started\n"
        );
    }

    #[test]
    fn logfmt_quotes_only_what_it_must() {
        let e = event(Level::Warn, "scan error (procfs): \"/proc\" gone\n");
        assert_eq!(
            written(LogFormat::Logfmt, false, &e),
            "time=2026-12-04T05:22:15.123Z level=WARN source=src/agent.rs:191 \
             msg=\"scan error (procfs): \\\"/proc\\\" gone\\n\"\n"
        );
        assert_eq!(
            written(LogFormat::Logfmt, true, &event(Level::Error, "stopped")),
            "<3>time=2026-12-04T05:22:15.123Z level=ERROR source=src/agent.rs:191 msg=stopped\n"
        );
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
    }

    #[test]
    fn json_is_one_object_a_line_with_time_level_source_msg() {
        let e = event(Level::Debug, "tab\there \"quoted\" \u{1}");
        let line = written(LogFormat::Json, false, &e);
        assert_eq!(line.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["time"], "2026-12-04T05:22:15.123Z");
        assert_eq!(v["level"], "DEBUG");
        assert_eq!(v["source"], "src/agent.rs:191");
        assert_eq!(v["msg"], "tab\there \"quoted\" \u{1}");
        let journal = written(LogFormat::Json, true, &e);
        let rest = journal.strip_prefix("<7>").expect("the priority first");
        assert_eq!(rest, line);
    }
}
