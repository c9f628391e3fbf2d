//! `port_exhaustion`: host-wide, per network namespace and destination: the
//! local ephemeral ports in use toward one remote `ip:port` (every state,
//! TIME_WAIT included) against the size of `net.ipv4.ip_local_port_range`.
//! Past it, `connect()` fails with EADDRNOTAVAIL ("cannot assign requested
//! address").

use super::{HostFacts, Judge, Rule, Spec, Verdict};
use crate::analyse::hints::count;
use crate::analyse::thresholds::Amount;

pub(super) const RULE: Rule = Rule::new(Spec::ratio("port_exhaustion", 0.8, 0.95)).host(host);

fn host(h: &HostFacts<'_>, judge: &Judge<'_>) -> Option<Verdict> {
    // Fullest first: the first is the one to judge and to name.
    let worst = h.ports.first()?;
    let severity = judge.severity(Amount::Ratio(worst.ratio))?;
    let owners: Vec<String> = worst
        .owners
        .iter()
        .take(3)
        .filter_map(|&(i, n)| {
            let p = h.processes.get(i)?;
            Some(format!("pid {} ({}) ×{n}", p.key.pid, p.comm))
        })
        .collect();
    let mut message = format!(
        "{} of {} ephemeral ports ({:.0}%) in use from {} to {} in netns {} ({} in TIME_WAIT)",
        worst.in_use,
        worst.range_size,
        worst.ratio * 100.0,
        worst.local_ip,
        worst.remote,
        worst.netns,
        worst.time_wait,
    );
    if !owners.is_empty() {
        message.push_str(&format!("; held by {}", owners.join(", ")));
    }
    let others = h
        .ports
        .iter()
        .skip(1)
        .filter(|p| judge.severity(Amount::Ratio(p.ratio)).is_some())
        .count() as u64;
    if others > 0 {
        message.push_str(&format!(
            "; {} more near the limit",
            count(others, "destination", "destinations")
        ));
    }
    let hint = format!(
        "Every connection to one ip:port needs a local port of its own, and a closed one \
         stays in TIME_WAIT for 60 s; once the range is used up, connect() fails with \
         EADDRNOTAVAIL (\"cannot assign requested address\"). Reuse connections (a pool with \
         keep-alive instead of a connection per request){tw}; widen net.ipv4.ip_local_port_range \
         in that namespace, or spread over more destination addresses. SO_REUSEADDR does not \
         help a client; when binding before connect, set IP_BIND_ADDRESS_NO_PORT.",
        tw = if worst.time_wait * 2 >= worst.in_use {
            "; most are in TIME_WAIT: the client closes connections as fast as it opens them"
        } else {
            ""
        }
    );
    Some(Verdict::new(severity, message, hint))
}
