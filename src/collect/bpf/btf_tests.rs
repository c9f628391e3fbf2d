//! The BTF walk against aya's own parser, on captured and on live BTF.
//!
//! tests/fixtures/bpf/attribution.btf is the `.BTF` section of
//! bpf/attribution.bpf.o as clang wrote it (`llvm-objcopy --dump-section
//! .BTF=attribution.btf bpf/attribution.bpf.o`): 1,000-odd types of most
//! kinds, its three programs among the FUNCs.

use std::path::PathBuf;

use aya::{Btf, Endianness};
use aya_obj::btf::BtfKind;

use super::{func_ids, targets, with_funcs, BtfIdError, VMLINUX};

/// The header's u32 at `at`.
fn field(raw: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(raw[at..at + 4].try_into().expect("4 bytes"))
}

fn captured() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bpf/attribution.btf");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The running kernel's BTF, or `None` (said) where it has none; in CI,
/// whose kernel has it, its absence fails the test instead.
fn live_btf() -> Option<Vec<u8>> {
    match std::fs::read(VMLINUX) {
        Ok(raw) => Some(raw),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{VMLINUX}: {e} (CI runs on a kernel with BTF)"
            );
            eprintln!("**** SKIPPED: {VMLINUX}: {e} ****");
            None
        }
    }
}

const PROGRAMS: [&str; 3] = ["closewatch_task", "closewatch_task_file", "closewatch_tcp"];

/// aya's id of each FUNC, the oracle.
fn aya_ids(raw: &[u8], names: &[&str]) -> Vec<u32> {
    let btf = Btf::parse(raw, Endianness::default()).expect("aya parses it");
    names
        .iter()
        .map(|n| btf.id_by_type_name_kind(n, BtfKind::Func).expect(n))
        .collect()
}

#[test]
fn the_walk_finds_the_ids_aya_finds_in_captured_btf() {
    let raw = captured();
    let ids = func_ids(&raw, &PROGRAMS).expect("walk");
    assert_eq!(ids, aya_ids(&raw, &PROGRAMS));
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{ids:?}: distinct, in order"
    );
}

#[test]
fn the_walk_finds_the_ids_aya_finds_in_the_running_kernels_btf() {
    let Some(raw) = live_btf() else {
        return;
    };
    let names = [
        "bpf_iter_task",
        "bpf_iter_task_file",
        "bpf_iter_tcp",
        "tcp_v4_connect",
    ];
    assert_eq!(func_ids(&raw, &names).expect("walk"), aya_ids(&raw, &names));
}

#[test]
fn the_small_btf_answers_the_ids_it_was_made_with() {
    let funcs = [("bpf_iter_task_file", 64101), ("bpf_iter_task", 64096)];
    let raw = with_funcs(&funcs);
    let names = ["bpf_iter_task_file", "bpf_iter_task"];
    assert_eq!(aya_ids(&raw, &names), [64101, 64096]);
    assert_eq!(func_ids(&raw, &names).expect("walk"), [64101, 64096]);
    // 64,101 types of 12 bytes, the header and two names.
    assert_eq!(raw.len(), 24 + 64101 * 12 + 1 + 19 + 14);
}

#[test]
fn targets_reads_the_running_kernel() {
    if live_btf().is_none() {
        return;
    }
    let small = targets(&["task", "task_file"]).expect("targets");
    let full = Btf::from_sys_fs().expect("aya reads the kernel's BTF");
    for name in ["bpf_iter_task", "bpf_iter_task_file"] {
        assert_eq!(
            small.id_by_type_name_kind(name, BtfKind::Func).expect(name),
            full.id_by_type_name_kind(name, BtfKind::Func).expect(name),
        );
    }
}

#[test]
fn a_name_absent_is_said() {
    let raw = captured();
    assert_eq!(
        func_ids(&raw, &["closewatch_task", "bpf_iter_task"]),
        Err(BtfIdError::Missing("bpf_iter_task".into()))
    );
    // A FUNC's name, not another kind's: task_struct is a STRUCT here.
    assert_eq!(
        func_ids(&raw, &["task_struct"]),
        Err(BtfIdError::Missing("task_struct".into()))
    );
}

#[test]
fn bad_headers_are_refused() {
    let raw = captured();
    let mut swapped = raw.clone();
    swapped.swap(0, 1);
    assert_eq!(
        func_ids(&swapped, &PROGRAMS),
        Err(BtfIdError::Magic(0x9feb))
    );
    assert_eq!(func_ids(&raw[..10], &PROGRAMS), Err(BtfIdError::Bounds));
    assert_eq!(func_ids(&[], &PROGRAMS), Err(BtfIdError::Bounds));
    // A string section reaching past the end.
    assert_eq!(
        func_ids(&raw[..raw.len() - 1], &PROGRAMS),
        Err(BtfIdError::Bounds)
    );
}

/// The header's type_len cut short: the walk stops inside a type, misses
/// the FUNCs cut off, or (cut after the last) finds the same ids; it never
/// reads past the section.
#[test]
fn every_shorter_type_section_is_an_error_a_miss_or_the_same() {
    let raw = captured();
    let full = func_ids(&raw, &PROGRAMS).expect("walk");
    let type_len = field(&raw, 12);
    let mut same = 0;
    for len in 0..type_len {
        let mut cut = raw.clone();
        cut[12..16].copy_from_slice(&len.to_ne_bytes());
        match func_ids(&cut, &PROGRAMS) {
            Err(BtfIdError::Truncated { .. } | BtfIdError::Missing(_)) => {}
            Ok(ids) if ids == full => same += 1,
            other => panic!("type_len {len}: {other:?}"),
        }
    }
    // One for each type after the last program: a boundary to cut at.
    assert!(same > 0, "no cut after the last program");
}

#[test]
fn an_unknown_kind_stops_the_walk() {
    let mut raw = captured();
    let hdr_len = field(&raw, 4) as usize;
    let type_off = field(&raw, 8) as usize;
    // The first type's info: kind 31, which no kernel has.
    let at = hdr_len + type_off + 4;
    raw[at + 3] = 31;
    assert_eq!(
        func_ids(&raw, &PROGRAMS),
        Err(BtfIdError::Kind { id: 1, kind: 31 })
    );
}
