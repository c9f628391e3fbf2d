//! A token bucket: `burst` tokens at most, one more every `every`.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct Bucket {
    burst: f64,
    every: Duration,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(super) fn new(burst: u32, every: Duration, now: Instant) -> Bucket {
        Bucket {
            burst: f64::from(burst),
            every,
            tokens: f64::from(burst),
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let refill = elapsed / self.every.as_secs_f64().max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    pub(super) fn empty(&mut self) {
        self.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, Duration::from_secs(1), t0);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3);
        assert!(!b.take(t0 + Duration::from_millis(500)));
        assert!(b.take(t0 + Duration::from_millis(1000)));
        assert!(!b.take(t0 + Duration::from_millis(1100)));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..5).filter(|_| b.take(later)).count(), 3);
    }
}
