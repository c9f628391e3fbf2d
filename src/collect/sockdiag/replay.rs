//! Replays recorded sock_diag dumps: the fixture side of [`Transport`].
//!
//! A recording is a directory with one subdirectory per request,
//! `{v4,v6,any}-{flagged,all}` (`any`: the combined TCPDIAG_GETSOCK request)
//! and `unix` (the UNIX_DIAG dump), each holding the datagrams the kernel
//! sent, in
//! order, as `NNN.bin` (see `examples/record_fixture.rs`). A request with no
//! recording is answered as a kernel without that protocol answers:
//! NLMSG_DONE carrying -ENOENT. Recordings without `any-*` therefore drive
//! the collector's fallback to one request per family.

use std::io;
use std::path::{Path, PathBuf};

use super::{parse, unix, Family, Transport, ALL_STATES};

/// The subdirectory the UNIX_DIAG dump is recorded under.
pub const UNIX_RECORDING: &str = "unix";

/// The subdirectory a request is recorded under.
pub fn recording_name(family: Family, states: u32) -> String {
    let fam = match family {
        Family::V4 => "v4",
        Family::V6 => "v6",
        Family::Both => "any",
    };
    let kind = if states == ALL_STATES {
        "all"
    } else if states == crate::model::TcpState::Established.mask() {
        "established"
    } else {
        "flagged"
    };
    format!("{fam}-{kind}")
}

/// Serves the recorded answer to each request it is sent.
pub struct Replay {
    dir: PathBuf,
    queue: Vec<Vec<u8>>,
}

impl Replay {
    pub fn new(dir: impl AsRef<Path>) -> Replay {
        Replay {
            dir: dir.as_ref().to_path_buf(),
            queue: Vec::new(),
        }
    }

    fn load(&self, name: &str, seq: u32) -> io::Result<Vec<Vec<u8>>> {
        let dir = self.dir.join(name);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".bin") && n != "request.bin")
                })
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut done = Vec::with_capacity(20);
                done.extend_from_slice(&20u32.to_ne_bytes());
                done.extend_from_slice(&parse::NLMSG_DONE.to_ne_bytes());
                done.extend_from_slice(&2u16.to_ne_bytes());
                done.extend_from_slice(&seq.to_ne_bytes());
                done.extend_from_slice(&0u32.to_ne_bytes());
                done.extend_from_slice(&(-2i32).to_ne_bytes());
                return Ok(vec![done]);
            }
            Err(e) => return Err(e),
        };
        files.sort();
        // Recorded with the recorder's sequence numbers; a retry asks with
        // another.
        files
            .iter()
            .map(|f| {
                let mut d = std::fs::read(f)?;
                rewrite_headers(&mut d, Some(seq), 0);
                Ok(d)
            })
            .collect()
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let f = b.get(at..at + 4)?;
    Some(u32::from_ne_bytes([f[0], f[1], f[2], f[3]]))
}

impl Transport for Replay {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        let bad = || io::Error::new(io::ErrorKind::InvalidInput, "not a sock_diag request");
        let seq = u32_at(request, 8).ok_or_else(bad)?;
        let legacy = request.get(4..6) == Some(&super::TCPDIAG_GETSOCK.to_ne_bytes()[..]);
        let family = match request.get(parse::NETLINK_HEADER_LEN) {
            Some(&unix::AF_UNIX) if !legacy => None,
            Some(0) if legacy => Some(Family::Both),
            Some(2) if !legacy => Some(Family::V4),
            Some(10) if !legacy => Some(Family::V6),
            _ => return Err(bad()),
        };
        let name = match family {
            None => UNIX_RECORDING.to_string(),
            Some(family) => {
                // inet_diag_req_v2 has the states after 4 bytes,
                // inet_diag_req after the 52 of family, lengths, ext and
                // socket id.
                let states_at = if legacy { 52 } else { 4 };
                let states =
                    u32_at(request, parse::NETLINK_HEADER_LEN + states_at).ok_or_else(bad)?;
                recording_name(family, states)
            }
        };
        let mut datagrams = self.load(&name, seq)?;
        datagrams.reverse();
        self.queue = datagrams;
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        buf.clear();
        let Some(d) = self.queue.pop() else {
            return Ok(0);
        };
        let n = d.len().min(buf.capacity());
        buf.extend_from_slice(&d[..n]);
        Ok(d.len())
    }
}

/// Rewrites every message header of a datagram in place (a replay answers
/// each request with its own sequence number; tests inject faults): the
/// sequence number, if given, and the flags OR-ed with `add_flags`.
pub fn rewrite_headers(d: &mut [u8], seq: Option<u32>, add_flags: u16) {
    let mut at = 0;
    while at + 16 <= d.len() {
        let len = u32::from_ne_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]) as usize;
        if len < 16 {
            break;
        }
        let flags = u16::from_ne_bytes([d[at + 6], d[at + 7]]) | add_flags;
        d[at + 6..at + 8].copy_from_slice(&flags.to_ne_bytes());
        if let Some(seq) = seq {
            d[at + 8..at + 12].copy_from_slice(&seq.to_ne_bytes());
        }
        at += (len + 3) & !3;
    }
}
