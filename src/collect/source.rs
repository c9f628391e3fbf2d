//! Where TCP tables come from: the kernel (sock_diag netlink in the calling
//! thread's namespace), or a recording of it (the hidden `--replay-sockdiag`,
//! for tests and to replay a report from a bug report).

use std::io;
use std::path::PathBuf;

use rustc_hash::FxHashSet;

use super::procfs::parse::TcpSockstat;
use super::{procfs, sockdiag};
use crate::model::NetnsId;

/// Where TCP tables come from: the kernel, or a recording of it.
pub trait SocketSource: Send + Sync + std::fmt::Debug {
    /// The namespace the dumps describe.
    fn namespace(&self) -> io::Result<NetnsId>;
    /// Dumps both families of the calling thread's namespace: the flagged
    /// sockets and the listeners, and what `wants` asks for besides (the
    /// source fills in the namespace's port range). Given `held` (every
    /// TCP socket a process holds in the namespace, each once), a source
    /// that can looks those up instead where the namespace's counters show
    /// they are all its sockets (see [`sockdiag::lookup`]).
    fn tables(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
        held: Option<&[sockdiag::lookup::Exact]>,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>);
    /// Whether the other namespaces of the host can be entered and dumped
    /// (a recording holds only its own).
    fn every_namespace(&self) -> bool;
    /// The TCP counters of the calling thread's namespace, if the source
    /// has them (a recording has not).
    fn tcp_counters(&self) -> Option<TcpSockstat> {
        None
    }
    /// Which of `candidates` are in a TCP table of the calling thread's
    /// namespace, in any state: a second look at the sockets a walk found
    /// in no table. `None` if a family could not be dumped.
    fn found_among(&self, netns: NetnsId, candidates: &FxHashSet<u64>) -> Option<FxHashSet<u64>> {
        let (t, errors) = self.tables(netns, ALL_STATES, None);
        (t.counted && errors.is_empty()).then(|| {
            t.inodes
                .into_iter()
                .filter(|i| candidates.contains(i))
                .collect()
        })
    }
}

/// The all-states dump alone.
const ALL_STATES: sockdiag::Wants = sockdiag::Wants {
    counts: true,
    range: None,
    idle: None,
    listen: false,
};

/// The TCP counters of the calling thread's network namespace, in
/// /proc/thread-self/net ([`procfs::NetDir`]).
const NETSTAT: &str = "netstat";
const SOCKSTAT: &str = "sockstat";
/// Absent when IPv6 is disabled.
const SOCKSTAT6: &str = "sockstat6";

/// The ephemeral port range of the opener's network namespace.
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// sock_diag netlink in the calling thread's network namespace.
#[derive(Debug, Default)]
pub struct Netlink;

impl SocketSource for Netlink {
    fn namespace(&self) -> io::Result<NetnsId> {
        procfs::own_netns()
    }

