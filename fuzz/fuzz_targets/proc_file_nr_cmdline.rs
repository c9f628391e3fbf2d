//! /proc/sys/fs/file-nr and /proc/PID/cmdline. The first byte of the input
//! is the cmdline's length limit; the rest is the file.
#![no_main]

use closewatch::collect::procfs::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&max, text)) = data.split_first() else {
        return;
    };
    if let Ok(nr) = parse::file_nr(text) {
        assert!(nr.open() <= nr.allocated);
    }
    let line = parse::cmdline(text, usize::from(max));
    assert!(!line.contains('\0'));
    assert!(line.chars().count() <= usize::from(max) + 1);
});
