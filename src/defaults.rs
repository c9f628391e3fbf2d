//! Every default, written once. The settings, the analysis and `--help`
//! (see [`crate::cli::command`]) all read them from here; the checks' default
//! levels are each check's own (`analyse/checks/`).

use std::time::Duration;

use crate::cli::Format;

/// The config read when `-c` is not given, if it exists.
pub const CONFIG: &str = "/etc/closewatch/closewatch.toml";
pub const FORMAT: Format = Format::Text;
/// `--duration`: a report scans once.
pub const DURATION: Duration = Duration::ZERO;
/// `:9958`: every address, IPv4 and IPv6, as node_exporter's `:9100`.
pub const LISTEN: crate::export::http::address::ListenAddr =
    crate::export::http::address::ListenAddr::Any(9958);
pub const INTERVAL: Duration = Duration::from_secs(15);
pub const CLOSE_WAIT_AGE: Duration = Duration::from_secs(60);
pub const FIN_WAIT2_AGE: Duration = Duration::from_secs(60);
pub const DEAD_SOCKET_AGE: Duration = Duration::from_secs(60);
pub const IDLE_AGE: Duration = Duration::from_secs(3600);
pub const MAX_PROCESSES: usize = 100;
/// Destinations using at least this share of their namespace's ephemeral
/// range have their sockets' owners named (looking them all up costs a
/// readlink per socket at every scan that counts).
pub const PORT_OWNER_FLOOR: f64 = 0.5;
pub const FD_GROWTH_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const PROC_ROOT: &str = "/proc";
/// How sockets are mapped to processes (`--attribution`).
pub const ATTRIBUTION: crate::collect::attribution::Mode = crate::collect::attribution::Mode::Auto;
pub const LOG_LEVEL: &str = "info";
pub const LOG_FORMAT: crate::logging::LogFormat = crate::logging::LogFormat::Text;
