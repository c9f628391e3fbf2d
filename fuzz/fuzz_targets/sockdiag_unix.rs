//! One UNIX_DIAG reply datagram: split into netlink messages, each payload
//! given to the record parser (whose answer must agree with the peer-closed
//! rule) and the records to the sink; then the same bytes through
//! `dump_unix`, as the only datagram of each attempt.
#![no_main]

use closewatch::collect::sockdiag::unix::{self, UnixSink};
use closewatch::collect::sockdiag::{self, parse, Sink};
use closewatch::model::NetnsId;
use libfuzzer_sys::fuzz_target;

const NETNS: NetnsId = NetnsId(1);

/// Answers each connection's request with the input, then end of file.
struct OneDatagram(Option<Vec<u8>>);

impl sockdiag::Transport for OneDatagram {
    fn send(&mut self, _request: &[u8]) -> std::io::Result<()> {
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        buf.clear();
        let Some(d) = self.0.take() else {
            return Ok(0);
        };
        let n = d.len().min(buf.capacity());
        buf.extend_from_slice(&d[..n]);
        Ok(d.len())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut sink = UnixSink {
        netns: NETNS,
        ..UnixSink::default()
    };
    let mut parsed_connected = 0u64;
    let mut walked = 0;
    for msg in parse::messages(data) {
        walked += 1;
        // Each message takes a header: more means the walk does not advance.
        assert!(walked <= data.len() / parse::NETLINK_HEADER_LEN + 1);
        let Ok(msg) = msg else { break };
        let parsed = unix::socket(msg.payload, NETNS);
        if let Ok(s) = &parsed {
            assert!(msg.payload.len() >= unix::UNIX_DIAG_MSG_LEN);
            assert_eq!(msg.payload[0], unix::AF_UNIX);
            if s.peer_closed() {
                assert!(s.kind.is_connection() && s.state == unix::UNIX_ESTABLISHED);
            }
        }
        if msg.control() == Ok(parse::Control::Record) {
            assert_eq!(sink.record(msg.payload).is_ok(), parsed.is_ok());
            if parsed
                .as_ref()
                .is_ok_and(|s| s.state == unix::UNIX_ESTABLISHED)
            {
                parsed_connected += 1;
            }
        }
    }
    assert_eq!(sink.connected, parsed_connected);
    assert!(sink.peer_closed.len() as u64 <= sink.connected);

    let mut connects = 0;
    let table = unix::dump_unix(NETNS, || {
        connects += 1;
        Ok(OneDatagram(Some(data.to_vec())))
    });
    assert!(connects <= sockdiag::MAX_ATTEMPTS);
    if let Ok(t) = table {
        assert!(t.peer_closed.iter().all(|s| s.peer_closed()));
        assert!(t.peer_closed.len() as u64 <= t.connected);
    }
});
