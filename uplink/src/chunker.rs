//! Turns the workers' batches into chunks: each chunk is one pcapng section
//! with an Interface Description Block per interface it holds (named), and
//! an Enhanced Packet Block per packet (nanosecond timestamp, original
//! length, direction). A chunk closes when it reaches its size or when its
//! first packet reaches its age limit, so sparse traffic is not held back.
//! No I/O and no clock: the caller passes `now`.

use ossensor_host::log::{self as slog, PACKETS};
use ossensor_shared::bpf::SNAPLEN;
use ossensor_shared::dedup::Deduplicator;
use ossensor_shared::ipc::{records, FrameError};
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
    /// Copies of one frame from several interfaces: None when off.
    dedup: Option<Deduplicator>,
    /// Whether more than one interface feeds us now (one cannot duplicate).
    dedup_active: bool,
    /// Interface name → small number, for the deduplicator.
    iface_numbers: HashMap<String, u16>,
}

/// What one batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub packets: u64,
    pub duplicates: u64,
    /// The malformed record that stopped the batch early, if any.
    pub error: Option<FrameError>,
}

impl Chunker {
    pub fn new(max_bytes: usize, max_age: Duration, user_appl: String, deduplicate: bool) -> Chunker {
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
            dedup: deduplicate.then(Deduplicator::new),
            dedup_active: false,
            iface_numbers: HashMap::new(),
        };
        c.section.begin(&c.user_appl);
        c
    }

    /// Turns de-duplication on while more than one interface feeds us
    /// (if it is enabled at all).
    pub fn set_interfaces(&mut self, count: usize) {
        self.dedup_active = count > 1;
    }

    /// Adds a batch's records (but copies of frames already taken from
    /// another interface) and says how many it added and dropped, with the
    /// error that stopped it early if a record was malformed (the records
    /// before it are kept). Closed chunks (zero or more: a large batch may
    /// fill several) go to `closed`.
    pub fn add_batch(&mut self, interface: &str, linktype: i32, batch: &[u8], now: Instant, closed: &mut Vec<RawChunk>) -> Added {
        let mut out = Added { packets: 0, duplicates: 0, error: None };
        let number = match self.iface_numbers.get(interface) {
            Some(n) => *n,
            None => {
                let n = self.iface_numbers.len() as u16;
                self.iface_numbers.insert(interface.to_string(), n);
                n
            }
        };
        for rec in records(batch) {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    out.error = Some(e);
                    break;
                }
            };
            if let Some(d) = self.dedup.as_mut().filter(|_| self.dedup_active) {
                if d.is_duplicate(linktype, number, rec.ts_ns, rec.data) {
                    out.duplicates += 1;
                    continue;
                }
            }
            let id = match self.ids.get(interface) {
                Some(id) => *id,
                None => {
                    let id = self.section.add_interface(interface, linktype as u16, SNAPLEN);
                    self.ids.insert(interface.to_string(), id);
                    id
                }
            };
            if slog::enabled(PACKETS) {
                ossensor_host::log!(
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
            out.packets += 1;
            self.first_ts_ns = self.first_ts_ns.min(rec.ts_ns);
            self.last_ts_ns = self.last_ts_ns.max(rec.ts_ns);
            self.opened_at.get_or_insert(now);
            if self.section.len() >= self.max_bytes {
                closed.push(self.close());
            }
        }
        out
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
        let chunk = RawChunk { pcapng: self.section.bytes().to_vec(), packets: self.packets, first_ts_ns: self.first_ts_ns, last_ts_ns: self.last_ts_ns };
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
        let mut c = Chunker::new(10_000, Duration::from_secs(1), "t".into(), true);
        let now = Instant::now();
        let mut closed = Vec::new();
        assert_eq!(c.add_batch("eth0", 1, &batch(30, 1000), now, &mut closed).packets, 30);
        assert_eq!(c.add_batch("veth1", 1, &batch(5, 100), now, &mut closed).packets, 5);
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
    fn copies_from_a_second_interface_are_dropped_only_while_two_feed_us() {
        // An IPv4/UDP frame, the same on both interfaces.
        let mut frame = vec![0u8; 14];
        frame[12] = 8;
        frame.extend_from_slice(&[0x45, 0, 0, 33, 0, 9, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, 0, 13, 0, 0]);
        frame.extend_from_slice(b"hello");
        let mut b = Vec::new();
        push_record(&mut b, 1000, frame.len() as u32, &frame, Direction::Inbound);
        let now = Instant::now();
        let mut c = Chunker::new(1 << 20, Duration::from_secs(1), "t".into(), true);
        c.set_interfaces(1);
        assert_eq!(c.add_batch("veth0", 1, &b, now, &mut Vec::new()).packets, 1);
        assert_eq!(c.add_batch("br0", 1, &b, now, &mut Vec::new()).packets, 1, "one interface at a time: nothing to compare");
        c.set_interfaces(2);
        let mut c2 = Chunker::new(1 << 20, Duration::from_secs(1), "t".into(), true);
        c2.set_interfaces(2);
        assert_eq!(c2.add_batch("veth0", 1, &b, now, &mut Vec::new()).packets, 1);
        let a = c2.add_batch("br0", 1, &b, now, &mut Vec::new());
        assert_eq!((a.packets, a.duplicates), (0, 1));
        let mut off = Chunker::new(1 << 20, Duration::from_secs(1), "t".into(), false);
        off.set_interfaces(2);
        off.add_batch("veth0", 1, &b, now, &mut Vec::new());
        assert_eq!(off.add_batch("br0", 1, &b, now, &mut Vec::new()).duplicates, 0, "OSSENSOR_DEDUPLICATE=false");
    }

    #[test]
    fn chunk_closes_on_age_only_when_due() {
        let mut c = Chunker::new(1 << 20, Duration::from_millis(200), "t".into(), true);
        let t0 = Instant::now();
        assert!(c.tick(t0).is_none());
        let mut closed = Vec::new();
        assert_eq!(c.add_batch("eth0", 1, &batch(1, 60), t0, &mut closed).packets, 1);
        assert!(closed.is_empty());
        assert!(c.tick(t0 + Duration::from_millis(100)).is_none());
        let r = c.tick(t0 + Duration::from_millis(200)).unwrap();
        assert_eq!(r.packets, 1);
        assert!(c.flush().is_none());
    }

    #[test]
    fn malformed_batch_is_an_error_not_a_panic() {
        let mut c = Chunker::new(1 << 20, Duration::from_secs(1), "t".into(), true);
        let mut b = batch(2, 60);
        b.truncate(b.len() - 1);
        let a = c.add_batch("eth0", 1, &b, Instant::now(), &mut Vec::new());
        assert_eq!(a.packets, 1, "the record before the damage is kept");
        assert!(a.error.is_some());
        assert_eq!(c.pending_packets(), 1);
    }
}
