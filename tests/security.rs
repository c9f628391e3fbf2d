//! No command line or environment ever reaches a label or a log line: a real
//! process holding CLOSE_WAIT sockets is started with a secret in its argv and
//! another in its environment; the real agent, at debug level, scans it until
//! it has every per-process series, and neither secret appears in /metrics or
//! its log. The one-shot report shows the command line, never the environment.

mod common;

use std::time::Duration;

use common::agent::{sample, wait_for, Agent};
use common::Fixture;

const ARGV_SECRET: &str = "argv-secret-7f3a9c";
const ENV_SECRET: &str = "env-secret-51b2e8";

/// Generous: a bound on a hang, never a measure of speed.
const WITHIN: Duration = Duration::from_secs(30);

#[test]
fn secrets_in_a_command_line_or_environment_never_reach_labels_or_logs() {
    let env = format!("API_TOKEN={ENV_SECRET}");
    let argv0 = format!("fixture --password={ARGV_SECRET}");
    // `exec -a` puts the secret in argv[0]; `env` in the environment. Both
    // exec in place, so the pid is the fixture's.
    let fixture = Fixture::start_with(
        &[
            "env",
            &env,
            "bash",
            "-c",
            &format!("exec -a '{argv0}' \"$@\""),
            "bash",
        ],
        "eof-server",
        Some(2),
    );
    let server = fixture.info.role("server").pids[0];
    let read = |what: &str| {
        std::fs::read(format!("/proc/{server}/{what}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| panic!("/proc/{server}/{what}: {e}"))
    };
    // The test means something only if the secrets are really there.
    assert!(read("cmdline").contains(ARGV_SECRET), "{}", read("cmdline"));
    assert!(
        read("environ").contains(ENV_SECRET),
        "the environment has it"
    );

    let config = tempfile::NamedTempFile::new().expect("temp config");
    let agent = Agent::start(
        config.path(),
        &[
            "--interval",
            "100ms",
            "--close-wait-age",
            "0s",
            "--max-processes",
            "1000000",
            "--log-level",
            "debug",
        ],
    );
    let pid = server.to_string();
    let text = wait_for(WITHIN, || {
        let text = agent.metrics();
        let held = sample(
            &text,
            "closewatch_process_tcp_sockets",
            &[("pid", &pid), ("state", "close_wait")],
        );
        (held == Some(2.0)).then_some(text)
    })
    .unwrap_or_else(|| panic!("pid {server} got its series within {WITHIN:?}"));
    // Its finding too, so every per-process metric family is there.
    assert!(
        sample(
            &text,
            "closewatch_process_finding",
            &[("pid", &pid), ("check", "close_wait_stale")]
        )
        .is_some(),
        "{text}"
    );
    // A few more scans at debug level, then everything it said.
    let scans = sample(&text, "closewatch_scans_total", &[]).expect("scans");
    wait_for(WITHIN, || {
        let t = agent.metrics();
        (sample(&t, "closewatch_scans_total", &[]).expect("scans") >= scans + 5.0).then_some(())
    })
    .expect("five more scans");
    let last = agent.metrics();
    let mut said: Vec<String> = agent.log.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("DEBUG")),
        "the log is at debug level: {said:#?}"
    );
    said.push(text);
    said.push(last);
    for (i, s) in said.iter().enumerate() {
        for secret in [ARGV_SECRET, ENV_SECRET] {
            assert!(!s.contains(secret), "{secret} in agent output #{i}: {s}");
        }
    }

    // The operator's report shows the command line, never the environment.
    let report = common::report_json(&[server]);
    assert!(report.stdout.contains(ARGV_SECRET), "{}", report.stdout);
    for out in [&report.stdout, &report.stderr] {
        assert!(!out.contains(ENV_SECRET), "{out}");
    }
}
