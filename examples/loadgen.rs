//! Builds a busy host's TCP socket load on loopback and holds it, so that
//! closewatch can be measured against `ss` (benches/compare.sh) or tried by
//! hand.
//!
//!     cargo run --release --example loadgen -- --processes 100 --sockets 1000 \
//!         [--close-wait-pct 10] [--fin-wait2-pct X] [--files 0] [--timeout 600]
//!
//! # The load
//! The parent forks `--processes` workers (while it is still single-threaded);
//! each child sets `PR_SET_PDEATHSIG = SIGKILL`, so no worker outlives the
//! parent. Every worker listens on 127.0.0.1:0 and makes C = S/2 connections to
//! its own listener from a few 127.100.x.y source addresses of its own, keeping
//! both ends. Of the C connections (spread evenly over them):
//!
//! | share of C          | client end                     | accepted end |
//! |---------------------|--------------------------------|--------------|
//! | 100 − X %           | ESTABLISHED, kept              | ESTABLISHED  |
//! | Y %                 | `shutdown(SHUT_WR)`, kept: owned FIN_WAIT_2 | CLOSE_WAIT |
//! | X − Y %             | `close()`d: orphan FIN_WAIT_2  | CLOSE_WAIT   |
//!
//! X = `--close-wait-pct` (default 10), Y = `--fin-wait2-pct` (default X: no
//! orphans). On loopback every owned FIN_WAIT_2 has a CLOSE_WAIT peer, hence
//! Y ≤ X. Orphans are opt-in because the kernel drops them after
//! `net.ipv4.tcp_fin_timeout` (60 s), so the host state would change under a
//! benchmark; the CLOSE_WAIT ends stay. A worker holds 1 listener + 2C − orphans
//! TCP sockets and, with `--files F`, F more fds on one regular file that the
//! parent creates in a temporary directory and removes on exit.
//!
//! # Readiness
//! Each worker checks every socket it kept with `getsockopt(TCP_INFO)` until
//! all are in their intended state (the accepted ends also prove that every
//! orphan's FIN arrived), then reports to the parent over a pipe. When all
//! workers have reported, the parent prints one JSON line on stdout:
//! `{"parent_pid", "worker_pids", "sockets", "fds", "close_wait",
//! "fin_wait2_owned", "fin_wait2_orphans", "established", "listeners", "files",
//! "setup_seconds"}`. `sockets` counts the TCP sockets the workers hold
//! (listeners included, orphans not); `fds` is the measured number of open fds
//! of the workers and the parent (`st_size` of /proc/PID/fd).
//!
//! # Lifetime
//! The parent then waits for EOF on stdin, SIGTERM or SIGINT (unless SIGINT was
//! ignored when it started, as in a shell's background job), SIGKILLs its
//! workers by pid, reaps them and exits 0. If a worker dies on its own, the
//! load is no longer what was announced: the parent stops everything and exits
//! with status 1. Kept sockets have `SO_LINGER` 0, so the teardown resets them
//! and leaves no TIME_WAIT behind to skew the next run (a FIN teardown of 200k
//! connections leaves ~130k TIME_WAIT for 60 s). Workers close every fd inherited from the
//! parent, so each holds exactly stdio, its sockets and its files.
//!
//! Measured on 2 cores: 100 × 1,000 sockets ready in 0.4–0.8 s, 200 × 2,000
//! in 2.7–3.3 s (workers build in parallel); ~4.5 KiB of kernel memory per
//! socket.
//!
//! # Host limits it checks
//! The soft RLIMIT_NOFILE is raised to the hard one; S + F + a margin above it
//! is refused (one process cannot hold more). The listen backlog and the batch
//! of connections made before accepting them follow `net.core.somaxconn`, so no
//! SYN is dropped (a dropped SYN costs a 1 s retransmit). Source ports are
//! picked at connect time (`IP_BIND_ADDRESS_NO_PORT`), so the port range only
//! limits connections per (source address, listener) pair; enough source
//! addresses are used to stay within `net.ipv4.ip_local_port_range`. The fds
//! needed are checked against `fs.file-max`; memory, `tcp_max_orphans`,
//! `tcp_max_tw_buckets` and `nf_conntrack_max` give warnings.
//!
//! `plan` derives the per-worker load from the options and the host, `worker`
//! is the forked child, `sys` wraps the process and signal syscalls.

