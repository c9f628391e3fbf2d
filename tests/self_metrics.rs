//! The agent's own `process_*` metrics against the kernel's view of the real
//! agent: its fd count, its soft RLIMIT_NOFILE, its start time, its CPU and
//! memory, as /proc/PID says them while the test holds the scraped figures
//! still (the figures are read at each scan; two scrapes of one scan bracket
//! the test's own look).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::agent::{sample, Agent};

/// A keep-alive connection to the agent, as Prometheus holds one.
struct Scraper {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Scraper {
    fn connect(agent: &Agent) -> Scraper {
        let stream = TcpStream::connect(agent.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Scraper { reader, stream }
    }

    /// GET /metrics on this connection: the status and the body.
    fn get(&mut self) -> (String, String) {
        self.stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n")
            .expect("send");
        let mut status = String::new();
        self.reader.read_line(&mut status).expect("status line");
        let mut len = None;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header");
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                len = Some(v.trim().parse::<usize>().expect("a length"));
            }
            assert_ne!(line, "connection: close", "the connection must stay open");
        }
        let mut body = vec![0; len.expect("content-length")];
        self.reader.read_exact(&mut body).expect("body");
        (status, String::from_utf8(body).expect("UTF-8"))
    }

    /// The metrics, once the scan has published them (503 before), asked
    /// on this one connection.
    fn metrics(&mut self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get();
            if status.starts_with("HTTP/1.1 200") {
                return body;
            }
            assert!(status.starts_with("HTTP/1.1 503"), "{status}");
            assert!(std::time::Instant::now() < deadline, "never published");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn value(text: &str, name: &str) -> f64 {
    sample(text, name, &[]).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the agent's fd directory")
        .count()
}

/// Field `n` (1-based, as proc(5) numbers them) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = stat.rsplit_once(')').expect("comm").1;
    // Field 3 (state) is the first after comm.
    after_comm
        .split_whitespace()
        .nth(n - 3)
        .expect("field")
        .parse()
        .expect("number")
}

fn status_kib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key}"));
    let kib: f64 = line
        .trim_start_matches(':')
        .split_whitespace()
        .next()
        .expect("a number")
        .parse()
        .expect("a number");
    kib * 1024.0
}

fn ticks_per_second() -> f64 {
    // SAFETY: plain libc call.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn boot_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .expect("btime")
        .trim()
        .parse()
        .expect("a number")
}

/// The agent, its first scan done (its figures are read before the debug
/// line that ends the scan) and no connection made to it yet.
fn agent_after_its_first_scan(nofile: libc::rlim_t) -> (Agent, tempfile::NamedTempFile) {
    let config = tempfile::NamedTempFile::new().expect("temp config");
    let agent = Agent::start_with_nofile(
        config.path(),
        &["--interval", "1h", "--log-level", "debug"],
        nofile,
    );
    agent.wait_log("scan 1 took", Duration::from_secs(60));
    (agent, config)
}

#[test]
fn process_open_fds_is_the_agents_real_fd_count() {
    let (agent, _config) = agent_after_its_first_scan(4096);
    let mut scraper = Scraper::connect(&agent);
    let before = scraper.metrics();
    let counted = fd_count(agent.pid());
    let after = scraper.metrics();
    // One scan's figures on both sides of the count: nothing moved them.
    assert_eq!(value(&before, "closewatch_scans_total"), 1.0);
    assert_eq!(before, after, "a scrape serves the scan's text");
    // The agent was read at rest after its scan, before any connection;
    // now it also holds this test's keep-alive connection: one fd more.
    assert_eq!(
        value(&before, "process_open_fds"),
        (counted - 1) as f64,
        "the agent has {counted} fds, one of them this test's connection"
    );
    drop(scraper);
}

#[test]
fn process_max_fds_is_the_soft_nofile_limit_and_start_time_the_kernels() {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    let (agent, _config) = agent_after_its_first_scan(2000);
    let up = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    let text = Scraper::connect(&agent).metrics();
    let pid = agent.pid();

    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let soft: f64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .expect("Max open files")
        .parse()
        .expect("a number");
    assert_eq!(soft, 2000.0, "the limit the test set");
    assert_eq!(value(&text, "process_max_fds"), soft);

    // The kernel's start time: btime (whole seconds) plus field 22.
    let start = value(&text, "process_start_time_seconds");
    let kernel = boot_time() + stat_field(pid, 22) as f64 / ticks_per_second();
    assert!((start - kernel).abs() <= 1.0, "{start} vs /proc {kernel}");
    // ...and the test's own clock around the start (btime is rounded down
    // to the second).
    assert!(
        start >= started - 1.0 && start <= up + 1.0,
        "{start} not in {started}..{up}"
    );

    // CPU time so far: no more than the kernel counts now (utime + stime).
    let cpu = value(&text, "process_cpu_seconds_total");
    let cpu_now = (stat_field(pid, 14) + stat_field(pid, 15)) as f64 / ticks_per_second();
    assert!(cpu >= 0.0 && cpu <= cpu_now, "{cpu} vs {cpu_now} now");

    // Memory moves a little after the scan; the same order of magnitude.
    for (name, key) in [
        ("process_resident_memory_bytes", "VmRSS"),
        ("process_virtual_memory_bytes", "VmSize"),
    ] {
        let exported = value(&text, name);
        let now = status_kib(pid, key);
        assert!(
            exported > now / 2.0 && exported < now * 2.0,
            "{name} {exported} vs {key} {now}"
        );
    }
    let revision = closewatch::build_info::REVISION;
    assert!(
        text.contains(&format!("closewatch_build_info{{revision=\"{revision}\",")),
        "{text}"
    );
}
