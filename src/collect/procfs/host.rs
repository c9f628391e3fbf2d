//! Host-wide figures: the host name, the kernel release, and the file
//! handles in use against fs.file-max (/proc/sys/fs/file-nr).

use std::io;

use super::{parse, ProcError, ProcRoot};
use crate::model::HostInfo;

impl ProcRoot {
    /// Host name, kernel release and the host's file-handle figures.
    pub fn host(&self) -> (HostInfo, Vec<ProcError>) {
        self.host_with(None)
    }

    /// [`host`](Self::host), with the host name and kernel release taken
    /// from `names` when given (they seldom change; file-nr is read anyway).
    pub fn host_with(&self, names: Option<(&str, &str)>) -> (HostInfo, Vec<ProcError>) {
        let mut errors = Vec::new();
        let mut read = |rel: &str| {
            let path = self.path.join(rel);
            match std::fs::read(&path) {
                Ok(b) => Some(b),
                Err(e) => {
                    errors.push(self.error(&path, e));
                    None
                }
            }
        };
        let text = |b: Option<Vec<u8>>| {
            b.map(|b| String::from_utf8_lossy(&b).trim().to_string())
                .unwrap_or_default()
        };
        let (hostname, kernel) = match names {
            Some((hostname, kernel)) => (hostname.to_string(), kernel.to_string()),
            None => (
                text(read("sys/kernel/hostname")),
                text(read("sys/kernel/osrelease")),
            ),
        };
        let file_nr = read("sys/fs/file-nr");
        let mut host = HostInfo {
            hostname,
            kernel,
            open_fds: None,
            max_fds: None,
        };
        if let Some(bytes) = file_nr {
            match parse::file_nr(&bytes) {
                Ok(nr) => {
                    host.open_fds = Some(nr.open());
                    host.max_fds = Some(nr.max);
                }
                Err(e) => errors.push(self.error(
                    &self.path.join("sys/fs/file-nr"),
                    io::Error::new(io::ErrorKind::InvalidData, e),
                )),
            }
        }
        (host, errors)
    }
}
