//! `deleted_open_files`: a process holds files that were deleted but are
//! still open; their disk space comes back only when it closes them.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::count;
use crate::analyse::thresholds::Amount;

const GIB: u64 = 1024 * 1024 * 1024;

pub(super) const RULE: Rule =
    Rule::new(Spec::bytes("deleted_open_files", GIB, 10 * GIB)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let fds = &p.info.fds;
    let severity = judge.severity(Amount::Bytes(fds.deleted_bytes))?;
    let mut message = format!(
        "{} deleted but still open, holding {}",
        count(fds.deleted_files, "file", "files"),
        bytesize::ByteSize(fds.deleted_bytes).display().iec()
    );
    if let Some((path, size)) = &p.info.largest_deleted {
        message.push_str(&format!(
            " (largest: {path}, {})",
            bytesize::ByteSize(*size).display().iec()
        ));
    }
    let hint = "The disk space comes back only when the process closes these files: \
                typically a log rotated without the program reopening it (signal it to \
                reopen, or rotate with copytruncate), or temporary files unlinked while still \
                in use."
        .to_string();
    Some(Verdict::new(severity, message, hint))
}
