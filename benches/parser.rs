//! The sock_diag parser at scale: a million records (built from a record
//! captured on Linux 6.18, with distinct inodes, cookies and ports), parsed
//! the way the two dumps use them; and the classification of fd links.
//!
//! `cargo bench --bench parser`

use std::hint::black_box;

use closewatch::collect::procfs::parse::fd_target;
use closewatch::collect::sockdiag::parse::{messages, peek_state, socket};
use closewatch::model::NetnsId;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

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
    let mut g = c.benchmark_group("fd");
    g.throughput(Throughput::Elements(links.len() as u64 * 1000));
    g.bench_function("classify 6000 fd links", |b| {
        b.iter(|| {
            let mut sockets = 0u64;
            for _ in 0..1000 {
                for l in &links {
                    if let closewatch::collect::procfs::parse::FdTarget::Socket(i) =
                        fd_target(black_box(l))
                    {
                        sockets += i & 1;
                    }
                }
            }
            sockets
        })
    });
    g.finish();
}

criterion_group!(benches, parser);
criterion_main!(benches);
