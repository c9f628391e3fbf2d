//! The agent's own process, for the `process_*` self-metrics every
//! Prometheus client library exports (client_golang's process collector:
//! the same names, units and sources).
//!
//! Read from the agent's own /proc (`/proc/self`), never from `--proc-root`:
//! those figures describe the agent, whatever tree it scans (a fixture, or
//! the host's /proc mounted in a container). The parsing is procfs-core's,
//! on bytes handed to [`usage`]; [`read`] does the I/O.
//!
//! The prometheus crate's `process` feature would do this too, but it
//! depends on procfs 0.17 while closewatch uses 0.18: two versions of the
//! same crate in one binary, for four numbers.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use procfs::process::Stat;
use procfs::{ExplicitSystemInfo, FromBufReadSI, FromRead, KernelStats};
use rustix::fs::{Mode, OFlags, RawDir};
use rustix::process::Resource;

const STAT: &str = "/proc/self/stat";
const KERNEL_STAT: &str = "/proc/stat";
const FD_DIR: &str = "/proc/self/fd";

/// The agent's process at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OwnProcess {
    pub usage: Usage,
    /// Open file descriptors, not counting the one [`read`] counts them
    /// through.
    pub open_fds: u64,
    /// Soft RLIMIT_NOFILE; `None` when unlimited.
    pub max_fds: Option<u64>,
}

/// What /proc/self/stat and the boot time say.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// User and system CPU time since start.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Since the epoch: boot time plus the start in clock ticks after boot.
    pub start_time_seconds: f64,
}

/// The units the kernel counts in, from the auxiliary vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Units {
    pub ticks_per_second: u64,
    pub page_size: u64,
}

impl Units {
    pub fn of_this_system() -> Units {
        Units {
            ticks_per_second: rustix::param::clock_ticks_per_second(),
            page_size: rustix::param::page_size() as u64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OwnProcessError {
    #[error("{path}: {source}")]
    Io {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Malformed { path: &'static str, message: String },
}

/// CPU, memory and start time from the text of /proc/self/stat and of
/// /proc/stat (for `btime`).
pub fn usage(stat: &[u8], kernel_stat: &[u8], units: Units) -> Result<Usage, OwnProcessError> {
    let malformed = |path| {
        move |e: procfs::ProcError| OwnProcessError::Malformed {
            path,
            message: e.to_string(),
        }
    };
    let s = Stat::from_read(stat).map_err(malformed(STAT))?;
    let info = ExplicitSystemInfo {
        boot_time_secs: 0, // not used by the parser
        ticks_per_second: units.ticks_per_second,
        page_size: units.page_size,
        is_little_endian: cfg!(target_endian = "little"),
    };
    let kernel = KernelStats::from_buf_read(kernel_stat, &info).map_err(malformed(KERNEL_STAT))?;
    let ticks = units.ticks_per_second.max(1) as f64;
    Ok(Usage {
        cpu_seconds: (s.utime + s.stime) as f64 / ticks,
        resident_bytes: s.rss.saturating_mul(units.page_size),
        virtual_bytes: s.vsize,
        start_time_seconds: kernel.btime as f64 + s.starttime as f64 / ticks,
    })
}

/// Reads the agent's process now.
pub fn read() -> Result<OwnProcess, OwnProcessError> {
    let file = |path: &'static str| {
        std::fs::read(path).map_err(|source| OwnProcessError::Io { path, source })
    };
    let usage = usage(&file(STAT)?, &file(KERNEL_STAT)?, Units::of_this_system())?;
    let open_fds = open_fds().map_err(|e| OwnProcessError::Io {
        path: FD_DIR,
        source: e.into(),
    })?;
    let max_fds = rustix::process::getrlimit(Resource::Nofile).current;
    Ok(OwnProcess {
        usage,
        open_fds,
        max_fds,
    })
}

/// The entries of /proc/self/fd, less the directory's own descriptor (open
/// only while counting).
fn open_fds() -> rustix::io::Result<u64> {
    let dir = rustix::fs::open(
        FD_DIR,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let own = dir.as_raw_fd();
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(&dir, &mut buf);
    let mut count = 0;
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        match std::str::from_utf8(name)
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
        {
            Some(fd) if fd != own => count += 1,
            _ => {} // ".", "..", and the directory itself
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// /proc/self/stat of a closewatch agent (Linux 6.1, pid 4242), cut to
    /// the fields up to rss; the parser needs no more.
    const STAT_SAMPLE: &[u8] = b"4242 (closewatch) S 1 4242 4242 0 -1 4194560 \
        1893 0 0 0 \
        250 125 \
        0 0 20 0 3 0 \
        5000 \
        31457280 \
        2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";

    /// /proc/stat, the lines around btime.
    const KERNEL_STAT_SAMPLE: &[u8] = b"cpu  10 0 10 100 0 0 0 0 0 0\n\
        cpu0 10 0 10 100 0 0 0 0 0 0\n\
        intr 0\n\
        ctxt 123\n\
        btime 1700000000\n\
        processes 4300\n\
        procs_running 1\n\
        procs_blocked 0\n";

    const UNITS: Units = Units {
        ticks_per_second: 100,
        page_size: 4096,
    };

    #[test]
    fn cpu_memory_and_start_come_from_stat_in_the_kernels_units() {
        let u = usage(STAT_SAMPLE, KERNEL_STAT_SAMPLE, UNITS).expect("parses");
        // utime 250 + stime 125 ticks at 100 Hz.
        assert_eq!(u.cpu_seconds, 3.75);
        // rss 2048 pages of 4 KiB.
        assert_eq!(u.resident_bytes, 8 * 1024 * 1024);
        // vsize is in bytes already.
        assert_eq!(u.virtual_bytes, 31_457_280);
        // btime + starttime 5000 ticks = 50 s after boot.
        assert_eq!(u.start_time_seconds, 1_700_000_050.0);
    }

    #[test]
    fn a_stat_without_btime_or_cut_short_is_an_error_not_a_zero() {
        let no_btime = b"cpu  10 0 10 100 0 0 0 0 0 0\nctxt 1\nprocesses 1\n";
        assert!(usage(STAT_SAMPLE, no_btime, UNITS).is_err());
        assert!(usage(b"4242 (closewatch) S 1", KERNEL_STAT_SAMPLE, UNITS).is_err());
    }
}
