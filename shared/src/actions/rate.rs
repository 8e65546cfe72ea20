//! A token bucket on the caller's clock: at most `burst` frames at once,
//! then `per_second` frames a second.

const NS_PER_S: u64 = 1_000_000_000;

pub struct TokenBucket {
    per_second: u64,
    /// Capacity, in frame-nanoseconds (a frame costs NS_PER_S of them).
    cap: u64,
    level: u64,
    last_ns: Option<u64>,
}

impl TokenBucket {
    /// Starts full.
    pub fn new(per_second: u64, burst: u64) -> TokenBucket {
        let cap = burst.saturating_mul(NS_PER_S);
        TokenBucket { per_second, cap, level: cap, last_ns: None }
    }

    /// Takes one frame's token if there is one. A clock that goes back
    /// (timestamps of two rings) adds nothing and takes nothing away.
    pub fn take(&mut self, now_ns: u64) -> bool {
        match self.last_ns {
            Some(last) if now_ns <= last => {}
            Some(last) => {
                self.level = self.level.saturating_add((now_ns - last).saturating_mul(self.per_second)).min(self.cap);
                self.last_ns = Some(now_ns);
            }
            None => self.last_ns = Some(now_ns),
        }
        if self.level >= NS_PER_S {
            self.level -= NS_PER_S;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = TokenBucket::new(1000, 10);
        let t0 = 5 * NS_PER_S;
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10, "the burst");
        assert!(!b.take(t0 + 999_999), "not yet a millisecond");
        assert!(b.take(t0 + 1_000_000), "one per millisecond");
        assert!(!b.take(t0 + 1_000_000));
        assert!(!b.take(t0), "a clock going back gives nothing");
        assert_eq!((0..50).filter(|_| b.take(t0 + 60 * NS_PER_S)).count(), 10, "refills up to the burst only");
    }
}