#[path = "loadgen/plan.rs"]
mod plan;
#[path = "loadgen/sys.rs"]
mod sys;
#[path = "loadgen/worker.rs"]
mod worker;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plan::{raise_nofile, Host, DEFAULT_CLOSE_WAIT_PCT};
use sys::{check, poll_in, read_signal, signal_fd, Workers};
use worker::{worker_main, ParentFds};

const USAGE: &str = "\
usage: loadgen --processes P --sockets S [--close-wait-pct X] [--fin-wait2-pct Y]
               [--files F] [--timeout SECS]

Forks P workers; each holds about S loopback TCP sockets: S/2 connections to its
own listener, both ends kept. X% of connections (default 10) leave the accepted
end in CLOSE_WAIT; for Y% of connections (default X, at most X) the client
shuts down writing and keeps its socket (owned FIN_WAIT_2), for the other X-Y%
it closes (orphan FIN_WAIT_2, gone after tcp_fin_timeout). --files opens F
regular-file fds per worker. Prints one JSON line when every socket is in its
state, then holds the load until stdin reaches EOF or SIGTERM/SIGINT.
--timeout bounds the setup (default 600 s).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match Options::parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Command-line options, validated.
struct Options {
    processes: usize,
    sockets: usize,
    close_wait_pct: f64,
    fin_wait2_pct: f64,
    files: usize,
    timeout: Duration,
}

impl Options {
    /// `Ok(None)` for --help.
    fn parse(args: &[String]) -> Result<Option<Options>, String> {
        let (mut processes, mut sockets, mut cw, mut fw2, mut files, mut timeout) =
            (None, None, None, None, 0usize, 600u64);
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Ok(None);
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            match flag.as_str() {
                "--processes" => processes = Some(value.parse::<usize>().map_err(|e| bad(&e))?),
                "--sockets" => sockets = Some(value.parse::<usize>().map_err(|e| bad(&e))?),
                "--close-wait-pct" => cw = Some(value.parse::<f64>().map_err(|e| bad(&e))?),
                "--fin-wait2-pct" => fw2 = Some(value.parse::<f64>().map_err(|e| bad(&e))?),
                "--files" => files = value.parse().map_err(|e| bad(&e))?,
                "--timeout" => timeout = value.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        let processes = processes.ok_or("--processes is required")?;
        let sockets = sockets.ok_or("--sockets is required")?;
        let close_wait_pct = cw.unwrap_or(DEFAULT_CLOSE_WAIT_PCT);
        let fin_wait2_pct = fw2.unwrap_or(close_wait_pct);
        if processes == 0 {
            return Err("--processes must be at least 1".into());
        }
        if sockets < 2 {
            return Err("--sockets must be at least 2 (one connection, both ends)".into());
        }
        if !(0.0..=100.0).contains(&close_wait_pct) {
            return Err("--close-wait-pct must be within 0..=100".into());
        }
        if !(0.0..=close_wait_pct).contains(&fin_wait2_pct) {
            return Err(format!(
                "--fin-wait2-pct must be within 0..={close_wait_pct} (--close-wait-pct): on \
                 loopback every owned FIN_WAIT_2 has a CLOSE_WAIT peer"
            ));
        }
        Ok(Some(Options {
            processes,
            sockets,
            close_wait_pct,
            fin_wait2_pct,
            files,
            timeout: Duration::from_secs(timeout),
        }))
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a worker reported when ready.
#[derive(Default)]
struct Totals {
    sockets: u64,
    close_wait: u64,
    fin_wait2_owned: u64,
    orphans: u64,
    established: u64,
    files: u64,
    slowest_worker_ms: u64,
}

impl Totals {
    fn add(&mut self, line: &str) -> Result<(), String> {
        let n: Vec<u64> = line
            .split_whitespace()
            .skip(2)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad worker report {line:?}: {e}"))?;
        let [sockets, cw, fw2, orphans, est, files, ms] = n[..] else {
            return Err(format!("bad worker report {line:?}"));
        };
        self.sockets += sockets;
        self.close_wait += cw;
        self.fin_wait2_owned += fw2;
        self.orphans += orphans;
        self.established += est;
        self.files += files;
        self.slowest_worker_ms = self.slowest_worker_ms.max(ms);
        Ok(())
    }
}

fn open_fds(pid: libc::pid_t) -> u64 {
    // st_size of /proc/PID/fd is the fd count on Linux ≥ 6.2; count the
    // entries on older kernels, where it is 0.
    let dir = format!("/proc/{pid}/fd");
    match std::fs::metadata(&dir).map(|m| m.len()) {
        Ok(n) if n > 0 => n,
        _ => std::fs::read_dir(&dir).map_or(0, |d| d.count() as u64),
    }
}

/// The fds open in this process.
fn open_fds_of_self() -> io::Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(fd) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(fd);
        }
    }
    Ok(fds)
}

