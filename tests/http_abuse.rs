//! The real agent's HTTP endpoint stays up under abuse on loopback: while 500
//! slowloris clients and a stream of garbage requests hit it, every scrape of
//! /metrics is answered 200, garbage is answered or closed, its fds stay
//! bounded and return to baseline, and scans go on; out of fds (EMFILE under
//! RLIMIT_NOFILE 32) it keeps scanning and answers again once fds are back.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::agent::{sample, wait_for, Agent};

/// The tests measure latency and count fds: run them one at a time, so one
/// test's agent and clients do not skew the other's figures.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn empty_config() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().expect("temp config")
}

/// Entries in /proc/PID/fd; `None` once the process is gone.
fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

fn alive(agent: &mut Agent) -> bool {
    matches!(agent.child.try_wait(), Ok(None))
}

fn scans_total(text: &str) -> f64 {
    sample(text, "closewatch_scans_total", &[]).expect("closewatch_scans_total in the scrape")
}

/// Sets the soft RLIMIT_NOFILE of this process to its hard limit (the agent
/// started afterwards inherits it): 500 clients need 500 fds here, and the
/// agent up to 256 + its own.
fn raise_nofile_limit() -> libc::rlim_t {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// One `GET /metrics` on a fresh connection: its status and body, or what
/// went wrong (a refused or reset connection is an error, not a status).
fn scrape(addr: SocketAddr) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: scraper\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no response head in {} bytes", raw.len()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {:?}", head.lines().next()))?;
    Ok((status, body.to_string()))
}

/// A slowloris client until `stop`: connects, sends the start of a request
/// and then one byte every ~2 s, never finishing it; reconnects as soon as
/// the server closes the connection.
fn slowloris(addr: SocketAddr, stop: &AtomicBool, connects: &AtomicU64) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        connects.fetch_add(1, Ordering::Relaxed);
        // Short reads, so that a closed connection is seen at once and a
        // stop within half a second.
        if s.set_read_timeout(Some(Duration::from_millis(500)))
            .is_err()
            || s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .is_err()
        {
            continue;
        }
        let mut sent_at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                // Closed (or, never expected, answered): start over.
                Ok(_) => break,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if sent_at.elapsed() >= Duration::from_secs(2) {
                        if s.write_all(b"a").is_err() {
                            break;
                        }
                        sent_at = Instant::now();
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// Malformed or hostile requests, each on its own connection: name, bytes,
/// and whether a 2xx may come first (the well-formed request before the
/// pipelined junk).
fn garbage_inputs() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge_header.extend(std::iter::repeat_n(b'a', 1 << 20));
    huge_header.extend_from_slice(b"\r\n\r\n");
    let long_uri = format!(
        "GET /metrics?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "q".repeat(70_000)
    );
    let mut many_headers = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..500 {
        many_headers.push_str(&format!("X-H{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    vec![
        (
            "bad method",
            b"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        (
            "binary junk",
            b"\x00\x01\x02\xff\xfe\x80junk\r\n\r\n".to_vec(),
            false,
        ),
        (
            "absurd content-length",
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                .to_vec(),
            false,
        ),
        ("HTTP/0.9", b"GET /metrics\r\n".to_vec(), false),
        (
            "HTTP/3.0",
            b"GET /metrics HTTP/3.0\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("1 MiB header", huge_header, false),
        ("70 kB URI", long_uri.into_bytes(), false),
        ("500 headers", many_headers.into_bytes(), false),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            false,
        ),
        (
            "BREW",
            b"BREW /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("CRLF only", b"\r\n\r\n\r\n\r\n".to_vec(), false),
        (
            "pipelined junk",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01 junk \xff\r\n\r\n".to_vec(),
            true,
        ),
    ]
}

/// The statuses of the responses in `raw`, in order (each head, then a
/// `content-length` body skipped).
fn statuses(raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let Some(status) = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
            break;
        };
        out.push(status);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        rest = rest.get(end + 4 + len..).unwrap_or(&[]);
    }
    out
}

/// Longest a garbage connection may stay open: the 5 s header read timeout,
/// plus slack for a loaded machine.
const GARBAGE_HANG: Duration = Duration::from_millis(6500);

/// Sends one garbage input and reads until the server closes. Returns the
/// statuses seen, or a description of the failure (a 2xx where none may be,
/// or a connection still open after [`GARBAGE_HANG`]).
fn send_garbage(
    addr: SocketAddr,
    bytes: &[u8],
    may_succeed_first: bool,
) -> Result<Vec<u16>, String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    // The server may answer and close before the whole input is written
    // (431 on a 1 MiB header): a failed write is not a failure.
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // A reset is a close.
            Err(_) => break,
        }
        if started.elapsed() > GARBAGE_HANG {
            return Err(format!(
                "still open after {:?} ({} bytes read)",
                started.elapsed(),
                raw.len()
            ));
        }
    }
    let seen = statuses(&raw);
    for (i, status) in seen.iter().enumerate() {
        let success_allowed = may_succeed_first && i == 0;
        if (200..300).contains(status) && !success_allowed {
            return Err(format!("answered {seen:?}"));
        }
        if !(200..300).contains(status) && !(400..500).contains(status) {
            return Err(format!("answered {seen:?}"));
        }
    }
    Ok(seen)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

