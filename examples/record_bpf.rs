//! Records the BPF iterators' records of this very process, with what
//! /proc says of the same fds, as the fixture of the record parser's tests
//! (src/collect/bpf/tests.rs):
//!
//!     cargo run --example record_bpf -- tests/fixtures/bpf
//!
//! The process first holds one fd of each kind: a TCP listener, a connected
//! pair, a UNIX socket pair, a pipe, an eventfd, a regular file, a deleted
//! file of 12,345 bytes, an O_PATH fd on a UNIX socket's path (a file,
//! not a socket) and a TCP socket never connected (in no TCP table: dead).

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use closewatch::collect::bpf::{self, Iterators, FD_RECORD, TASK_RECORD};
use closewatch::collect::procfs::parse;

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "tests/fixtures/bpf".into()),
    );
    std::fs::create_dir_all(&out)?;
    let dir = tempfile_dir()?;
    // One fd of each kind, all held until the end.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    let (ua, ub) = std::os::unix::net::UnixStream::pair()?;
    let mut pipe = [0; 2];
    // SAFETY: plain syscalls; the fds are owned at once.
    let (pr, pw, ev, unconnected) = unsafe {
        anyhow::ensure!(
            libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) == 0,
            "pipe2"
        );
        let ev = libc::eventfd(0, libc::EFD_CLOEXEC);
        anyhow::ensure!(ev >= 0, "eventfd");
        let tcp = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        anyhow::ensure!(tcp >= 0, "socket");
        (
            OwnedFd::from_raw_fd(pipe[0]),
            OwnedFd::from_raw_fd(pipe[1]),
            OwnedFd::from_raw_fd(ev),
            OwnedFd::from_raw_fd(tcp),
        )
    };
    let file = std::fs::File::open("/proc/self/status")?;
    let deleted_path = dir.join("deleted");
    let mut deleted = std::fs::File::create(&deleted_path)?;
    deleted.write_all(&vec![b'x'; 12_345])?;
    std::fs::remove_file(&deleted_path)?;
    let sock_path = dir.join("sock");
    let bound = std::os::unix::net::UnixListener::bind(&sock_path)?;
    let opath = rustix::fs::open(
        &sock_path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;

    let me = std::process::id();
    let mut it = Iterators::load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tasks = it.raw(false).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fds = it.raw(true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mine_task: Vec<u8> = tasks
        .chunks_exact(TASK_RECORD)
        .filter(|r| bpf::tgid(r) == me)
        .flatten()
        .copied()
        .collect();
    let mine_fds: Vec<u8> = fds
        .chunks_exact(FD_RECORD)
        .filter(|r| bpf::tgid(r) == me)
        .flatten()
        .copied()
        .collect();
    std::fs::write(out.join("task.bin"), &mine_task)?;
    std::fs::write(out.join("fds.bin"), &mine_fds)?;

    // What /proc says of the same process, for the tests to check against.
    let stat = std::fs::read("/proc/self/stat")?;
    let stat = parse::stat(&stat)?;
    let limits = std::fs::read("/proc/self/limits")?;
    let mut lines = vec![
        format!("pid {me}"),
        format!("start_time {}", stat.start_time),
        format!("comm {}", stat.comm),
        format!(
            "nofile {}",
            parse::max_open_files(&limits)?.map_or("unlimited".into(), |n| n.to_string())
        ),
        format!(
            "netns {}",
            std::fs::metadata("/proc/self/ns/net")
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))?
        ),
    ];
    let mut fd_lines = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let fd: u32 = entry.file_name().to_string_lossy().parse()?;
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let bytes = link.as_os_str().as_encoded_bytes();
        let what = match parse::fd_target(bytes) {
            parse::FdTarget::Socket(inode) => format!("socket {inode}"),
            parse::FdTarget::Pipe => "pipe".into(),
            parse::FdTarget::AnonInode => "anon".into(),
            parse::FdTarget::MaybeDeleted => match std::fs::metadata(entry.path()) {
                Ok(m) if std::os::unix::fs::MetadataExt::nlink(&m) == 0 => {
                    format!("deleted {}", m.len())
                }
                _ => "file".into(),
            },
            parse::FdTarget::File => "file".into(),
            parse::FdTarget::Other => "other".into(),
        };
        fd_lines.push((fd, what));
    }
    fd_lines.sort();
    lines.extend(
        fd_lines
            .into_iter()
            .map(|(fd, what)| format!("fd {fd} {what}")),
    );
    std::fs::write(out.join("proc.txt"), lines.join("\n") + "\n")?;
    drop((
        listener,
        client,
        server,
        ua,
        ub,
        pr,
        pw,
        ev,
        file,
        deleted,
        bound,
        opath,
        unconnected,
    ));
    std::fs::remove_dir_all(&dir)?;
    println!(
        "recorded {} task bytes, {} fd bytes in {}",
        mine_task.len(),
        mine_fds.len(),
        out.display()
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("closewatch-record-bpf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
