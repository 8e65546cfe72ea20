//! Delivery to the collector as a state machine, in quinn-proto's shape:
//! the uplink's sender asks [`Delivery::poll`] what to do next (register,
//! send the chunk in flight, send a status report, wait until a time, or
//! stop) and hands each answer back to [`Delivery::handle`]. Nothing here
//! opens a socket, sleeps or reads a clock: `now` comes in, so tests run it
//! on a virtual clock, against the collector's real request handlers.
//!
//! It owns the spool (compressed chunks waiting, bounded, oldest dropped
//! first) and the packet accounting, the one place every counter changes:
//!
//! `captured = delivered + dropped_spool_full + dropped_refused + dropped_at_exit + held`
//!
//! where `held` is what the spool and the chunk in flight hold.
//!
//! Rules (as the sender always followed them): chunks go one at a time, in
//! order; a chunk leaves for good only when the collector acknowledged it
//! (stored, or already stored) or refused it as malformed (400/413, counted
//! as refused); any other failure keeps it and retries after a backoff from
//! 250 ms doubling to 30 s; an answer that does not prove the key (or a 401,
//! or a changed certificate) means registering again. A status report goes
//! right after each registration and then every `status_every`. Once
//! closing, what is left is delivered for `grace`, then counted as dropped
//! at exit; a sensor that delivered everything says it is leaving.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A compressed chunk, numbered, waiting for the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub seq: u64,
    pub body: Vec<u8>,
    pub raw_len: usize,
    pub packets: u64,
    pub compressed: bool,
}

/// The packet accounting. `held` is not stored: it is what the spool and
/// the chunk in flight hold ([`Delivery::held_packets`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accounting {
    /// Packets received from the workers.
    pub captured: u64,
    /// Packets the collector acknowledged.
    pub delivered: u64,
    /// Dropped because the spool was full while the collector was away.
    pub dropped_spool_full: u64,
    /// Dropped because the collector refused the chunk as malformed (400/413).
    pub dropped_refused: u64,
    /// Dropped because the sensor stopped before the collector took them.
    pub dropped_at_exit: u64,
    /// Chunks the collector acknowledged, and their bytes as sent and
    /// before compression.
    pub chunks_delivered: u64,
    pub bytes_delivered: u64,
    pub raw_bytes_delivered: u64,
}

impl Accounting {
    pub fn dropped(&self) -> u64 {
        self.dropped_spool_full + self.dropped_refused + self.dropped_at_exit
    }
}

/// Timings; [`Timings::default`] is what the uplink uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub status_every: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// After `close`, how long delivery goes on.
    pub grace: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            status_every: Duration::from_secs(5),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            grace: Duration::from_secs(5),
        }
    }
}

/// What the driver should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Register (then hand back [`Outcome::Registered`] or a failure).
    Register,
    /// Send this chunk (the one in flight).
    SendChunk(Arc<Chunk>),
    /// Send a status report; `leaving`: the last one, the sensor stops.
    SendStatus { leaving: bool },
    /// Nothing before `until` (None: until a chunk or `close` comes).
    Wait { until: Option<Instant> },
    /// Stopped: everything is delivered, or counted as dropped at exit.
    Done,
}

/// How a request the driver made ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Registered,
    /// The chunk was acknowledged; `stored`: false if the collector had it.
    ChunkAcked {
        stored: bool,
    },
    /// The collector refused the chunk as malformed (400, 413): it is
    /// dropped and counted, or it would block the queue for ever.
    ChunkRejected,
    StatusSent,
    Failed(Failure),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, timeout, TLS failure…
    Transport,
    /// The answer did not prove the key, a 401, or the certificate
    /// changed: register again before anything else.
    Untrusted,
    /// Another refusal (5xx, 429…): retry later.
    Refused,
}

/// What the last `poll` asked for, so `handle` knows what the outcome is
/// about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Nothing,
    Register,
    Chunk,
    Status { leaving: bool },
}

pub struct Delivery {
    timings: Timings,
    spool: VecDeque<Arc<Chunk>>,
    spool_bytes: u64,
    spool_limit: u64,
    in_flight: Option<Arc<Chunk>>,
    accounting: Accounting,
    registered: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    next_status_at: Option<Instant>,
    closing_since: Option<Instant>,
    left: bool,
    asked: Asked,
}

