//! Process and socket churn for tests/churn.rs: while closewatch scans as
//! fast as it can, this forks and reaps hundreds of short-lived processes a
//! second, each holding a few CLOSE_WAIT sockets for a moment, and sets
//! traps for the agent's fd-table cache. It writes down, for every process
//! it made, how many CLOSE_WAIT sockets that process could hold at most and
//! when, so that every owner closewatch names can be checked against the
//! truth.
//!
//! ```text
//! churn --rate FORKS_PER_SEC --duration SECS [--record PATH] [--comm-prefix P]
//! ```
//!
//! # Processes (by comm)
//! Names below are for the default prefix `churn`; `--comm-prefix P` (1–8
//! characters: letters, digits, `-`, `_`) names them `P`, `P-child`, … so
//! that two churns on one host (two tests at once) can tell their
//! processes apart by name.
//! - `churn`, the parent (its comm is set, whatever the binary is called).
//!   It never holds a CLOSE_WAIT or FIN_WAIT_2 socket. It serves two
//!   loopback listeners on 127.0.0.1 (ephemeral ports) from threads: the
//!   *closing* server accepts and closes at once, so that its clients'
//!   sockets turn CLOSE_WAIT; the *keeping* listener is the sharer trap's.
//! - `churn-child`: forked by the main thread at `--rate`. It connects k ∈
//!   {1, 2, 3} sockets to the closing server (k drawn by the parent before
//!   the fork), waits until each has read EOF (CLOSE_WAIT), holds them
//!   0–100 ms and exits.
//! - `churn-sharer` (the sharer trap, a thread of the parent, ~8 a second):
//!   the parent makes a connected pair on the keeping listener, client end
//!   c and accepted end s both its own, and puts c at a fixed fd slot A and
//!   s at a fixed slot S (`dup3` over placeholder UDP sockets, so its fd count
//!   is the same before, during and after). It forks a sharer, which keeps
//!   only A; holds both ends 0–150 ms (a scan in that time caches c at
//!   slot A); puts a fresh placeholder over A (the parent no longer holds
//!   c) and only then one over S (the parent's s is closed, the FIN goes
//!   out, and c turns CLOSE_WAIT in the sharer alone). The sharer waits for
//!   the EOF, keeps c 0–100 ms and exits. An agent that trusted the fd
//!   table it cached while the parent held c would blame the parent.
//! - `churn-holder` (one, this binary re-executed as `churn --holder PORT
//!   PREFIX`, single-threaded): in a loop, it connects X to the closing server, waits
//!   for CLOSE_WAIT and `dup3`s X over its placeholder at slot B (fd count
//!   unchanged): it holds one CLOSE_WAIT for 0.9 s, long enough for the
//!   agent to find it and verify it. Then it forks a `churn-heir` that keeps
//!   X for 1.2 s, `dup3`s a fresh placeholder over B (same fd count, X is
//!   no longer its own) and waits 1.5 s before reaping the heir. An agent
//!   that does not check again a socket it once verified keeps blaming the
//!   holder for X during those 1.5 s.
//!
//! Every forked process sets `PR_SET_PDEATHSIG(SIGKILL)` and checks
//! `getppid()`, so nothing outlives its parent; each parent reaps its own
//! children by pid (`waitpid(pid)`), never "any child". No process holds an
//! owned FIN_WAIT_2 socket: nobody calls `shutdown(SHUT_WR)`, and a socket
//! closed first (the closing server's, the parent's s) is an orphan.
//!
//! The parent is multi-threaded: between `fork` and `_exit` a child or a
//! sharer uses only raw syscalls on memory prepared before the fork (no
//! allocation, no lock, no `std` I/O). The holder runs its loop after
//! `exec`, so it may use `std`.
//!
//! # Output
//! Once listening (and the holder started), ONE JSON line on stdout:
//! `{"parent", "holder", "closing_port", "keeping_port", "rate",
//! "duration_s", "comms": {"parent", "child", "sharer", "holder", "heir"}}`.
//! At the end the record goes to `--record` (JSON, below) and one summary
//! line to stdout: `{"forks", "children", "sharers", "heirs", "reaped",
//! "fork_failures", "failed_processes", "exit_codes": {CODE: N},
//! "elapsed_s", "forks_per_s", "children_per_s", "sockets_opened",
//! "sockets_closed", "accepted_and_closed", "pairs", "holder_cycles",
//! "errors": [..], "failures"}`. `sockets_opened` counts the sockets of
//! the children that did their part, both ends of each sharer pair, the
//! holder's X and every connection the closing server accepted; a socket
//! lives no longer than its process, so once everything is reaped
//! `sockets_closed` is the same figure. The exit status is 0 when `failures` is 0
//! (every process made did what it was meant to, no fork failed), else 1;
//! 2 for a usage error.
//!
//! # The record
//! ```text
//! {"clock": "CLOCK_MONOTONIC", "unit": "ns", "parent": P, "holder": H,
//!  "comms": {..}, "started_ns", "ended_ns",
//!  "processes": [{"pid", "role", "from_ns", "to_ns", "exit",
//!                 "max_close_wait", "max_fin_wait2",
//!                 "close_wait": [[from_ns, to_ns, n], ..]}, ..]}
//! ```
//! One entry per process per incarnation (pids wrap), `role` one of
//! `parent`, `child`, `sharer`, `holder`, `heir`. `from_ns` is read before
//! the fork (or spawn) and `to_ns` after the reap, on the host-wide
//! monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`, which a test reads
//! too); the parent's `to_ns` is null (it was running when it wrote the
//! record). `close_wait` segments say: at any instant of `[from_ns, to_ns]`
//! the process held at most `n` CLOSE_WAIT sockets; outside every segment it
//! held none. `max_close_wait` is the largest `n` (0 for the parent), and
//! `max_fin_wait2` is 0 for every process.
//!
//! # Lifetime
//! Stops after `--duration`, at EOF on stdin or on SIGTERM (so run it with
//! stdin open: a pipe or a terminal, not /dev/null); then reaps everything
//! it made (SIGKILL by pid to what has not finished 45 s later) and writes
//! the record.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::mem;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

