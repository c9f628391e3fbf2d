//! `--listen` addresses as node_exporter takes them, and binding them.
//!
//! `:PORT` is every address, IPv4 and IPv6 (one dual-stack socket on `[::]`,
//! or `0.0.0.0` on a host without IPv6); `HOST:PORT` is resolved once, at
//! start, and every address it resolves to is bound; `[V6]:PORT` and
//! `V4:PORT` are literal. Port 0 picks a free port per listener.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use std::os::fd::FromRawFd;

use anyhow::Context;

/// One `--listen` value, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:PORT`: every address of the host, IPv4 and IPv6.
    Any(u16),
    /// A literal address.
    Socket(SocketAddr),
    /// `HOST:PORT` with a name, resolved when the listeners are bound.
    Host(String, u16),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || {
            format!("{s:?} is not a listen address (:PORT, HOST:PORT, IPV4:PORT or [IPV6]:PORT)")
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::Socket(addr));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(syntax)?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?}: the port {port:?} is not a number from 0 to 65535"))?;
        if host.is_empty() {
            return Ok(ListenAddr::Any(port));
        }
        // A bare IPv6 address (`::1:9958`) is ambiguous: it needs brackets.
        let valid_name = host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if host.contains(':') || host.starts_with('[') || !valid_name {
            return Err(syntax());
        }
        Ok(ListenAddr::Host(host.to_string(), port))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Any(port) => write!(f, ":{port}"),
            ListenAddr::Socket(addr) => write!(f, "{addr}"),
            ListenAddr::Host(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The socket addresses to bind for `addrs`, names resolved now; a name that
/// resolves to nothing is an error.
fn resolve(addr: &ListenAddr) -> anyhow::Result<Vec<SocketAddr>> {
    match addr {
        ListenAddr::Any(port) => Ok(vec![SocketAddr::new(
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            *port,
        )]),
        ListenAddr::Socket(a) => Ok(vec![*a]),
        ListenAddr::Host(host, port) => {
            let mut found: Vec<SocketAddr> = (host.as_str(), *port)
                .to_socket_addrs()
                .with_context(|| format!("cannot resolve {host:?} (--listen {addr})"))?
                .collect();
            found.sort();
            found.dedup();
            anyhow::ensure!(!found.is_empty(), "{host:?} resolves to no address");
            Ok(found)
        }
    }
}

/// A bound, listening, non-blocking socket for `addr`. `[::]` is dual-stack
/// (IPV6_V6ONLY off), whatever `net.ipv6.bindv6only` says.
fn bind_one(addr: SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | rustix::net::SocketFlags::NONBLOCK,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    if let SocketAddr::V6(v6) = addr {
        sockopt::set_ipv6_v6only(&fd, !v6.ip().is_unspecified())?;
    }
    rustix::net::bind(&fd, &addr)?;
    // The kernel caps the backlog at net.core.somaxconn.
    rustix::net::listen(&fd, backlog)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Binds every address of `addrs`. `:PORT` falls back to `0.0.0.0` where
/// the kernel has no IPv6; an address a name resolves to that the host does
/// not have is skipped with a warning, as long as one of the name's binds.
pub fn bind(addrs: &[ListenAddr], backlog: i32) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let mut bound_any = false;
        for sock in resolve(addr)? {
            match bind_one(sock, backlog) {
                Ok(l) => {
                    listeners.push(l);
                    bound_any = true;
                }
                Err(e) if matches!(addr, ListenAddr::Any(_)) && no_ipv6(&e) => {
                    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), sock.port());
                    log::info!("no IPv6 here ({e}): --listen {addr} listens on {v4}");
                    listeners.push(
                        bind_one(v4, backlog)
                            .with_context(|| format!("cannot listen on {v4} (--listen {addr})"))?,
                    );
                    bound_any = true;
                }
                Err(e) if matches!(addr, ListenAddr::Host(..)) && no_such_address(&e) => {
                    log::warn!("--listen {addr}: skipping {sock}, which this host lacks: {e}");
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot listen on {sock} (--listen {addr})"))
                }
            }
        }
        anyhow::ensure!(bound_any, "cannot listen on any address of {addr}");
    }
    Ok(listeners)
}

