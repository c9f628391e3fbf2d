//! /proc/PID/limits: the soft "Max open files".
#![no_main]

use closewatch::collect::procfs::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if parse::max_open_files(data).is_ok() {
        let text = std::str::from_utf8(data).expect("accepted text is UTF-8");
        assert!(text.lines().any(|l| l.starts_with("Max open files")));
    }
});