const SLOWLORIS_CLIENTS: usize = 500;
const SCRAPE_EVERY: Duration = Duration::from_millis(200);
const SCRAPING_FOR: Duration = Duration::from_secs(15);
/// `Limits::default().max_connections`, plus the agent's own fds and slack.
const FD_CEILING: usize = 256 + 32;

#[test]
fn slowloris_and_garbage_do_not_starve_a_scraper() {
    let _serial = serial();
    let nofile = raise_nofile_limit();
    assert!(
        nofile >= 2 * SLOWLORIS_CLIENTS as libc::rlim_t,
        "RLIMIT_NOFILE hard limit {nofile} is too low for {SLOWLORIS_CLIENTS} clients"
    );
    let config = empty_config();
    let mut agent = Agent::start(config.path(), &["--interval", "1s"]);
    let addr = agent.addr;
    let pid = agent.pid();
    let scans_before = scans_total(&agent.metrics());
    let fds_baseline = fd_count(pid).expect("the agent's fds");

    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for i in 0..SLOWLORIS_CLIENTS {
        let (stopping, connects) = (stop.clone(), connects.clone());
        let spawned = thread::Builder::new()
            .name(format!("slowloris-{i}"))
            .stack_size(64 * 1024)
            .spawn(move || slowloris(addr, &stopping, &connects));
        match spawned {
            Ok(t) => attackers.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for t in attackers {
                    let _ = t.join();
                }
                panic!("spawning slowloris client {i}: {e}");
            }
        }
    }
    let garbage = {
        let stop = stop.clone();
        thread::spawn(move || {
            let inputs = garbage_inputs();
            let (mut sent, mut answered) = (0, 0);
            let mut failures = Vec::new();
            'outer: loop {
                for (name, bytes, may_succeed_first) in &inputs {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    sent += 1;
                    match send_garbage(addr, bytes, *may_succeed_first) {
                        Ok(statuses) => answered += usize::from(!statuses.is_empty()),
                        Err(e) => failures.push(format!("{name}: {e}")),
                    }
                }
            }
            (sent, answered, failures)
        })
    };
    let fds_peak = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(fd_count(pid).unwrap_or(0));
                thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };

    // Let every slowloris client connect (and the slots fill) first.
    thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut last_body = None;
    let scraping = Instant::now();
    while scraping.elapsed() < SCRAPING_FOR {
        let started = Instant::now();
        let result = scrape(addr);
        let took = started.elapsed();
        latencies.push(took);
        match result {
            Ok((200, body)) => last_body = Some(body),
            Ok((status, _)) => failures.push(format!("status {status} after {took:?}")),
            Err(e) => failures.push(format!("{e} after {took:?}")),
        }
        thread::sleep(SCRAPE_EVERY.saturating_sub(took));
    }
    let agent_alive = alive(&mut agent);

    stop.store(true, Ordering::Relaxed);
    for t in attackers {
        t.join().expect("a slowloris client");
    }
    let fds_peak = fds_peak.join().expect("the fd sampler");
    let (garbage_sent, garbage_answered, garbage_failures) =
        garbage.join().expect("the garbage client");
    let stopped = Instant::now();
    let fds_after = wait_for(Duration::from_secs(10), || {
        fd_count(pid).filter(|n| *n <= fds_baseline + 16)
    });
    let recovered_in = stopped.elapsed();

    latencies.sort();
    let under_100ms = latencies
        .iter()
        .filter(|d| **d < Duration::from_millis(100))
        .count();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // For benches/http_abuse.sh, which judges the "< 100 ms" goal: speed is
    // measured there, on a quiet machine, never asserted here.
    eprintln!(
        "latency-ms: scrapes={} failed={} p50={:.2} p90={:.2} p99={:.2} max={:.2} under_100ms={under_100ms}",
        latencies.len(),
        failures.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    eprintln!(
        "slowloris connects: {}; garbage requests: {garbage_sent} \
         ({garbage_answered} answered, the rest closed unanswered, {} wrong); agent fds: baseline \
         {fds_baseline}, peak {fds_peak}, after {fds_after:?} ({recovered_in:?} after the attack)",
        connects.load(Ordering::Relaxed),
        garbage_failures.len(),
    );

    assert!(agent_alive, "the agent died during the attack");
    // Every scrape answered 200 within the client's timeouts (5 s to
    // connect, 10 s to read): a bound on liveness, not on speed.
    assert!(failures.is_empty(), "failed scrapes: {failures:#?}");
    assert!(
        garbage_failures.is_empty(),
        "garbage answered wrongly: {garbage_failures:#?}"
    );
    assert!(
        fds_peak <= FD_CEILING,
        "the agent held {fds_peak} fds (ceiling {FD_CEILING})"
    );
    assert!(
        fds_after.is_some(),
        "the agent's fds did not return within 16 of its baseline {fds_baseline} \
         within 10 s: {:?} now",
        fd_count(pid)
    );
    let scans_during = scans_total(&last_body.expect("at least one scrape answered"));
    assert!(
        scans_during > scans_before,
        "scans stalled during the attack: {scans_before} before, {scans_during} during"
    );
    assert!(alive(&mut agent), "the agent died after the attack");
}