// ------------------------------------------------------------- constants

const DEFAULT_PREFIX: &str = "churn";
/// So that the longest name, `PREFIX-sharer`, fits in a comm (15 bytes).
const MAX_PREFIX: usize = 8;

/// A child holds its CLOSE_WAIT sockets for 0..=this.
const CHILD_HOLD_MAX_MS: u64 = 100;
/// The parent keeps a sharer's pair (both ESTABLISHED) for 0..=this.
const TRAP_HOLD_MAX_MS: u64 = 150;
/// Pause between two pairs of the sharer trap: 0..=this.
const TRAP_GAP_MAX_MS: u64 = 30;
/// A sharer keeps its CLOSE_WAIT socket for 0..=this.
const SHARER_HOLD_MAX_MS: u64 = 100;
/// The holder keeps X before handing it to an heir.
const HOLDER_HOLD_MS: u64 = 900;
/// Then it holds no CLOSE_WAIT for this long (same fd count) ...
const HOLDER_EMPTY_MS: u64 = 1500;
/// ... while its heir keeps X this long.
const HEIR_KEEP_MS: u64 = 1200;
/// How long any process waits for its peer's FIN before it gives up.
const EOF_TIMEOUT_NS: u64 = 30_000_000_000;
/// After the run, how long the parent waits for what it made before SIGKILL.
const REAP_DEADLINE: Duration = Duration::from_secs(45);
/// Listen backlog (the kernel caps it at net.core.somaxconn).
const BACKLOG: libc::c_int = 4096;

// Exit statuses of forked processes (0: did what it was meant to).
const EXIT_ORPHANED: i32 = 20;
const EXIT_SOCKET: i32 = 21;
const EXIT_CONNECT: i32 = 22;
const EXIT_NO_EOF: i32 = 23;

const USAGE: &str =
    "usage: churn --rate FORKS_PER_SEC --duration SECS [--record PATH] [--comm-prefix P]";

/// Set by the stdin/SIGTERM watcher and at the end of the run.
static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--holder") {
        return holder_main(&args[1..]);
    }
    let opts = match Opts::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("churn: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("churn: {e}");
            ExitCode::from(1)
        }
    }
}

struct Opts {
    rate: f64,
    duration: Duration,
    record: Option<String>,
    names: Names,
}

/// The comm of each kind of process.
struct Names {
    parent: CString,
    child: CString,
    sharer: CString,
    holder: CString,
    heir: CString,
}

impl Names {
    fn new(prefix: &str) -> Result<Names, String> {
        let ok = (1..=MAX_PREFIX).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "bad --comm-prefix {prefix:?} (1-{MAX_PREFIX} letters, digits, - or _)"
            ));
        }
        let name =
            |suffix: &str| CString::new(format!("{prefix}{suffix}")).map_err(|e| e.to_string());
        Ok(Names {
            parent: name("")?,
            child: name("-child")?,
            sharer: name("-sharer")?,
            holder: name("-holder")?,
            heir: name("-heir")?,
        })
    }

    fn json(&self) -> String {
        format!(
            r#"{{"parent":{},"child":{},"sharer":{},"holder":{},"heir":{}}}"#,
            json_str(&self.parent),
            json_str(&self.child),
            json_str(&self.sharer),
            json_str(&self.holder),
            json_str(&self.heir)
        )
    }
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let (mut rate, mut duration, mut record) = (None, None, None);
        let mut prefix = DEFAULT_PREFIX.to_string();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--rate" => {
                    let v = value()?;
                    rate = Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|r| *r > 0.0 && *r <= 100_000.0)
                            .ok_or_else(|| format!("bad --rate {v:?}"))?,
                    );
                }
                "--duration" => {
                    let v = value()?;
                    duration = Some(
                        v.parse::<f64>()
                            .ok()
                            .filter(|d| *d > 0.0 && *d <= 86_400.0)
                            .map(Duration::from_secs_f64)
                            .ok_or_else(|| format!("bad --duration {v:?}"))?,
                    );
                }
                "--record" => record = Some(value()?.clone()),
                "--comm-prefix" => prefix = value()?.clone(),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Opts {
            rate: rate.ok_or("--rate is required")?,
            duration: duration.ok_or("--duration is required")?,
            record,
            names: Names::new(&prefix)?,
        })
    }
}

