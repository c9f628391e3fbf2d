//! `accept_queue_full`: a listener whose accept queue has filled up to its
//! backlog: the program is not accepting, and past the backlog the kernel
//! drops new connections (the namespace's ListenOverflows counts them).
//! Charged to the listener's owners.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::count;
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule =
    Rule::new(Spec::ratio("accept_queue_full", 0.8, 1.0)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    // Fullest first: the first is the one to judge and to name.
    let worst = p.listeners.first()?;
    let severity = judge.severity(Amount::Ratio(worst.ratio()))?;
    let full = if worst.queue >= worst.backlog.max(1) {
        "full: the kernel drops new connections".to_string()
    } else {
        format!("{:.0}% full", worst.ratio() * 100.0)
    };
    let mut message = format!(
        "{} waiting to be accepted on {}, backlog {} ({full})",
        count(u64::from(worst.queue), "connection", "connections"),
        worst.local,
        worst.backlog,
    );
    let others = p.listeners.len() - 1;
    if others > 0 {
        message.push_str(&format!(
            "; {} more with a queue",
            count(others as u64, "listener", "listeners")
        ));
    }
    let hint = "The program is not calling accept() fast enough, or at all: an accept loop \
                blocked on a lock, stuck handling one connection before accepting the next, \
                or a worker pool that is full (Go: the goroutine that calls Accept() should \
                only hand the connection off; a Python server: a thread or process pool with \
                no free worker). Clients wait, then time out or retry; new SYNs are dropped \
                (closewatch_listen_overflows_total). Raising the backlog only hides a slow \
                accept loop."
        .to_string();
    Some(Verdict::new(severity, message, hint))
}