fn run(o: &Options) -> Result<(), String> {
    let start = Instant::now();
    let nofile = raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    let host = Host::read().map_err(|e| format!("reading host limits: {e}"))?;
    let plan = plan::for_host(o, &host, nofile, start)?;

    let temp = if plan.files > 0 {
        let dir = std::env::temp_dir().join(format!("closewatch-loadgen.{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dir = TempDir(dir);
        let file = dir.0.join("held-file");
        std::fs::write(&file, b"a regular file the loadgen workers hold open\n")
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Some((dir, file))
    } else {
        None
    };
    let file = temp.as_ref().map(|(_, f)| f.as_path());

    let signals = signal_fd().map_err(|e| format!("signalfd: {e}"))?;
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) })
        .map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: both fds are fresh and owned here.
    let (report_read, report_write) =
        unsafe { (File::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };
    let parent_fds = ParentFds {
        close: open_fds_of_self()
            .map_err(|e| format!("listing /proc/self/fd: {e}"))?
            .into_iter()
            .filter(|&fd| fd > 2 && fd != report_write.as_raw_fd())
            .collect(),
    };

    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let mut workers = Workers::default();
    for w in 0..o.processes {
        // SAFETY: this process is single-threaded (no thread was started), so
        // the child's copy of every lock is free.
        match unsafe { libc::fork() } {
            -1 => return Err(format!("fork worker {w}: {}", io::Error::last_os_error())),
            0 => worker_main(
                w,
                &plan,
                parent,
                &parent_fds,
                report_write.as_raw_fd(),
                file,
            ),
            pid => workers.pids.push(pid),
        }
    }
    drop(report_write);
    let worker_pids = workers.pids.clone();

    let totals = await_reports(report_read, &signals, &mut workers, o, plan.deadline)?;
    let setup = start.elapsed();
    let fds: u64 = worker_pids.iter().map(|&p| open_fds(p)).sum::<u64>() + open_fds(parent);
    let pids: Vec<String> = worker_pids.iter().map(|p| p.to_string()).collect();
    let line = format!(
        "{{\"parent_pid\":{parent},\"worker_pids\":[{}],\"sockets\":{},\"fds\":{fds},\
         \"close_wait\":{},\"fin_wait2_owned\":{},\"fin_wait2_orphans\":{},\"established\":{},\
         \"listeners\":{},\"files\":{},\"setup_seconds\":{:.3}}}\n",
        pids.join(","),
        totals.sockets,
        totals.close_wait,
        totals.fin_wait2_owned,
        totals.orphans,
        totals.established,
        o.processes,
        totals.files,
        setup.as_secs_f64()
    );
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing the ready line: {e}"))?;
    drop(stdout);
    eprintln!(
        "loadgen: {} workers ready in {:.2} s (slowest worker {:.2} s): {} sockets, {fds} fds, \
         {} CLOSE_WAIT, {} owned FIN_WAIT_2, {} orphans; holding until stdin EOF or \
         SIGTERM/SIGINT",
        o.processes,
        setup.as_secs_f64(),
        totals.slowest_worker_ms as f64 / 1000.0,
        totals.sockets,
        totals.close_wait,
        totals.fin_wait2_owned,
        totals.orphans
    );

    hold(&signals, &mut workers)?;
    workers.stop();
    Ok(())
}

