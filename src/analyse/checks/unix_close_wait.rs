//! `unix_close_wait`: connected UNIX stream sockets whose peer has closed,
//! held open: the UNIX twin of CLOSE_WAIT (a leaked connection to
//! `docker.sock`, a database's local socket, a sidecar). `ss -x` shows them
//! ESTAB with peer `* 0`.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::{count, human};
use crate::analyse::thresholds::Amount;

/// Warning at 5, not 1: an OpenSSH session keeps one such socket for its
/// whole life in each of its sshd processes (the privilege-separation
/// monitor's end of the pair the login helper used), on nearly every host.
/// A leak grows past 5; sshd stays at 1.
pub(super) const RULE: Rule = Rule::new(Spec::count("unix_close_wait", 5, 100)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let s = p.sockets;
    let severity = judge.severity(Amount::Count(s.unix_close_wait_stale))?;
    let message = format!(
        "{} whose peer closed, held for at least {} (oldest {}): the other end is gone, this \
         process never called close()",
        count(
            s.unix_close_wait_stale,
            "UNIX stream socket",
            "UNIX stream sockets"
        ),
        human(judge.settings.dead_socket_age),
        human(s.oldest_unix_close_wait.unwrap_or_default()),
    );
    let hint = "A connection to a local service (docker.sock, a database's local socket, a \
                sidecar) whose server closed it, kept by this program: it read EOF, or never \
                looked, and did not close. Close the connection on EOF and on errors (Go \
                `defer conn.Close()`, Python `with`), or return it to a pool that checks it; \
                each one holds an fd until the process exits."
        .to_string();
    Some(Verdict::new(severity, message, hint))
}
