//! What a report shows of a process beyond the walk (executable, command
//! line, unit, namespace), read only for the processes it lists; the agent
//! reads only the unit.

use std::os::fd::OwnedFd;

use rustix::io::Errno;

use super::parse;
use super::read::{open_pid, read_at, Read};
use super::{skip, ProcRoot, Skip};
use crate::model::{NetnsId, ProcessDetails, ProcessKey};

/// Command lines longer than this are cut (some carry megabytes of JSON);
/// no more than this (and the two bytes that tell a cut) is read.
const CMDLINE_MAX: usize = 4096;

/// Fewer processes than this are described on the calling thread: a
/// thread costs more than a few dozen descriptions.
const DESCRIBE_ON_THREADS_FROM: usize = 256;

impl ProcRoot {
    /// What a report shows of one process, read only for those it lists. The
    /// start time is checked first: a PID reused since the walk is `Vanished`.
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        self.details(key, true)
    }

    /// [`describe`](Self::describe) of each of `keys` (`None`: no key, or
    /// the process could not be described), in order, on up to `threads`
    /// threads. A report of 10,000 processes describes them all, and each
    /// costs ~50 µs, mostly the kernel making the /proc entries read.
    pub fn describe_all(
        &self,
        keys: &[Option<ProcessKey>],
        threads: usize,
    ) -> Vec<Option<ProcessDetails>> {
        let describe_chunk = |keys: &[Option<ProcessKey>]| -> Vec<Option<ProcessDetails>> {
            let Ok(root) = self.open_root() else {
                return vec![None; keys.len()];
            };
            let mut buf = Vec::with_capacity(4096);
            keys.iter()
                .map(|k| self.details_in(&root, (*k)?, true, &mut buf).ok())
                .collect()
        };
        if threads <= 1 || keys.len() < DESCRIBE_ON_THREADS_FROM {
            return describe_chunk(keys);
        }
        let chunk = keys.len().div_ceil(threads);
        std::thread::scope(|s| {
            let workers: Vec<_> = keys
                .chunks(chunk)
                .map(|keys| s.spawn(move || describe_chunk(keys)))
                .collect();
            workers
                .into_iter()
                .zip(keys.chunks(chunk))
                .flat_map(|(w, keys)| w.join().unwrap_or_else(|_| vec![None; keys.len()]))
                .collect()
        })
    }

    /// The one detail the agent's labels use, the systemd unit (`None`:
    /// none found): the agent never reads a command line or an executable
    /// path, so neither can end up in a label or a log line. A cgroup that
    /// cannot be read is `Failed`, not "no unit".
    pub fn describe_unit(&self, key: ProcessKey) -> Result<Option<String>, Skip> {
        let details = self.details(key, false)?;
        match details.unit_error {
            Some(e) => Err(Skip::Failed(e)),
            None => Ok(details.unit),
        }
    }

    fn details(&self, key: ProcessKey, all: bool) -> Result<ProcessDetails, Skip> {
        let root = self.open_root().map_err(|_| Skip::Vanished)?;
        self.details_in(&root, key, all, &mut Vec::with_capacity(4096))
    }

    /// [`details`](Self::details) with /proc opened as `root` and reads
    /// into `buf`.
    fn details_in(
        &self,
        root: &OwnedFd,
        key: ProcessKey,
        all: bool,
        buf: &mut Vec<u8>,
    ) -> Result<ProcessDetails, Skip> {
        let dir = open_pid(root, key.pid).map_err(skip)?;
        let stat = parse::stat(read_at(&dir, c"stat", buf, Read::SeqFile).map_err(skip)?)
            .map_err(|e| Skip::Failed(e.to_string()))?;
        if stat.start_time != key.start_time {
            return Err(Skip::Vanished);
        }
        let link = |name| -> Option<Vec<u8>> {
            let l: Result<_, Errno> = rustix::fs::readlinkat(&dir, name, Vec::new());
            Some(l.ok()?.into_bytes())
        };
        let exe = all
            .then(|| link(c"exe"))
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let cmdline = match all.then(|| read_at(&dir, c"cmdline", buf, Read::UpTo(CMDLINE_MAX + 2)))
        {
            Some(Ok(b)) => parse::cmdline(b, CMDLINE_MAX),
            _ => String::new(),
        };
        let unit = match read_at(&dir, c"cgroup", buf, Read::UpTo(usize::MAX)) {
            Ok(b) => parse::unit_from_cgroup(b).map_err(|e| e.to_string()),
            // A kernel without cgroups has no such file: no unit.
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::SRCH) => return Err(Skip::Vanished),
            Err(e) => Err(format!("cgroup: {e}")),
        };
        if let Err(e) = &unit {
            log::debug!("pid {}: {e}", key.pid);
        }
        let netns = all
            .then(|| link(c"ns/net"))
            .flatten()
            .and_then(|l| parse::netns_link(&l))
            .map(NetnsId);
        Ok(ProcessDetails {
            exe,
            cmdline,
            unit_error: unit.as_ref().err().cloned(),
            unit: unit.ok().flatten(),
            netns,
        })
    }
}
