//! The shipped packaging assets agree with the real agent: the alert rules pass
//! `promtool check rules` and their unit tests, which make every alert fire (at
//! each severity) and not fire; every metric the rules and the Grafana
//! dashboard query is exported; the dashboard is importable; the DaemonSet
//! grants exactly what the agent needs, with a config it accepts.
//!
//! There is no YAML parser among the dependencies: the YAML files are read
//! line by line, which is enough for the block style they are written in (the
//! parsers fail loudly on anything they do not find).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::agent::{sample, Agent};
use serde_json::Value;

const RULES: &str = "packaging/prometheus/closewatch-alerts.yml";
const RULE_TESTS: &str = "packaging/prometheus/closewatch-alerts.test.yml";
const DASHBOARD: &str = "packaging/grafana/closewatch-dashboard.json";
const DAEMONSET: &str = "packaging/kubernetes/closewatch-daemonset.yaml";
const GOLDEN_METRICS: &str = "tests/golden/metrics.txt";
/// Where the metric families are declared (named in messages).
const FAMILIES: &str = "closewatch::export::metrics::families::ALL";

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ------------------------------------------------------------------ promtool

/// Runs promtool in the repository root. It is not optional: CI installs it
/// (.ci/run), and without it the rules would ship unchecked, so a missing
/// promtool fails the test rather than skipping it.
fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install it (Debian: apt-get install prometheus, \
                 as .ci/run does); the alert rules cannot be checked without it"
            )
        })
}

fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = promtool(&["check", "rules", RULES]);
    assert_success(&format!("promtool check rules {RULES}"), &out);
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", RULE_TESTS]);
    assert_success(&format!("promtool test rules {RULE_TESTS}"), &out);
}

// ------------------------------------------------------- line-based YAML

/// A non-blank line of a YAML file: its indentation and its text without a
/// trailing comment (comment lines are dropped).
#[derive(Debug)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// Strips a comment: `#` at the start or after a space, outside quotes.
fn strip_comment(text: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev == ' ' => return text[..i].trim_end(),
            None => {}
        }
        prev = c;
    }
    text.trim_end()
}

fn yaml_lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .filter_map(|raw| {
            let indent = raw.len() - raw.trim_start().len();
            let text = strip_comment(raw.trim_start());
            (!text.is_empty()).then_some(Line { indent, text })
        })
        .collect()
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// The value of `key: value` on this line (`- key: value` too), if it is that
/// key.
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let line = line.strip_prefix("- ").unwrap_or(line);
    line.strip_prefix(key)?.strip_prefix(':').map(str::trim)
}

/// A block scalar (`key: |`) starting after raw line `start`: the lines
/// indented deeper than the key, dedented. Comments inside are content.
fn block_scalar(raw: &[&str], start: usize) -> String {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let key_indent = indent_of(raw[start]);
    let body: Vec<&str> = raw[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > key_indent)
        .copied()
        .collect();
    let dedent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent_of(l))
        .min()
        .unwrap_or(0);
    let mut text: String = body
        .iter()
        .map(|l| l.get(dedent..).unwrap_or("").to_string() + "\n")
        .collect();
    while text.ends_with("\n\n") {
        text.pop();
    }
    text
}

// ------------------------------------------------------------ alert rules

/// One alerting rule, as far as these tests need it.
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    severity: Option<String>,
    has_for: bool,
    has_summary: bool,
    has_description: bool,
}

fn parse_rules(text: &str) -> Vec<Rule> {
    let raw: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let line = strip_comment(raw[i].trim_start());
        i += 1;
        if let Some(name) = value_of(line, "alert") {
            rules.push(Rule {
                alert: unquote(name).to_string(),
                ..Rule::default()
            });
            continue;
        }
        if value_of(line, "record").is_some() {
            panic!("{RULES}: recording rules are not expected: {line}");
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        if let Some(v) = value_of(line, "expr") {
            rule.expr = if v.starts_with('|') || v.starts_with('>') {
                block_scalar(&raw, i - 1)
            } else {
                unquote(v).to_string()
            };
        } else if let Some(v) = value_of(line, "severity") {
            rule.severity = Some(unquote(v).to_string());
        } else if value_of(line, "for").is_some() {
            rule.has_for = true;
        } else if value_of(line, "summary").is_some() {
            rule.has_summary = true;
        } else if value_of(line, "description").is_some() {
            rule.has_description = true;
        }
    }
    assert!(!rules.is_empty(), "{RULES}: no alerting rule found");
    for r in &rules {
        assert!(
            !r.expr.trim().is_empty(),
            "{RULES}: {} has no expr",
            r.alert
        );
    }
    rules
}

