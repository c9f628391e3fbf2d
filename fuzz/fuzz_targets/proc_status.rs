//! /proc/PID/status: the uids, gids and capability sets the access rules
//! compare (through procfs's parser).
#![no_main]

use closewatch::collect::procfs::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = parse::credentials(data) {
        let text = String::from_utf8_lossy(data);
        let has = |name: &str| text.lines().any(|l| l.starts_with(name));
        assert!(has("Uid:") && has("CapPrm:") && has("CapEff:"), "{c:?}");
    }
});