impl Delivery {
    pub fn new(spool_limit: u64, timings: Timings) -> Delivery {
        Delivery {
            timings,
            spool: VecDeque::new(),
            spool_bytes: 0,
            spool_limit,
            in_flight: None,
            accounting: Accounting::default(),
            registered: false,
            backoff: timings.min_backoff,
            retry_at: None,
            next_status_at: None,
            closing_since: None,
            left: false,
            asked: Asked::Nothing,
        }
    }

    /// Packets the workers handed over (chunked or about to be).
    pub fn captured(&mut self, packets: u64) {
        self.accounting.captured += packets;
    }

    /// Queues a chunk, dropping the oldest queued ones while the spool,
    /// the chunk in flight included, is over its bound (the newest chunk
    /// is always kept, so a bound below one chunk never stalls the
    /// sensor). Returns the seqs dropped.
    pub fn push(&mut self, chunk: Chunk) -> Vec<u64> {
        let mut dropped = Vec::new();
        self.spool_bytes += chunk.body.len() as u64;
        self.spool.push_back(Arc::new(chunk));
        while self.spool_bytes() > self.spool_limit && self.spool.len() > 1 {
            let old = self.spool.pop_front().expect("non-empty");
            self.spool_bytes -= old.body.len() as u64;
            self.accounting.dropped_spool_full += old.packets;
            dropped.push(old.seq);
        }
        dropped
    }

    /// No more chunks will come: deliver what is left for `grace`.
    pub fn close(&mut self, now: Instant) {
        self.closing_since.get_or_insert(now);
    }

    pub fn is_closing(&self) -> bool {
        self.closing_since.is_some()
    }

    pub fn is_registered(&self) -> bool {
        self.registered
    }

    pub fn accounting(&self) -> Accounting {
        self.accounting
    }

    /// Packets the spool and the chunk in flight hold.
    pub fn held_packets(&self) -> u64 {
        self.spool.iter().chain(self.in_flight.iter()).map(|c| c.packets).sum()
    }

    pub fn spool_bytes(&self) -> u64 {
        self.spool_bytes + self.in_flight.as_ref().map_or(0, |c| c.body.len() as u64)
    }

    pub fn spool_capacity(&self) -> u64 {
        self.spool_limit
    }

    pub fn spool_chunks(&self) -> usize {
        self.spool.len() + self.in_flight.is_some() as usize
    }

    pub fn poll(&mut self, now: Instant) -> Next {
        self.asked = Asked::Nothing;
        if self.left {
            return Next::Done;
        }
        if let Some(since) = self.closing_since {
            if now.saturating_duration_since(since) >= self.timings.grace {
                self.abandon();
                return Next::Done;
            }
        }
        if self.registered && self.next_status_at.is_some_and(|t| t <= now) {
            self.asked = Asked::Status { leaving: false };
            return Next::SendStatus { leaving: false };
        }
        if let Some(at) = self.retry_at.filter(|t| *t > now) {
            return Next::Wait { until: Some(self.earliest(at)) };
        }
        if !self.registered {
            self.asked = Asked::Register;
            return Next::Register;
        }
        if self.in_flight.is_none() {
            if let Some(c) = self.spool.pop_front() {
                self.spool_bytes -= c.body.len() as u64;
                self.in_flight = Some(c);
            }
        }
        if let Some(c) = &self.in_flight {
            self.asked = Asked::Chunk;
            return Next::SendChunk(c.clone());
        }
        if self.closing_since.is_some() {
            // Everything delivered: tell the collector, so the other
            // sensors take back the flows they left to this one.
            self.asked = Asked::Status { leaving: true };
            return Next::SendStatus { leaving: true };
        }
        Next::Wait { until: self.next_status_at }
    }

    /// The earlier of `t` and the next status report.
    fn earliest(&self, t: Instant) -> Instant {
        match self.next_status_at {
            Some(s) if self.registered && s < t => s,
            _ => t,
        }
    }