/// One `alert_rule_test` case: the alert it is about and the severities of
/// the alerts it expects to fire (none: it checks the alert does not fire).
#[derive(Debug, Default)]
struct Case {
    alertname: String,
    fires: BTreeSet<String>,
    expects_alerts: bool,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for line in yaml_lines(text) {
        if value_of(line.text, "eval_time").is_some() && line.text.starts_with("- ") {
            cases.push(Case::default());
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        if let Some(v) = value_of(line.text, "alertname") {
            case.alertname = unquote(v).to_string();
        } else if let Some(v) = value_of(line.text, "exp_alerts") {
            case.expects_alerts = v != "[]";
        } else if let Some(v) = value_of(line.text, "severity") {
            case.fires.insert(unquote(v).to_string());
        }
    }
    cases
}

#[test]
fn every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() {
    let rules = parse_rules(&read(RULES));
    let cases = parse_cases(&read(RULE_TESTS));
    let mut problems = Vec::new();
    for r in &rules {
        let name = &r.alert;
        let Some(severity) = r.severity.as_deref() else {
            problems.push(format!("{name} has no severity label"));
            continue;
        };
        if !matches!(severity, "warning" | "critical") {
            problems.push(format!("{name}: severity {severity:?}"));
        }
        if !r.has_for {
            problems.push(format!("{name} ({severity}) has no `for:`"));
        }
        if !(r.has_summary && r.has_description) {
            problems.push(format!(
                "{name} ({severity}) lacks a summary or a description"
            ));
        }
        let mine = || cases.iter().filter(|c| c.alertname == *name);
        if !mine().any(|c| c.fires.contains(severity)) {
            problems.push(format!("no unit test where {name} fires at {severity}"));
        }
        if !mine().any(|c| !c.expects_alerts) {
            problems.push(format!("no unit test where {name} does not fire"));
        }
    }
    for c in &cases {
        if c.expects_alerts && c.fires.is_empty() {
            problems.push(format!(
                "a test of {} expects alerts without severity",
                c.alertname
            ));
        }
        if !rules.iter().any(|r| r.alert == c.alertname) {
            problems.push(format!("a test is about {:?}, not an alert", c.alertname));
        }
    }
    assert!(
        problems.is_empty(),
        "{RULE_TESTS}:\n{}",
        problems.join("\n")
    );
}

// ----------------------------------------------------------- metric names

/// PromQL's functions and aggregation operators (Prometheus 2.x).
const PROMQL_FUNCTIONS: &str =
    "abs absent absent_over_time acos acosh asin asinh atan atanh avg avg_over_time \
     bottomk ceil changes clamp clamp_max clamp_min cos cosh count count_over_time \
     count_values day_of_month day_of_week day_of_year days_in_month deg delta \
     deriv end exp floor group histogram_count histogram_fraction \
     histogram_quantile histogram_sum holt_winters hour idelta increase irate \
     label_join label_replace last_over_time ln log10 log2 mad_over_time max \
     max_over_time min min_over_time minute month pi predict_linear \
     present_over_time quantile quantile_over_time rad rate resets round scalar sgn \
     sin sinh sort sort_desc sqrt start stddev stddev_over_time stdvar \
     stdvar_over_time sum sum_over_time tan tanh time timestamp topk vector year";

/// PromQL keywords (case-insensitive) that stand alone.
const PROMQL_KEYWORDS: &str = "and or unless atan2 bool offset inf nan";

/// PromQL keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &str = "by without on ignoring group_left group_right";

fn is_word_of(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

fn is_closewatch_name(word: &str) -> bool {
    word.strip_prefix("closewatch_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index just past the string literal that opens at `i`.
fn skip_string(c: &[char], i: usize) -> Result<usize, String> {
    let quote = c[i];
    let mut j = i + 1;
    while j < c.len() {
        if c[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if c[j] == quote {
            return Ok(j + 1);
        }
        j += 1;
    }
    Err("unclosed string".to_string())
}

/// The index just past the first `close` at or after `i`.
fn skip_past(c: &[char], i: usize, close: char) -> Result<usize, String> {
    c[i..]
        .iter()
        .position(|&x| x == close)
        .map(|p| i + p + 1)
        .ok_or_else(|| format!("no closing {close:?}"))
}

/// The metric names a PromQL expression selects (Grafana variables allowed).
/// Every identifier must be a PromQL function or keyword, a label name (in a
/// matcher or a grouping list), `up`, or a `closewatch_` metric: anything else
/// is an error, so a metric of another exporter, a typo'd function or a
/// selector by `__name__` cannot slip through.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i = skip_string(&c, i)?;
        } else if ch == '#' {
            i = skip_past(&c, i, '\n').unwrap_or(c.len());
        } else if ch == '{' {
            braces += 1;
            i += 1;
        } else if ch == '}' {
            braces = braces.checked_sub(1).ok_or("unbalanced }")?;
            i += 1;
        } else if ch == '[' {
            // A range or a subquery: durations and Grafana variables only.
            i = skip_past(&c, i, ']')?;
        } else if ch == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if c.get(i) == Some(&'{') {
                i = skip_past(&c, i, '}')?;
            } else {
                while i < c.len() && is_ident(c[i]) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration: 0.95, 1e3, 0x1f, 5m.
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.' || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            if braces > 0 {
                if word == "__name__" {
                    return Err("a selector by __name__: name the metric instead".to_string());
                }
                continue; // a label name in a matcher
            }
            let lower = word.to_ascii_lowercase();
            let next = c[i..].iter().copied().find(|x| !x.is_whitespace());
            if is_word_of(LABEL_LIST_KEYWORDS, &lower) {
                if next == Some('(') {
                    i = skip_past(&c, i, ')')?;
                }
                continue;
            }
            // Functions, and aggregations also as `sum by (label) (...)`.
            if is_word_of(PROMQL_KEYWORDS, &lower) || is_word_of(PROMQL_FUNCTIONS, &word) {
                continue;
            }
            if next == Some('(') {
                return Err(format!("unknown function {word}()"));
            }
            if word == "up" || is_closewatch_name(&word) {
                names.insert(word);
                continue;
            }
            return Err(format!(
                "{word:?} is neither a closewatch_ metric, `up`, nor a PromQL word"
            ));
        } else {
            i += 1;
        }
    }
    if braces != 0 {
        return Err("unbalanced {".to_string());
    }
    Ok(names)
}

#[test]
fn the_tokenizer_finds_metric_names_and_rejects_strangers() {
    let names = |e: &str| metric_names(e).map(|s| s.into_iter().collect::<Vec<_>>());
    assert_eq!(
        names(
            "sum by (state) (closewatch_tcp_sockets{job=~\"$job\", state!=\"listen\"}) \
             / on(instance) group_left() closewatch_host_max_fds offset 5m"
        ),
        Ok(vec![
            "closewatch_host_max_fds".to_string(),
            "closewatch_tcp_sockets".to_string()
        ])
    );
    assert_eq!(
        names("sum(rate(closewatch_scans_total{instance=~\"${instance}\"}[$__rate_interval])) by (instance) > 0.5e0"),
        Ok(vec!["closewatch_scans_total".to_string()])
    );
    assert_eq!(
        names("absent(up{job=\"closewatch\"}) AND time() - 1 > bool 300"),
        Ok(vec!["up".to_string()])
    );
    assert_eq!(
        names("label_replace(closewatch_build_info, \"v\", \"$1\", \"version\", \"(.*)\")"),
        Ok(vec!["closewatch_build_info".to_string()])
    );
    assert!(names("node_filefd_allocated").is_err());
    assert!(names("rat(closewatch_scans_total[5m])").is_err());
    assert!(
        names("su(closewatch_scans_total)").is_err(),
        "whole words only"
    );
    assert!(names("{__name__=\"closewatch_scans_total\"}").is_err());
    assert!(names("closewatch_Scans_total").is_err());
    assert!(names("closewatch_tcp_sockets{state=\"x\"").is_err());
}

/// Metric names in a Grafana variable query: `label_values(EXPR, label)`,
/// `label_values(label)`, `query_result(EXPR)`, `metrics(regex)` (not a
/// selector: refused), or plain PromQL.
fn variable_query_names(query: &str) -> Result<BTreeSet<String>, String> {
    let q = query.trim();
    if let Some(args) = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return match args.rsplit_once(',') {
            Some((expr, _label)) => metric_names(expr),
            None => Ok(BTreeSet::new()),
        };
    }
    if let Some(expr) = q
        .strip_prefix("query_result(")
        .and_then(|r| r.strip_suffix(')'))
    {
        return metric_names(expr);
    }
    if q.starts_with("metrics(") {
        return Err("metrics() lists names by regex; select a metric instead".to_string());
    }
    metric_names(q)
}

