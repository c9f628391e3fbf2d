//! One process whose sockets sit in three fd tables, for tests/attribution.rs
//! (the BPF and /proc attribution backends compared on the same host state):
//!
//! - the *leader*'s table (the process started): a TCP listener, a client
//!   and its accepted end (ESTABLISHED), a client the server closed
//!   (CLOSE_WAIT), a connected UNIX stream pair through a listener bound to
//!   a path, and an `O_PATH` fd opened on that UNIX socket's path — an fd on
//!   the socket's *file*, not a socket: `/proc/PID/fd` shows the path, and
//!   it must not count as a socket;
//! - the *sharer*'s: a child forked before anything else below, which
//!   inherited every fd of the leader's table (the same inodes at the same
//!   fds) and holds them;
//! - the *thread*'s: a thread of the leader that called
//!   `unshare(CLONE_FILES)` (its table is a copy of the leader's from then
//!   on) and then opened TCP sockets of its own (a listener, a client and
//!   its accepted end, a client the server closed). Only its own table holds
//!   those: `/proc/PID/fd` shows the leader's table only.
//!
//! ```text
//! fd_tables
//! ```
//!
//! Once all is in place, ONE JSON line on stdout: `{"pid", "sharer",
//! "thread", "leader_sockets": [{"fd", "inode"}], "thread_sockets": [{"fd",
//! "inode"}], "o_path": {"fd", "inode", "path"}}` (`thread` is the thread's
//! tid; `leader_sockets` is every socket fd of the leader's table, which the
//! sharer holds too; `o_path.inode` is the socket file's inode on its file
//! system). Then it holds everything until EOF on stdin, kills the sharer by
//! pid, reaps it, removes the socket's directory and exits 0; 1 on any
//! failure, with the reason on stderr. The sharer sets
//! `PR_SET_PDEATHSIG(SIGKILL)`, so it never outlives the leader.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

type R<T> = Result<T, String>;

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// The inode of what `fd` refers to (fstat).
fn inode(fd: RawFd) -> R<u64> {
    // SAFETY: stat is plain old data; fstat writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: st is a writable stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(os_err("fstat"));
    }
    Ok(st.st_ino)
}

fn fd_json(fd: RawFd) -> R<Value> {
    Ok(json!({ "fd": fd, "inode": inode(fd)? }))
}

