//! Where TCP tables come from: the kernel (sock_diag netlink in the calling
//! thread's namespace), or a recording of it (the hidden `--replay-sockdiag`,
//! for tests and to replay a report from a bug report).

use std::io;
use std::path::PathBuf;

use rustc_hash::FxHashSet;

use super::{procfs, sockdiag};
use crate::model::NetnsId;

/// Where TCP tables come from: the kernel, or a recording of it.
pub trait SocketSource: Send + Sync + std::fmt::Debug {
    /// The namespace the dumps describe.
    fn namespace(&self) -> io::Result<NetnsId>;
    /// Dumps both families of the calling thread's namespace: the flagged
    /// sockets and the listeners, and what `wants` asks for besides (the
    /// source fills in the namespace's port range).
    fn tables(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>);
    /// Whether the other namespaces of the host can be entered and dumped
    /// (a recording holds only its own).
    fn every_namespace(&self) -> bool;
    /// Which of `candidates` are in a TCP table of the calling thread's
    /// namespace, in any state: a second look at the sockets a walk found
    /// in no table. `None` if a family could not be dumped.
    fn found_among(&self, netns: NetnsId, candidates: &FxHashSet<u64>) -> Option<FxHashSet<u64>> {
        let (t, errors) = self.tables(netns, ALL_STATES);
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
};

/// The TCP counters of the calling thread's network namespace.
const NETSTAT: &str = "/proc/thread-self/net/netstat";

/// The ephemeral port range of the opener's network namespace.
const PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// sock_diag netlink in the calling thread's network namespace.
#[derive(Debug, Default)]
pub struct Netlink;

impl SocketSource for Netlink {
    fn namespace(&self) -> io::Result<NetnsId> {
        procfs::own_netns()
    }

    fn tables(
        &self,
        netns: NetnsId,
        wants: sockdiag::Wants,
    ) -> (sockdiag::TcpTables, Vec<sockdiag::FamilyError>) {
        // The calling thread's namespace answers: net sysctls follow the
        // opener's namespace. Read only when every socket is counted.
        let range = wants.counts.then(|| {
            std::fs::read(PORT_RANGE)
                .map_err(|e| format!("{PORT_RANGE}: {e}"))
                .and_then(|b| {
                    sockdiag::ports::parse_range(&b)
                        .ok_or_else(|| format!("{PORT_RANGE}: malformed"))
                })
        });
        let wants = sockdiag::Wants {
            range: range.clone().and_then(Result::ok),
            ..wants
        };
        let (mut tables, errors) =
            sockdiag::dump_tables(netns, sockdiag::NetlinkTransport::open, wants);
        tables.port_range_error = range.and_then(Result::err);
        match sockdiag::unix::dump_unix(netns, sockdiag::NetlinkTransport::open) {
            Ok(unix) => tables.unix = unix,
            Err(e) => tables.unix_error = Some(e),
        }
        tables.listen = Some(
            std::fs::read(NETSTAT)
                .map_err(|e| format!("{NETSTAT}: {e}"))
                .and_then(|b| {
                    procfs::parse::listen_counters(&b).map_err(|e| format!("{NETSTAT}: {e}"))
                }),
        );
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
