//! The config file, from string literals: every key is read; an empty file
//! means the defaults; flags override the file; unknown keys, wrong types and
//! bad syntax are errors with line and column; inverted or nonsense settings
//! are rejected; rendered settings parse back the same; a missing explicit
//! config file is an error.

use super::*;
use crate::export::http::address::ListenAddr;

fn parse(text: &str) -> Result<FileConfig, ConfigError> {
    parse_str(text, Path::new("/etc/closewatch/closewatch.toml"))
}

pub(super) const FULL: &str = r#"
format = "json"
listen = "127.0.0.1:9100"
interval = "30s"
close_wait_age = "5m"
fin_wait2_age = "2m"
max_processes = 20
proc_root = "/host/proc"
log_level = "debug"
log_format = "logfmt"

[thresholds]
close_wait_stale = { warning = 5, critical = 50 }
fin_wait2_stale = { critical = 10 }
close_wait_unaccepted = { warning = 2, critical = 20 }
fd_utilization = { warning = 0.7, critical = 0.9 }
fd_exhaustion = { warning = "12h", critical = "30m" }
deleted_open_files = { warning = "500 MiB", critical = 2147483648 }
host_fd_utilization = { warning = 0.5, critical = 0.6 }
"#;

#[test]
fn every_key_is_read() {
    let file = parse(FULL).expect("valid");
    let s = merge(file, None, &Cli::default()).expect("valid");
    assert_eq!(s.format, Format::Json);
    assert_eq!(s.listen, vec!["127.0.0.1:9100".parse().expect("addr")]);
    assert_eq!(s.interval, Duration::from_secs(30));
    assert_eq!(s.close_wait_age, Duration::from_secs(300));
    assert_eq!(s.fin_wait2_age, Duration::from_secs(120));
    assert_eq!(s.max_processes, 20);
    assert_eq!(s.proc_root, PathBuf::from("/host/proc"));
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.log_format, crate::logging::LogFormat::Logfmt);
    let t = s.thresholds;
    let levels = |warning, critical| Levels { warning, critical };
    assert_eq!(
        t.get(Check::CloseWaitStale),
        levels(Amount::Count(5), Amount::Count(50))
    );
    // A level left out keeps its default.
    assert_eq!(t.get(Check::FinWait2Stale).warning, Amount::Count(1));
    assert_eq!(t.get(Check::FinWait2Stale).critical, Amount::Count(10));
    assert_eq!(
        t.get(Check::FdExhaustion).critical,
        Amount::TimeLeft(Duration::from_secs(1800))
    );
    assert_eq!(
        t.get(Check::DeletedOpenFiles),
        levels(
            Amount::Bytes(500 * 1024 * 1024),
            Amount::Bytes(2 * 1024 * 1024 * 1024)
        )
    );
    assert_eq!(t.get(Check::HostFdUtilization).critical, Amount::Ratio(0.6));
}

#[test]
fn flags_override_the_file() {
    let file = parse(FULL).expect("valid");
    let cli = Cli {
        format: Some(Format::Text),
        interval: Some(Duration::from_secs(5)),
        close_wait_age: Some(Duration::from_secs(1)),
        pids: vec![42],
        ..Cli::default()
    };
    let s = merge(file, None, &cli).expect("valid");
    assert_eq!(s.format, Format::Text);
    assert_eq!(s.interval, Duration::from_secs(5));
    assert_eq!(s.close_wait_age, Duration::from_secs(1));
    assert_eq!(s.fin_wait2_age, Duration::from_secs(120), "not overridden");
    assert_eq!(s.analysis().only_pids, Some(vec![42]));
}

#[test]
fn empty_file_means_the_spec_defaults() {
    let s = merge(parse("").expect("valid"), None, &Cli::default()).expect("valid");
    assert_eq!(s, Settings::default());
    assert_eq!(s.listen, vec![ListenAddr::Any(9958)]);
    assert_eq!(s.interval, Duration::from_secs(15));
    assert_eq!(s.max_processes, 100);
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let err = parse("interval = \"15s\"\n\n[thresholds]\nclose_wait_stael = { warning = 1 }\n")
        .expect_err("unknown key");
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/closewatch/closewatch.toml:4:1: "),
        "{msg}"
    );
    assert!(msg.contains("close_wait_stael"), "{msg}");
}

#[test]
fn type_errors_point_at_the_value() {
    let err = parse("max_processes = \"many\"\n").expect_err("bad type");
    let ConfigError::Syntax { line, column, .. } = err else {
        panic!("not a syntax error: {err}");
    };
    assert_eq!((line, column), (1, 17));
    let err = parse("interval = \"soon\"\n").expect_err("bad duration");
    assert!(err.to_string().contains(":1:12:"), "{err}");
}

