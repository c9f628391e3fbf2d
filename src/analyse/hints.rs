//! Messages and hints: what a finding says, and which bug the evidence points at.
//!
//! Recv-Q of a CLOSE_WAIT socket tells how far the program read (measured on
//! Linux 6.18): the peer's FIN occupies one byte of sequence space until the
//! program reads EOF. So Recv-Q 0 = it read EOF and kept the socket; 1 = it
//! read every byte but never the EOF (it stopped polling the socket); more =
//! data is still unread (it stopped reading before the peer left).

use std::time::Duration;

use super::{Peer, SocketSummary};
use crate::model::TcpState;

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

/// The peer holding most sockets in `state`, with its share of them.
fn top_peer(peers: &[Peer], state: TcpState) -> Option<(&Peer, u64)> {
    let total: u64 = peers
        .iter()
        .filter(|p| p.state == state)
        .map(|p| p.count)
        .sum();
    peers.iter().find(|p| p.state == state).map(|p| (p, total))
}

pub fn close_wait(s: &SocketSummary, peers: &[Peer], min_age: Duration) -> (String, String) {
    let message = format!(
        "{} in CLOSE_WAIT for at least {} (oldest {}): the peer closed, this process never called close()",
        count(s.close_wait_stale, "socket", "sockets"),
        human(min_age),
        human(s.oldest_close_wait.unwrap_or_default()),
    );
    let mut hints = Vec::new();
    if let Some((peer, total)) = top_peer(peers, TcpState::CloseWait) {
        if total >= 2 && peer.count * 10 >= total * 9 {
            hints.push(format!(
                "{} of {} go to {}: a connection pool is keeping connections that server closed \
                 (its idle timeout is shorter than the pool's); validate or evict idle connections \
                 before the server drops them.",
                peer.count, total, peer.remote
            ));
        }
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
    (message, hints.join(" "))
}

pub fn fin_wait2(s: &SocketSummary, peers: &[Peer], min_age: Duration) -> (String, String) {
    let message = format!(
        "{} in FIN_WAIT_2 for at least {} (oldest {}), still open in this process",
        count(s.fin_wait2_stale, "socket", "sockets"),
        human(min_age),
        human(s.oldest_fin_wait2.unwrap_or_default()),
    );
    let mut hint = String::from(
        "The program half-closed these sockets (shutdown(SHUT_WR)) and kept them; the peer has \
         not closed its side. Close the socket after shutdown, or bound the wait for the peer's \
         EOF with a read timeout.",
    );
    if s.fin_wait2_to_self > 0 {
        hint.push_str(&format!(
            " {} connected to this same process, which holds the other end in CLOSE_WAIT: \
             it closes neither end.",
            count(s.fin_wait2_to_self, "of them is", "of them are")
        ));
    } else if let Some((peer, total)) = top_peer(peers, TcpState::FinWait2) {
        if total >= 2 && peer.count == total {
            hint.push_str(&format!(
                " All {total} wait on {}, which never closes its side.",
                peer.remote
            ));
        }
    }
    (message, hint)
}

pub fn unaccepted(
    stale: u64,
    listeners: &[std::net::SocketAddr],
    min_age: Duration,
) -> (String, String) {
    let on = listeners
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "{} waited in the accept queue of {on} for at least {}: the clients gave up before accept()",
        count(stale, "connection", "connections"),
        human(min_age),
    );
    let hint = "The program is not calling accept() on this listener (accept loop stuck, \
                blocked, or too slow for the load); each connection holds kernel memory until it \
                is accepted and closed."
        .to_string();
    (message, hint)
}

pub fn fd_utilization(open: u64, limit: u64, sockets: u64, deleted: u64) -> (String, String) {
    let pct = open as f64 * 100.0 / limit.max(1) as f64;
    let message =
        format!("{open} of {limit} file descriptors open ({pct:.0}% of the soft RLIMIT_NOFILE)");
    let mut hint = format!(
        "At the limit every open(), socket() and accept() fails with EMFILE. {} of the open fds are sockets",
        (sockets * 100).checked_div(open).unwrap_or(0)
    );
    hint.push('%');
    if deleted > 0 {
        hint.push_str(&format!(", {} deleted files", deleted));
    }
    hint.push_str(
        ". Find what leaks before raising LimitNOFILE: a growing share of sockets points at \
         connections never closed.",
    );
    (message, hint)
}

pub fn fd_exhaustion(
    g: &super::Growth,
    eta: Duration,
    open: u64,
    limit: u64,
    s: &SocketSummary,
    peers: &[Peer],
) -> (String, String) {
    let per_minute = g.per_second * 60.0;
    let message = format!(
        "fd count grew by {} in {} ({per_minute:.1}/min, now {open} of {limit}): at this rate it \
         reaches the limit in {}",
        g.grew_by,
        human(g.over),
        human(eta),
    );
    let share = if g.grew_by > 0 {
        (g.sockets_grew_by.max(0) * 100 / g.grew_by).min(100)
    } else {
        0
    };
    let mut hint = format!("{share}% of the growth is sockets");
    let flagged = s.close_wait + s.fin_wait2;
    if share >= 50 && flagged > 0 {
        if let Some(peer) = peers.first() {
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
    (message, hint)
}

pub fn deleted_open_files(
    files: u64,
    bytes: u64,
    largest: Option<&(String, u64)>,
) -> (String, String) {
    let mut message = format!(
        "{} deleted but still open, holding {}",
        count(files, "file", "files"),
        bytesize::ByteSize(bytes).display().iec()
    );
    if let Some((path, size)) = largest {
        message.push_str(&format!(
            " (largest: {path}, {})",
            bytesize::ByteSize(*size).display().iec()
        ));
    }
    (
        message,
        "The disk space comes back only when the process closes these files: typically a log \
         rotated without the program reopening it (signal it to reopen, or rotate with \
         copytruncate), or temporary files unlinked while still in use."
            .to_string(),
    )
}

pub fn host_fd_utilization(open: u64, max: u64) -> (String, String) {
    let pct = open as f64 * 100.0 / max.max(1) as f64;
    (
        format!("{open} of {max} file handles allocated host-wide ({pct:.0}% of fs.file-max)"),
        "When the host's file table is full every process fails with ENFILE. Look at the \
         processes with the most open fds below; raise fs.file-max only after finding the leak."
            .to_string(),
    )
}

pub fn unknown_owner(state: TcpState, stale: u64, min_age: Duration) -> (String, String) {
    (
        format!(
            "{} in {} for at least {} whose owner could not be identified",
            count(stale, "socket", "sockets"),
            if state == TcpState::CloseWait {
                "CLOSE_WAIT"
            } else {
                "FIN_WAIT_2"
            },
            human(min_age),
        ),
        "The processes holding them could not be read: run closewatch as root (or with \
         CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH) to name them."
            .to_string(),
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