    pub fn handle(&mut self, now: Instant, outcome: Outcome) {
        let asked = std::mem::replace(&mut self.asked, Asked::Nothing);
        match (asked, outcome) {
            (Asked::Register, Outcome::Registered) => {
                self.registered = true;
                self.succeeded();
                self.next_status_at = Some(now);
            }
            (Asked::Chunk, Outcome::ChunkAcked { .. }) => {
                let c = self.in_flight.take().expect("a chunk in flight");
                let a = &mut self.accounting;
                a.delivered += c.packets;
                a.chunks_delivered += 1;
                a.bytes_delivered += c.body.len() as u64;
                a.raw_bytes_delivered += c.raw_len as u64;
                self.succeeded();
            }
            (Asked::Chunk, Outcome::ChunkRejected) => {
                let c = self.in_flight.take().expect("a chunk in flight");
                self.accounting.dropped_refused += c.packets;
                self.succeeded();
            }
            (Asked::Status { leaving }, Outcome::StatusSent | Outcome::Failed(_)) => {
                // A status report is never retried early: the next one
                // carries fresher numbers anyway.
                self.next_status_at = Some(now + self.timings.status_every);
                if outcome == Outcome::StatusSent {
                    // The collector answers again: the chunk waiting for
                    // its backoff goes now.
                    self.succeeded();
                }
                if leaving {
                    self.left = true;
                }
                if outcome == Outcome::Failed(Failure::Untrusted) {
                    self.registered = false;
                }
            }
            (Asked::Register | Asked::Chunk, Outcome::Failed(f)) => {
                if f == Failure::Untrusted {
                    self.registered = false;
                }
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(self.timings.max_backoff);
            }
            // An outcome that answers nothing asked: ignored (a driver bug,
            // never a reason to lose count).
            _ => {}
        }
    }

    fn succeeded(&mut self) {
        self.backoff = self.timings.min_backoff;
        self.retry_at = None;
    }

    /// The grace is over: what is held is counted as dropped at exit.
    fn abandon(&mut self) {
        let lost = self.held_packets();
        self.spool.clear();
        self.spool_bytes = 0;
        self.in_flight = None;
        self.accounting.dropped_at_exit += lost;
        self.left = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chunk(seq: u64, bytes: usize, packets: u64) -> Chunk {
        Chunk { seq, body: vec![0; bytes], raw_len: bytes * 2, packets, compressed: true }
    }

    fn balanced(d: &Delivery) -> bool {
        let a = d.accounting();
        a.captured == a.delivered + a.dropped() + d.held_packets()
    }

    /// Registers and answers the first status report.
    fn registered(d: &mut Delivery, t: Instant) {
        assert_eq!(d.poll(t), Next::Register);
        d.handle(t, Outcome::Registered);
        assert_eq!(d.poll(t), Next::SendStatus { leaving: false });
        d.handle(t, Outcome::StatusSent);
    }

    #[test]
    fn chunks_go_in_order_one_at_a_time_and_are_counted_once_acknowledged() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        assert_eq!(d.poll(t), Next::Register);
        d.handle(t, Outcome::Registered);
        assert_eq!(d.poll(t), Next::SendStatus { leaving: false }, "a report right after registering");
        d.handle(t, Outcome::StatusSent);
        assert_eq!(d.poll(t), Next::Wait { until: Some(t + Duration::from_secs(5)) });
        for s in 1..=3 {
            d.captured(10);
            d.push(chunk(s, 100, 10));
        }
        for s in 1..=3 {
            let Next::SendChunk(c) = d.poll(t) else { panic!("a chunk") };
            assert_eq!(c.seq, s);
            assert_eq!(d.poll(t), Next::SendChunk(c.clone()), "the same until answered");
            d.handle(t, Outcome::ChunkAcked { stored: true });
            assert!(balanced(&d));
        }
        let a = d.accounting();
        assert_eq!((a.delivered, a.chunks_delivered, a.bytes_delivered, a.raw_bytes_delivered), (30, 3, 300, 600));
        assert_eq!(d.held_packets(), 0);
    }