/// Every panel, rows' nested panels included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .map(|a| a.iter().rev().collect())
        .unwrap_or_default();
    while let Some(p) = stack.pop() {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested.iter().rev());
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Metric name → where the rules and the dashboard use it.
fn used_metric_names() -> BTreeMap<String, BTreeSet<String>> {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut add = |expr: &str, place: String, names: Result<BTreeSet<String>, String>| match names {
        Ok(names) => {
            for n in names {
                used.entry(n).or_default().insert(place.clone());
            }
        }
        Err(e) => problems.push(format!("{place}: {e}\n    {}", expr.trim())),
    };
    for r in parse_rules(&read(RULES)) {
        let place = format!(
            "{RULES}: {} ({})",
            r.alert,
            r.severity.as_deref().unwrap_or("?")
        );
        add(&r.expr, place, metric_names(&r.expr));
    }
    let d = dashboard();
    for p in all_panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            let place = format!("{DASHBOARD}: panel {:?}", p["title"]);
            add(expr, place, metric_names(expr));
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let place = format!("{DASHBOARD}: variable {}", v["name"]);
        for q in [
            v["query"].as_str(),
            v["query"]["query"].as_str(),
            v["definition"].as_str(),
        ]
        .into_iter()
        .flatten()
        {
            add(q, place.clone(), variable_query_names(q));
        }
    }
    assert!(
        problems.is_empty(),
        "expressions with identifiers this test does not accept:\n{}",
        problems.join("\n")
    );
    used
}

