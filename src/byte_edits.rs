//! Edits of captured input for the property tests of the parsers (procfs
//! and sock_diag): cut, overwrite a byte, overwrite a 16- or 32-bit value at
//! a 4-byte boundary (where netlink keeps its lengths), delete, insert.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Edit {
    Truncate(Index),
    Byte(Index, u8),
    /// A 16-bit value at a 4-byte boundary, where every nla_len lives.
    Len16(Index, u16),
    /// A 32-bit value at a 4-byte boundary, where every nlmsg_len lives.
    Len32(Index, u32),
    Delete(Index, usize),
    Insert(Index, Vec<u8>),
}

pub fn apply(d: &mut Vec<u8>, edit: &Edit) {
    let aligned = |i: &Index, width: usize, d: &Vec<u8>| {
        let slots = d.len() / 4;
        (slots > 0)
            .then(|| i.index(slots) * 4)
            .filter(|at| at + width <= d.len())
    };
    match edit {
        Edit::Truncate(i) => d.truncate(i.index(d.len() + 1)),
        Edit::Byte(i, b) if !d.is_empty() => {
            let at = i.index(d.len());
            d[at] = *b;
        }
        Edit::Len16(i, v) => {
            if let Some(at) = aligned(i, 2, d) {
                d[at..at + 2].copy_from_slice(&v.to_ne_bytes());
            }
        }
        Edit::Len32(i, v) => {
            if let Some(at) = aligned(i, 4, d) {
                d[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            }
        }
        Edit::Delete(i, n) if !d.is_empty() => {
            let at = i.index(d.len());
            let end = (at + n).min(d.len());
            d.drain(at..end);
        }
        Edit::Insert(i, bytes) => {
            let at = i.index(d.len() + 1);
            d.splice(at..at, bytes.iter().copied());
        }
        Edit::Byte(..) | Edit::Delete(..) => {}
    }
}

/// `d` with `edits` applied in order.
pub fn applied(mut d: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        apply(&mut d, e);
    }
    d
}

/// One of `samples` with a stack of 1 to 5 edits drawn from `edit`.
pub fn edited(
    samples: &'static [&'static [u8]],
    edit: impl Strategy<Value = Edit>,
) -> impl Strategy<Value = Vec<u8>> {
    (0..samples.len(), vec(edit, 1..6))
        .prop_map(move |(which, edits)| applied(samples[which].to_vec(), &edits))
}