// -------------------------------------------------- raw, async-signal-safe

/// The host-wide monotonic clock in ns (what the record's times are).
/// Async-signal-safe.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn errno() -> libc::c_int {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// 127.0.0.1:port.
fn loopback(port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A TCP socket connected to `addr` (blocking connect: on loopback it
/// returns once the handshake is done), or the exit status that says what
/// failed. Async-signal-safe.
fn connect_raw(addr: &libc::sockaddr_in, flags: libc::c_int) -> Result<RawFd, i32> {
    // SAFETY: plain syscalls on a sockaddr of the size given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | flags, 0);
        if fd < 0 {
            return Err(EXIT_SOCKET);
        }
        let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::connect(fd, (addr as *const libc::sockaddr_in).cast(), len) == 0 {
            return Ok(fd);
        }
        libc::close(fd);
        Err(EXIT_CONNECT)
    }
}

/// Waits until `fd` reads EOF (the peer's FIN has arrived: the socket is
/// CLOSE_WAIT). False on an error or at `deadline_ns`. Async-signal-safe.
fn wait_eof_raw(fd: RawFd, deadline_ns: u64) -> bool {
    let mut buf = [0u8; 64];
    loop {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd; reads into a local buffer of that size.
        unsafe {
            let r = libc::poll(&mut p, 1, 100);
            if r > 0 {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n == 0 {
                    return true;
                }
                if n < 0 && errno() != libc::EINTR && errno() != libc::EAGAIN {
                    return false;
                }
            } else if r < 0 && errno() != libc::EINTR {
                return false;
            }
        }
        if now_ns() >= deadline_ns {
            return false;
        }
    }
}

/// Sleeps `ms` milliseconds. Async-signal-safe.
fn sleep_ms_raw(ms: u64) {
    let mut ts = libc::timespec {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    let mut rem = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespecs.
    while unsafe { libc::nanosleep(&ts, &mut rem) } != 0 && errno() == libc::EINTR {
        ts = rem;
    }
}

/// First steps of every forked process: die with the parent (and leave if
/// it is already gone: the signal would never come), then take its name.
/// Async-signal-safe.
fn enter_child(parent: libc::pid_t, comm: &CStr) {
    // SAFETY: plain syscalls; `comm` is NUL-terminated and ≤ 16 bytes.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
            || libc::getppid() != parent
        {
            libc::_exit(EXIT_ORPHANED);
        }
        libc::prctl(libc::PR_SET_NAME, comm.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// Closes every fd from 3 up except `keep`. Async-signal-safe.
fn keep_only(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: plain syscalls.
    unsafe {
        if keep > 3 {
            libc::close_range(3, keep - 1, 0);
        }
        libc::close_range(keep + 1, libc::c_uint::MAX, 0);
    }
}

/// Puts `fd` at `slot` (closing what was there) and closes `fd`: the fd
/// count is what it was before `fd` was made.
fn move_to_slot(fd: RawFd, slot: RawFd) -> io::Result<()> {
    // SAFETY: plain syscalls on fds this process owns.
    unsafe {
        let r = libc::dup3(fd, slot, libc::O_CLOEXEC);
        let e = io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// A UDP socket: a socket fd that no TCP dump lists, and not a dead TCP
/// socket either (an unconnected TCP socket would be one).
fn placeholder() -> io::Result<OwnedFd> {
    socket(libc::SOCK_DGRAM)
}

/// A new IPv4 socket of `kind`.
fn socket(kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Exit code, or 128 + signal.
fn exit_status(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        -1
    }
}

/// `waitpid(pid, WNOHANG)`: the status once `pid` has exited and is reaped.
fn try_reap(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: plain syscall on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match r {
        0 => None,
        r if r > 0 => Some(exit_status(status)),
        _ if errno() == libc::EINTR => None,
        _ => Some(-1), // not our child any more: nothing left to wait for
    }
}

/// A small PRNG (xorshift64*): no dependency, and the draws are made before
/// each fork.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        Rng(now_ns() ^ (u64::from(std::process::id()) << 32) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

// ------------------------------------------------------------ the record

/// One incarnation of one process churn made.
struct Proc {
    pid: u32,
    role: &'static str,
    from_ns: u64,
    /// `None`: still running when the record was written (the parent).
    to_ns: Option<u64>,
    /// Exit status (0 fine, 128 + signal), `None` for the parent.
    exit: Option<i32>,
    /// (from_ns, to_ns, n): at most n CLOSE_WAIT at any instant of the
    /// span; none outside every span.
    close_wait: Vec<(u64, u64, u32)>,
}

/// A process forked and not yet reaped.
struct Live {
    pid: libc::pid_t,
    from_ns: u64,
    max_close_wait: u32,
}

/// What one forking thread made.
#[derive(Default)]
struct Made {
    procs: Vec<Proc>,
    live: Vec<Live>,
    fork_failures: u64,
}

impl Made {
    fn forked(&mut self, pid: libc::pid_t, from_ns: u64, max_close_wait: u32) {
        if pid < 0 {
            self.fork_failures += 1;
        } else {
            self.live.push(Live {
                pid,
                from_ns,
                max_close_wait,
            });
        }
    }

    /// Reaps those that have exited.
    fn reap(&mut self, role: &'static str) {
        let procs = &mut self.procs;
        self.live.retain(|c| match try_reap(c.pid) {
            None => true,
            Some(status) => {
                procs.push(finished(c, role, status));
                false
            }
        });
    }

    /// Reaps every one, SIGKILLing by pid those still running after
    /// [`REAP_DEADLINE`] (not reaped yet, so the pid is still theirs).
    fn reap_all(&mut self, role: &'static str) {
        let deadline = Instant::now() + REAP_DEADLINE;
        while !self.live.is_empty() && Instant::now() < deadline {
            self.reap(role);
            thread::sleep(Duration::from_millis(2));
        }
        for c in mem::take(&mut self.live) {
            let mut status = 0;
            // SAFETY: plain syscalls on our own unreaped child.
            unsafe {
                libc::kill(c.pid, libc::SIGKILL);
                libc::waitpid(c.pid, &mut status, 0);
            }
            self.procs.push(finished(&c, role, exit_status(status)));
        }
    }
}

fn finished(c: &Live, role: &'static str, status: i32) -> Proc {
    let to = now_ns();
    Proc {
        pid: c.pid as u32,
        role,
        from_ns: c.from_ns,
        to_ns: Some(to),
        exit: Some(status),
        close_wait: vec![(c.from_ns, to, c.max_close_wait)],
    }
}

// --------------------------------------------------------------- the run

fn listen_loopback() -> Result<TcpListener, String> {
    let fd = socket(libc::SOCK_STREAM).map_err(|e| format!("socket: {e}"))?;
    let addr = loopback(0);
    let len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain syscalls on an fd we own, with a sockaddr of that size.
    unsafe {
        if libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            len,
        ) != 0
            || libc::listen(fd.as_raw_fd(), BACKLOG) != 0
        {
            return Err(format!("listen: {}", io::Error::last_os_error()));
        }
    }
    Ok(TcpListener::from(fd))
}

fn port(l: &TcpListener) -> Result<u16, String> {
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("listener address: {e}"))
}

fn run(opts: &Opts) -> Result<bool, String> {
    let started_ns = now_ns();
    // Blocked in every thread (they inherit the mask): the watcher reads it
    // from a signalfd.
    sigterm_mask(libc::SIG_BLOCK);
    let names = &opts.names;
    // SAFETY: plain syscall; a NUL-terminated name of ≤ 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            names.parent.as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // SAFETY: plain syscall.
    let parent = unsafe { libc::getpid() };

    let closing = listen_loopback()?;
    let keeping = listen_loopback()?;
    let (closing_port, keeping_port) = (port(&closing)?, port(&keeping)?);
    let server_stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let server = {
        let (stop, accepted) = (server_stop.clone(), accepted.clone());
        thread::spawn(move || closing_server(&closing, &stop, &accepted))
    };
    // From this thread, which lives to the end: PR_SET_PDEATHSIG fires when
    // the *thread* that forked dies.
    let holder = Holder::spawn(closing_port, parent, names)?;
    let sharer_comm = names.sharer.clone();
    let trap = thread::spawn(move || sharer_trap(&keeping, parent, &sharer_comm));
    thread::spawn(watch_stdin_and_sigterm);

    let comms = names.json();
    say(&format!(
        r#"{{"parent":{parent},"holder":{},"closing_port":{closing_port},"keeping_port":{keeping_port},"rate":{},"duration_s":{},"comms":{comms}}}"#,
        holder.child.id(),
        opts.rate,
        opts.duration.as_secs_f64()
    ))?;

    let forked = fork_loop(opts, parent, loopback(closing_port), &names.child);
    STOP.store(true, Ordering::SeqCst);
    let trap = trap
        .join()
        .map_err(|_| "the sharer trap panicked".to_string())?;
    let holder = holder.finish();
    // Only now: every client of the closing server has seen its EOF.
    server_stop.store(true, Ordering::SeqCst);
    let accept_errors = server.join().unwrap_or(u64::MAX);

    let mut procs = vec![Proc {
        pid: parent as u32,
        role: "parent",
        from_ns: started_ns,
        to_ns: None,
        exit: None,
        close_wait: Vec::new(),
    }];
    let children = forked.made.procs.len() as u64;
    let child_sockets: u64 = forked
        .made
        .procs
        .iter()
        .filter(|p| p.exit == Some(0))
        .map(|p| u64::from(p.close_wait[0].2))
        .sum();
    procs.extend(forked.made.procs);
    let sharers = trap.made.procs.len() as u64;
    procs.extend(trap.made.procs);
    let heirs = holder.procs.iter().filter(|p| p.role == "heir").count() as u64;
    procs.extend(holder.procs);
    let ended_ns = now_ns();

    if let Some(path) = &opts.record {
        write_record(
            path,
            parent,
            holder_pid(&procs),
            &comms,
            started_ns,
            ended_ns,
            &procs,
        )
        .map_err(|e| format!("writing the record {path}: {e}"))?;
    }

    let mut exit_codes: std::collections::BTreeMap<i32, u64> = Default::default();
    for p in &procs {
        if let Some(code) = p.exit.filter(|c| *c != 0) {
            *exit_codes.entry(code).or_default() += 1;
        }
    }
    let failed_processes: u64 = exit_codes.values().sum();
    let fork_failures = forked.made.fork_failures + trap.made.fork_failures;
    let mut errors = trap.errors;
    errors.extend(holder.errors);
    let failures = failed_processes + fork_failures + errors.len() as u64;
    let forks = children + sharers + heirs;
    let secs = forked.elapsed.as_secs_f64().max(1e-9);
    // Every socket opened was closed by the time its process was reaped;
    // the holder's last X, if it was stopped while holding it, too.
    let opened = child_sockets + 2 * trap.pairs + holder.cycles + accepted.load(Ordering::SeqCst);
    say(&format!(
        r#"{{"forks":{forks},"children":{children},"sharers":{sharers},"heirs":{heirs},"reaped":{reaped},"fork_failures":{fork_failures},"failed_processes":{failed_processes},"exit_codes":{{{codes}}},"elapsed_s":{secs:.3},"forks_per_s":{:.1},"children_per_s":{:.1},"sockets_opened":{opened},"sockets_closed":{opened},"accepted_and_closed":{},"accept_errors":{accept_errors},"pairs":{},"holder_cycles":{},"errors":[{}],"failures":{failures}}}"#,
        forks as f64 / secs,
        children as f64 / secs,
        accepted.load(Ordering::SeqCst),
        trap.pairs,
        holder.cycles,
        errors
            .iter()
            .map(|e| json_string(e))
            .collect::<Vec<_>>()
            .join(","),
        reaped = procs.iter().filter(|p| p.exit.is_some()).count(),
        codes = exit_codes
            .iter()
            .map(|(c, n)| format!(r#""{c}":{n}"#))
            .collect::<Vec<_>>()
            .join(","),
    ))?;
    Ok(failures == 0)
}

fn holder_pid(procs: &[Proc]) -> Option<u32> {
    procs.iter().find(|p| p.role == "holder").map(|p| p.pid)
}

fn say(line: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing stdout: {e}"))
}

fn json_str(s: &CStr) -> String {
    json_string(&s.to_string_lossy())
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn sigterm_mask(how: libc::c_int) {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Sets [`STOP`] at EOF on stdin or on SIGTERM.
fn watch_stdin_and_sigterm() {
    // SAFETY: the set is initialised by sigemptyset before use.
    let sfd = unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    };
    let mut watch_stdin = true;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if watch_stdin { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds (a negative fd is ignored).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return;
        }
        if fds[0].revents != 0 {
            STOP.store(true, Ordering::SeqCst);
            return;
        }
        if fds[1].revents & libc::POLLNVAL != 0 {
            watch_stdin = false; // no stdin: only SIGTERM stops us early
        } else if fds[1].revents != 0 {
            // SAFETY: reads into a local buffer of that size.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                STOP.store(true, Ordering::SeqCst);
                return;
            }
            if n < 0 && errno() != libc::EINTR {
                watch_stdin = false;
            }
        }
    }
}

/// Accepts and closes at once, until `stop`: each client's socket turns
/// CLOSE_WAIT, and the accepted end is an orphan (FIN_WAIT_2) from the
/// moment it is closed. Returns the number of accept errors (each logged,
/// then a short back-off).
fn closing_server(listener: &TcpListener, stop: &AtomicBool, accepted: &AtomicU64) -> u64 {
    let mut errors = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut p = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 50) } <= 0 {
            continue;
        }
        match listener.accept() {
            Ok((s, _)) => {
                drop(s);
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                errors += 1;
                eprintln!("churn: accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    errors
}

// ------------------------------------------------------ the fork loop

/// What a churn child does, decided before the fork.
#[derive(Clone, Copy)]
struct ChildPlan {
    parent: libc::pid_t,
    server: libc::sockaddr_in,
    k: u8,
    hold_ms: u64,
}

/// A churn child, between fork and `_exit`: raw syscalls only.
fn child_body(p: &ChildPlan, comm: &CStr) -> ! {
    enter_child(p.parent, comm);
    // Nothing inherited is kept (and no inherited socket of the parent's
    // can be CLOSE_WAIT here: see the trap).
    // SAFETY: plain syscall.
    unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
    let mut fds: [RawFd; 3] = [-1; 3];
    let mut code = 0;
    for slot in fds.iter_mut().take(usize::from(p.k)) {
        match connect_raw(&p.server, 0) {
            Ok(fd) => *slot = fd,
            Err(c) => {
                code = c;
                break;
            }
        }
    }
    // Even after a failure, wait for the sockets that did connect: closed
    // before the server closes its end, they would leave a CLOSE_WAIT with
    // the parent.
    let deadline = now_ns() + EOF_TIMEOUT_NS;
    for &fd in fds.iter().filter(|&&fd| fd >= 0) {
        if !wait_eof_raw(fd, deadline) && code == 0 {
            code = EXIT_NO_EOF;
        }
    }
    sleep_ms_raw(p.hold_ms);
    // SAFETY: ends the process without running anything of the parent's.
    unsafe { libc::_exit(code) }
}

struct Forked {
    made: Made,
    elapsed: Duration,
}

/// Forks churn children at `opts.rate` until the duration is over or
/// [`STOP`], reaping as it goes; then reaps the rest.
fn fork_loop(opts: &Opts, parent: libc::pid_t, server: libc::sockaddr_in, comm: &CStr) -> Forked {
    let mut made = Made::default();
    let mut rng = Rng::seeded();
    let period = Duration::from_secs_f64(1.0 / opts.rate);
    let start = Instant::now();
    let end = start + opts.duration;
    let mut next = start;
    let mut last_reap = start;
    while !STOP.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now < next {
            thread::sleep(next - now);
            continue;
        }
        // Behind (the machine was busy): make up the forks missed, as fast
        // as fork allows, so that the rate asked for is the rate over the
        // run; but a stall of over a second is written off, not made up in
        // one burst.
        if now - next > Duration::from_secs(1) {
            next = now;
        }
        next += period;
        let plan = ChildPlan {
            parent,
            server,
            k: 1 + rng.below(3) as u8,
            hold_ms: rng.below(CHILD_HOLD_MAX_MS + 1),
        };
        let from = now_ns();
        // SAFETY: the child runs child_body only, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            child_body(&plan, comm);
        }
        made.forked(pid, from, u32::from(plan.k));
        if now - last_reap >= Duration::from_millis(5) {
            made.reap("child");
            last_reap = now;
        }
    }
    let elapsed = start.elapsed();
    made.reap_all("child");
    Forked { made, elapsed }
}

// ------------------------------------------------------ the sharer trap

struct SharerPlan {
    parent: libc::pid_t,
    slot: RawFd,
    hold_ms: u64,
}

/// A sharer, between fork and `_exit`: raw syscalls only.
fn sharer_body(p: &SharerPlan, comm: &CStr) -> ! {
    enter_child(p.parent, comm);
    keep_only(p.slot);
    let code = if wait_eof_raw(p.slot, now_ns() + EOF_TIMEOUT_NS) {
        0
    } else {
        EXIT_NO_EOF
    };
    sleep_ms_raw(p.hold_ms);
    // SAFETY: ends the process without running anything of the parent's.
    unsafe { libc::_exit(code) }
}

struct Trap {
    made: Made,
    pairs: u64,
    errors: Vec<String>,
}

/// The sharer trap (see the top comment), until [`STOP`].
fn sharer_trap(keeping: &TcpListener, parent: libc::pid_t, comm: &CStr) -> Trap {
    let mut trap = Trap {
        made: Made::default(),
        pairs: 0,
        errors: Vec::new(),
    };
    if let Err(e) = sharer_trap_loop(keeping, parent, comm, &mut trap) {
        trap.errors.push(format!("sharer trap: {e}"));
    }
    trap.made.reap_all("sharer");
    trap
}

fn sharer_trap_loop(
    keeping: &TcpListener,
    parent: libc::pid_t,
    comm: &CStr,
    trap: &mut Trap,
) -> io::Result<()> {
    let server = loopback(
        keeping
            .local_addr()
            .map(|a| a.port())
            .map_err(io::Error::other)?,
    );
    let mut rng = Rng::seeded();
    // The fixed slots: placeholders whenever the pair is not there. Made in
    // this order so that, should this return early holding the pair, A (c)
    // is closed before S (s): the parent never holds c in CLOSE_WAIT.
    let slot_s = placeholder()?;
    let slot_a = placeholder()?;
    let (a, s) = (slot_a.as_raw_fd(), slot_s.as_raw_fd());
    while !STOP.load(Ordering::Relaxed) {
        let c = connect_raw(&server, libc::SOCK_CLOEXEC).map_err(|code| {
            io::Error::other(format!("connect to the keeping listener ({code})"))
        })?;
        let accepted = keeping.accept().map(|(s, _)| s.into_raw_fd());
        let accepted = match accepted {
            Ok(fd) => fd,
            Err(e) => {
                // SAFETY: our own fd.
                unsafe { libc::close(c) };
                return Err(e);
            }
        };
        move_to_slot(c, a)?;
        move_to_slot(accepted, s)?;
        // The parent now holds c at A and s at S, both ESTABLISHED, with
        // the fd count it has between pairs.
        let plan = SharerPlan {
            parent,
            slot: a,
            hold_ms: rng.below(SHARER_HOLD_MAX_MS + 1),
        };
        let from = now_ns();
        // SAFETY: the child runs sharer_body only, which is async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            sharer_body(&plan, comm);
        }
        trap.made.forked(pid, from, 1);
        thread::sleep(Duration::from_millis(rng.below(TRAP_HOLD_MAX_MS + 1)));
        // c leaves the parent first ...
        move_to_slot(placeholder()?.into_raw_fd(), a)?;
        // ... and only then s is closed: c turns CLOSE_WAIT in the sharer
        // alone (the FIN goes once every copy of s is closed, the sharer's
        // and those of children forked meanwhile too).
        move_to_slot(placeholder()?.into_raw_fd(), s)?;
        trap.pairs += 1;
        trap.made.reap("sharer");
        thread::sleep(Duration::from_millis(rng.below(TRAP_GAP_MAX_MS + 1)));
    }
    Ok(())
}

// ------------------------------------------------------------ the holder

/// The holder as the parent sees it.
struct Holder {
    child: Child,
    from_ns: u64,
    lines: JoinHandle<Vec<String>>,
}

/// What the holder did, once it has exited.
struct HolderDone {
    procs: Vec<Proc>,
    cycles: u64,
    errors: Vec<String>,
}

impl Holder {
    fn spawn(closing_port: u16, parent: libc::pid_t, names: &Names) -> Result<Holder, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--holder")
            .arg(closing_port.to_string())
            .arg(prefix_of(names))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: between fork and exec only plain syscalls; the error is
        // built from a raw errno (no allocation).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                    || libc::getppid() != parent
                {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let from_ns = now_ns();
        let mut child = cmd.spawn().map_err(|e| format!("start the holder: {e}"))?;
        let stdout = child.stdout.take().ok_or("the holder's stdout is piped")?;
        let lines = thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect()
        });
        Ok(Holder {
            child,
            from_ns,
            lines,
        })
    }

    /// Stops the holder (EOF on its stdin), reaps it and reads its story.
    fn finish(mut self) -> HolderDone {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + REAP_DEADLINE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    // Not reaped yet: the pid is still the holder's.
                    let _ = self.child.kill();
                    match self.child.wait() {
                        Ok(st) => break st,
                        Err(_) => break std::process::ExitStatus::from_raw(-1),
                    }
                }
            }
        };
        let to = now_ns();
        let lines = self.lines.join().unwrap_or_default();
        let mut done = HolderDone {
            procs: Vec::new(),
            cycles: 0,
            errors: Vec::new(),
        };
        let mut segments = Vec::new();
        let mut open: Option<u64> = None;
        for line in &lines {
            let words: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
            match (words.first().copied(), num(1)) {
                (Some("hold"), Some(t)) => {
                    done.cycles += 1;
                    open = Some(t);
                }
                (Some("release"), Some(t)) => match open.take() {
                    Some(from) => segments.push((from, t, 1)),
                    None => done
                        .errors
                        .push(format!("holder: release without hold: {line}")),
                },
                (Some("heir"), Some(pid)) => match (
                    num(2),
                    num(3),
                    words.get(4).and_then(|w| w.parse::<i32>().ok()),
                ) {
                    (Some(from), Some(heir_to), Some(exit)) => done.procs.push(Proc {
                        pid: pid as u32,
                        role: "heir",
                        from_ns: from,
                        to_ns: Some(heir_to),
                        exit: Some(exit),
                        close_wait: vec![(from, heir_to, 1)],
                    }),
                    _ => done.errors.push(format!("holder: bad line {line:?}")),
                },
                _ => done.errors.push(format!("holder: {line}")),
            }
        }
        // Stopped while holding X: it held it until it exited.
        if let Some(from) = open {
            segments.push((from, to, 1));
        }
        let exit = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1);
        done.procs.push(Proc {
            pid: self.child.id(),
            role: "holder",
            from_ns: self.from_ns,
            to_ns: Some(to),
            exit: Some(exit),
            close_wait: segments,
        });
        done
    }
}

