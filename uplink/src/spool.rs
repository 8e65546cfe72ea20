//! What the log says about a spool that keeps overflowing (the spool and
//! its accounting live in `ossensor_shared::delivery`).

use std::time::{Duration, Instant};

/// What the log says about a spool that keeps overflowing: the first drop
/// at once, then at most one summary per `every`, so a long outage at a
/// high rate (hundreds of chunks dropped a second) cannot flood the log.
/// The accounting counts every packet anyway.
pub struct OverflowReport {
    limit_mib: u64,
    every: Duration,
    last_said: Option<Instant>,
    /// Chunks dropped since the last line: how many, first and last seq.
    unsaid: Option<(u64, u64, u64)>,
}

impl OverflowReport {
    pub fn new(limit_mib: u64, every: Duration) -> OverflowReport {
        OverflowReport { limit_mib, every, last_said: None, unsaid: None }
    }

    /// Records the chunks the spool just dropped.
    pub fn dropped(&mut self, seqs: &[u64]) {
        if let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) {
            let (n, a, _) = self.unsaid.unwrap_or((0, first, last));
            self.unsaid = Some((n + seqs.len() as u64, a, last));
        }
    }

    /// The line to log about drops not yet said: the first one at once,
    /// later ones once `every` has passed since the last line.
    pub fn due(&mut self, now: Instant) -> Option<String> {
        let (n, first, last) = self.unsaid?;
        if self.last_said.is_some_and(|t| now.duration_since(t) < self.every) {
            return None;
        }
        let limit = self.limit_mib;
        let line = if self.last_said.is_none() {
            let every = self.every.as_secs();
            format!("spool full ({limit} MiB): dropped the oldest chunks {first}..={last} ({n}) (further drops are summed every {every} s)")
        } else {
            format!("spool full ({limit} MiB): dropped {n} more of the oldest chunks, {first}..={last}, since the last report")
        };
        self.last_said = Some(now);
        self.unsaid = None;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::OverflowReport;

    #[test]
    fn overflow_is_said_at_once_then_summed() {
        let t0 = std::time::Instant::now();
        let every = std::time::Duration::from_secs(10);
        let mut r = OverflowReport::new(64, every);
        assert_eq!(r.due(t0), None, "nothing dropped, nothing said");
        r.dropped(&[2, 3]);
        let first = r.due(t0).unwrap();
        assert!(first.starts_with("spool full (64 MiB): dropped the oldest chunks 2..=3 (2)"), "{first}");
        // Hundreds more within the period: nothing said.
        for seq in 4..500u64 {
            r.dropped(&[seq]);
            assert_eq!(r.due(t0 + std::time::Duration::from_millis(seq)), None);
        }
        assert_eq!(r.due(t0 + std::time::Duration::from_secs(9)), None);
        let sum = r.due(t0 + every).unwrap();
        assert_eq!(sum, "spool full (64 MiB): dropped 496 more of the oldest chunks, 4..=499, since the last report");
        // Nothing new: nothing to say.
        assert_eq!(r.due(t0 + every * 3), None);
    }
}
