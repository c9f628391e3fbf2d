//! The sock_diag parser at scale: a million records (built from a record
//! captured on Linux 6.18, with distinct inodes, cookies and ports), parsed
//! the way the two dumps use them; the classification of fd links; and the
//! /proc parsers against procfs-core's on the same captured bytes, to say
//! whether hand-written parsing is worth keeping (benches/README.md).
//!
//! `cargo bench --bench parser`

use std::hint::black_box;
use std::str::FromStr;

use closewatch::collect::procfs::parse::{self, fd_target, FdTarget};
use closewatch::collect::sockdiag::parse::{messages, peek_state, socket};
use closewatch::model::NetnsId;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use procfs::process::{FDTarget, LimitValue, Limits};
use procfs::{FromBufRead, FromRead};

/// The captured datagram: 4 flagged records, 3 with tcp_info.
const CAPTURED: &[u8] = include_bytes!("../tests/fixtures/sockdiag/v4/000.bin");

/// The records of the captured datagram, each as its own byte vector.
fn records() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= CAPTURED.len() {
        let len = u32::from_ne_bytes([
            CAPTURED[at],
            CAPTURED[at + 1],
            CAPTURED[at + 2],
            CAPTURED[at + 3],
        ]) as usize;
        out.push(CAPTURED[at..at + len].to_vec());
        at += (len + 3) & !3;
    }
    out
}

/// `n` records cycling through the captured ones, each made distinct
/// (inode, cookie, source port), concatenated as the kernel sends them.
fn synthetic(n: usize, with_info: bool) -> Vec<u8> {
    let recs: Vec<Vec<u8>> = records()
        .into_iter()
        .map(|r| if with_info { r } else { strip_attributes(&r) })
        .collect();
    let mut out = Vec::with_capacity(n * 420);
    for i in 0..n {
        let mut r = recs[i % recs.len()].clone();
        let id = 1_000_000 + i as u32;
        r[16 + 4..16 + 6].copy_from_slice(&((i % 60000) as u16 + 1024).to_be_bytes()); // sport
        r[16 + 44..16 + 48].copy_from_slice(&id.to_ne_bytes()); // cookie
        r[16 + 68..16 + 72].copy_from_slice(&id.to_ne_bytes()); // inode
        out.extend_from_slice(&r);
    }
    out
}

/// A record without attributes: what the all-states dump (no extensions)
/// receives for most sockets.
fn strip_attributes(r: &[u8]) -> Vec<u8> {
    let mut short = r[..16 + 72].to_vec();
    short[0..4].copy_from_slice(&(88u32).to_ne_bytes());
    short
}