/// The names of the `# TYPE` lines of a scrape, with the series a histogram
/// or a summary also exposes.
fn type_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("#") || words.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "histogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["_sum", "_count"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
        names.insert(name.to_string());
    }
    names
}

/// Reads until the peer's FIN: the connection is then in CLOSE_WAIT here.
fn read_eof(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => panic!("waiting for the peer's FIN: {e}"),
        }
    }
}

/// One scrape of the real agent, taken while this test process holds what
/// makes the conditional per-process series appear: a stale CLOSE_WAIT, an
/// owned FIN_WAIT_2 (the other end of it), a CLOSE_WAIT never accepted from
/// a listen queue (its client, half-closed, is a second FIN_WAIT_2), and a
/// deleted file still open. Each socket is in its state before the agent
/// starts: nothing races the scan.
fn live_scrape() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.shutdown(Shutdown::Write).expect("half-close");
    read_eof(&mut server);
    // The peer read EOF before its kernel ACKed the FIN: wait for that ACK.
    common::wait_tcp_state(&client, common::TCP_FIN_WAIT2);

    let queue = TcpListener::bind("127.0.0.1:0").expect("bind");
    let queued = TcpStream::connect(queue.local_addr().expect("addr")).expect("connect");
    queued.shutdown(Shutdown::Write).expect("half-close");
    // FIN_WAIT_2 once the queued connection's kernel has ACKed the FIN, by
    // which time that connection is in CLOSE_WAIT, still in the queue.
    common::wait_tcp_state(&queued, common::TCP_FIN_WAIT2);

    let mut deleted = tempfile::tempfile().expect("a deleted temp file");
    deleted.write_all(&[0u8; 4096]).expect("write");

    let config = tempfile::NamedTempFile::new().expect("temp config");
    let agent = Agent::start(
        config.path(),
        &[
            "--interval",
            "1h",
            "--close-wait-age",
            "0s",
            "--fin-wait2-age",
            "0s",
            "--max-processes",
            "1000000",
        ],
    );
    let text = agent.metrics();
    drop(agent); // SIGKILL by pid, reaped

    let me = std::process::id().to_string();
    for state in ["close_wait", "fin_wait2"] {
        assert!(
            sample(
                &text,
                "closewatch_process_tcp_sockets",
                &[("pid", &me), ("state", state)]
            )
            .is_some_and(|n| n >= 1.0),
            "the scrape has no {state} series for this test (pid {me}), so it cannot vouch \
             for the per-process metrics:\n{text}"
        );
    }
    drop((client, server, queue, queued, deleted));
    text
}

/// Every metric family the agent declares, from its table (the one place
/// a metric name is written), with the series a family's type adds.
fn registered_names() -> BTreeSet<String> {
    closewatch::export::metrics::families::ALL
        .iter()
        .map(|f| f.name.to_string())
        .collect()
}

/// Every metric the rules and the dashboard use must be one the agent
/// exports. The sources, strongest first:
/// 1. a live scrape of the real binary (this test holds a CLOSE_WAIT, a
///    FIN_WAIT_2, an unaccepted connection and a deleted file so the
///    per-process families appear): covers every metric of a normal scan;
/// 2. the families the agent declares (its table of families): covers those
///    that only appear under a condition this test cannot make in a second,
///    closewatch_process_fd_exhaustion_seconds (only while a process's fds
///    grow over fd_growth_window) and closewatch_netns_unscanned (only when a
///    namespace cannot be dumped);
/// 3. tests/golden/metrics.txt (the binary's output on a recording): it must
///    be a subset of 2, so a metric removed from the code but left in a stale
///    golden file is not accepted.
///
/// Both 1 and 3 are checked to be subsets of 2, which keeps the table honest:
/// a misspelled or removed metric is in none of them and fails.
#[test]
fn every_metric_the_rules_and_the_dashboard_query_is_exported() {
    let used = used_metric_names();
    let live = type_names(&live_scrape());
    let golden = type_names(&read(GOLDEN_METRICS));
    let registered = registered_names();

    let not_registered = |set: &BTreeSet<String>| -> Vec<String> {
        set.iter()
            .filter(|n| !registered.contains(n.as_str()))
            .cloned()
            .collect()
    };
    let live_only = not_registered(&live);
    assert!(
        live_only.is_empty(),
        "the agent exports {live_only:?}, which {FAMILIES} does not declare"
    );
    let stale_golden = not_registered(&golden);
    assert!(
        stale_golden.is_empty(),
        "{GOLDEN_METRICS} has {stale_golden:?}, which {FAMILIES} no longer declares: \
         regenerate it (UPDATE_GOLDEN=1 cargo test --test golden)"
    );

    let mut missing = Vec::new();
    for (name, places) in &used {
        if name == "up" {
            continue; // Prometheus' own, per target
        }
        let source = if live.contains(name) {
            "live scrape"
        } else if registered.contains(name) && golden.contains(name) {
            "declared + golden (not in this scrape)"
        } else if registered.contains(name) {
            "declared only (conditional)"
        } else {
            missing.push(format!(
                "{name}, used by:\n    {}",
                places.iter().cloned().collect::<Vec<_>>().join("\n    ")
            ));
            continue;
        };
        eprintln!("{name}: {source}");
    }
    assert!(
        missing.is_empty(),
        "metrics the agent does not export (live scrape: {} names, {FAMILIES}: {}, \
         {GOLDEN_METRICS}: {}):\n{}",
        live.len(),
        registered.len(),
        golden.len(),
        missing.join("\n")
    );
}

