//! Thin wrappers over the process and signal syscalls the parent uses.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A libc return value, or the errno when it is negative.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The workers, killed and reaped on drop, so that no error path in the
/// parent leaves one behind.
#[derive(Default)]
pub struct Workers {
    pub pids: Vec<libc::pid_t>,
}

impl Workers {
    /// Reaps the workers that have exited and returns how each ended. A
    /// reaped pid leaves the list: it may be reused.
    pub fn reap_exited(&mut self) -> Vec<(libc::pid_t, String)> {
        let mut gone = Vec::new();
        self.pids.retain(|&pid| {
            let mut status = 0;
            // SAFETY: a child of ours; status is an int we own.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                gone.push((pid, describe_status(status)));
                false
            } else {
                true
            }
        });
        gone
    }

    pub fn stop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: an unreaped child of ours, so the pid is still its own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for pid in self.pids.drain(..) {
            let mut status = 0;
            // SAFETY: as above.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("ended with wait status {status}")
    }
}

/// Blocks SIGINT, SIGTERM and SIGCHLD and returns a signalfd for them.
///
/// SIGINT or SIGTERM ignored at startup (a shell starts background jobs with
/// SIGINT ignored) stays ignored: a blocked signal is queued even when ignored, so
/// blocking it would let a Ctrl-C meant for the foreground stop the load.
pub fn signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigsets and a sigaction we own, then plain syscalls; the fd is
    // owned at once.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGCHLD] {
            let mut current: libc::sigaction = std::mem::zeroed();
            check(libc::sigaction(sig, std::ptr::null(), &mut current))?;
            if sig == libc::SIGCHLD && current.sa_sigaction == libc::SIG_IGN {
                // Ignored SIGCHLD reaps children at once: their pids could
                // be reused before we kill them by pid.
                libc::signal(sig, libc::SIG_DFL);
                libc::sigaddset(&mut set, sig);
            } else if current.sa_sigaction != libc::SIG_IGN {
                libc::sigaddset(&mut set, sig);
            }
        }
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = check(libc::signalfd(-1, &set, libc::SFD_CLOEXEC))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads one pending signal's number from the signalfd.
pub fn read_signal(fd: &OwnedFd) -> io::Result<u32> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the kernel writes one siginfo into the struct we own.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    if n as usize != size {
        return Err(io::Error::last_os_error());
    }
    Ok(info.ssi_signo)
}

/// Polls `fds` for input, retrying on EINTR; returns their `revents`.
pub fn poll_in(fds: &[RawFd], timeout_ms: libc::c_int) -> io::Result<Vec<libc::c_short>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: pollfds we own, with their count.
        match check(unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) }) {
            Ok(_) => return Ok(p.iter().map(|p| p.revents).collect()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
