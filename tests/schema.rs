//! docs/report.schema.json is the JSON report's contract, and it holds: the
//! schema is a valid JSON Schema (draft 2020-12) whose every object is closed
//! (`additionalProperties: false`), every field described and required;
//! its enums name what the code names (checks, severities, TCP states);
//! and the real binary's report on every scenario of examples/fixture, on
//! a host-wide scan and on the fixture's processes alone, with sampling
//! (`--duration`) and with a scan error, matches it. Every other test that
//! reads a report validates it too (`common::Run::json`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use closewatch::analyse::{Check, Severity, Status};
use closewatch::model::{Attribution, TcpState};
use common::{process, report_json_with, schema, Fixture};
use serde_json::{json, Value};

// ------------------------------------------------------------ the schema

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let s = schema::schema();
    assert_eq!(
        s["$schema"], "https://json-schema.org/draft/2020-12/schema",
        "the schema says which draft it is written in"
    );
    if let Err(e) = jsonschema::draft202012::meta::validate(s) {
        panic!("docs/report.schema.json is not a valid draft 2020-12 schema: {e}");
    }
    // It compiles (every $ref resolves).
    assert!(schema::violations(&json!({})).len() > 1);
}

/// Where a schema object breaks the house rules: an object with fields that
/// is open, or whose `required` is not exactly its fields; a field or a
/// definition without a description; an object type without fields.
fn rule_breaks(path: &str, s: &Value, out: &mut Vec<String>) {
    let Some(obj) = s.as_object() else { return };
    let is_object_type = match obj.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => false,
    };
    let described = |v: &Value| {
        v["description"]
            .as_str()
            .is_some_and(|d| !d.trim().is_empty())
    };
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        if obj.get("additionalProperties") != Some(&Value::Bool(false)) {
            out.push(format!("{path}: additionalProperties is not false"));
        }
        let fields: BTreeSet<&str> = props.keys().map(String::as_str).collect();
        let required: BTreeSet<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if fields != required {
            out.push(format!(
                "{path}: required {required:?} is not every field {fields:?}"
            ));
        }
        for (name, field) in props {
            if !described(field) {
                out.push(format!("{path}/properties/{name}: no description"));
            }
        }
    } else if is_object_type {
        out.push(format!("{path}: an object without properties"));
    }
    for (name, def) in obj
        .get("$defs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !described(def) {
            out.push(format!("{path}/$defs/{name}: no description"));
        }
    }
    for (key, v) in obj {
        match v {
            Value::Object(_) => rule_breaks(&format!("{path}/{key}"), v, out),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    rule_breaks(&format!("{path}/{key}/{i}"), item, out);
                }
            }
            _ => {}
        }
    }
}

#[test]
fn every_object_is_closed_and_every_field_described_and_required() {
    let mut breaks = Vec::new();
    rule_breaks("#", schema::schema(), &mut breaks);
    assert!(
        breaks.is_empty(),
        "docs/report.schema.json:\n  {}",
        breaks.join("\n  ")
    );
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn names(it: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    it.into_iter().map(str::to_string).collect()
}

#[test]
fn the_schema_names_every_check_severity_status_and_tcp_state_of_the_code() {
    let s = schema::schema();
    let defs = &s["$defs"];
    let finding = &defs["finding"]["properties"];
    assert_eq!(strings(&finding["check"]["enum"]), names(Check::NAMES));
    assert_eq!(
        strings(&finding["severity"]["enum"]),
        names(Severity::ALL.map(Severity::name))
    );
    assert_eq!(
        strings(&s["properties"]["status"]["enum"]),
        names([Status::Ok, Status::Warning, Status::Critical].map(Status::name))
    );
    let states = names(TcpState::NAMED.map(TcpState::name));
    assert_eq!(strings(&defs["tcp_states"]["required"]), states);
    let peer_state = strings(
        &defs["process"]["properties"]["peers"]["items"]["properties"]["peer_state"]["enum"],
    );
    assert!(peer_state.is_superset(&states), "{peer_state:?}");
    assert!(strings(&s["properties"]["attribution"]["enum"]).contains(Attribution::Procfs.name()));
}

/// The validation the other tests rely on does catch a report that drifted
/// from the schema.
#[test]
fn a_report_with_a_field_added_removed_or_retyped_does_not_validate() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report.json");
    let mut golden: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the golden report"))
            .expect("the golden report is JSON");
    // The golden file has the time of the scan normalized away.
    golden["scanned_at"] = json!("2026-11-21T15:02:28Z");
    assert_eq!(schema::violations(&golden), Vec::<String>::new());

    let mut added = golden.clone();
    added["processes"][0]["sockets"]["brand_new"] = json!(1);
    let mut removed = golden.clone();
    removed["host"]
        .as_object_mut()
        .expect("host is an object")
        .remove("open_fds");
    let mut retyped = golden.clone();
    retyped["processes"][0]["fds"]["limit"] = json!("20000");
    let mut unknown_check = golden;
    unknown_check["processes"][0]["findings"][0]["check"] = json!("close_wait_stael");
    for (what, report) in [
        ("a field added", added),
        ("a field removed", removed),
        ("a number as a string", retyped),
        ("an unknown check", unknown_check),
    ] {
        let violations = schema::violations(&report);
        assert!(!violations.is_empty(), "{what} validates");
        eprintln!("{what}: {}", violations.join("; "));
    }
}

