//! What a report shows of a process beyond the walk (executable, command
//! line, unit, namespace), read only for the processes it lists; the agent
//! reads only the unit.

use rustix::io::Errno;

use super::parse;
use super::read::{open_pid, read_at, Read};
use super::{skip, ProcRoot, Skip};
use crate::model::{NetnsId, ProcessDetails, ProcessKey};

/// Command lines longer than this are cut (some carry megabytes of JSON);
/// no more than this (and the two bytes that tell a cut) is read.
const CMDLINE_MAX: usize = 4096;

impl ProcRoot {
    /// What a report shows of one process, read only for those it lists. The
    /// start time is checked first: a PID reused since the walk is `Vanished`.
    pub fn describe(&self, key: ProcessKey) -> Result<ProcessDetails, Skip> {
        self.details(key, true)
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
        let dir = open_pid(&root, key.pid).map_err(skip)?;
        let mut buf = Vec::with_capacity(4096);
        let stat = parse::stat(read_at(&dir, c"stat", &mut buf, Read::SeqFile).map_err(skip)?)
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
        let cmdline =
            match all.then(|| read_at(&dir, c"cmdline", &mut buf, Read::UpTo(CMDLINE_MAX + 2))) {
                Some(Ok(b)) => parse::cmdline(b, CMDLINE_MAX),
                _ => String::new(),
            };
        let unit = match read_at(&dir, c"cgroup", &mut buf, Read::UpTo(usize::MAX)) {
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
