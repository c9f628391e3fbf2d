//! `fd_utilization`: a process has used most of its soft RLIMIT_NOFILE; at
//! the limit every open(), socket() and accept() fails with EMFILE.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule = Rule::new(Spec::ratio("fd_utilization", 0.80, 0.95)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let fds = &p.info.fds;
    let (ratio, limit) = fds.utilization().zip(fds.limit)?;
    let severity = judge.severity(Amount::Ratio(ratio))?;
    let open = fds.open;
    let pct = open as f64 * 100.0 / limit.max(1) as f64;
    let message =
        format!("{open} of {limit} file descriptors open ({pct:.0}% of the soft RLIMIT_NOFILE)");
    let mut hint = format!(
        "At the limit every open(), socket() and accept() fails with EMFILE. {}% of the open \
         fds are sockets",
        (fds.sockets * 100).checked_div(open).unwrap_or(0)
    );
    if fds.deleted_files > 0 {
        hint.push_str(&format!(", {} deleted files", fds.deleted_files));
    }
    hint.push_str(
        ". Find what leaks before raising LimitNOFILE: a growing share of sockets points at \
         connections never closed.",
    );
    Some(Verdict::new(severity, message, hint))
}
