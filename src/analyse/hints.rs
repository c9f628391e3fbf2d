//! Words the checks and the report share: durations and counts as an
//! operator reads them, the top peer of a state, and what to say of stale
//! sockets whose owner could not be read.

use std::time::Duration;

use super::held::{Peer, PeerEnd};
use crate::model::{ProcessInfo, TcpState};

/// A duration as an operator reads it: `41m 2s`, `3h 5m`, `850ms`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    // Beyond an hour, seconds are noise.
    let rounded = if secs >= 3600 { secs - secs % 60 } else { secs };
    humantime::format_duration(Duration::from_secs(rounded)).to_string()
}

/// A count with its noun, singular or plural.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The peer holding most sockets in `state`, with the total of that state.
pub fn top_peer(peers: &[Peer], state: TcpState) -> Option<(&Peer, u64)> {
    let total: u64 = peers
        .iter()
        .filter(|p| p.state == state)
        .map(|p| p.count)
        .sum();
    peers.iter().find(|p| p.state == state).map(|p| (p, total))
}

/// `pid N (comm)` of a peer's owner, when it is a process of the scan.
pub fn peer_process(end: Option<PeerEnd>, processes: &[ProcessInfo]) -> Option<(String, TcpState)> {
    match end? {
        PeerEnd::Owned { process, state } => {
            let p = processes.get(process)?;
            Some((format!("pid {} ({})", p.key.pid, p.comm), state))
        }
        _ => None,
    }
}

/// Message and hint for `stale` sockets in `state` (as `ss` spells it)
/// that no readable process holds. `unreadable` says what the processes
/// that could not be read need (`access::Skipped::summary`), when the
/// report examined them.
pub fn unknown_owner(
    state: &str,
    stale: u64,
    min_age: Duration,
    unreadable: Option<&str>,
) -> (String, String) {
    let hint = match unreadable {
        Some(summary) => format!("The processes holding them could not be read: {summary}."),
        None => "The processes holding them could not be read (`closewatch --report` names \
                 them under skipped, with the cause and the remedy)."
            .to_string(),
    };
    (
        format!(
            "{} in {state} for at least {} whose owner could not be identified",
            count(stale, "socket", "sockets"),
            human(min_age),
        ),
        hint,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_an_operator_writes_them() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(61_400)), "1m 1s");
        assert_eq!(human(Duration::from_secs(3 * 3600 + 5 * 60 + 7)), "3h 5m");
    }

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count(1, "socket", "sockets"), "1 socket");
        assert_eq!(count(0, "socket", "sockets"), "0 sockets");
    }
}
