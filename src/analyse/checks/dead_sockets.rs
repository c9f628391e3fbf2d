//! `dead_sockets`: TCP sockets a process still holds that are in no TCP
//! table: reset by the peer ("connection reset by peer", "broken pipe") or
//! never connected, and never closed. `ss` cannot see them; each holds an fd
//! until the process closes it or exits.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::{count, human};
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule = Rule::new(Spec::count("dead_sockets", 1, 100)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let s = p.sockets;
    let severity = judge.severity(Amount::Count(s.dead_stale))?;
    let message = format!(
        "{} held for at least {} (oldest {}) that {} in no TCP table: reset by the peer or \
         never connected, and never closed",
        count(s.dead_stale, "TCP socket", "TCP sockets"),
        human(judge.settings.dead_socket_age),
        human(s.oldest_dead.unwrap_or_default()),
        if s.dead_stale == 1 { "is" } else { "are" },
    );
    let hint = "The program got an error on these connections (ECONNRESET, EPIPE, a refused \
                or timed-out connect) and returned without closing the socket. Close on every \
                error path: Go `defer conn.Close()` right after Dial or Accept succeeds (and \
                close when Dial fails after creating the socket); Python `with socket...` or \
                `contextlib.closing`; Java try-with-resources. `ss` does not list these sockets; \
                `lsof -p PID` shows them as `sock ... protocol: TCP`."
        .to_string();
    Some(Verdict::new(severity, message, hint))
}