// ------------------------------------------------ the real binary's reports

/// Every age at 0 s, so that every socket counts as stale and the ages are
/// numbers rather than nulls.
const AGES: [&str; 4] = ["--dead-socket-age", "0s", "--idle-age", "0s"];

/// Starts `scenario`, and validates (through `Run::json`) the host-wide
/// report and the report on the fixture's processes alone; returns the
/// latter, in which each of them is listed.
fn reports_on(scenario: &str, n: Option<u32>, extra: &[&str]) -> Option<(Fixture, Value)> {
    if !common::root(&format!("fixture {scenario}")) {
        return None;
    }
    let fx = Fixture::start(scenario, n);
    let args: Vec<&str> = AGES.iter().chain(extra).copied().collect();
    let full = report_json_with(&[], &args);
    assert!(matches!(full.code, Some(0..=2)), "{}", full.stderr);
    full.json();
    let mine = report_json_with(&fx.info.pids, &args);
    assert!(matches!(mine.code, Some(0..=2)), "{}", mine.stderr);
    let report = mine.json();
    for &pid in &fx.info.pids {
        assert!(process(&report, pid).is_some(), "pid {pid}: {report:#}");
    }
    Some((fx, report))
}

/// One test per scenario of examples/fixture, each checking its reports.
macro_rules! scenarios {
    ($($test:ident: $scenario:literal $(($n:literal))?;)+) => {
        /// The scenarios tested here, to compare with the fixture's own list.
        const SCENARIOS: &[&str] = &[$($scenario),+];
        $(
            #[test]
            fn $test() {
                reports_on($scenario, scenarios!(@n $($n)?), &[]);
            }
        )+
    };
    (@n) => { None };
    (@n $n:literal) => { Some($n) };
}

scenarios! {
    eof_server_reports_match: "eof-server"(3);
    half_close_reports_match: "half-close";
    pool_reports_match: "pool"(3);
    fork_shared_reports_match: "fork-shared";
    unaccepted_reports_match: "unaccepted"(2);
    clean_reports_match: "clean"(2);
    ipv6_reports_match: "ipv6"(2);
    netns_reports_match: "netns"(2);
    cw_leak_reports_match: "cw-leak"(20);
    deleted_file_reports_match: "deleted-file"(1);
    late_close_reports_match: "late-close"(2);
    swap_reports_match: "swap";
    reaper_reports_match: "reaper"(20);
    reset_reports_match: "reset"(2);
    refused_reports_match: "refused"(2);
    unix_close_reports_match: "unix-close"(5);
    unix_close_path_reports_match: "unix-close-path"(2);
    half_open_reports_match: "half-open"(2);
    half_open_keepalive_reports_match: "half-open-keepalive"(2);
    accept_queue_reports_match: "accept-queue"(8);
    argv_padded_reports_match: "argv-padded";
}

/// Sampled for `--duration`, a leaker's report carries its fd growth.
#[test]
fn fd_leak_reports_match_with_their_fd_growth() {
    let Some((fx, report)) = reports_on("fd-leak", Some(20), &["--duration", "10s"]) else {
        return;
    };
    let leaker = fx.info.role("leaker").pids[0];
    let p = process(&report, leaker).expect("the leaker is listed");
    assert!(p["fd_growth"].is_object(), "{p:#}");
    assert!(p["fd_growth"]["exhaustion_seconds"].is_number(), "{p:#}");
}

/// At 90 of 100 ports the owners of the ports are named.
#[test]
fn port_exhaustion_reports_match_with_the_owners_named() {
    let Some((fx, report)) = reports_on("port-exhaustion", Some(90), &[]) else {
        return;
    };
    let ns = fx.info.role("holder").netns.expect("its own namespace");
    let ports = report["ports"].as_array().expect("ports");
    let mine = ports
        .iter()
        .find(|p| p["netns"] == ns)
        .unwrap_or_else(|| panic!("no ports of namespace {ns}: {report:#}"));
    assert!(
        !mine["owners"].as_array().expect("owners").is_empty(),
        "{mine:#}"
    );
}

/// A `--pid` that does not exist is a scan error: the report still matches,
/// `errors` listing it, and says which build wrote it and how.
#[test]
fn a_report_with_an_error_matches() {
    let pid_max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("read pid_max")
        .trim()
        .parse()
        .expect("pid_max is a number");
    // Pids are below pid_max.
    let run = report_json_with(&[pid_max], &[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["errors"][0]["stage"], "pid", "{report:#}");
    assert_eq!(report["closewatch_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(report["attribution"], "procfs");
}

/// Each scenario the fixture knows (its usage line) has its test above.
#[test]
fn every_scenario_of_the_fixture_is_tested() {
    let out = Command::new(common::example_path("fixture"))
        .output()
        .expect("run the fixture without arguments");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let usage = String::from_utf8_lossy(&out.stderr);
    let list = usage
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(list, _)| list)
        .unwrap_or_else(|| panic!("no <scenario | ...> in the usage: {usage}"));
    let known: BTreeSet<&str> = list
        .split(" | ")
        .filter_map(|s| s.split_whitespace().next())
        .collect();
    let tested: BTreeSet<&str> = SCENARIOS
        .iter()
        .copied()
        .chain(["fd-leak", "port-exhaustion"])
        .collect();
    assert_eq!(
        known, tested,
        "the fixture's scenarios and those tested here"
    );
}
