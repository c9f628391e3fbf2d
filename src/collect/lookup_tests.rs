//! On the running kernel, in a network namespace of its own: the TCP
//! tables read by lookups of the sockets the BPF pass found held are the
//! tables a dump gives, and the namespace's counters tell when they would
//! not be (a connection no process holds, TIME_WAIT), as does a lookup of a
//! socket closed since the pass. Needs root (unshare, BPF).

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use super::bpf::Iterators;
use super::sockdiag::lookup::{complete, Exact, Incomplete, Lookups};
use super::sockdiag::{self, NetlinkTransport, TcpTables, Wants};
use super::source::{Netlink, SocketSource};
use crate::model::{NetnsId, PortRange, TcpState};

/// Brings `lo` up in the calling thread's namespace.
fn loopback_up() {
    // SAFETY: plain ioctls on a socket this function owns; `ifreq` is
    // zeroed and holds a NUL-terminated name.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *s as libc::c_char;
        }
        assert_eq!(
            libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req),
            0,
            "SIOCGIFFLAGS"
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0, "SIOCSIFFLAGS");
        libc::close(fd);
    }
}

/// Every TCP socket a process holds in namespace `netns`, each once.
fn held_in(iterators: &mut Iterators, netns: NetnsId) -> Vec<Exact> {
    let mut held: Vec<Exact> = Vec::new();
    iterators
        .tcp_sockets(|r| {
            if u64::from(r.netns) == netns.0 && !held.iter().any(|e| e.inode == r.socket.inode) {
                held.push(r.socket);
            }
        })
        .expect("the TCP socket pass");
    held
}

