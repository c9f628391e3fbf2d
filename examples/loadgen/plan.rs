//! The load each worker builds, derived from the options and checked against
//! the host's limits before anything is forked.

use std::io;
use std::net::Ipv4Addr;
use std::time::Instant;

use crate::Options;

/// Fds a worker needs besides its sockets and files (stdio, the report pipe)
/// plus slack.
const FD_MARGIN: u64 = 16;
/// Kernel memory per idle connected socket (slab: tcp_sock, inode, dentry,
/// file), measured here at 4.5 KiB: used only to warn before a load that won't
/// fit.
const KIB_PER_SOCKET: u64 = 5;
/// Largest batch of connections made before they are accepted.
const MAX_BATCH: usize = 256;
/// Default share of connections left in CLOSE_WAIT.
pub const DEFAULT_CLOSE_WAIT_PCT: f64 = 10.0;

/// What every worker builds.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub connections: usize,
    /// Connections whose accepted end is left in CLOSE_WAIT.
    pub close_wait: usize,
    /// Of those, the ones whose client shuts down and keeps its socket; the
    /// other clients close (orphans).
    pub fin_wait2_owned: usize,
    pub files: usize,
    pub backlog: i32,
    pub batch: usize,
    pub sources: usize,
    pub deadline: Instant,
}

impl Plan {
    pub fn orphans(&self) -> usize {
        self.close_wait - self.fin_wait2_owned
    }

    /// TCP sockets a worker holds once ready: the listener, both ends of every
    /// connection, minus the closed clients.
    pub fn sockets_held(&self) -> usize {
        1 + 2 * self.connections - self.orphans()
    }

    /// Is connection `i` one of the `close_wait` (spread evenly)?
    pub fn is_close_wait(&self, i: usize) -> bool {
        spread(i, self.close_wait, self.connections)
    }

    /// Does the `j`-th CLOSE_WAIT connection's client keep its socket?
    pub fn keeps_client(&self, j: usize) -> bool {
        spread(j, self.fin_wait2_owned, self.close_wait)
    }
}

/// True for `k` of the indices `0..n`, evenly spaced.
fn spread(i: usize, k: usize, n: usize) -> bool {
    n > 0 && (i + 1) * k / n != i * k / n
}

fn share(n: usize, pct: f64) -> usize {
    ((n as f64) * pct / 100.0).round() as usize
}

/// Host settings that bound the load.
pub struct Host {
    somaxconn: u64,
    port_range: (u64, u64),
    file_max: u64,
    files_open: u64,
    mem_available_kib: Option<u64>,
    tcp_max_orphans: Option<u64>,
    tcp_max_tw_buckets: Option<u64>,
    nf_conntrack_max: Option<u64>,
}

fn sysctl(name: &str) -> io::Result<String> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn sysctl_numbers(name: &str) -> io::Result<Vec<u64>> {
    sysctl(name)?
        .split_whitespace()
        .map(|w| {
            w.parse().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{name} = {w:?}: {e}"))
            })
        })
        .collect()
}

fn sysctl_u64(name: &str) -> io::Result<u64> {
    sysctl_numbers(name)?
        .first()
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{name} is empty")))
}

impl Host {
    pub fn read() -> io::Result<Host> {
        let range = sysctl_numbers("net.ipv4.ip_local_port_range")?;
        let file_nr = sysctl_numbers("fs.file-nr")?;
        let mem_available_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        });
        Ok(Host {
            somaxconn: sysctl_u64("net.core.somaxconn")?,
            port_range: (
                range.first().copied().unwrap_or(32768),
                range.get(1).copied().unwrap_or(60999),
            ),
            file_max: sysctl_u64("fs.file-max")?,
            files_open: file_nr.first().copied().unwrap_or(0),
            mem_available_kib,
            tcp_max_orphans: sysctl_u64("net.ipv4.tcp_max_orphans").ok(),
            tcp_max_tw_buckets: sysctl_u64("net.ipv4.tcp_max_tw_buckets").ok(),
            nf_conntrack_max: sysctl_u64("net.netfilter.nf_conntrack_max").ok(),
        })
    }
}