// -------------------------------------------------------------- dashboard

#[test]
fn the_dashboard_is_importable_and_every_panel_queries() {
    let d = dashboard();
    let mut problems = Vec::new();
    let schema = d["schemaVersion"].as_u64().unwrap_or(0);
    if !(36..=41).contains(&schema) {
        problems.push(format!("schemaVersion {schema}, expected about 39"));
    }
    for key in ["uid", "title"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("no {key}"));
        }
    }
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        other => problems.push(format!(
            "no `datasource` variable of type datasource, query prometheus: {other:?}"
        )),
    }
    match var("instance") {
        Some(v) if v["type"] == "query" && v["datasource"]["uid"] == "${datasource}" => {}
        other => problems.push(format!(
            "no `instance` query variable on ${{datasource}}: {other:?}"
        )),
    }

    let mut ids = BTreeSet::new();
    let panels = all_panels(&d);
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        let id = p["id"].as_u64();
        if !id.is_some_and(|id| ids.insert(id)) {
            problems.push(format!("panel {title:?}: id {id:?} missing or repeated"));
        }
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        if !matches!((x, w, h), (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24) {
            problems.push(format!("panel {title:?}: bad gridPos {g}"));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if p["type"] == "row" {
            // A row only groups panels: it has nothing to query.
            if !targets.is_empty() {
                problems.push(format!("row {title:?} has targets"));
            }
            continue;
        }
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no target"));
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!(
                "panel {title:?}: datasource is not ${{datasource}}"
            ));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!("panel {title:?}: a target without expr"));
            }
            if !t["refId"]
                .as_str()
                .is_some_and(|r| refs.insert(r.to_string()))
            {
                problems.push(format!("panel {title:?}: refId missing or repeated"));
            }
        }
    }
    let queried = panels.iter().filter(|p| p["type"] != "row").count();
    if queried < 10 {
        problems.push(format!("only {queried} panels besides rows"));
    }
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));
}

// -------------------------------------------------------------- DaemonSet

/// The list items under `key:` (block style), from the line at `at`.
fn list_under(lines: &[Line<'_>], at: usize) -> Vec<String> {
    let key_indent = lines[at].indent;
    let mut items = Vec::new();
    for l in &lines[at + 1..] {
        let item = l.text.strip_prefix("- ");
        if l.indent < key_indent || (l.indent == key_indent && item.is_none()) {
            break;
        }
        if let Some(item) = item {
            items.push(unquote(item).to_string());
        }
    }
    items
}

/// The lines nested under the line at `at`.
fn nested<'a, 'b>(lines: &'b [Line<'a>], at: usize) -> &'b [Line<'a>] {
    let key_indent = lines[at].indent;
    let len = lines[at + 1..]
        .iter()
        .take_while(|l| l.indent > key_indent)
        .count();
    &lines[at + 1..at + 1 + len]
}

/// The list item (its `- ` line and what is nested under it) holding line `i`.
fn item_of<'a, 'b>(lines: &'b [Line<'a>], i: usize) -> &'b [Line<'a>] {
    let start = (0..=i)
        .rev()
        .find(|&j| lines[j].text.starts_with("- ") && lines[j].indent <= lines[i].indent)
        .unwrap_or(i);
    &lines[start..start + 1 + nested(lines, start).len()]
}

