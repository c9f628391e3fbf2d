//! /proc/PID/cgroup: which container, pod or systemd unit a process runs in;
//! and the path helpers on the whole input as one path.
#![no_main]

use closewatch::collect::procfs::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse::unit_from_cgroup(data);
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = parse::container_from_path(path);
        let _ = parse::pod_from_path(path);
        let _ = parse::systemd_unit_from_path(path);
    }
});