#[test]
fn emfile_keeps_scanning_and_recovers() {
    let _serial = serial();
    let config = empty_config();
    let mut agent = Agent::start_with_nofile(config.path(), &["--interval", "500ms"], 32);
    let addr = agent.addr;
    let scans_before = scans_total(&agent.metrics());

    // More connections than the agent has fds: accept() meets EMFILE. The
    // kernel completes the handshakes (the backlog is 4096); connect is all.
    let exhausted = Instant::now();
    let held: Vec<TcpStream> = (0..60)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    let line = agent.wait_log("accept failed", Duration::from_secs(10));
    assert!(line.contains("Too many open files"), "not EMFILE: {line:?}");
    // Held about 4 s in all, long enough for several scans to meet EMFILE.
    thread::sleep((exhausted + Duration::from_secs(4)).saturating_duration_since(Instant::now()));
    assert!(alive(&mut agent), "the agent died out of fds");
    drop(held);

    let released = Instant::now();
    let text = wait_for(Duration::from_secs(10), || {
        agent
            .request("GET", "/metrics")
            .filter(|r| r.status == 200)
            .map(|r| r.body)
    })
    .expect("/metrics answered 200 within 10 s of the connections closing");
    let scans_after = scans_total(&text);
    eprintln!(
        "answered 200 {:?} after release; scans {scans_before} before, {scans_after} after \
         {:?} without fds",
        released.elapsed(),
        released - exhausted,
    );
    // Scans went on while the fds were gone: at 500 ms, a 4 s exhaustion is
    // 8 scans; half of that tolerates a loaded machine, and the one or two
    // scans after the release cannot make up for scans that stalled.
    let floor = (released - exhausted).as_secs_f64() / 0.5 / 2.0;
    assert!(
        scans_after - scans_before >= floor,
        "scans stalled: {scans_before} before the exhaustion, {scans_after} after \
         (at least {floor:.0} more expected)"
    );
    assert!(alive(&mut agent), "the agent died");
}
