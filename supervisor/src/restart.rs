//! When to start a child again after it died: exponential backoff from
//! 500 ms to 30 s, reset once a child has stayed up for a minute. Pure; the
//! caller passes `now`.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
    started_at: Option<Instant>,
}

impl Backoff {
    pub fn started(&mut self, now: Instant) {
        self.started_at = Some(now);
    }

    /// The child died at `now`: returns when to start it again.
    pub fn died(&mut self, now: Instant) -> Instant {
        if self.started_at.is_some_and(|s| now.duration_since(s) >= STABLE_AFTER) {
            self.failures = 0;
        }
        let delay = FIRST.saturating_mul(1u32 << self.failures.min(16)).min(MAX);
        self.failures += 1;
        self.started_at = None;
        now + delay
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let t = Instant::now();
        let mut b = Backoff::default();
        b.started(t);
        assert_eq!(b.died(t) - t, Duration::from_millis(500));
        b.started(t);
        assert_eq!(b.died(t) - t, Duration::from_secs(1));
        for _ in 0..20 {
            b.started(t);
            b.died(t);
        }
        b.started(t);
        assert_eq!(b.died(t) - t, MAX);
        b.started(t);
        let later = t + STABLE_AFTER;
        assert_eq!(b.died(later) - later, FIRST);
    }
}
