//! /proc/net/netstat: ListenOverflows and ListenDrops of `TcpExt:`.
#![no_main]

use closewatch::collect::procfs::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if parse::listen_counters(data).is_ok() {
        // Both came from a TcpExt: pair, named in its first line.
        let mut lines = data.split(|&b| b == b'\n');
        let names = lines
            .find(|l| l.starts_with(b"TcpExt:"))
            .expect("accepted text has a TcpExt: line");
        assert!(lines.next().is_some_and(|l| l.starts_with(b"TcpExt:")));
        for name in [&b"ListenOverflows"[..], b"ListenDrops"] {
            assert!(names.windows(name.len()).any(|w| w == name));
        }
    }
});
