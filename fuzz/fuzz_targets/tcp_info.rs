//! The INET_DIAG_INFO attribute's value (`struct tcp_info`, any length).
#![no_main]

use closewatch::collect::sockdiag::tcp_info;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = tcp_info::parse(data);
    assert_eq!(parsed.is_ok(), data.len() >= tcp_info::MIN_LEN);
    if let Ok(info) = parsed {
        assert_eq!(info.state, data[0]);
    }
});
