//! `close_wait_unaccepted`: connections whose client already hung up wait,
//! never accepted, in a process's listen queue past `close_wait_age`: its
//! accept loop is stuck or too slow.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::{count, human};
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule =
    Rule::new(Spec::count("close_wait_unaccepted", 1, 100)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let stale = p.sockets.close_wait_unaccepted_stale;
    let severity = judge.severity(Amount::Count(stale))?;
    let on = p
        .queue_listeners
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "{} waited in the accept queue of {on} for at least {}: the clients gave up before accept()",
        count(stale, "connection", "connections"),
        human(judge.settings.close_wait_age),
    );
    let hint = "The program is not calling accept() on this listener (accept loop stuck, \
                blocked, or too slow for the load); each connection holds kernel memory \
                until it is accepted and closed."
        .to_string();
    Some(Verdict::new(severity, message, hint))
}