fn parser(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let mut g = c.benchmark_group("sockdiag");
    g.sample_size(10);

    let counts = synthetic(N, false);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("count 1M records (peek_state)", |b| {
        b.iter(|| {
            let mut n = [0u64; 16];
            for m in messages(black_box(&counts)) {
                let m = m.expect("well-formed");
                let s = peek_state(m.payload).expect("state");
                n[usize::from(s.kernel_number()).min(15)] += 1;
            }
            n
        })
    });

    let flagged = synthetic(N, true);
    g.bench_function("parse 1M flagged records with tcp_info", |b| {
        b.iter_batched(
            || Vec::with_capacity(N),
            |mut out| {
                for m in messages(black_box(&flagged)) {
                    let m = m.expect("well-formed");
                    out.push(socket(m.payload, NetnsId(1)).expect("socket"));
                }
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let links: Vec<&[u8]> = vec![
        b"socket:[123456789]",
        b"/var/log/app.log",
        b"pipe:[987654]",
        b"anon_inode:[eventpoll]",
        b"/tmp/x (deleted)",
        b"/dev/null",
    ];
    for l in &links {
        assert_eq!(crate_fd_target(l), fd_target(l), "{l:?}");
    }
    let mut g = c.benchmark_group("fd");
    g.throughput(Throughput::Elements(links.len() as u64 * 1000));
    g.bench_function("classify 6000 fd links", |b| {
        b.iter(|| {
            let mut sockets = 0u64;
            for _ in 0..1000 {
                for l in &links {
                    if let FdTarget::Socket(i) = fd_target(black_box(l)) {
                        sockets += i & 1;
                    }
                }
            }
            sockets
        })
    });
    g.bench_function("classify 6000 fd links (procfs-core FDTarget)", |b| {
        b.iter(|| {
            let mut sockets = 0u64;
            for _ in 0..1000 {
                for l in &links {
                    if let FdTarget::Socket(i) = crate_fd_target(black_box(l)) {
                        sockets += i & 1;
                    }
                }
            }
            sockets
        })
    });
    g.finish();
}

// The captured samples parse_tests.rs uses, as the fuzz corpus keeps them.
const STATS: [&[u8]; 4] = [
    include_bytes!("../fuzz/corpus/proc_stat/seed-cat"),
    include_bytes!("../fuzz/corpus/proc_stat/seed-weird_comm"),
    include_bytes!("../fuzz/corpus/proc_stat/seed-zombie"),
    include_bytes!("../fuzz/corpus/proc_stat/seed-kthread"),
];
const LIMITS: [&[u8]; 2] = [
    include_bytes!("../fuzz/corpus/proc_limits/seed-self"),
    include_bytes!("../fuzz/corpus/proc_limits/seed-unlimited"),
];

/// `parse::stat` done with procfs-core's `Stat::from_read`: what switching
/// would cost, the mapping to closewatch's `Stat` included. (Not a drop-in:
/// the crate panics on some malformed lines, see benches/README.md.)
fn crate_stat(bytes: &[u8]) -> Option<parse::Stat> {
    let s = procfs::process::Stat::from_read(bytes).ok()?;
    Some(parse::Stat {
        pid: u32::try_from(s.pid).ok()?,
        kernel_thread: s.flags & 0x0020_0000 != 0,
        start_time: s.starttime,
        state: s.state,
        comm: s.comm,
    })
}

/// `parse::max_open_files` done with procfs-core's `Limits::from_buf_read`.
fn crate_max_open_files(bytes: &[u8]) -> Option<Option<u64>> {
    match Limits::from_buf_read(bytes).ok()?.max_open_files.soft_limit {
        LimitValue::Unlimited => Some(None),
        LimitValue::Value(v) => Some(Some(v)),
    }
}

/// `fd_target` done with procfs-core's `FDTarget::from_str`: the link must
/// be UTF-8 first, and " (deleted)" is still looked for by hand.
fn crate_fd_target(link: &[u8]) -> FdTarget {
    let Some(target) = std::str::from_utf8(link)
        .ok()
        .and_then(|s| FDTarget::from_str(s).ok())
    else {
        return FdTarget::Other;
    };
    match target {
        FDTarget::Socket(inode) => FdTarget::Socket(inode),
        FDTarget::Pipe(_) => FdTarget::Pipe,
        FDTarget::AnonInode(_) => FdTarget::AnonInode,
        FDTarget::Path(p) if p.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") => {
            FdTarget::MaybeDeleted
        }
        FDTarget::MemFD(name) if name.ends_with(" (deleted)") => FdTarget::MaybeDeleted,
        FDTarget::Path(_) | FDTarget::MemFD(_) => FdTarget::File,
        _ => FdTarget::Other,
    }
}

/// /proc/PID/stat and /proc/PID/limits, read once per process each scan:
/// closewatch's parsers against procfs-core's on the same captured bytes.
fn proc_files(c: &mut Criterion) {
    let mut g = c.benchmark_group("procfs");
    // Like for like: both give the same answer on every sample.
    for s in STATS {
        assert_eq!(crate_stat(s), parse::stat(s).ok());
    }
    for l in LIMITS {
        assert_eq!(crate_max_open_files(l), parse::max_open_files(l).ok());
    }
    g.throughput(Throughput::Elements(STATS.len() as u64));
    g.bench_function("stat, 4 captured lines (hand)", |b| {
        b.iter(|| {
            STATS
                .iter()
                .filter_map(|s| parse::stat(black_box(s)).ok())
                .map(|s| s.start_time)
                .sum::<u64>()
        })
    });
    g.bench_function("stat, 4 captured lines (procfs-core Stat)", |b| {
        b.iter(|| {
            STATS
                .iter()
                .filter_map(|s| crate_stat(black_box(s)))
                .map(|s| s.start_time)
                .sum::<u64>()
        })
    });
    g.throughput(Throughput::Elements(LIMITS.len() as u64));
    g.bench_function("limits, 2 captured files (hand)", |b| {
        b.iter(|| {
            LIMITS
                .iter()
                .filter_map(|l| parse::max_open_files(black_box(l)).ok())
                .map(|l| l.unwrap_or(1))
                .sum::<u64>()
        })
    });
    g.bench_function("limits, 2 captured files (procfs-core Limits)", |b| {
        b.iter(|| {
            LIMITS
                .iter()
                .filter_map(|l| crate_max_open_files(black_box(l)))
                .map(|l| l.unwrap_or(1))
                .sum::<u64>()
        })
    });
    g.finish();
}

criterion_group!(benches, parser, proc_files);
criterion_main!(benches);
