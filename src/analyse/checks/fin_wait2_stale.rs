//! `fin_wait2_stale`: a process half-closed sockets (shutdown(SHUT_WR)) and
//! keeps them in FIN_WAIT_2 past `fin_wait2_age`. Host-wide, the same for
//! stale owned FIN_WAIT_2 sockets whose owner could not be read. (Orphans,
//! closed FIN_WAIT_2 sockets the kernel times out, are never a finding.)

use super::{HostFacts, Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::{count, human, peer_process, top_peer, unknown_owner};
use crate::analyse::thresholds::Amount;
use crate::model::TcpState;

pub(super) const RULE: Rule = Rule::new(Spec::count("fin_wait2_stale", 1, 100))
    .process(process)
    .host(host);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let s = p.sockets;
    let severity = judge.severity(Amount::Count(s.fin_wait2_stale))?;
    let message = format!(
        "{} in FIN_WAIT_2 for at least {} (oldest {}), still open in this process",
        count(s.fin_wait2_stale, "socket", "sockets"),
        human(judge.settings.fin_wait2_age),
        human(s.oldest_fin_wait2.unwrap_or_default()),
    );
    let mut hint = String::from(
        "The program half-closed these sockets (shutdown(SHUT_WR)) and kept them; the peer \
         has not closed its side. Close the socket after shutdown, or bound the wait for the \
         peer's EOF with a read timeout.",
    );
    let local = top_peer(p.peers, TcpState::FinWait2)
        .and_then(|(peer, _)| peer_process(peer.local, p.processes));
    if s.fin_wait2_to_self > 0 {
        hint.push_str(&format!(
            " {} connected to this same process, which holds the other end in CLOSE_WAIT: \
             it closes neither end.",
            count(s.fin_wait2_to_self, "of them is", "of them are")
        ));
    } else if let Some((who, TcpState::CloseWait)) = local {
        hint.push_str(&format!(
            " The other end is {who}, which holds it in CLOSE_WAIT: it read the EOF this \
             process sent and never closed its socket, so the two wait on each other; fix \
             that program, or bound this wait."
        ));
    } else if let Some((peer, total)) = top_peer(p.peers, TcpState::FinWait2) {
        if total >= 2 && peer.count == total {
            hint.push_str(&format!(
                " All {total} wait on {}, which never closes its side.",
                peer.remote
            ));
        }
    }
    Some(Verdict::new(severity, message, hint))
}

fn host(h: &HostFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let stale = h.unattributed.fin_wait2_unknown_owner_stale;
    let severity = judge.severity(Amount::Count(stale))?;
    let (message, hint) = unknown_owner(
        "FIN_WAIT_2",
        stale,
        judge.settings.fin_wait2_age,
        h.unreadable,
    );
    Some(Verdict::new(severity, message, hint))
}
