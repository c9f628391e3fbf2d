//! /proc/PID/stat: the pid, a comm that may hold anything, then fields.
#![no_main]

use closewatch::collect::procfs::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(stat) = parse::stat(data) {
        // The pid is the number before the comm's '('.
        let open = data.iter().position(|&b| b == b'(').expect("a '('");
        let lead = std::str::from_utf8(&data[..open]).expect("UTF-8 pid");
        assert_eq!(lead.trim().parse::<u32>().ok(), Some(stat.pid));
    }
});
