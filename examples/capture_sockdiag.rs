//! Records the raw netlink datagrams of closewatch's sock_diag dumps, for test
//! fixtures: `cargo run --example capture_sockdiag -- OUT_DIR [v4|v6] [flagged|all]`.
//! Each datagram is written as OUT_DIR/NNN.bin, in the order received.

use std::io;
use std::path::PathBuf;

use closewatch::collect::sockdiag::{
    self, Family, NetlinkTransport, Request, SocketSink, Transport,
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .ok_or("usage: capture_sockdiag OUT_DIR [v4|v6] [flagged|all]")?,
    );
    std::fs::create_dir_all(&dir)?;
    let family = if args.get(2).map(String::as_str) == Some("v6") {
        Family::V6
    } else {
        Family::V4
    };
    let all = args.get(3).map(String::as_str) == Some("all");
    let req = Request {
        family,
        states: if all {
            sockdiag::ALL_STATES
        } else {
            sockdiag::FLAGGED_STATES
        },
        tcp_info: !all,
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
    for s in &sink.sockets {
        println!(
            "{:?} {} -> {} inode {} cookie {:#x} recv_q {} info {:?}",
            s.state, s.local, s.remote, s.inode, s.cookie, s.recv_q, s.info
        );
    }
    Ok(())
}
