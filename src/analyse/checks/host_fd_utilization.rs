//! `host_fd_utilization`: the host's file table (fs.file-nr against
//! fs.file-max) is nearly full; when it is, every process fails with ENFILE.

use super::{HostFacts, Judge, Rule, Spec, Verdict};
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule = Rule::new(Spec::ratio("host_fd_utilization", 0.80, 0.95)).host(host);

fn host(h: &HostFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let (open, max) = h
        .host
        .open_fds
        .zip(h.host.max_fds)
        .filter(|(_, m)| *m > 0)?;
    let severity = judge.severity(Amount::Ratio(open as f64 / max as f64))?;
    let pct = open as f64 * 100.0 / max as f64;
    Some(Verdict {
        severity,
        message: format!(
            "{open} of {max} file handles allocated host-wide ({pct:.0}% of fs.file-max)"
        ),
        hint: "When the host's file table is full every process fails with ENFILE. Look at \
               the processes with the most open fds below; raise fs.file-max only after \
               finding the leak."
            .to_string(),
    })
}
