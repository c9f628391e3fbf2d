//! `fd_exhaustion`: a process's fd count grows steadily, and at that rate
//! reaches its limit within the levels' time (less time left is worse).

use std::time::Duration;

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::human;
use crate::analyse::thresholds::Amount;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) const RULE: Rule =
    Rule::new(Spec::time_left("fd_exhaustion", DAY, HOUR)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let (g, eta, limit) = (p.growth?, p.fd_exhaustion?, p.info.fds.limit?);
    let severity = judge.severity(Amount::TimeLeft(eta))?;
    let open = p.info.fds.open;
    let message = format!(
        "fd count grew by {} in {} ({:.1}/min, now {open} of {limit}): at this rate it \
         reaches the limit in {}",
        g.grew_by,
        human(g.over),
        g.per_second * 60.0,
        human(eta),
    );
    Some(Verdict::new(severity, message, hint(p)))
}

/// Whether the growth is sockets, and if so whether they are the flagged
/// ones: that tells connections never closed from files never closed.
fn hint(p: &ProcessFacts<'_>) -> String {
    let Some(g) = p.growth else {
        return String::new();
    };
    let share = if g.grew_by > 0 {
        (g.sockets_grew_by.max(0) * 100 / g.grew_by).min(100)
    } else {
        0
    };
    let mut hint = format!("{share}% of the growth is sockets");
    let flagged = p.sockets.close_wait + p.sockets.fin_wait2;
    if share >= 50 && flagged > 0 {
        if let Some(peer) = p.peers.first() {
            hint.push_str(&format!(
                "; {} of them are CLOSE_WAIT/FIN_WAIT_2, most to {} ({}): connections the program \
                 never closes",
                flagged, peer.remote, peer.state
            ));
        }
    } else if share >= 50 {
        hint.push_str(
            ": connections opened and never closed (a client without a pool limit, \
                       or accepted connections never released)",
        );
    } else {
        hint.push_str(
            ": mostly files, pipes or other fds: look for open() or pipe() without a \
                       matching close() on some path",
        );
    }
    hint.push_str(". At the limit every open(), socket() and accept() fails with EMFILE.");
    hint
}
