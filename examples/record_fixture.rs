//! Records a fixture the report can be replayed on: the raw sock_diag
//! datagrams of this network namespace, and the /proc files closewatch reads
//! for the given processes.
//!
//!     cargo run --example record_fixture -- OUT_DIR PID...
//!
//! writes OUT_DIR/sockdiag/{any,v4,v6}-{flagged,all}/NNN.bin and
//! OUT_DIR/sockdiag/unix/NNN.bin (+ request.bin and a `netns` file) and OUT_DIR/proc/{sys/...,PID/{stat,limits,cgroup,cmdline,
//! exe,ns/net,fd/N}} (links recreated as symlinks with the same targets).
//! Replay with `closewatch --report --proc-root OUT_DIR/proc
//! --replay-sockdiag OUT_DIR/sockdiag`.

use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use closewatch::collect::procfs::own_netns;
use closewatch::collect::sockdiag::unix::{UnixRequest, UnixSink};
use closewatch::collect::sockdiag::{
    self, replay, Family, NetlinkTransport, Request, SocketSink, Transport,
};
use closewatch::model::NetnsId;

struct Recorder {
    inner: NetlinkTransport,
    dir: PathBuf,
    n: usize,
}

impl Transport for Recorder {
    fn send(&mut self, request: &[u8]) -> io::Result<()> {
        std::fs::write(self.dir.join("request.bin"), request)?;
        self.inner.send(request)
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let len = self.inner.recv(buf)?;
        std::fs::write(
            self.dir.join(format!("{:03}.bin", self.n)),
            &buf[..len.min(buf.len())],
        )?;
        self.n += 1;
        Ok(len)
    }
}

fn record_sockdiag(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("netns"), format!("{}\n", own_netns()?.0))?;
    for family in [Family::Both, Family::V4, Family::V6] {
        for states in [sockdiag::FLAGGED_STATES, sockdiag::ALL_STATES] {
            let dir = out.join(replay::recording_name(family, states));
            std::fs::create_dir_all(&dir)?;
            let req = Request {
                family,
                states,
                tcp_info: true,
            };
            let mut sink = SocketSink {
                netns: NetnsId(0),
                sockets: Vec::new(),
            };
            let d = dir.clone();
            sockdiag::dump(
                move || {
                    Ok(Recorder {
                        inner: NetlinkTransport::open()?,
                        dir: d.clone(),
                        n: 0,
                    })
                },
                &req,
                &mut sink,
            )?;
            eprintln!("{}: {} sockets", dir.display(), sink.sockets.len());
        }
    }
    record_unix(&out.join(replay::UNIX_RECORDING))
}

/// The UNIX_DIAG dump of the connected sockets, as closewatch asks for it.
fn record_unix(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut sink = UnixSink::default();
    let d = dir.to_path_buf();
    sockdiag::dump(
        move || {
            Ok(Recorder {
                inner: NetlinkTransport::open()?,
                dir: d.clone(),
                n: 0,
            })
        },
        &UnixRequest::CONNECTED,
        &mut sink,
    )?;
    eprintln!(
        "{}: {} connected UNIX sockets, {} with their peer closed",
        dir.display(),
        sink.connected,
        sink.peer_closed.len()
    );
    Ok(())
}

fn copy_link(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::read_link(from) {
        Ok(target) => symlink(target, to),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn record_proc(out: &Path, pids: &[u32]) -> io::Result<()> {
    for rel in [
        "sys/kernel/hostname",
        "sys/kernel/osrelease",
        "sys/fs/file-nr",
    ] {
        let to = out.join(rel);
        std::fs::create_dir_all(to.parent().unwrap_or(out))?;
        std::fs::copy(Path::new("/proc").join(rel), to)?;
    }
    for pid in pids {
        let from = PathBuf::from(format!("/proc/{pid}"));
        let to = out.join(pid.to_string());
        std::fs::create_dir_all(to.join("fd"))?;
        std::fs::create_dir_all(to.join("ns"))?;
        for file in ["stat", "limits", "cgroup", "cmdline"] {
            std::fs::write(to.join(file), std::fs::read(from.join(file))?)?;
        }
        copy_link(&from.join("exe"), &to.join("exe"))?;
        copy_link(&from.join("ns/net"), &to.join("ns/net"))?;
        for entry in std::fs::read_dir(from.join("fd"))? {
            let entry = entry?;
            copy_link(&entry.path(), &to.join("fd").join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: record_fixture OUT_DIR PID...")?);
    let pids: Vec<u32> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    record_sockdiag(&out.join("sockdiag"))?;
    record_proc(&out.join("proc"), &pids)?;
    Ok(())
}