/// Waits (10 s at most) until `s` is in TCP state `state` (tcpi_state).
fn wait_tcp_state(s: &TcpStream, state: u8) -> R<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: tcp_info is plain old data; all-zero is valid.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: info and len describe a writable buffer of that size.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(os_err("getsockopt(TCP_INFO)"));
        }
        if info.tcpi_state == state {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "socket still in TCP state {} after 10 s, not {state}",
                info.tcpi_state
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `include/net/tcp_states.h`.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE_WAIT: u8 = 8;

/// A listener, an ESTABLISHED pair on it, and a client whose server end
/// was closed (CLOSE_WAIT): four TCP sockets, all kept.
struct Tcp {
    listener: TcpListener,
    client: TcpStream,
    accepted: TcpStream,
    close_wait: TcpStream,
}

impl Tcp {
    fn make() -> R<Tcp> {
        let e = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
        let listener = TcpListener::bind("127.0.0.1:0").map_err(e("bind"))?;
        let addr = listener.local_addr().map_err(e("local_addr"))?;
        let client = TcpStream::connect(addr).map_err(e("connect"))?;
        let (accepted, _) = listener.accept().map_err(e("accept"))?;
        let close_wait = TcpStream::connect(addr).map_err(e("connect"))?;
        let (closed, _) = listener.accept().map_err(e("accept"))?;
        drop(closed);
        wait_tcp_state(&client, TCP_ESTABLISHED)?;
        wait_tcp_state(&close_wait, TCP_CLOSE_WAIT)?;
        Ok(Tcp {
            listener,
            client,
            accepted,
            close_wait,
        })
    }

    fn fds(&self) -> [RawFd; 4] {
        [
            self.listener.as_raw_fd(),
            self.client.as_raw_fd(),
            self.accepted.as_raw_fd(),
            self.close_wait.as_raw_fd(),
        ]
    }
}

/// What the thread with its own fd table made.
struct Unshared {
    tid: libc::pid_t,
    sockets: Vec<Value>,
}

/// Starts the thread: it unshares its fd table, makes its own sockets,
/// reports them and parks, holding them, until the process exits.
fn start_thread() -> R<Unshared> {
    let (tx, rx) = mpsc::channel::<R<Unshared>>();
    std::thread::spawn(move || {
        let made = (|| {
            // SAFETY: plain syscall; it affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
                return Err(os_err("unshare(CLONE_FILES)"));
            }
            let tcp = Tcp::make()?;
            let sockets = tcp.fds().iter().map(|&fd| fd_json(fd)).collect::<R<_>>()?;
            // SAFETY: plain syscall.
            let tid = unsafe { libc::gettid() };
            Ok((tcp, Unshared { tid, sockets }))
        })();
        match made {
            Ok((tcp, unshared)) => {
                let _ = tx.send(Ok(unshared));
                // Held until the process exits.
                let _keep = tcp;
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|e| format!("the thread did not report: {e}"))?
}

/// Forks the sharer: it keeps every fd it inherited until it is killed or
/// the leader dies. Called while this process is single-threaded.
fn fork_sharer() -> R<libc::pid_t> {
    // SAFETY: getpid never fails.
    let parent = unsafe { libc::getpid() };
    // SAFETY: this process is single-threaded here (no thread started yet),
    // so the child may run anything; it only makes raw syscalls.
    match unsafe { libc::fork() } {
        -1 => Err(os_err("fork")),
        0 => {
            // SAFETY: plain syscalls; if the parent is gone already, leave.
            unsafe {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0
                    || libc::getppid() != parent
                {
                    libc::_exit(1);
                }
                loop {
                    libc::pause();
                }
            }
        }
        pid => Ok(pid),
    }
}

/// A directory of our own for the UNIX socket, removed on drop.
struct SocketDir(PathBuf);

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The O_PATH fd on `path`.
fn open_path(path: &Path) -> R<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: c is a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(os_err(&format!("open({}, O_PATH)", path.display())));
    }
    // SAFETY: a fresh descriptor, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn run() -> R<()> {
    // SAFETY: getpid never fails.
    let pid = unsafe { libc::getpid() };
    let dir = SocketDir(std::env::temp_dir().join(format!("closewatch-fd-tables-{pid}")));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let path = dir.0.join("listen.sock");
    let e = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
    let unix_listener = UnixListener::bind(&path).map_err(e("bind the UNIX socket"))?;
    let unix_client = UnixStream::connect(&path).map_err(e("connect to the UNIX socket"))?;
    let (unix_accepted, _) = unix_listener.accept().map_err(e("accept"))?;
    let o_path = open_path(&path)?;
    let tcp = Tcp::make()?;

    let mut leader_fds = vec![
        unix_listener.as_raw_fd(),
        unix_client.as_raw_fd(),
        unix_accepted.as_raw_fd(),
    ];
    leader_fds.extend(tcp.fds());
    let leader_sockets = leader_fds
        .iter()
        .map(|&fd| fd_json(fd))
        .collect::<R<Vec<_>>>()?;

    let sharer = fork_sharer()?;
    let stopped = (|| {
        let thread = start_thread()?;
        let line = json!({
            "pid": pid,
            "sharer": sharer,
            "thread": thread.tid,
            "leader_sockets": leader_sockets,
            "thread_sockets": thread.sockets,
            "o_path": {
                "fd": o_path.as_raw_fd(),
                "inode": inode(o_path.as_raw_fd())?,
                "path": path.display().to_string(),
            },
        });
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(e("stdout"))?;
        // Hold everything until EOF on stdin.
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        Ok(())
    })();
    // SAFETY: plain syscalls on our own child, not reaped yet (its pid
    // cannot have been reused).
    unsafe {
        libc::kill(sharer, libc::SIGKILL);
        libc::waitpid(sharer, std::ptr::null_mut(), 0);
    }
    stopped
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fd_tables: {e}");
            ExitCode::FAILURE
        }
    }
}