#[test]
fn syntax_errors_have_line_and_column() {
    let err = parse("listen = \"0.0.0.0:9958\"\ninterval = \n").expect_err("syntax");
    let ConfigError::Syntax { line, .. } = err else {
        panic!("not a syntax error: {err}");
    };
    assert_eq!(line, 2);
}

#[test]
fn inverted_thresholds_are_rejected() {
    let file = parse("[thresholds]\nfd_utilization = { warning = 0.9, critical = 0.5 }\n")
        .expect("parses");
    let err = merge(file, Some(PathBuf::from("/x.toml")), &Cli::default()).expect_err("invalid");
    let msg = err.to_string();
    assert!(
        msg.starts_with("/x.toml: thresholds: fd_utilization"),
        "{msg}"
    );
}

#[test]
fn nonsense_settings_are_rejected() {
    for text in [
        "interval = \"0s\"",
        "max_processes = 0",
        "log_level = \"loud\"",
    ] {
        let file = parse(text).expect("parses");
        assert!(merge(file, None, &Cli::default()).is_err(), "{text}");
    }
}

#[test]
fn rendered_settings_parse_back_to_the_same_settings() {
    let file = parse(FULL).expect("valid");
    let s = merge(file, None, &Cli::default()).expect("valid");
    let text = render(&s);
    let again = merge(
        parse(&text).expect("rendered config parses"),
        None,
        &Cli::default(),
    )
    .expect("valid");
    assert_eq!(again, s, "{text}");
}

#[test]
fn missing_explicit_config_is_an_error_but_missing_default_is_not() {
    let cli = Cli {
        config: Some(PathBuf::from("/nonexistent/closewatch.toml")),
        ..Cli::default()
    };
    assert!(matches!(load(&cli), Err(ConfigError::Read { .. })));
}

#[test]
fn a_level_in_another_unit_or_an_unknown_level_is_an_error_at_its_position() {
    let err = parse("[thresholds]\nfd_exhaustion = { warning = 5 }\n").expect_err("not a time");
    let msg = err.to_string();
    assert!(msg.contains(":2:29: ") && msg.contains("duration"), "{msg}");
    let err = parse("[thresholds]\nclose_wait_stale = { critical = -1 }\n").expect_err("negative");
    assert!(err.to_string().contains(":2:33: "), "{err}");
    let err = parse("[thresholds]\nfd_utilization = { warning = 0.5, crit = 0.7 }\n")
        .expect_err("unknown level");
    let msg = err.to_string();
    assert!(msg.contains(":2:35: ") && msg.contains("crit"), "{msg}");
    let file =
        parse("[thresholds]\ndeleted_open_files = { warning = \"1 GiB\" }\n").expect("bytes");
    let levels = &file.thresholds.0[&Check::DeletedOpenFiles];
    assert_eq!(levels.warning, Some(Amount::Bytes(1 << 30)));
}

/// Every example line of the shipped config, uncommented alone, is a valid
/// config: the documentation shows values the parser takes.
#[test]
fn each_example_in_the_shipped_config_parses() {
    let shipped = include_str!("../packaging/closewatch.toml");
    let mut examples = 0;
    let mut table = "";
    for line in shipped.lines() {
        let Some(example) = line
            .strip_prefix('#')
            .or(Some(line))
            .filter(|l| !l.is_empty())
        else {
            continue;
        };
        if example.starts_with('[') {
            table = example;
            continue;
        }
        let is_key = example.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        if !is_key {
            continue;
        }
        examples += 1;
        let example = format!("{table}\n{example}");
        let file = parse(&example).unwrap_or_else(|e| panic!("{example:?}: {e}"));
        merge(file, None, &Cli::default()).unwrap_or_else(|e| panic!("{example:?}: {e}"));
    }
    assert!(examples >= 10, "only {examples} examples found");
}

#[test]
fn listen_takes_one_address_or_a_list_and_flags_replace_it() {
    let s = merge(
        parse("listen = [\":9958\", \"[::1]:9959\", \"localhost:1\"]").expect("list"),
        None,
        &Cli::default(),
    )
    .expect("valid");
    assert_eq!(
        s.listen,
        vec![
            ListenAddr::Any(9958),
            ListenAddr::Socket("[::1]:9959".parse().expect("addr")),
            ListenAddr::Host("localhost".into(), 1),
        ]
    );
    let cli = Cli {
        listen: vec![ListenAddr::Any(1)],
        ..Cli::default()
    };
    let s = merge(parse("listen = \":9958\"").expect("one"), None, &cli).expect("valid");
    assert_eq!(
        s.listen,
        vec![ListenAddr::Any(1)],
        "the flags replace the file's list"
    );
    for bad in ["listen = []", "listen = \"9958\"", "listen = [\":1\", 2]"] {
        let e = parse(bad).expect_err(bad);
        assert!(e.to_string().contains(":1:"), "{bad}: {e}");
    }
}
