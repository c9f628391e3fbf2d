//! Link targets: readlink of /proc/PID/fd/N and of /proc/PID/ns/net.
#![no_main]

use closewatch::collect::procfs::parse::{self, FdTarget};
use libfuzzer_sys::fuzz_target;

/// The number of `prefix[digits]`, read independently of the parser.
fn bracketed(data: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = data.strip_prefix(prefix)?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fuzz_target!(|data: &[u8]| {
    match parse::fd_target(data) {
        FdTarget::Socket(inode) => assert_eq!(bracketed(data, b"socket:["), Some(inode)),
        FdTarget::File | FdTarget::MaybeDeleted => assert!(data.starts_with(b"/")),
        FdTarget::Pipe => assert!(data.starts_with(b"pipe:[")),
        FdTarget::AnonInode => assert!(data.starts_with(b"anon_inode:")),
        FdTarget::Other => {}
    }
    let path = parse::deleted_path(data);
    assert!(data.starts_with(path));
    if let Some(inode) = parse::netns_link(data) {
        assert_eq!(bracketed(data, b"net:["), Some(inode));
    }
});