/// The prefix the names were made from (the parent's name is the prefix).
fn prefix_of(names: &Names) -> String {
    names.parent.to_string_lossy().into_owned()
}

/// `churn --holder PORT PREFIX`: the holder's loop (single-threaded, after
/// exec).
fn holder_main(args: &[String]) -> ExitCode {
    let port = args.first().and_then(|p| p.parse::<u16>().ok());
    let names = Names::new(args.get(1).map_or(DEFAULT_PREFIX, String::as_str));
    let (Some(port), Ok(names), 2) = (port, names, args.len()) else {
        eprintln!("usage: churn --holder PORT PREFIX (started by churn itself)");
        return ExitCode::from(2);
    };
    // SAFETY: plain syscall; a NUL-terminated name of ≤ 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            names.holder.as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    match holder_loop(loopback(port), &names.heir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // To the parent, which reports it, and to stderr.
            println!("error {e}");
            eprintln!("churn holder: {e}");
            ExitCode::from(1)
        }
    }
}

fn holder_loop(server: libc::sockaddr_in, heir_comm: &CStr) -> Result<(), String> {
    // SAFETY: plain syscall.
    let me = unsafe { libc::getpid() };
    let slot = placeholder().map_err(|e| format!("socket: {e}"))?;
    let b = slot.as_raw_fd();
    let tell = |line: String| -> Result<(), String> {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing to the parent: {e}"))
    };
    loop {
        tell(format!("hold {}", now_ns()))?;
        let x = connect_raw(&server, libc::SOCK_CLOEXEC)
            .map_err(|code| format!("connect to the closing server ({code})"))?;
        if !wait_eof_raw(x, now_ns() + EOF_TIMEOUT_NS) {
            // SAFETY: our own fd.
            unsafe { libc::close(x) };
            return Err("no EOF from the closing server".to_string());
        }
        // X at B: one CLOSE_WAIT, the fd count as between cycles.
        move_to_slot(x, b).map_err(|e| format!("dup3: {e}"))?;
        if pause(HOLDER_HOLD_MS) {
            return Ok(());
        }
        let y = placeholder().map_err(|e| format!("socket: {e}"))?;
        let from = now_ns();
        // SAFETY: this process is single-threaded; the heir uses raw
        // syscalls only all the same.
        let heir = unsafe { libc::fork() };
        if heir == 0 {
            enter_child(me, heir_comm);
            keep_only(b);
            sleep_ms_raw(HEIR_KEEP_MS);
            // SAFETY: ends the heir.
            unsafe { libc::_exit(0) };
        }
        if heir < 0 {
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        // X leaves the holder; the heir keeps it. Same fd count.
        move_to_slot(y.into_raw_fd(), b).map_err(|e| format!("dup3: {e}"))?;
        tell(format!("release {}", now_ns()))?;
        let stop = pause(HOLDER_EMPTY_MS);
        let mut status = 0;
        // SAFETY: plain syscall on our own child.
        while unsafe { libc::waitpid(heir, &mut status, 0) } < 0 && errno() == libc::EINTR {}
        tell(format!(
            "heir {heir} {from} {} {}",
            now_ns(),
            exit_status(status)
        ))?;
        if stop {
            return Ok(());
        }
    }
}

/// Waits `ms`; true if stdin reached EOF meanwhile (the parent says stop).
fn pause(ms: u64) -> bool {
    let end = Instant::now() + Duration::from_millis(ms);
    let mut buf = [0u8; 256];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut p = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; reads into a local buffer of that size.
        unsafe {
            if libc::poll(&mut p, 1, left.as_millis().max(1) as libc::c_int) > 0 {
                if p.revents & libc::POLLNVAL != 0 {
                    thread::sleep(left);
                    return false;
                }
                if libc::read(0, buf.as_mut_ptr().cast(), buf.len()) <= 0 {
                    return true;
                }
            }
        }
    }
}

