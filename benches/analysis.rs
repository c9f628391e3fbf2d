//! The pure analysis at scale: a million flagged sockets over a thousand
//! processes (shared sockets, listeners, unaccepted connections included),
//! and the history a long-running agent keeps (socket first-seen times and fd
//! samples over a 15-minute window at a 15 s interval).
//!
//! `cargo bench --bench analysis`

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use closewatch::analyse::{analyse, History, Settings};
use closewatch::model::{
    FdStats, HeldSocket, Listener, NetnsId, ProcessInfo, ProcessKey, Snapshot, TcpInfo, TcpSocket,
    TcpState,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const NS: NetnsId = NetnsId(4026531833);

fn addr(ip: u32, port: u16) -> SocketAddr {
    SocketAddr::from((ip.to_be_bytes(), port))
}

/// `sockets` flagged sockets held by `processes` processes (every 50th
/// socket shared with the next process, as after fork), 1 % of them in an
/// accept queue.
fn snapshot(sockets: usize, processes: usize) -> Snapshot {
    let mut held: Vec<Vec<HeldSocket>> = vec![Vec::new(); processes];
    let mut socks = Vec::with_capacity(sockets);
    for i in 0..sockets {
        let p = i % processes;
        let unaccepted = i % 100 == 99;
        let state = if i % 3 == 0 {
            TcpState::FinWait2
        } else {
            TcpState::CloseWait
        };
        let inode = if unaccepted { 0 } else { 10_000_000 + i as u64 };
        socks.push(TcpSocket {
            timer: 0,
            peer: None,
            netns: NS,
            state: if unaccepted {
                TcpState::CloseWait
            } else {
                state
            },
            local: addr(0x7f00_0001 + p as u32, 8000),
            remote: addr(0x0a00_0000 + (i % 5000) as u32, 6379),
            cookie: i as u64,
            inode,
            uid: 0,
            recv_q: (i % 3) as u32,
            send_q: 0,
            info: Some(TcpInfo {
                state: 8,
                last_data_sent_ms: 0,
                last_data_recv_ms: 0,
                last_ack_recv_ms: (i % 600_000) as u32,
            }),
        });
        if inode != 0 {
            held[p].push(HeldSocket {
                inode,
                fd: i as u32,
            });
            if i % 50 == 0 {
                held[(p + 1) % processes].push(HeldSocket {
                    inode,
                    fd: i as u32,
                });
            }
        }
    }
    let listeners = (0..processes)
        .map(|p| Listener {
            netns: NS,
            local: addr(0x7f00_0001 + p as u32, 8000),
            inode: 1 + p as u64,
            queue: 0,
            backlog: 128,
        })
        .collect();
    let processes = held
        .into_iter()
        .enumerate()
        .map(|(p, mut sockets)| {
            sockets.push(HeldSocket {
                inode: 1 + p as u64,
                fd: 3,
            });
            ProcessInfo {
                key: ProcessKey {
                    pid: 1000 + p as u32,
                    start_time: 1,
                },
                comm: format!("worker-{p}"),
                uid: Some(0),
                fds: FdStats {
                    open: sockets.len() as u64 + 10,
                    limit: Some(65536),
                    sockets: sockets.len() as u64,
                    ..FdStats::default()
                },
                fds_walked: true,
                sockets,
                largest_deleted: None,
                dead: Vec::new(),
            }
        })
        .collect();
    Snapshot {
        sockets: socks,
        listeners,
        processes,
        ..Snapshot::default()
    }
}

fn analysis(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let window = Duration::from_secs(900);
    let mut g = c.benchmark_group("analysis");
    g.sample_size(10);
    for (sockets, processes) in [(10_000, 100), (1_000_000, 1_000)] {
        let snap = snapshot(sockets, processes);
        let mut history = History::default();
        history.observe(&snap, now, window);
        g.throughput(Throughput::Elements(sockets as u64));
        g.bench_function(
            format!("analyse {sockets} sockets / {processes} processes"),
            |b| b.iter(|| analyse(black_box(&snap), &history, &Settings::default(), now)),
        );
        let agent = Settings {
            group_peers: false,
            ..Settings::default()
        };
        g.bench_function(
            format!("analyse {sockets} sockets / {processes} processes, no peer groups (agent)"),
            |b| b.iter(|| analyse(black_box(&snap), &history, &agent, now)),
        );
        g.bench_function(
            format!("history.observe {sockets} sockets / {processes} processes"),
            |b| {
                b.iter_batched(
                    || history.clone(),
                    |mut h| {
                        h.observe(black_box(&snap), now + Duration::from_secs(15), window);
                        h
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    // A full fd window: 60 samples for each of 1,000 processes, then a scan's
    // growth judgement for every one of them (inside analyse).
    let snap = snapshot(10_000, 1_000);
    let mut history = History::default();
    for i in 0..60u32 {
        history.observe(&snap, now + Duration::from_secs(15) * i, window);
    }
    g.throughput(Throughput::Elements(1_000));
    g.bench_function(
        "analyse with 60 fd samples for each of 1000 processes",
        |b| {
            b.iter(|| {
                analyse(
                    black_box(&snap),
                    &history,
                    &Settings::default(),
                    now + Duration::from_secs(900),
                )
            })
        },
    );
    g.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);
