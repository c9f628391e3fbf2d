//! What each lifecycle check adds to a scan, on the host as it is (run by
//! benches/checks.sh with loadgen's medium load in place): the kernel reads
//! each one needs, beside the reads the scan made before they existed.
//!
//! - per scan: the UNIX_DIAG dump (`unix_close_wait`) and the namespace's
//!   /proc/net/netstat (`accept_queue_full`'s counters);
//! - per all-states dump (once a minute in the agent): the dump with and
//!   without the port tally (`port_exhaustion`);
//! - for `half_open`: the all-states dump asked with tcp_info, judging the
//!   ESTABLISHED connections too (every report; the agent when both are
//!   due), and the ESTABLISHED dump beside the flagged one (the agent every
//!   300 s otherwise);
//! - per full walk: the /proc walk with and without the dead check (every
//!   socket fd looked up in the live set; `dead_sockets`).
//!
//! `accept_queue_full` reads the listeners the flagged dump returned before
//! it existed; local peers are resolved from the dumps' own records. Neither
//! does a kernel read of its own.
//!
//! `benches/checks.sh` (root: every process's fds)

use std::hint::black_box;
use std::time::Duration;

use closewatch::collect::procfs::{self, parse, ProcRoot};
use closewatch::collect::sockdiag::{self, ports, unix, NetlinkTransport, Wants};
use closewatch::collect::Wanted;
use criterion::{criterion_group, criterion_main, Criterion};
use rustc_hash::FxHashSet;

fn wants(
    counts: bool,
    range: Option<closewatch::model::PortRange>,
    idle: Option<Duration>,
) -> Wants {
    Wants {
        counts,
        range,
        idle,
        listen: false,
    }
}

fn per_scan(c: &mut Criterion) {
    let netns = procfs::own_netns().expect("own netns");
    let mut g = c.benchmark_group("per_scan");
    g.bench_function("flagged_dump (before)", |b| {
        b.iter(|| sockdiag::dump_tables(netns, NetlinkTransport::open, wants(false, None, None)))
    });
    g.bench_function("unix_dump (unix_close_wait)", |b| {
        b.iter(|| unix::dump_unix(netns, NetlinkTransport::open).expect("UNIX_DIAG"))
    });
    g.bench_function("netstat (accept_queue_full)", |b| {
        b.iter(|| {
            let bytes = std::fs::read("/proc/thread-self/net/netstat").expect("netstat");
            parse::listen_counters(black_box(&bytes)).expect("parse")
        })
    });
    g.finish();
}

fn periodic_dumps(c: &mut Criterion) {
    let netns = procfs::own_netns().expect("own netns");
    let range = std::fs::read("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|b| ports::parse_range(&b))
        .expect("port range");
    let mut g = c.benchmark_group("periodic");
    g.sample_size(20);
    g.bench_function("all_states_dump (before)", |b| {
        b.iter(|| sockdiag::dump_tables(netns, NetlinkTransport::open, wants(true, None, None)))
    });
    g.bench_function("all_states_dump + port tally (port_exhaustion)", |b| {
        b.iter(|| {
            sockdiag::dump_tables(
                netns,
                NetlinkTransport::open,
                wants(true, Some(range), None),
            )
        })
    });
    g.bench_function(
        "all_states_dump + port tally + idle (half_open, a report)",
        |b| {
            b.iter(|| {
                sockdiag::dump_tables(
                    netns,
                    NetlinkTransport::open,
                    wants(true, Some(range), Some(Duration::from_secs(3600))),
                )
            })
        },
    );
    g.bench_function(
        "flagged_dump + ESTABLISHED with tcp_info (half_open, agent)",
        |b| {
            b.iter(|| {
                sockdiag::dump_tables(
                    netns,
                    NetlinkTransport::open,
                    wants(false, None, Some(Duration::from_secs(3600))),
                )
            })
        },
    );
    g.finish();
}

fn walks(c: &mut Criterion) {
    let netns = procfs::own_netns().expect("own netns");
    let root = ProcRoot::new("/proc");
    let (tables, _) = sockdiag::dump_tables(netns, NetlinkTransport::open, wants(true, None, None));
    let alive: FxHashSet<u64> = tables.inodes.iter().copied().collect();
    let wanted: FxHashSet<u64> = tables
        .flagged
        .iter()
        .map(|s| s.inode)
        .chain(tables.listeners.iter().map(|l| l.inode))
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    let mut g = c.benchmark_group("full_walk");
    g.sample_size(10);
    g.bench_function("walk (before)", |b| {
        b.iter(|| {
            let pids = root.pids().expect("pids");
            root.walk(&pids, &wanted, threads).expect("walk")
        })
    });
    g.bench_function("walk + dead check (dead_sockets)", |b| {
        b.iter(|| {
            let pids = root.pids().expect("pids");
            let w = Wanted {
                sockets: &wanted,
                alive: Some(&alive),
            };
            root.walk_for(&pids, &w, threads).expect("walk")
        })
    });
    g.finish();
}

criterion_group!(benches, per_scan, periodic_dumps, walks);
criterion_main!(benches);
