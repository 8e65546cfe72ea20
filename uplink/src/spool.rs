//! The bounded spool of compressed chunks waiting for the collector, and
//! the packet accounting that proves nothing vanishes silently:
//! captured = delivered + dropped (by reason) + still held.
//!
//! When the spool is full the oldest chunk is dropped (recent traffic is
//! usually what an analyst needs during an outage) and its packets are
//! counted under `dropped_spool_full`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub struct SpooledChunk {
    pub seq: u64,
    pub body: Vec<u8>,
    pub raw_len: usize,
    pub packets: u64,
    pub compressed: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Accounting {
    /// Packets received from the workers.
    pub captured: u64,
    /// Packets the collector acknowledged.
    pub delivered: u64,
    /// Dropped because the spool was full while the collector was away.
    pub dropped_spool_full: u64,
    /// Dropped because the collector refused the chunk as malformed (4xx).
    pub dropped_refused: u64,
    /// Dropped because the sensor stopped before the collector took them.
    pub dropped_at_exit: u64,
    /// Chunks the collector acknowledged, and their bodies' bytes as sent
    /// and before compression.
    pub chunks_delivered: u64,
    pub bytes_delivered: u64,
    pub raw_bytes_delivered: u64,
}

pub struct Spool {
    queue: VecDeque<SpooledChunk>,
    bytes: u64,
    limit: u64,
    pub accounting: Accounting,
}

impl Spool {
    pub fn new(limit: u64) -> Spool {
        Spool { queue: VecDeque::new(), bytes: 0, limit, accounting: Accounting::default() }
    }

    /// Queues a chunk, dropping the oldest ones while over the bound. A
    /// chunk larger than the whole bound is still kept alone, so a bound
    /// below one chunk never stalls the sensor.
    pub fn push(&mut self, chunk: SpooledChunk) -> Vec<u64> {
        let mut dropped = Vec::new();
        self.bytes += chunk.body.len() as u64;
        self.queue.push_back(chunk);
        while self.bytes > self.limit && self.queue.len() > 1 {
            let old = self.queue.pop_front().expect("non-empty");
            self.bytes -= old.body.len() as u64;
            self.accounting.dropped_spool_full += old.packets;
            dropped.push(old.seq);
        }
        dropped
    }

    pub fn pop(&mut self) -> Option<SpooledChunk> {
        let c = self.queue.pop_front()?;
        self.bytes -= c.body.len() as u64;
        Some(c)
    }

    /// The bound, in bytes.
    pub fn capacity(&self) -> u64 {
        self.limit
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn held_packets(&self) -> u64 {
        self.queue.iter().map(|c| c.packets).sum()
    }
}

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

    use super::*;
    use proptest::prelude::*;

    fn chunk(seq: u64, size: usize, packets: u64) -> SpooledChunk {
        SpooledChunk { seq, body: vec![0; size], raw_len: size, packets, compressed: false }
    }

    #[test]
    fn drops_oldest_when_full_and_counts_packets() {
        let mut s = Spool::new(250);
        assert!(s.push(chunk(1, 100, 10)).is_empty());
        assert!(s.push(chunk(2, 100, 20)).is_empty());
        assert_eq!(s.push(chunk(3, 100, 30)), vec![1]);
        assert_eq!(s.accounting.dropped_spool_full, 10);
        assert_eq!(s.pop().unwrap().seq, 2);
        assert_eq!(s.pop().unwrap().seq, 3);
        assert!(s.pop().is_none());
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn one_oversized_chunk_is_kept() {
        let mut s = Spool::new(10);
        assert!(s.push(chunk(1, 100, 1)).is_empty());
        assert_eq!(s.len(), 1);
    }

    proptest! {
        #[test]
        fn accounting_holds(sizes in proptest::collection::vec((1usize..500, 1u64..50), 0..60), limit in 1u64..3000) {
            let mut s = Spool::new(limit);
            let mut pushed = 0;
            for (i, (size, p)) in sizes.iter().enumerate() {
                s.push(chunk(i as u64, *size, *p));
                pushed += p;
                prop_assert!(s.bytes() <= limit || s.len() == 1);
            }
            prop_assert_eq!(pushed, s.held_packets() + s.accounting.dropped_spool_full);
            let mut last = None;
            while let Some(c) = s.pop() {
                prop_assert!(last.is_none_or(|l| c.seq > l), "order kept");
                last = Some(c.seq);
            }
        }
    }
}
