//! `half_open`: ESTABLISHED connections that have received nothing for at
//! least `idle_age`, with no keepalive (or any other) timer armed: if the
//! peer vanished without FIN or RST (a crash, power loss, a dropped route),
//! the program can never learn it and waits forever (a read without a
//! deadline). Proven dead when the peer was on this host and is gone; a
//! local peer that is still there makes it merely idle, never a finding.

use super::{Judge, ProcessFacts, Rule, Spec, Verdict};
use crate::analyse::held::PeerEnd;
use crate::analyse::hints::{count, human};
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule = Rule::new(Spec::count("half_open", 1, 100)).process(process);

fn process(p: &ProcessFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    let s = p.sockets;
    let severity = judge.severity(Amount::Count(s.idle_established))?;
    let mut message = format!(
        "{} received nothing for at least {} (longest {}) with no keepalive: {} cannot learn \
         that the peer is gone",
        count(
            s.idle_established,
            "ESTABLISHED connection",
            "ESTABLISHED connections"
        ),
        human(judge.settings.idle_age),
        human(s.oldest_idle.unwrap_or_default()),
        if s.idle_established == 1 {
            "it"
        } else {
            "they"
        },
    );
    if s.idle_peer_gone > 0 {
        message.push_str(&format!(
            "; {} to a peer on this host that no longer exists: half-open for certain",
            s.idle_peer_gone
        ));
    }
    if let Some(peer) = p
        .peers
        .iter()
        .find(|peer| peer.state == crate::model::TcpState::Established)
    {
        let gone = if peer.local == Some(PeerEnd::Gone) {
            " (gone)"
        } else {
            ""
        };
        message.push_str(&format!("; most to {}{gone}", peer.remote));
    }
    let hint = "A read on these connections waits forever: the program sets no read deadline \
                and the socket no keepalive, so a peer that crashed or lost its route is never \
                noticed. Set a deadline (Go `conn.SetReadDeadline`, Python `sock.settimeout`, \
                Java `setSoTimeout`) or TCP keepalive (Go `net.Dialer{KeepAlive: 30 * \
                time.Second}` and `ListenConfig{KeepAlive}`, SO_KEEPALIVE with TCP_KEEPIDLE \
                elsewhere), and close the connection when it fires. An idle pool connection \
                to a healthy server is idle, not dead: keepalive tells the two apart."
        .to_string();
    Some(Verdict::new(severity, message, hint))
}
