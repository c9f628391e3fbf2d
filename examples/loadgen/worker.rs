//! A forked worker: builds its sockets, checks every one is in its state,
//! reports to the parent, and holds them until it is killed.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::plan::{source_address, Plan};
use crate::sys::check;

const TCP_ESTABLISHED: u8 = 1;
const TCP_FIN_WAIT2: u8 = 5;
const TCP_CLOSE_WAIT: u8 = 8;

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

const SOCKADDR_IN_LEN: libc::socklen_t =
    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// Connects to `dst` from `src`, the port picked at connect time so that it
/// need only be unique per (source, destination) pair.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    // SAFETY: plain syscall; the fd is owned right below.
    let fd =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value is a c_int we own, with its size.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    let src = sockaddr(SocketAddrV4::new(src, 0));
    // SAFETY: a sockaddr_in we own, with its size.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&src as *const libc::sockaddr_in).cast(),
            SOCKADDR_IN_LEN,
        )
    })?;
    let dst = sockaddr(dst);
    // SAFETY: as above. No signal handler runs in a worker, so no EINTR.
    check(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&dst as *const libc::sockaddr_in).cast(),
            SOCKADDR_IN_LEN,
        )
    })?;
    Ok(TcpStream::from(fd))
}

/// Makes `close()` (and the kernel's close when the worker is killed) reset
/// the connection instead of sending a FIN: tearing the load down then leaves
/// no TIME_WAIT or orphan FIN_WAIT_2 behind for 60 s to skew the next run.
fn linger_zero(s: &TcpStream) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the option value is a linger struct we own, with its size.
    check(unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// The kernel's TCP state of a socket (`tcpi_state`, the first byte of
/// `struct tcp_info`).
fn tcp_state(fd: RawFd) -> io::Result<u8> {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(info[0])
}

/// Waits until `fd` is readable or the deadline passes.
fn wait_readable(fd: RawFd, deadline: Instant) -> io::Result<bool> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = left.as_millis().min(1000) as libc::c_int;
    // SAFETY: one pollfd we own.
    match check(unsafe { libc::poll(&mut p, 1, ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

fn timed_out(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// One worker's sockets and files, held by being owned.
struct Load {
    _listener: TcpListener,
    _clients: Vec<TcpStream>,
    _accepted: Vec<TcpStream>,
    _files: Vec<File>,
    established: usize,
}

/// Builds worker `w`'s load and returns once every socket is in its state.
fn build(w: usize, plan: &Plan, file: Option<&Path>) -> io::Result<Load> {
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    // A second listen() only changes the backlog (std picks its own).
    // SAFETY: plain syscall on a socket we own.
    check(unsafe { libc::listen(listener.as_raw_fd(), plan.backlog) })?;
    listener.set_nonblocking(true)?;
    let dst = match listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        other => return Err(io::Error::other(format!("listener on {other}"))),
    };

    let mut clients = Vec::with_capacity(plan.connections);
    let mut accepted = Vec::with_capacity(plan.connections);
    while clients.len() < plan.connections {
        let n = plan.batch.min(plan.connections - clients.len());
        for _ in 0..n {
            let src = source_address(w, clients.len() % plan.sources, plan.sources);
            let c = connect_from(src, dst)
                .map_err(|e| io::Error::new(e.kind(), format!("connect {src} → {dst}: {e}")))?;
            clients.push(c);
        }
        while accepted.len() < clients.len() {
            match listener.accept() {
                Ok((s, _)) => {
                    linger_zero(&s)?;
                    accepted.push(s);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if Instant::now() >= plan.deadline {
                        return Err(timed_out(format!(
                            "only {} of {} connections reached the accept queue",
                            accepted.len(),
                            clients.len()
                        )));
                    }
                    wait_readable(listener.as_raw_fd(), plan.deadline)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("accept: {e}"))),
            }
        }
    }

    // Half-close or close the chosen clients; dropping a stream closes it.
    let mut kept = Vec::with_capacity(plan.connections - plan.orphans());
    let mut j = 0;
    for (i, c) in clients.into_iter().enumerate() {
        if !plan.is_close_wait(i) {
            linger_zero(&c)?;
            kept.push(c);
            continue;
        }
        if plan.keeps_client(j) {
            c.shutdown(std::net::Shutdown::Write)?;
            linger_zero(&c)?;
            kept.push(c);
        }
        j += 1;
    }

    let files = match file {
        Some(path) => (0..plan.files)
            .map(|_| File::open(path))
            .collect::<io::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let established = 2 * (plan.connections - plan.close_wait);
    let want = |accepted_cw: usize, clients_fw2: usize, est: usize| {
        accepted_cw == plan.close_wait && clients_fw2 == plan.fin_wait2_owned && est == established
    };
    loop {
        let (mut cw, mut fw2, mut est) = (0, 0, 0);
        for s in &accepted {
            match tcp_state(s.as_raw_fd())? {
                TCP_CLOSE_WAIT => cw += 1,
                TCP_ESTABLISHED => est += 1,
                _ => {}
            }
        }
        for s in &kept {
            match tcp_state(s.as_raw_fd())? {
                TCP_FIN_WAIT2 => fw2 += 1,
                TCP_ESTABLISHED => est += 1,
                _ => {}
            }
        }
        if want(cw, fw2, est) {
            break;
        }
        if Instant::now() >= plan.deadline {
            return Err(timed_out(format!(
                "sockets not in their states: {cw}/{} CLOSE_WAIT, {fw2}/{} FIN_WAIT_2, {est}/{} \
                 ESTABLISHED",
                plan.close_wait, plan.fin_wait2_owned, established
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(Load {
        _listener: listener,
        _clients: kept,
        _accepted: accepted,
        _files: files,
        established,
    })
}

/// Writes all of `bytes` to a raw fd (a pipe write under PIPE_BUF is atomic).
fn write_fd(fd: RawFd, bytes: &[u8]) {
    // SAFETY: a buffer we own, with its length. Best effort: a worker that
    // cannot report is noticed by the parent when it exits.
    let _ = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// The fds open in the parent at fork time that a worker must not keep: the
/// parent's own (the signalfd would swallow the worker's signals, the report
/// pipe's read end would hide EOF) and whatever the launcher left open, so
/// that every worker holds exactly its load and stdio.
pub struct ParentFds {
    pub close: Vec<RawFd>,
}

/// The forked worker: builds, reports, holds. Never returns.
pub fn worker_main(
    w: usize,
    plan: &Plan,
    parent: libc::pid_t,
    fds: &ParentFds,
    report: RawFd,
    file: Option<&Path>,
) -> ! {
    // SAFETY: prctl with integer arguments; getppid has no preconditions.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            // The parent died before the prctl took effect.
            libc::_exit(1);
        }
    }
    // SAFETY: a sigset we own; the fds closed are this process's copies of
    // the parent's, which nothing in this process uses.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for &fd in &fds.close {
            libc::close(fd);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(|| build(w, plan, file));
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let code = match outcome {
        Ok(Ok(load)) => {
            let line = format!(
                "OK {pid} {} {} {} {} {} {} {}\n",
                plan.sockets_held(),
                plan.close_wait,
                plan.fin_wait2_owned,
                plan.orphans(),
                load.established,
                plan.files,
                start.elapsed().as_millis()
            );
            write_fd(report, line.as_bytes());
            // SAFETY: closing our write end so the parent sees EOF once all
            // workers are done reporting.
            unsafe { libc::close(report) };
            loop {
                // SAFETY: no preconditions; SIGKILL from the parent ends it.
                unsafe { libc::pause() };
            }
        }
        Ok(Err(e)) => {
            let msg = e.to_string().replace('\n', " ");
            write_fd(report, format!("ERR {pid} worker {w}: {msg}\n").as_bytes());
            1
        }
        Err(_) => {
            write_fd(
                report,
                format!("ERR {pid} worker {w} panicked\n").as_bytes(),
            );
            101
        }
    };
    // SAFETY: leaves without running the parent's destructors, which this
    // forked copy must not run (they would kill the other workers).
    unsafe { libc::_exit(code) }
}