/// Waits (10 s at most) until `s` is in TCP state `state`.
fn wait_state(s: &TcpStream, state: u8) {
    use std::os::fd::AsRawFd;
    for _ in 0..1000 {
        // SAFETY: tcp_info is plain old data; all-zero is valid, and info
        // and len describe a writable buffer of its size.
        let now = unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            assert_eq!(rc, 0, "TCP_INFO");
            info.tcpi_state
        };
        if now == state {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the socket never reached state {state}");
}

fn inode(fd: &impl std::os::fd::AsFd) -> u64 {
    rustix::fs::fstat(fd).expect("fstat").st_ino
}

/// What a table says, in an order that does not depend on the kernel's
/// (tcp_info's times are left out: the two reads are moments apart).
fn summary(t: TcpTables) -> String {
    let mut flagged: Vec<_> = t
        .flagged
        .iter()
        .map(|s| (s.inode, s.state, s.local, s.remote, s.recv_q, s.send_q))
        .collect();
    flagged.sort_unstable();
    let mut listeners: Vec<_> = t
        .listeners
        .iter()
        .map(|l| (l.inode, l.local, l.queue, l.backlog))
        .collect();
    listeners.sort_unstable();
    let mut inodes = t.inodes.clone();
    inodes.sort_unstable();
    let idle = t.idle.as_ref().map(|i| {
        let mut c: Vec<_> = i.candidates.iter().map(|s| s.inode).collect();
        c.sort_unstable();
        let mut l = i.local.clone();
        l.sort_unstable();
        (c, l)
    });
    // A destination's sockets come in the kernel's order, which differs
    // between a dump and lookups.
    let ports = t.ports.map(|p| {
        let mut p = p.finish();
        for d in &mut p.destinations {
            d.inodes.sort_unstable();
        }
        p
    });
    format!(
        "states {:?}\nflagged {flagged:?}\nlisteners {listeners:?}\ninodes {inodes:?}\nidle {idle:?}\nports {ports:?}\ncounted {}",
        t.states, t.counted
    )
}

fn looked_up(
    netns: NetnsId,
    held: &[Exact],
    wants: Wants,
) -> Result<TcpTables, sockdiag::DumpError> {
    let transport = NetlinkTransport::open().expect("netlink socket");
    sockdiag::fill_tables(netns, &mut Lookups::new(transport, held), wants)
}

#[test]
fn lookups_of_the_held_sockets_give_the_dumps_tables_on_this_kernel() {
    std::thread::spawn(|| {
        // SAFETY: only this thread's network namespace is unshared, and the
        // thread ends with the test.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
            .expect("unshare(CLONE_NEWNET): run as root");
        loopback_up();
        let netns = crate::collect::procfs::own_netns().expect("own netns");
        // A port range of its own, which the TCP pass must read.
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40999")
            .expect("set the namespace's port range");

        // Every socket held: a listener of each family, an idle connection
        // of each, and a half-closed pair (FIN_WAIT_2 and CLOSE_WAIT).
        let l4 = TcpListener::bind("127.0.0.1:0").expect("listen v4");
        let l6 = TcpListener::bind("[::1]:0").expect("listen v6");
        let c4 = TcpStream::connect(l4.local_addr().expect("addr")).expect("connect v4");
        let (s4, _) = l4.accept().expect("accept v4");
        let c6 = TcpStream::connect(l6.local_addr().expect("addr")).expect("connect v6");
        let (s6, _) = l6.accept().expect("accept v6");
        let mut half = TcpStream::connect(l4.local_addr().expect("addr")).expect("connect");
        let (closing, _) = l4.accept().expect("accept");
        half.write_all(b"unread").expect("write");
        half.shutdown(Shutdown::Write).expect("shutdown");
        wait_state(&closing, 8); // CLOSE_WAIT
        wait_state(&half, 5); // FIN_WAIT_2
        let sockets = [
            inode(&l4),
            inode(&l6),
            inode(&c4),
            inode(&s4),
            inode(&c6),
            inode(&s6),
            inode(&half),
            inode(&closing),
        ];

        let mut iterators = Iterators::load().expect("load the iterators");
        let held = held_in(&mut iterators, netns);
        let mut found: Vec<u64> = held.iter().map(|e| e.inode).collect();
        found.sort_unstable();
        let mut expected = sockets.to_vec();
        expected.sort_unstable();
        assert_eq!(
            found, expected,
            "the pass finds every socket held here, once"
        );
        let counters = Netlink.tcp_counters().expect("sockstat");
        assert_eq!((counters.inuse, counters.inuse6, counters.tw), (5, 3, 0));
        assert_eq!(complete(&counters, &held), Ok(()));
        let mut ranges = Vec::new();
        iterators
            .tcp_sockets(|r| {
                if u64::from(r.netns) == netns.0 {
                    ranges.push(r.port_range);
                }
            })
            .expect("the TCP socket pass");
        let own = Some(PortRange {
            low: 40000,
            high: 40999,
        });
        assert!(
            ranges.len() == sockets.len() && ranges.iter().all(|r| *r == own),
            "{ranges:?}"
        );

        let wants = |counts| Wants {
            counts,
            range: Some(PortRange {
                low: 32768,
                high: 60999,
            }),
            idle: Some(Duration::ZERO),
            listen: false,
        };
        for counts in [true, false] {
            let (dumped, errors) =
                sockdiag::dump_tables(netns, NetlinkTransport::open, wants(counts));
            assert!(errors.is_empty(), "{errors:?}");
            let looked = looked_up(netns, &held, wants(counts)).expect("lookups");
            assert_eq!(summary(looked), summary(dumped), "counts {counts}");
        }
        // The listen counters are read only when asked for (the agent's).
        for listen in [false, true] {
            let (t, _) = Netlink.tables(
                netns,
                Wants {
                    listen,
                    ..wants(true)
                },
                None,
            );
            assert_eq!(t.listen.is_some(), listen);
            assert!(t.listen.is_none_or(|l| l.is_ok()), "netstat read");
        }
        let dumped = sockdiag::dump_tables(netns, NetlinkTransport::open, wants(true)).0;
        assert_eq!(dumped.states.get(TcpState::CloseWait), 1);
        assert_eq!(dumped.flagged.len(), 2, "{}", summary(dumped));

        // A connection nobody accepted yet is in the tables, held by none.
        let queued = TcpStream::connect(l4.local_addr().expect("addr")).expect("connect");
        let counters = Netlink.tcp_counters().expect("sockstat");
        assert!(
            matches!(
                complete(&counters, &held_in(&mut iterators, netns)),
                Err(Incomplete::Unheld { family: "IPv4", .. })
            ),
            "{counters:?}"
        );
        let (accepted, _) = l4.accept().expect("accept");
        let held = held_in(&mut iterators, netns);
        assert_eq!(
            complete(&Netlink.tcp_counters().expect("sockstat"), &held),
            Ok(())
        );

        // A socket closed since the pass: its lookup fails, so does the fill.
        drop(c6);
        drop(s6);
        let err = looked_up(netns, &held, wants(true)).expect_err("a socket is gone");
        assert!(matches!(err, sockdiag::DumpError::Changed(_)), "{err}");

        // The active closer of a finished connection waits in TIME_WAIT.
        drop(queued);
        drop(accepted);
        std::thread::sleep(Duration::from_millis(50));
        let counters = Netlink.tcp_counters().expect("sockstat");
        assert!(
            matches!(
                complete(&counters, &held_in(&mut iterators, netns)),
                Err(Incomplete::TimeWait(_))
            ),
            "{counters:?}"
        );
        drop((l4, l6, c4, s4, half, closing));
    })
    .join()
    .expect("the test thread");
}