    #[test]
    fn failures_back_off_doubling_and_keep_the_chunk() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        registered(&mut d, t);
        d.captured(5);
        d.push(chunk(1, 10, 5));
        let mut now = t;
        let mut waits = Vec::new();
        for _ in 0..9 {
            assert!(matches!(d.poll(now), Next::SendChunk(_)));
            d.handle(now, Outcome::Failed(Failure::Transport));
            let Next::Wait { until: Some(u) } = d.poll(now) else { panic!("a wait") };
            // Status reports still go meanwhile, and fail too.
            let retry = d.retry_at.unwrap();
            waits.push(retry - now);
            now = retry;
            while let Next::SendStatus { .. } = d.poll(now) {
                d.handle(now, Outcome::Failed(Failure::Transport));
            }
            assert!(u <= retry);
        }
        let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(ms, vec![250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(d.held_packets(), 5);
        assert!(balanced(&d));
        assert!(matches!(d.poll(now), Next::SendChunk(_)));
        d.handle(now, Outcome::ChunkAcked { stored: false });
        assert_eq!(d.accounting().delivered, 5, "already stored counts as delivered");
        assert_eq!(d.backoff, Duration::from_millis(250), "success resets the backoff");
    }

    #[test]
    fn a_status_answer_during_a_backoff_sends_the_chunk_at_once() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        registered(&mut d, t);
        d.captured(1);
        d.push(chunk(1, 10, 1));
        let mut now = t;
        let mut failed = 0;
        while failed < 6 {
            match d.poll(now) {
                Next::SendChunk(_) => {
                    d.handle(now, Outcome::Failed(Failure::Transport));
                    failed += 1;
                    now = d.retry_at.unwrap();
                }
                Next::SendStatus { .. } => d.handle(now, Outcome::Failed(Failure::Transport)),
                other => panic!("{other:?}"),
            }
        }
        // The next retry is 8 s away; the next status report, before it,
        // gets an answer: the collector is back.
        assert_eq!(d.retry_at, Some(t + Duration::from_millis(15_750)));
        let back = d.next_status_at.unwrap();
        assert!(back < t + Duration::from_millis(15_750));
        assert_eq!(d.poll(back), Next::SendStatus { leaving: false });
        d.handle(back, Outcome::StatusSent);
        assert!(matches!(d.poll(back), Next::SendChunk(_)), "no need to wait out the backoff");
    }

