//! The kernel's BTF ids of the iterator targets (`bpf_iter_task`,
//! `bpf_iter_task_file`), which `Iter::load` looks up in a parsed `Btf`.
//!
//! aya 0.14 parses the kernel's BTF in `EbpfLoader::new`, for the object's
//! CO-RE relocations, and cannot lend that copy: a second full parse for
//! `Iter::load` cost about 30 ms of CPU. Here the raw type section is
//! walked once for the two names, and `Iter::load` is handed a small BTF
//! ([`targets`]) that holds a FUNC of that name under each id found, and a
//! placeholder under every other id.

use aya::{Btf, Endianness};

/// The kernel's BTF, as the loader reads it.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
/// `struct btf_header`: magic, version, flags, then five u32.
const HEADER: usize = 24;
/// `struct btf_type`: name_off, info, size or type.
const TYPE: usize = 12;
const KIND_PTR: u32 = 2;
const KIND_FUNC: u32 = 12;

/// Why the ids could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BtfIdError {
    #[error("not BTF of this machine's byte order (magic {0:#06x})")]
    Magic(u16),
    #[error("header or section out of bounds")]
    Bounds,
    #[error("type {id}: truncated")]
    Truncated { id: u32 },
    #[error("type {id}: unknown kind {kind}")]
    Kind { id: u32, kind: u32 },
    #[error("no FUNC {0}")]
    Missing(String),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The bytes a type of `kind` carries after its `btf_type`, `vlen` being
/// the low 16 bits of its info (include/uapi/linux/btf.h).
fn extra(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        // INT, VAR, DECL_TAG: one u32.
        1 | 14 | 17 => 4,
        // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG.
        2 | 7..=12 | 16 | 18 => 0,
        // ARRAY: btf_array.
        3 => 12,
        // STRUCT, UNION: btf_member; DATASEC: btf_var_secinfo; ENUM64:
        // btf_enum64.
        4 | 5 | 15 | 19 => 12 * vlen,
        // ENUM: btf_enum; FUNC_PROTO: btf_param.
        6 | 13 => 8 * vlen,
        _ => return None,
    })
}

/// The id of the FUNC named each of `names` in the raw BTF `raw` (ids
/// count from 1 in the order of the type section, 0 being void).
pub fn func_ids(raw: &[u8], names: &[&str]) -> Result<Vec<u32>, BtfIdError> {
    let magic = match raw {
        [a, b, ..] => u16::from_ne_bytes([*a, *b]),
        _ => return Err(BtfIdError::Bounds),
    };
    if magic != MAGIC {
        return Err(BtfIdError::Magic(magic));
    }
    let field = |i: usize| u32_at(raw, 4 + 4 * i).map(|v| v as usize);
    let (Some(hdr_len), Some(type_off), Some(type_len), Some(str_off), Some(str_len)) =
        (field(0), field(1), field(2), field(3), field(4))
    else {
        return Err(BtfIdError::Bounds);
    };
    let section = |off: usize, len: usize| {
        let start = hdr_len.checked_add(off)?;
        raw.get(start..start.checked_add(len)?)
    };
    let types = section(type_off, type_len).ok_or(BtfIdError::Bounds)?;
    let strings = section(str_off, str_len).ok_or(BtfIdError::Bounds)?;
    let named = |off: u32, name: &str| {
        strings
            .get(off as usize..)
            .and_then(|s| s.get(..name.len() + 1))
            .is_some_and(|s| &s[..name.len()] == name.as_bytes() && s[name.len()] == 0)
    };
    let mut found: Vec<Option<u32>> = vec![None; names.len()];
    let mut at = 0;
    let mut id = 1u32;
    while at < types.len() {
        let (Some(name_off), Some(info)) = (u32_at(types, at), u32_at(types, at + 4)) else {
            return Err(BtfIdError::Truncated { id });
        };
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let size = extra(kind, vlen).ok_or(BtfIdError::Kind { id, kind })?;
        if at + TYPE + size > types.len() {
            return Err(BtfIdError::Truncated { id });
        }
        if kind == KIND_FUNC {
            for (slot, name) in found.iter_mut().zip(names) {
                if slot.is_none() && named(name_off, name) {
                    *slot = Some(id);
                }
            }
        }
        at += TYPE + size;
        id += 1;
    }
    found
        .into_iter()
        .zip(names)
        .map(|(id, name)| id.ok_or_else(|| BtfIdError::Missing((*name).to_string())))
        .collect()
}

/// A BTF of this machine's byte order with a FUNC named `name` under each
/// `(name, id)`, and a pointer to void under every other id up to the
/// largest: what `Iter::load` looks the ids up in.
pub fn with_funcs(funcs: &[(&str, u32)]) -> Vec<u8> {
    let last = funcs.iter().map(|&(_, id)| id).max().unwrap_or(0) as usize;
    let mut strings = vec![0u8];
    // Every type a pointer to void (name 0, type 0), then the FUNCs.
    let mut types = vec![0u8; last * TYPE];
    let mut set = |id: usize, name_off: u32, kind: u32| {
        let at = (id - 1) * TYPE;
        types[at..at + 4].copy_from_slice(&name_off.to_ne_bytes());
        types[at + 4..at + 8].copy_from_slice(&(kind << 24).to_ne_bytes());
    };
    for id in 1..=last {
        set(id, 0, KIND_PTR);
    }
    for &(name, id) in funcs {
        if id > 0 {
            set(id as usize, strings.len() as u32, KIND_FUNC);
            strings.extend_from_slice(name.as_bytes());
            strings.push(0);
        }
    }
    let mut out = Vec::with_capacity(HEADER + types.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_ne_bytes());
    out.extend_from_slice(&[1, 0]);
    for v in [HEADER, 0, types.len(), types.len(), strings.len()] {
        out.extend_from_slice(&(v as u32).to_ne_bytes());
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(&strings);
    out
}

/// A file mapped read-only, unmapped when dropped.
struct Mapped {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &std::fs::File) -> std::io::Result<Mapped> {
        let len = usize::try_from(file.metadata()?.len()).unwrap_or(0);
        if len == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidData));
        }
        // SAFETY: a fresh private read-only mapping of the whole file,
        // which no Rust reference aliases; it lives until `drop`.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
                file,
                0,
            )
        }?;
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, which nothing borrows now.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// What `Iter::load` needs of the kernel's BTF for `targets` (the iterator
/// names, without `bpf_iter_`), read from [`VMLINUX`]. The file is mapped
/// where the kernel allows it (Linux 6.16 and later: 0.3 ms against 5.6
/// for reading its 5.5 MB here, a page per read), else read.
pub fn targets(targets: &[&str]) -> Result<Btf, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
    let mapped = Mapped::new(&file);
    let mut read = Vec::new();
    let raw = match &mapped {
        Ok(m) => m.bytes(),
        Err(_) => {
            file.read_to_end(&mut read)
                .map_err(|e| format!("{VMLINUX}: {e}"))?;
            &read[..]
        }
    };
    let names: Vec<String> = targets.iter().map(|t| format!("bpf_iter_{t}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let ids = func_ids(raw, &names).map_err(|e| format!("{VMLINUX}: {e}"))?;
    let funcs: Vec<(&str, u32)> = names.iter().copied().zip(ids).collect();
    Btf::parse(&with_funcs(&funcs), Endianness::default()).map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "btf_tests.rs"]
mod tests;