fn find_key(lines: &[Line<'_>], key: &str) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| value_of(lines[i].text, key).is_some())
        .collect()
}

fn has(lines: &[Line<'_>], key: &str, value: &str) -> bool {
    lines
        .iter()
        .any(|l| value_of(l.text, key).is_some_and(|v| unquote(v) == value))
}

#[test]
fn the_daemonset_grants_exactly_what_the_agent_needs() {
    let text = read(DAEMONSET);
    let lines = yaml_lines(&text);
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };

    expect(has(&lines, "kind", "DaemonSet"), "kind: DaemonSet");
    expect(
        !lines
            .iter()
            .any(|l| value_of(l.text, "namespace").is_some()),
        "no namespace: the manifest is applied into the namespace of one's choice",
    );
    expect(has(&lines, "hostPID", "true"), "hostPID: true");

    let args: Vec<String> = find_key(&lines, "args")
        .into_iter()
        .flat_map(|i| list_under(&lines, i))
        .collect();
    expect(
        args.windows(2).any(|w| w == ["--proc-root", "/host/proc"])
            || args.iter().any(|a| a == "--proc-root=/host/proc"),
        "args: --proc-root /host/proc",
    );
    expect(
        args.windows(2)
            .any(|w| w == ["--config", "/etc/closewatch/closewatch.toml"]),
        "args: --config /etc/closewatch/closewatch.toml",
    );

    let caps = find_key(&lines, "capabilities");
    expect(caps.len() == 1, "exactly one capabilities block");
    if let Some(&at) = caps.first() {
        let block = nested(&lines, at);
        let list = |key: &str| -> BTreeSet<String> {
            find_key(block, key)
                .into_iter()
                .flat_map(|i| list_under(block, i))
                .collect()
        };
        let drop = list("drop");
        let add = list("add");
        expect(
            drop == BTreeSet::from(["ALL".to_string()]),
            &format!("capabilities drop exactly ALL, not {drop:?}"),
        );
        let wanted: BTreeSet<String> = ["SYS_PTRACE", "DAC_READ_SEARCH", "SYS_ADMIN"]
            .map(String::from)
            .into();
        expect(
            add == wanted,
            &format!("capabilities add exactly {wanted:?}, not {add:?}"),
        );
    }
    expect(
        !has(&lines, "privileged", "true"),
        "not privileged: the three capabilities are enough",
    );
    expect(
        has(&lines, "allowPrivilegeEscalation", "false"),
        "allowPrivilegeEscalation: false",
    );
    expect(
        has(&lines, "readOnlyRootFilesystem", "true"),
        "readOnlyRootFilesystem: true",
    );

    // The host's /proc, read-only at /host/proc.
    let proc_mount = find_key(&lines, "mountPath")
        .into_iter()
        .find(|&i| value_of(lines[i].text, "mountPath").map(unquote) == Some("/host/proc"));
    expect(
        proc_mount.is_some_and(|i| has(item_of(&lines, i), "readOnly", "true")),
        "mountPath /host/proc with readOnly: true",
    );
    let host_proc = find_key(&lines, "hostPath")
        .into_iter()
        .any(|i| has(nested(&lines, i), "path", "/proc"));
    expect(host_proc, "a hostPath volume of /proc");

    // Config: the ConfigMap's file, where --config looks for it.
    expect(
        has(&lines, "mountPath", "/etc/closewatch"),
        "the config mounted at /etc/closewatch",
    );

    // Scraping and probes.
    for (k, v) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "9958"),
        ("prometheus.io/path", "/metrics"),
    ] {
        expect(has(&lines, k, v), &format!("annotation {k}: \"{v}\""));
    }
    expect(has(&lines, "containerPort", "9958"), "containerPort: 9958");
    for probe in ["livenessProbe", "readinessProbe"] {
        let ok = find_key(&lines, probe)
            .first()
            .is_some_and(|&i| has(nested(&lines, i), "path", "/healthz"));
        expect(ok, &format!("{probe} on /healthz"));
    }
    let limits_memory = find_key(&lines, "limits")
        .first()
        .is_some_and(|&i| has(nested(&lines, i), "memory", "256Mi"));
    expect(
        limits_memory,
        "memory limit 256Mi (the systemd unit's MemoryMax=256M)",
    );
    assert!(problems.is_empty(), "{DAEMONSET}:\n{}", problems.join("\n"));
}

#[test]
fn the_daemonset_config_is_one_the_agent_accepts() {
    let text = read(DAEMONSET);
    let raw: Vec<&str> = text.lines().collect();
    let at = raw
        .iter()
        .position(|l| strip_comment(l.trim_start()) == "closewatch.toml: |")
        .unwrap_or_else(|| panic!("{DAEMONSET}: no `closewatch.toml: |` in the ConfigMap"));
    let toml = block_scalar(&raw, at);
    let mut file = tempfile::NamedTempFile::new().expect("temp config");
    file.write_all(toml.as_bytes()).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_closewatch"))
        .arg("--config")
        .arg(file.path())
        .arg("--check-config")
        .output()
        .expect("run closewatch --check-config");
    assert_success(
        &format!("closewatch --check-config on the ConfigMap of {DAEMONSET}:\n{toml}\n"),
        &out,
    );
}

