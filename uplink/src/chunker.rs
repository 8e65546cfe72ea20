//! Turns the workers' batches into chunks: each chunk is one pcapng section
//! with an Interface Description Block per interface it holds (named), and
//! an Enhanced Packet Block per packet (nanosecond timestamp, original
//! length, direction). A chunk closes when it reaches its size or when its
//! first packet reaches its age limit, so sparse traffic is not held back.
//! No I/O and no clock: the caller passes `now`.

use ossensor_shared::bpf::SNAPLEN;
use ossensor_shared::ipc::{records, FrameError};
use ossensor_shared::log::{self as slog, PACKETS};
use ossensor_shared::pcapng::SectionWriter;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A closed chunk, not yet compressed.
pub struct RawChunk {
    pub pcapng: Vec<u8>,
    pub packets: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
}

pub struct Chunker {
    section: SectionWriter,
    /// Interface name → id within the open section.
    ids: HashMap<String, u32>,
    packets: u64,
    first_ts_ns: u64,
    last_ts_ns: u64,
    opened_at: Option<Instant>,
    max_bytes: usize,
    max_age: Duration,
    user_appl: String,
}

impl Chunker {
    pub fn new(max_bytes: usize, max_age: Duration, user_appl: String) -> Chunker {
        let mut c = Chunker {
            section: SectionWriter::new(),
            ids: HashMap::new(),
            packets: 0,
            first_ts_ns: u64::MAX,
            last_ts_ns: 0,
            opened_at: None,
            max_bytes,
            max_age,
            user_appl,
        };
        c.section.begin(&c.user_appl);
        c
    }

    /// Adds a batch's records and returns how many it added, with the
    /// error that stopped it early if a record was malformed (the records
    /// before it are kept). Closed chunks (zero or more: a large batch may
    /// fill several) go to `closed`.
    pub fn add_batch(
        &mut self,
        interface: &str,
        linktype: i32,
        batch: &[u8],
        now: Instant,
        closed: &mut Vec<RawChunk>,
    ) -> (u64, Option<FrameError>) {
        let mut added = 0;
        for rec in records(batch) {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => return (added, Some(e)),
            };
            let id = match self.ids.get(interface) {
                Some(id) => *id,
                None => {
                    let id = self.section.add_interface(interface, linktype as u16, SNAPLEN);
                    self.ids.insert(interface.to_string(), id);
                    id
                }
            };
            if slog::enabled(PACKETS) {
                ossensor_shared::log!(
                    PACKETS,
                    "packet {} {:?} ts {} len {}/{}{}",
                    interface,
                    rec.direction,
                    rec.ts_ns,
                    rec.data.len(),
                    rec.orig_len,
                    slog::hex_lines(rec.data)
                );
            }
            self.section.add_packet(id, rec.ts_ns, rec.orig_len, rec.data, rec.direction);
            self.packets += 1;
            added += 1;
            self.first_ts_ns = self.first_ts_ns.min(rec.ts_ns);
            self.last_ts_ns = self.last_ts_ns.max(rec.ts_ns);
            self.opened_at.get_or_insert(now);
            if self.section.len() >= self.max_bytes {
                closed.push(self.close());
            }
        }
        (added, None)
    }

    /// Closes the open chunk if its age limit has passed.
    pub fn tick(&mut self, now: Instant) -> Option<RawChunk> {
        match self.opened_at {
            Some(t) if now.duration_since(t) >= self.max_age => Some(self.close()),
            _ => None,
        }
    }

    /// When the open chunk must be closed, if it holds anything.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.max_age)
    }

    /// Closes the open chunk whatever its size (shutdown), if non-empty.
    pub fn flush(&mut self) -> Option<RawChunk> {
        (self.packets > 0).then(|| self.close())
    }

    pub fn pending_packets(&self) -> u64 {
        self.packets
    }

    fn close(&mut self) -> RawChunk {
        let chunk = RawChunk {
            pcapng: self.section.bytes().to_vec(),
            packets: self.packets,
            first_ts_ns: self.first_ts_ns,
            last_ts_ns: self.last_ts_ns,
        };
        self.section.begin(&self.user_appl);
        self.ids.clear();
        self.packets = 0;
        self.first_ts_ns = u64::MAX;
        self.last_ts_ns = 0;
        self.opened_at = None;
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossensor_shared::ipc::push_record;
    use ossensor_shared::pcapng::{check_sections, for_each_packet, Direction};

    fn batch(n: usize, size: usize) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..n {
            push_record(&mut b, 1000 + i as u64, size as u32, &vec![i as u8; size], Direction::Inbound);
        }
        b
    }

    #[test]
    fn chunk_closes_on_size_and_holds_every_packet_once() {
        let mut c = Chunker::new(10_000, Duration::from_secs(1), "t".into());
        let now = Instant::now();
        let mut closed = Vec::new();
        assert_eq!(c.add_batch("eth0", 1, &batch(30, 1000), now, &mut closed), (30, None));
        assert_eq!(c.add_batch("veth1", 1, &batch(5, 100), now, &mut closed), (5, None));
        closed.extend(c.flush());
        let total: u64 = closed.iter().map(|r| r.packets).sum();
        assert_eq!(total, 35);
        assert!(closed.len() >= 3);
        for r in &closed {
            let s = check_sections(&r.pcapng).unwrap();
            assert_eq!(s.packets, r.packets);
            assert_eq!(s.sections, 1);
        }
        let mut seen = 0;
        for_each_packet(&closed.last().unwrap().pcapng, |p| {
            assert_eq!(p.direction, Direction::Inbound);
            seen += 1;
        })
        .unwrap();
        assert!(seen > 0);
    }

    #[test]
    fn chunk_closes_on_age_only_when_due() {
        let mut c = Chunker::new(1 << 20, Duration::from_millis(200), "t".into());
        let t0 = Instant::now();
        assert!(c.tick(t0).is_none());
        let mut closed = Vec::new();
        assert_eq!(c.add_batch("eth0", 1, &batch(1, 60), t0, &mut closed).0, 1);
        assert!(closed.is_empty());
        assert!(c.tick(t0 + Duration::from_millis(100)).is_none());
        let r = c.tick(t0 + Duration::from_millis(200)).unwrap();
        assert_eq!(r.packets, 1);
        assert!(c.flush().is_none());
    }

    #[test]
    fn malformed_batch_is_an_error_not_a_panic() {
        let mut c = Chunker::new(1 << 20, Duration::from_secs(1), "t".into());
        let mut b = batch(2, 60);
        b.truncate(b.len() - 1);
        let (added, err) = c.add_batch("eth0", 1, &b, Instant::now(), &mut Vec::new());
        assert_eq!(added, 1, "the record before the damage is kept");
        assert!(err.is_some());
        assert_eq!(c.pending_packets(), 1);
    }
}