// ------------------------------------------------------ writing the record

fn write_record(
    path: &str,
    parent: libc::pid_t,
    holder: Option<u32>,
    comms: &str,
    started_ns: u64,
    ended_ns: u64,
    procs: &[Proc],
) -> io::Result<()> {
    let mut w = BufWriter::new(File::create(path)?);
    let holder = holder.map_or("null".to_string(), |p| p.to_string());
    write!(
        w,
        r#"{{"clock":"CLOCK_MONOTONIC","unit":"ns","parent":{parent},"holder":{holder},"comms":{comms},"started_ns":{started_ns},"ended_ns":{ended_ns},"processes":["#
    )?;
    for (i, p) in procs.iter().enumerate() {
        let opt = |v: Option<i64>| v.map_or("null".to_string(), |v| v.to_string());
        let segments: Vec<String> = p
            .close_wait
            .iter()
            .map(|(a, b, n)| format!("[{a},{b},{n}]"))
            .collect();
        write!(
            w,
            r#"{}
{{"pid":{},"role":"{}","from_ns":{},"to_ns":{},"exit":{},"max_close_wait":{},"max_fin_wait2":0,"close_wait":[{}]}}"#,
            if i == 0 { "" } else { "," },
            p.pid,
            p.role,
            p.from_ns,
            opt(p.to_ns.map(|t| t as i64)),
            opt(p.exit.map(i64::from)),
            p.close_wait.iter().map(|s| s.2).max().unwrap_or(0),
            segments.join(",")
        )?;
    }
    writeln!(w, "\n]}}")?;
    w.flush()
}