// ------------------------------------------------- mixin and PrometheusRule

const MIXIN: &str = "packaging/mixin";
const PROMETHEUS_RULE: &str = "packaging/kubernetes/closewatch-prometheusrule.yaml";
/// The mixin's default `_config.closewatchSelector`.
const DEFAULT_SELECTOR: &str = "job=\"closewatch\"";

/// Whether a tool that .ci/run installs is here: in CI its absence fails the
/// test, elsewhere the test says loudly that it skipped.
fn installed(name: &str, args: &[&str], install: &str) -> bool {
    let found = Command::new(name)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is missing in CI: .ci/run must install it ({install})"
        );
        eprintln!("\n**** SKIPPED: {name} is not installed ({install}) ****\n");
    }
    found
}

/// One of the mixin's rendering programs, as packaging/mixin/build.sh runs it.
fn render_mixin(program: &str, selector: Option<&str>) -> String {
    let mut cmd = Command::new("jsonnet");
    cmd.arg("-S").arg("-J").arg(MIXIN);
    if let Some(s) = selector {
        cmd.arg("--tla-str").arg(format!("selector={s}"));
    }
    let out = cmd
        .arg(format!("{MIXIN}/{program}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run jsonnet");
    assert_success(&format!("jsonnet {program}"), &out);
    String::from_utf8(out.stdout).expect("jsonnet prints UTF-8")
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .enumerate()
        .find(|(_, (x, y))| x != y)
        .map(|(i, (x, y))| format!("line {}:\n  committed: {x}\n  rendered:  {y}", i + 1))
        .unwrap_or_else(|| format!("{} vs {} lines", a.lines().count(), b.lines().count()))
}

#[test]
fn the_rule_files_are_what_the_mixin_renders() {
    if !installed("jsonnet", &["--version"], "Debian: apt-get install jsonnet") {
        return;
    }
    for (program, committed) in [
        ("closewatch-alerts.jsonnet", RULES),
        ("closewatch-prometheusrule.jsonnet", PROMETHEUS_RULE),
    ] {
        let rendered = render_mixin(program, None);
        let text = read(committed);
        assert!(
            text == rendered,
            "{committed} is not what {MIXIN}/{program} renders: it is generated, never \
             edited by hand (edit {MIXIN}/alerts.libsonnet, run packaging/mixin/build.sh). \
             First difference at {}",
            first_difference(&text, &rendered)
        );
    }
}

#[test]
fn the_selector_of_the_mixin_changes_the_selector_and_nothing_else() {
    if !installed("jsonnet", &["--version"], "Debian: apt-get install jsonnet") {
        return;
    }
    let other = "job=\"kubernetes-pods\", app_kubernetes_io_name=\"closewatch\"";
    let rendered = render_mixin("closewatch-alerts.jsonnet", Some(other));
    let committed = read(RULES);
    assert!(
        committed.contains(&format!("up{{{DEFAULT_SELECTOR}}} == 0"))
            && committed.contains(&format!("absent(up{{{DEFAULT_SELECTOR}}})")),
        "{RULES}: the agent-health alerts no longer select up{{{DEFAULT_SELECTOR}}}"
    );
    let expected = committed.replace(DEFAULT_SELECTOR, other);
    assert!(
        rendered == expected,
        "rendered with selector {other}, the rules differ from {RULES} by more than the \
         selector: {}",
        first_difference(&expected, &rendered)
    );
    assert!(!rendered.contains(DEFAULT_SELECTOR));
}

/// The PrometheusRule's spec, dedented, is the rule file's `groups:` part,
/// byte for byte: no tool needed, so this holds even where jsonnet is not
/// installed.
#[test]
fn the_prometheusrule_holds_exactly_the_alert_rules() {
    let rule = read(PROMETHEUS_RULE);
    let lines = yaml_lines(&rule);
    for (k, v) in [
        ("apiVersion", "monitoring.coreos.com/v1"),
        ("kind", "PrometheusRule"),
    ] {
        assert!(has(&lines, k, v), "{PROMETHEUS_RULE}: no {k}: {v}");
    }
    let spec: Vec<String> = rule
        .lines()
        .skip_while(|l| *l != "spec:")
        .skip(1)
        .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string())
        .collect();
    let rules = read(RULES);
    let groups: Vec<String> = rules
        .lines()
        .skip_while(|l| *l != "groups:")
        .map(str::to_string)
        .collect();
    assert!(
        groups.len() > 100,
        "{RULES}: no top-level `groups:` followed by the rules"
    );
    assert!(
        spec == groups,
        "{PROMETHEUS_RULE}: its spec is not the rule groups of {RULES} (both are rendered \
         by packaging/mixin/build.sh): {}",
        first_difference(&groups.join("\n"), &spec.join("\n"))
    );
}

