//! Accept-error backoff: an accept error (EMFILE above all: this is an
//! fd-leak detector, the host may be out of fds) is logged at most once a
//! second, and the loop waits 10 ms doubling to 1 s before trying again.

use std::time::{Duration, Instant};

/// Accept-error backoff: 10 ms doubling to 1 s, reset by a good accept.
pub(super) struct Backoff {
    delay: Duration,
    logged_at: Option<Instant>,
    suppressed: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    pub(super) fn new() -> Backoff {
        Backoff {
            delay: Self::MIN,
            logged_at: None,
            suppressed: 0,
        }
    }

    pub(super) fn failed(&mut self, e: &std::io::Error) -> Duration {
        // One log line per second at most: an EMFILE storm must not flood
        // the journal.
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            let more = if self.suppressed > 0 {
                format!(" ({} more since the last message)", self.suppressed)
            } else {
                String::new()
            };
            log::warn!("accept failed: {e}; backing off {:?}{more}", self.delay);
            self.logged_at = Some(Instant::now());
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let d = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        d
    }

    pub(super) fn succeeded(&mut self) {
        self.delay = Self::MIN;
    }
}