    #[test]
    fn an_untrusted_answer_means_registering_again_before_the_chunk() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        registered(&mut d, t);
        d.captured(1);
        d.push(chunk(1, 10, 1));
        assert!(matches!(d.poll(t), Next::SendChunk(_)));
        d.handle(t, Outcome::Failed(Failure::Untrusted));
        let later = t + Duration::from_secs(1);
        assert_eq!(d.poll(later), Next::Register);
        d.handle(later, Outcome::Registered);
        assert_eq!(d.poll(later), Next::SendStatus { leaving: false });
        d.handle(later, Outcome::StatusSent);
        let Next::SendChunk(c) = d.poll(later) else { panic!() };
        assert_eq!(c.seq, 1, "the same chunk, again");
    }

    #[test]
    fn a_rejected_chunk_is_dropped_and_counted() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        registered(&mut d, t);
        d.captured(7);
        d.push(chunk(1, 10, 7));
        assert!(matches!(d.poll(t), Next::SendChunk(_)));
        d.handle(t, Outcome::ChunkRejected);
        assert_eq!(d.accounting().dropped_refused, 7);
        assert!(balanced(&d));
    }

    #[test]
    fn a_full_spool_drops_the_oldest_never_the_chunk_in_flight() {
        let t = Instant::now();
        let mut d = Delivery::new(250, Timings::default());
        registered(&mut d, t);
        for s in 1..=2 {
            d.captured(1);
            d.push(chunk(s, 100, 1));
        }
        assert!(matches!(d.poll(t), Next::SendChunk(_)));
        let mut dropped = Vec::new();
        for s in 3..=6 {
            d.captured(1);
            dropped.extend(d.push(chunk(s, 100, 1)));
        }
        assert_eq!(dropped, vec![2, 3, 4, 5], "the oldest queued; chunk 1 is in flight and counts toward the bound");
        assert_eq!(d.accounting().dropped_spool_full, 4);
        assert!(d.spool_bytes() <= 250);
        assert!(balanced(&d));
        // One chunk larger than the whole bound is kept alone.
        let mut big = Delivery::new(10, Timings::default());
        big.captured(1);
        assert!(big.push(chunk(1, 100, 1)).is_empty());
        assert_eq!(big.spool_chunks(), 1);
    }

    #[test]
    fn closing_delivers_then_says_it_leaves_or_counts_the_rest_at_exit() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        registered(&mut d, t);
        d.captured(3);
        d.push(chunk(1, 10, 3));
        d.close(t);
        assert!(matches!(d.poll(t), Next::SendChunk(_)));
        d.handle(t, Outcome::ChunkAcked { stored: true });
        assert_eq!(d.poll(t), Next::SendStatus { leaving: true });
        d.handle(t, Outcome::StatusSent);
        assert_eq!(d.poll(t), Next::Done);

        // The collector away while stopping: after the grace, counted.
        let mut d = Delivery::new(1 << 20, Timings::default());
        registered(&mut d, t);
        d.captured(4);
        d.push(chunk(1, 10, 4));
        d.close(t);
        assert!(matches!(d.poll(t), Next::SendChunk(_)));
        d.handle(t, Outcome::Failed(Failure::Transport));
        assert!(matches!(d.poll(t + Duration::from_secs(4)), Next::SendChunk(_) | Next::Wait { .. } | Next::SendStatus { .. }));
        assert_eq!(d.poll(t + Duration::from_secs(5)), Next::Done);
        assert_eq!(d.accounting().dropped_at_exit, 4);
        assert!(balanced(&d));
    }

    #[test]
    fn an_outcome_nobody_asked_for_changes_nothing() {
        let t = Instant::now();
        let mut d = Delivery::new(1 << 20, Timings::default());
        d.handle(t, Outcome::ChunkAcked { stored: true });
        d.handle(t, Outcome::Registered);
        assert!(!d.is_registered());
        assert_eq!(d.accounting(), Accounting::default());
    }

    proptest! {
        /// The spool keeps to its bound (but for one chunk larger than it),
        /// drops in order, and counts every packet it drops.
        #[test]
        fn the_spool_keeps_its_bound(sizes in proptest::collection::vec((1usize..500, 1u64..50), 0..60), limit in 1u64..3000) {
            let mut d = Delivery::new(limit, Timings::default());
            let mut last_dropped = None;
            for (i, (size, p)) in sizes.iter().enumerate() {
                d.captured(*p);
                for s in d.push(chunk(i as u64, *size, *p)) {
                    prop_assert!(last_dropped.is_none_or(|l| s > l), "the oldest first");
                    last_dropped = Some(s);
                }
                prop_assert!(d.spool_bytes() <= limit || d.spool_chunks() == 1);
                prop_assert!(balanced(&d));
            }
        }

        /// Whatever the collector answers and whenever chunks come, the
        /// accounting balances after every step, chunks leave in order,
        /// and closing always ends.
        #[test]
        fn the_accounting_always_balances(steps in proptest::collection::vec((0u8..8, 0u64..50, 1usize..300), 1..200)) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut d = Delivery::new(1000, Timings::default());
            let mut seq = 0;
            let mut last_sent = 0;
            for (what, packets, bytes) in steps {
                match d.poll(now) {
                    Next::SendChunk(c) => {
                        prop_assert!(c.seq >= last_sent, "in order");
                        last_sent = c.seq;
                        let o = match what { 0..=3 => Outcome::ChunkAcked { stored: what != 0 }, 4 => Outcome::ChunkRejected, 5 => Outcome::Failed(Failure::Untrusted), _ => Outcome::Failed(Failure::Transport) };
                        d.handle(now, o);
                    }
                    Next::Register => d.handle(now, if what < 6 { Outcome::Registered } else { Outcome::Failed(Failure::Transport) }),
                    Next::SendStatus { .. } => d.handle(now, Outcome::StatusSent),
                    Next::Wait { .. } | Next::Done => {}
                }
                if what % 2 == 0 {
                    seq += 1;
                    d.captured(packets);
                    d.push(chunk(seq, bytes, packets));
                }
                now += Duration::from_millis(100 * what as u64);
                prop_assert!(balanced(&d));
            }
            d.close(now);
            let mut steps = 0;
            while d.poll(now) != Next::Done {
                now += Duration::from_millis(300);
                steps += 1;
                prop_assert!(steps < 100, "closing ends");
            }
            prop_assert!(balanced(&d));
            prop_assert_eq!(d.held_packets(), 0);
        }
    }
}