// ------------------------------------------------ Kubernetes manifests

const KUBERNETES: &str = "packaging/kubernetes";

#[test]
fn the_kubernetes_manifests_pass_schema_validation() {
    let out = Command::new("packaging/check-manifests.sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run packaging/check-manifests.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(2) {
        assert!(
            std::env::var_os("CI").is_none(),
            "the manifest validators are missing in CI: .ci/run must run \
             packaging/check-manifests.sh --install\n{text}"
        );
        eprintln!("\n**** SKIPPED: {}****\n", text.trim_end());
        return;
    }
    assert!(
        out.status.success(),
        "packaging/check-manifests.sh failed ({}):\n{text}",
        out.status
    );
    eprintln!("{text}");
}

/// The value of `key:` in the block nested under the first `under:` line.
fn value_under(lines: &[Line<'_>], under: &str, key: &str) -> Option<String> {
    let at = *find_key(lines, under).first()?;
    nested(lines, at)
        .iter()
        .find_map(|l| value_of(l.text, key).map(|v| unquote(v).to_string()))
}

/// The Service, ServiceMonitor and PodMonitor find the DaemonSet's pods and
/// port, name the job the rules select, and every manifest is in the
/// kustomization (the schemas cannot see any of this: each object is valid
/// on its own).
#[test]
fn the_operator_manifests_select_the_agent_and_the_job_the_rules_select() {
    let label = ("app.kubernetes.io/name", "closewatch");
    let daemonset = read(DAEMONSET);
    let ds = yaml_lines(&daemonset);
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    // The pod template's label, and its port's name.
    let template = find_key(&ds, "template")
        .first()
        .map(|&i| nested(&ds, i))
        .unwrap_or_default();
    expect(
        value_under(template, "labels", label.0).as_deref() == Some(label.1),
        format!("{DAEMONSET}: pod template label {}: {}", label.0, label.1),
    );
    let port = find_key(&ds, "containerPort")
        .first()
        .and_then(|&i| value_of(item_of(&ds, i)[0].text, "name").map(|v| unquote(v).to_string()));
    expect(
        port.as_deref() == Some("metrics"),
        format!("{DAEMONSET}: the container port 9958 is named metrics, not {port:?}"),
    );

    let service_text = read(&format!("{KUBERNETES}/closewatch-service.yaml"));
    let service = yaml_lines(&service_text);
    expect(
        value_under(&service, "selector", label.0).as_deref() == Some(label.1)
            && has(&service, "targetPort", "metrics")
            && has(&service, "name", "metrics")
            && value_under(&service, "labels", label.0).as_deref() == Some(label.1),
        "the Service selects the pods by their label, targets the port metrics, \
         names its port metrics and carries the label the ServiceMonitor selects"
            .to_string(),
    );

    for (file, endpoints) in [
        ("closewatch-servicemonitor.yaml", "endpoints"),
        (
            "podmonitor/closewatch-podmonitor.yaml",
            "podMetricsEndpoints",
        ),
    ] {
        let text = read(&format!("{KUBERNETES}/{file}"));
        let l = yaml_lines(&text);
        // jobLabel names a label whose value is the job of the default
        // selector, job="closewatch".
        expect(
            has(&l, "jobLabel", label.0) && DEFAULT_SELECTOR == format!("job=\"{}\"", label.1),
            format!("{file}: jobLabel {} (job=\"{}\")", label.0, label.1),
        );
        expect(
            value_under(&l, "matchLabels", label.0).as_deref() == Some(label.1),
            format!("{file}: selects {}: {}", label.0, label.1),
        );
        let eps = find_key(&l, endpoints)
            .first()
            .map(|&i| nested(&l, i))
            .unwrap_or_default();
        expect(
            has(eps, "port", "metrics") && has(eps, "path", "/metrics"),
            format!("{file}: {endpoints} on port metrics, path /metrics"),
        );
    }

    // Every manifest is in a kustomization: the main one or the component.
    let listed = |k: &str| -> BTreeSet<String> {
        let text = read(&format!("{KUBERNETES}/{k}"));
        let l = yaml_lines(&text);
        find_key(&l, "resources")
            .first()
            .map(|&i| list_under(&l, i).into_iter().collect())
            .unwrap_or_default()
    };
    let main = listed("kustomization.yaml");
    let component = listed("podmonitor/kustomization.yaml");
    for dir in [KUBERNETES.to_string(), format!("{KUBERNETES}/podmonitor")] {
        let entries = std::fs::read_dir(repo_path(&dir)).expect("read the directory");
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.ends_with(".yaml") || name == "kustomization.yaml" {
                continue;
            }
            let in_main = dir == KUBERNETES && main.contains(&name);
            let in_component = dir != KUBERNETES && component.contains(&name);
            expect(
                in_main || in_component,
                format!("{dir}/{name} is in no kustomization"),
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
