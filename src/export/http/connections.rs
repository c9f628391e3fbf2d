//! The open connections, for making room: when every slot is taken, the
//! connection idle the longest is asked to close.

use std::sync::Mutex;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::sync::lock;

/// The open connections, each with the time it was accepted or last began
/// a request. When every slot is taken, a new connection is not left in the
/// kernel's backlog behind clients that send nothing (slowloris, idle
/// keep-alive): the connection idle the longest is closed to make room.
#[derive(Debug, Default)]
pub(super) struct OpenConnections {
    by_id: Mutex<FxHashMap<u64, OpenConnection>>,
}

#[derive(Debug)]
struct OpenConnection {
    active_at: Instant,
    /// Closes the connection; taken once it has been asked to.
    close: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OpenConnections {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<u64, OpenConnection>> {
        lock(&self.by_id)
    }

    pub(super) fn opened(&self, id: u64, close: tokio::sync::oneshot::Sender<()>) {
        self.lock().insert(
            id,
            OpenConnection {
                active_at: Instant::now(),
                close: Some(close),
            },
        );
    }

    pub(super) fn request_started(&self, id: u64) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.active_at = Instant::now();
        }
    }

    pub(super) fn closed(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the connection idle the longest to close; false if every one
    /// has already been asked.
    pub(super) fn close_idlest(&self) -> bool {
        let mut open = self.lock();
        let idlest = open
            .iter()
            .filter(|(_, c)| c.close.is_some())
            .min_by_key(|(_, c)| c.active_at)
            .map(|(id, _)| *id);
        match idlest.and_then(|id| open.get_mut(&id)?.close.take()) {
            Some(close) => close.send(()).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_connection_idle_the_longest_makes_room() {
        let open = OpenConnections::default();
        let mut closes = Vec::new();
        for id in 0..3 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            open.opened(id, tx);
            closes.push(rx);
            std::thread::sleep(Duration::from_millis(2));
        }
        // 0 was accepted first but has just started a request: 1 is idlest.
        open.request_started(0);
        assert!(open.close_idlest());
        assert!(closes[1].try_recv().is_ok());
        assert!(closes[0].try_recv().is_err() && closes[2].try_recv().is_err());
        // Asked once, 1 is not asked again: 2 is next, then 0.
        assert!(open.close_idlest());
        assert!(closes[2].try_recv().is_ok());
        assert!(open.close_idlest());
        assert!(closes[0].try_recv().is_ok());
        assert!(!open.close_idlest(), "every connection was asked already");
        open.closed(0);
        open.closed(1);
        open.closed(2);
        assert!(open.lock().is_empty());
    }
}
