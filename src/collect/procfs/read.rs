//! Small reads relative to directory fds, shared by the walk and by
//! `describe`: a PID's directory, an fd's name, a small file.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// An fd number as a name in /proc/PID/fd.
pub(super) fn fd_name(fd: u32) -> CString {
    // Digits only: no interior NUL.
    CString::new(fd.to_string()).unwrap_or_default()
}

/// Opens /proc/PID as a directory fd (`O_PATH`): everything else about the
/// process is read relative to it, so a reused PID cannot mix two processes.
pub(super) fn open_pid(root: &OwnedFd, pid: u32) -> Result<OwnedFd, Errno> {
    let name = CString::new(pid.to_string()).map_err(|_| Errno::INVAL)?;
    rustix::fs::openat(
        root,
        name.as_c_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens /proc/PID/fd (relative to the PID's directory fd) for reading
/// its links. The errno tells a refusal (EACCES) from a process gone.
pub(super) fn open_fd_dir(pid_dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        pid_dir,
        c"fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// How a file relative to a directory fd is read by [`read_at`].
#[derive(Clone, Copy)]
pub(super) enum Read {
    /// Until end of file, at most this many bytes.
    UpTo(usize),
    /// A seq_file (/proc/PID/stat, limits): the kernel fills each read as
    /// far as the buffer allows, so a read that leaves room has reached the
    /// end, and the read that would return 0 is saved.
    SeqFile,
}

/// Reads a (small) file relative to a directory fd into `buf`. Plain
/// `read`s: `std`'s `read_to_end` first `fstat`s and `lseek`s to size its
/// buffer, which for procfs files (size 0) buys nothing and costs two
/// syscalls per file.
pub(super) fn read_at<'b>(
    dir: &impl AsFd,
    name: &CStr,
    buf: &'b mut Vec<u8>,
    how: Read,
) -> Result<&'b [u8], Errno> {
    let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let max = match how {
        Read::UpTo(max) => max,
        Read::SeqFile => usize::MAX,
    };
    buf.clear();
    while buf.len() < max {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.capacity().max(4096));
        }
        let room = buf.capacity() - buf.len();
        match rustix::io::read(&fd, rustix::buffer::spare_capacity(buf)) {
            Ok(0) => break,
            Ok(n) if n < room && matches!(how, Read::SeqFile) => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(max);
    Ok(&buf[..])
}

/// A PID or fd number as /proc names it; `None` for anything else.
pub(super) fn parse_u32(name: &[u8]) -> Option<u32> {
    if name.is_empty() || name.len() > 10 || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}