    fn tcp_counters(&self) -> Option<TcpSockstat> {
        let read = || -> Result<TcpSockstat, String> {
            let net = procfs::NetDir::open().map_err(|e| format!("{}: {e}", procfs::NET_DIR))?;
            let v4 = net
                .read(SOCKSTAT)
                .map_err(|e| format!("{}/{SOCKSTAT}: {e}", procfs::NET_DIR))?;
            let v6 = match net.read(SOCKSTAT6) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(format!("{}/{SOCKSTAT6}: {e}", procfs::NET_DIR)),
            };
            procfs::parse::tcp_sockstat(&v4, v6.as_deref()).map_err(|e| format!("sockstat: {e}"))
        };
        read()
            .inspect_err(|e| log::debug!("{e}: TCP tables dumped"))
            .ok()
    }

    fn tables(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
        held: Option<&[sockdiag::lookup::Exact]>,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        // The calling thread's namespace answers: net sysctls follow the
        // opener's namespace. Read only when every socket is counted, and
        // the caller does not know it already (from the BPF TCP pass).
        let range = wants.counts.then(|| match wants.range {
            Some(known) => Ok(known),
            None => procfs::read_small(PORT_RANGE)
                .map_err(|e| format!("{PORT_RANGE}: {e}"))
                .and_then(|b| {
                    sockdiag::ports::parse_range(&b)
                        .ok_or_else(|| format!("{PORT_RANGE}: malformed"))
                }),
        });
        let wants = sockdiag::Wants {
            range: range.clone().and_then(Result::ok),
            ..wants
        };
        let looked_up = held.and_then(|held| self.looked_up(netns, wants, held));
        let (mut tables, errors) = match looked_up {
            Some(tables) => (tables, Vec::new()),
            None => sockdiag::dump_tables(netns, sockdiag::NetlinkTransport::open, wants),
        };
        tables.port_range_error = range.and_then(Result::err);
        match sockdiag::unix::dump_unix(netns, sockdiag::NetlinkTransport::open) {
            Ok(unix) => tables.unix = unix,
            Err(e) => tables.unix_error = Some(e),
        }
        tables.listen = wants.listen.then(|| {
            procfs::NetDir::open()
                .and_then(|net| net.read(NETSTAT))
                .map_err(|e| format!("{}/{NETSTAT}: {e}", procfs::NET_DIR))
                .and_then(|b| {
                    procfs::parse::listen_counters(&b)
                        .map_err(|e| format!("{}/{NETSTAT}: {e}", procfs::NET_DIR))
                })
        });
        (tables, errors)
    }

    fn every_namespace(&self) -> bool {
        true
    }

    fn found_among(&self, netns: NetnsId, candidates: &FxHashSet<u64>) -> Option<FxHashSet<u64>> {
        match sockdiag::found_among(sockdiag::NetlinkTransport::open, candidates) {
            Ok(found) => Some(found),
            Err(e) => {
                log::debug!("netns {netns}: second all-states dump: {e}");
                None
            }
        }
    }
}

impl Netlink {
    /// The tables from lookups of `held`, if the counters show those are
    /// all the namespace's sockets and every lookup finds its socket.
    fn looked_up(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
        held: &[sockdiag::lookup::Exact],
    ) -> Option<sockdiag::TcpTables> {
        let counters = self.tcp_counters()?;
        if let Err(why) = sockdiag::lookup::complete(&counters, held) {
            log::debug!("netns {netns}: TCP tables dumped: {why}");
            return None;
        }
        let looked = sockdiag::NetlinkTransport::open()
            .map_err(sockdiag::DumpError::from)
            .and_then(|t| {
                let mut lookups = sockdiag::lookup::Lookups::new(t, held);
                sockdiag::fill_tables(netns, &mut lookups, wants)
            });
        match looked {
            Ok(tables) => {
                log::debug!(
                    "netns {netns}: TCP tables from {} lookups, no dump",
                    held.len()
                );
                Some(sockdiag::TcpTables {
                    looked_up: true,
                    ..tables
                })
            }
            Err(e) => {
                log::debug!("netns {netns}: TCP tables dumped: a lookup failed: {e}");
                None
            }
        }
    }
}

/// Recorded dumps (see [`sockdiag::replay`]); the namespace id is read from
/// the recording's `netns` file.
#[derive(Debug)]
pub struct Recorded {
    pub dir: PathBuf,
}

impl SocketSource for Recorded {
    fn namespace(&self) -> io::Result<NetnsId> {
        let text = std::fs::read_to_string(self.dir.join("netns"))?;
        text.trim()
            .parse()
            .map(NetnsId)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netns file: {e}")))
    }

    fn tables(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
        _held: Option<&[sockdiag::lookup::Exact]>,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        // A recording holds the count dumps: replay them every time, with
        // the namespace's port range and its ESTABLISHED dump if they were
        // recorded.
        let dir = self.dir.clone();
        let range = std::fs::read(self.dir.join("port_range"))
            .ok()
            .and_then(|b| sockdiag::ports::parse_range(&b));
        let established = self.dir.join("any-established").is_dir();
        let wants = sockdiag::Wants {
            counts: true,
            range,
            idle: wants.idle.filter(|_| established),
            listen: false,
        };
        sockdiag::dump_tables(
            netns,
            move || Ok(sockdiag::replay::Replay::new(&dir)),
            wants,
        )
    }

    fn every_namespace(&self) -> bool {
        false
    }
}