/// The first fd systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The listening sockets systemd passed (socket activation, as
/// node_exporter's `--web.systemd-socket`): `LISTEN_FDS` of them from fd 3,
/// if `LISTEN_PID` is this process. Each must be a listening TCP socket.
/// The variables are removed, as `sd_listen_fds(1)` does.
pub fn inherited() -> anyhow::Result<Vec<std::net::TcpListener>> {
    let pid = std::env::var("LISTEN_PID").context("LISTEN_PID is not set: not socket-activated")?;
    anyhow::ensure!(
        pid.trim().parse::<u32>().ok() == Some(std::process::id()),
        "LISTEN_PID={pid} is not this process ({}): the sockets are not ours",
        std::process::id()
    );
    let n: i32 = std::env::var("LISTEN_FDS")
        .context("LISTEN_FDS is not set")?
        .trim()
        .parse()
        .context("LISTEN_FDS is not a number")?;
    anyhow::ensure!(n >= 1, "systemd passed no socket (LISTEN_FDS={n})");
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    (LISTEN_FDS_START..LISTEN_FDS_START + n)
        .map(|raw| {
            // SAFETY: systemd hands these fds to this process (LISTEN_PID
            // checked above) and nothing else in it owns them.
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
            let listening = rustix::net::sockopt::socket_acceptconn(&fd)
                .with_context(|| format!("fd {raw} from systemd is not a socket"))?;
            anyhow::ensure!(listening, "fd {raw} from systemd is not a listening socket");
            let kind = rustix::net::sockopt::socket_type(&fd)?;
            anyhow::ensure!(
                kind == rustix::net::SocketType::STREAM,
                "fd {raw} from systemd is not a stream socket"
            );
            rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .collect()
}

fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

fn no_such_address(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_node_exporter_takes_parses() {
        let p = |s: &str| s.parse::<ListenAddr>();
        assert_eq!(p(":9958"), Ok(ListenAddr::Any(9958)));
        assert_eq!(
            p("127.0.0.1:0"),
            Ok(ListenAddr::Socket("127.0.0.1:0".parse().expect("addr")))
        );
        assert_eq!(
            p("[::1]:9958"),
            Ok(ListenAddr::Socket("[::1]:9958".parse().expect("addr")))
        );
        assert_eq!(
            p("localhost:9958"),
            Ok(ListenAddr::Host("localhost".into(), 9958))
        );
        assert_eq!(
            p("node-1.example.com:80"),
            Ok(ListenAddr::Host("node-1.example.com".into(), 80))
        );
        for bad in [
            "9958",
            "::1:9958",
            "[::1]",
            "host:",
            "host:99999",
            ":-1",
            "a b:1",
            "",
            ":",
            "[x]:1",
            "host..x:1",
        ] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_is_the_form_it_was_given_in() {
        for s in [":9958", "127.0.0.1:9958", "[::1]:9958", "localhost:1"] {
            assert_eq!(s.parse::<ListenAddr>().expect(s).to_string(), s);
        }
    }

    #[test]
    fn a_port_of_every_address_answers_on_v4_and_v6() {
        let listeners = bind(&[ListenAddr::Any(0)], 16).expect("bind :0");
        let port = listeners[0].local_addr().expect("addr").port();
        for ip in ["127.0.0.1", "::1"] {
            let ip: IpAddr = ip.parse().expect("ip");
            std::net::TcpStream::connect((ip, port))
                .unwrap_or_else(|e| panic!("connect to {ip} port {port}: {e}"));
        }
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let first = bind(&[ListenAddr::Any(0)], 16).expect("bind :0");
        let port = first[0].local_addr().expect("addr").port();
        let e = bind(
            &["127.0.0.1:0".parse().expect("addr"), ListenAddr::Any(port)],
            16,
        )
        .expect_err("in use");
        let msg = format!("{e:#}");
        assert!(msg.contains(&format!("--listen :{port}")), "{msg}");
        assert!(msg.contains("in use"), "{msg}");
    }
}