/// Raises the soft fd limit to the hard one and returns it.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_max)
}

/// Checks the load against the host and derives the per-worker plan.
pub fn for_host(o: &Options, host: &Host, nofile: u64, start: Instant) -> Result<Plan, String> {
    let connections = o.sockets / 2;
    let per_worker = (2 * connections + 1 + o.files) as u64 + FD_MARGIN;
    if per_worker > nofile {
        return Err(format!(
            "a worker would need {per_worker} fds ({} sockets + 1 listener + {} files + {FD_MARGIN} \
             spare) but RLIMIT_NOFILE allows {nofile} per process: use more --processes and \
             fewer --sockets",
            2 * connections,
            o.files
        ));
    }
    let total_fds = per_worker * o.processes as u64;
    let free_files = host.file_max.saturating_sub(host.files_open);
    if total_fds > free_files {
        return Err(format!(
            "{total_fds} fds needed but fs.file-max leaves {free_files} ({} of {} in use)",
            host.files_open, host.file_max
        ));
    }
    let close_wait = share(connections, o.close_wait_pct);
    let fin_wait2_owned = share(connections, o.fin_wait2_pct).min(close_wait);
    let orphans = (close_wait - fin_wait2_owned) as u64 * o.processes as u64;
    for (limit, name) in [
        (host.tcp_max_orphans, "net.ipv4.tcp_max_orphans"),
        (host.tcp_max_tw_buckets, "net.ipv4.tcp_max_tw_buckets"),
    ] {
        if let Some(limit) = limit.filter(|&l| orphans > l) {
            eprintln!(
                "loadgen: warning: {orphans} orphans exceed {name} = {limit}; the kernel will \
                 destroy the excess at once (\"too many orphaned sockets\" / \"time wait bucket \
                 table overflow\" in dmesg)"
            );
        }
    }
    let total_connections = (connections * o.processes) as u64;
    if let Some(max) = host.nf_conntrack_max.filter(|&m| total_connections > m) {
        eprintln!(
            "loadgen: warning: {total_connections} connections exceed nf_conntrack_max = {max}; \
             if conntrack tracks loopback here, connects will stall"
        );
    }
    let sockets = total_connections * 2 + o.processes as u64;
    if let Some(avail) = host
        .mem_available_kib
        .filter(|&a| sockets * KIB_PER_SOCKET > a / 2)
    {
        eprintln!(
            "loadgen: warning: {sockets} sockets need about {} MiB of kernel memory; {} MiB \
             available",
            sockets * KIB_PER_SOCKET / 1024,
            avail / 1024
        );
    }
    // The backlog is capped by somaxconn; batches stay at half of it so that a
    // connection never finds the accept queue full.
    let backlog = host.somaxconn.clamp(2, 4096);
    let batch = ((backlog / 2) as usize).clamp(1, MAX_BATCH);
    // Ports are unique per (source, destination) pair; use half the range at
    // most per source address.
    let ports = (host.port_range.1.saturating_sub(host.port_range.0) / 2).max(1) as usize;
    let sources = connections.div_ceil(ports).max(4);
    if o.processes * sources > 250 * 250 * 100 {
        return Err("too many source addresses needed".into());
    }
    Ok(Plan {
        connections,
        close_wait,
        fin_wait2_owned,
        files: o.files,
        backlog: backlog as i32,
        batch,
        sources,
        deadline: start + o.timeout,
    })
}

/// Source address `a` of worker `w`: 127.100.0.1 upwards, never .0 or .255.
pub fn source_address(w: usize, a: usize, sources: usize) -> Ipv4Addr {
    let g = w * sources + a;
    Ipv4Addr::new(
        127,
        100 + (g / (250 * 250)) as u8,
        1 + ((g / 250) % 250) as u8,
        1 + (g % 250) as u8,
    )
}
