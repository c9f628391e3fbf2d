//! `close_wait_stale`: a process keeps CLOSE_WAIT sockets (the peer closed,
//! the program never called close()) past `close_wait_age`. Host-wide, the
//! same for stale CLOSE_WAIT sockets whose owner could not be read.

use super::{HostFacts, Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::hints::{count, human, peer_process, top_peer, unknown_owner};
use crate::analyse::thresholds::Amount;
use crate::model::TcpState;

pub(super) const RULE: Rule = Rule::new(Spec::count("close_wait_stale", 1, 100))
    .process(process)
    .host(host);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let s = p.sockets;
    let severity = judge.severity(Amount::Count(s.close_wait_stale))?;
    let message = format!(
        "{} in CLOSE_WAIT for at least {} (oldest {}): the peer closed, this process never called close()",
        count(s.close_wait_stale, "socket", "sockets"),
        human(judge.settings.close_wait_age),
        human(s.oldest_close_wait.unwrap_or_default()),
    );
    Some(Verdict::new(severity, message, hint(p)))
}

fn host(h: &HostFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let stale = h.unattributed.close_wait_unknown_owner_stale;
    let severity = judge.severity(Amount::Count(stale))?;
    let (message, hint) = unknown_owner(
        "CLOSE_WAIT",
        stale,
        judge.settings.close_wait_age,
        h.unreadable,
    );
    Some(Verdict::new(severity, message, hint))
}

/// Recv-Q of a CLOSE_WAIT socket tells how far the program read (measured on
/// Linux 6.18): the peer's FIN occupies one byte of sequence space until the
/// program reads EOF. So Recv-Q 0 = it read EOF and kept the socket; 1 = it
/// read every byte but never the EOF (it stopped polling the socket); more =
/// data is still unread (it stopped reading before the peer left). Most
/// sockets to one peer point at a pool; most on a port the process listens
/// on, at a server.
fn hint(p: &ProcessFacts<'_>) -> String {
    let s = p.sockets;
    let mut hints = Vec::new();
    if let Some((peer, total)) = top_peer(p.peers, TcpState::CloseWait) {
        if total >= 2 && peer.count * 10 >= total * 9 {
            hints.push(format!(
                "{} of {} go to {}: a connection pool is keeping connections that server closed \
                 (its idle timeout is shorter than the pool's); validate or evict idle connections \
                 before the server drops them.",
                peer.count, total, peer.remote
            ));
        }
    }
    if let Some((who, TcpState::FinWait2)) = top_peer(p.peers, TcpState::CloseWait)
        .and_then(|(peer, _)| peer_process(peer.local, p.processes))
    {
        hints.push(format!(
            "The peer is {who}, on this host, which half-closed its end (shutdown, \
             FIN_WAIT_2) and waits for this process to close: this process is the one that \
             never closes."
        ));
    }
    let pool = hints.len();
    if let (0, Some((port, n))) = (pool, s.close_wait_top_local_port) {
        if s.close_wait >= 2 && n * 10 >= s.close_wait * 9 && s.listens_on_top_local_port {
            hints.push(format!(
                "{n} of {} were accepted on port {port}, where this process listens: its clients \
                 hung up and the server never closed the connections.",
                s.close_wait
            ));
        }
    }
    let r = &s.close_wait_recv_q;
    if r.unread_data > 0 {
        hints.push(format!(
            "{} still unread data (Recv-Q > 0): the program stopped reading before the peer left \
             (a stuck or abandoned reader).",
            count(r.unread_data, "holds", "hold"),
        ));
    }
    if r.fin_unread > 0 {
        hints.push(format!(
            "{} never read the peer's EOF: the program stopped polling {} (connection objects \
             dropped without close(), or parked in a pool nobody checks).",
            count(r.fin_unread, "socket", "sockets"),
            if r.fin_unread == 1 { "it" } else { "them" },
        ));
    }
    if r.eof_read > 0 {
        hints.push(format!(
            "{} read EOF (recv returned 0) and kept the socket: look for a code path that returns \
             on EOF or on an error without closing.",
            count(r.eof_read, "socket", "sockets"),
        ));
    }
    hints.join(" ")
}