/// Collects one report per worker; fails on a worker's error, its early
/// exit, a signal, or the deadline.
fn await_reports(
    mut report_read: File,
    signals: &OwnedFd,
    workers: &mut Workers,
    o: &Options,
    deadline: Instant,
) -> Result<Totals, String> {
    let mut totals = Totals::default();
    let mut ready = 0;
    let mut pending = Vec::new();
    while ready < o.processes {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "setup timed out after {:?}: {ready} of {} workers ready",
                o.timeout, o.processes
            ));
        }
        let ms = left.as_millis().min(1000) as libc::c_int;
        let revents = poll_in(&[report_read.as_raw_fd(), signals.as_raw_fd()], ms)
            .map_err(|e| format!("poll: {e}"))?;
        if revents[1] != 0 {
            let sig = read_signal(signals).map_err(|e| format!("signalfd: {e}"))?;
            if sig != libc::SIGCHLD as u32 {
                return Err(format!("stopped by signal {sig} during setup"));
            }
        }
        if revents[0] != 0 {
            let mut buf = [0u8; 4096];
            let n = report_read
                .read(&mut buf)
                .map_err(|e| format!("reading worker reports: {e}"))?;
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end();
                if line.starts_with("OK ") {
                    totals.add(line)?;
                    ready += 1;
                } else {
                    return Err(line.strip_prefix("ERR ").unwrap_or(line).to_string());
                }
            }
            if n == 0 && ready < o.processes {
                return Err(format!("workers exited before reporting ({ready} ready)"));
            }
            // Any report first: a failing worker says why before it exits.
            continue;
        }
        if let Some((pid, how)) = workers.reap_exited().into_iter().next() {
            return Err(format!("worker {pid} {how} before it was ready"));
        }
    }
    Ok(totals)
}

/// Waits for EOF on stdin or SIGINT/SIGTERM; fails if a worker dies.
fn hold(signals: &OwnedFd, workers: &mut Workers) -> Result<(), String> {
    let mut stdin_open = true;
    loop {
        let fds: Vec<RawFd> = if stdin_open {
            vec![signals.as_raw_fd(), 0]
        } else {
            vec![signals.as_raw_fd()]
        };
        let revents = poll_in(&fds, -1).map_err(|e| format!("poll: {e}"))?;
        if revents[0] != 0 {
            let sig = read_signal(signals).map_err(|e| format!("signalfd: {e}"))?;
            if sig == libc::SIGCHLD as u32 {
                if let Some((pid, how)) = workers.reap_exited().into_iter().next() {
                    return Err(format!("worker {pid} {how}; the load no longer stands"));
                }
            } else {
                return Ok(());
            }
        }
        if let Some(&r) = revents.get(1) {
            if r & libc::POLLNVAL != 0 {
                // No stdin at all: only a signal ends the hold.
                stdin_open = false;
                continue;
            }
            if r != 0 {
                let mut buf = [0u8; 512];
                match io::stdin().lock().read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("reading stdin: {e}")),
                }
            }
        }
    }
}
