//! One sock_diag reply datagram: split into netlink messages, each one
//! classified and its payload given to every record parser and to both
//! sinks; then the same bytes through the receive loop (`dump`), as the
//! only datagram of each attempt.
#![no_main]

use closewatch::collect::sockdiag::{self, parse, Family, Request, Sink, SocketSink, TableSink};
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

fn table() -> TableSink {
    TableSink {
        netns: NETNS,
        keep_sockets: true,
        ..TableSink::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut table_sink = table();
    let mut list = SocketSink {
        netns: NETNS,
        sockets: Vec::new(),
    };
    let mut walked = 0;
    for msg in parse::messages(data) {
        walked += 1;
        // Each message takes a header: more means the walk does not advance.
        assert!(walked <= data.len() / parse::NETLINK_HEADER_LEN + 1);
        let Ok(msg) = msg else { break };
        if msg.control() == Ok(parse::Control::Record) {
            let table_ok = table_sink.record(msg.payload).is_ok();
            let list_ok = list.record(msg.payload).is_ok();
            assert!(table_ok || !list_ok, "a socket the table sink refused");
        }
        let _ = parse::peek_state(msg.payload);
        let _ = parse::listener(msg.payload, NETNS);
        let _ = parse::socket(msg.payload, NETNS);
    }
    let kept = table_sink.sockets.len() + table_sink.listeners.len();
    assert!(kept as u64 <= table_sink.states.total());

    let req = Request {
        family: Family::V4,
        states: sockdiag::FLAGGED_STATES,
        tcp_info: true,
    };
    let mut connects = 0;
    let mut sink = table();
    let _ = sockdiag::dump(
        || {
            connects += 1;
            Ok(OneDatagram(Some(data.to_vec())))
        },
        &req,
        &mut sink,
    );
    assert!(connects <= sockdiag::MAX_ATTEMPTS);
});
