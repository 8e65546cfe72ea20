//! Frames exchanged between a capture-worker and the uplink over their Unix
//! socket.
//!
//! A frame is `length: u32 little-endian` followed by that many bytes of a
//! bincode-encoded (serde) message. Packets travel many to a frame: a
//! [`WorkerMsg::Batch`] carries a record buffer the worker fills in place, so
//! the worker makes one write per batch, never one per packet.
//!
//! Record layout inside a batch (all little-endian, no padding):
//! `ts_ns u64 | orig_len u32 | cap_len u32 | flags u32 | cap_len bytes`,
//! where `flags & 3` is the pcapng direction (0 unknown, 1 in, 2 out).

use crate::actions::signed::SignedSet;
use crate::actions::ActionStats;
use crate::bpf::BpfInsn;
use crate::pcapng::Direction;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Largest frame either side accepts: a batch of up to 4 MiB plus headers.
pub const MAX_FRAME: usize = 8 << 20;
/// Size of a record header in a batch buffer.
pub const RECORD_HEADER: usize = 20;

/// Worker → uplink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerMsg {
    /// First message on a connection: which interface this worker captures.
    Hello { interface: String, ifindex: u32, linktype: i32, pid: u32 },
    /// Packets, as records (see the module docs).
    Batch(Batch),
    /// Cumulative capture counters since the worker attached its filter.
    Stats(CaptureStats),
    /// Cumulative counters of each response action on this interface.
    ActionStats(Vec<(u64, ActionStats)>),
}

/// Uplink → worker: narrow, typed commands only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UplinkMsg {
    /// Attach this classic BPF program (already compiled for the worker's
    /// link type) as the kernel filter.
    SetFilter { program: Vec<BpfInsn> },
    /// The response actions in force now, as the collector signed them
    /// (the whole set: an action missing from it is over). The worker
    /// verifies the signature with the key the supervisor pinned, and
    /// resets only flows it has seen itself.
    Actions { set: SignedSet },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub count: u32,
    #[serde(with = "serde_bytes")]
    pub records: Vec<u8>,
}

/// Borrowed form of [`Batch`] so a worker can send its buffer without moving it.
#[derive(Serialize)]
pub enum WorkerMsgRef<'a> {
    Hello { interface: &'a str, ifindex: u32, linktype: i32, pid: u32 },
    Batch(BatchRef<'a>),
    Stats(&'a CaptureStats),
    ActionStats(Vec<(u64, ActionStats)>),
}

#[derive(Serialize)]
pub struct BatchRef<'a> {
    pub count: u32,
    #[serde(with = "serde_bytes")]
    pub records: &'a [u8],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    /// Packets the kernel passed to the capture (after the filter).
    pub received: u64,
    /// Packets the kernel dropped because the ring was full.
    pub dropped_kernel: u64,
    /// Packets the interface or driver dropped.
    pub dropped_interface: u64,
    /// Packets the worker forwarded in batches.
    pub forwarded: u64,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_little_endian().with_fixed_int_encoding().with_limit::<MAX_FRAME>()
}

/// Appends one frame holding `msg` to `out`.
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    bincode::serde::encode_into_std_write(msg, out, config()).map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - start - 4;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(FrameError::TooLarge(len));
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Length of what [`encode_frame`] writes before a batch's records: frame
/// length u32, variant index u32 (Batch is 1), count u32, records length u64.
pub const BATCH_FRAME_HEADER: usize = 20;

/// The first [`BATCH_FRAME_HEADER`] bytes of the frame `encode_frame` makes
/// for `WorkerMsgRef::Batch(BatchRef { count, records })`: the worker sends
/// them and its record buffer with one vectored write instead of copying a
/// megabyte of records into a frame.
pub fn batch_frame_header(count: u32, records_len: usize) -> Result<[u8; BATCH_FRAME_HEADER], FrameError> {
    let body = BATCH_FRAME_HEADER - 4 + records_len;
    if body > MAX_FRAME {
        return Err(FrameError::TooLarge(body));
    }
    let mut h = [0u8; BATCH_FRAME_HEADER];
    h[0..4].copy_from_slice(&(body as u32).to_le_bytes());
    h[4..8].copy_from_slice(&1u32.to_le_bytes());
    h[8..12].copy_from_slice(&count.to_le_bytes());
    h[12..20].copy_from_slice(&(records_len as u64).to_le_bytes());
    Ok(h)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooLarge(usize),
    Encode(String),
    Decode(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the {MAX_FRAME}-byte limit"),
            FrameError::Encode(e) => write!(f, "cannot encode frame: {e}"),
            FrameError::Decode(e) => write!(f, "malformed frame: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Splits a byte stream into frames. Feed it whatever the socket gave;
/// "not enough bytes yet" is `Ok(None)`, not an error.
#[derive(Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Space to read into; call [`FrameDecoder::commit`] with the count read.
    pub fn read_buf(&mut self, want: usize) -> &mut [u8] {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + want, 0);
        &mut self.buf[len..]
    }

    /// Keeps `n` of the bytes handed out by the last `read_buf`.
    pub fn commit(&mut self, handed_out: usize, n: usize) {
        let new_len = self.buf.len() - handed_out + n;
        self.buf.truncate(new_len);
    }

    pub fn push(&mut self, bytes: &[u8]) {
        let b = self.read_buf(bytes.len());
        b.copy_from_slice(bytes);
    }

    /// The next complete frame, decoded. Not an `Iterator`: the message
    /// type is chosen per call, and an error is not the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, FrameError> {
        let pending = &self.buf[self.start..];
        if pending.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if pending.len() < 4 + len {
            return Ok(None);
        }
        let body = &pending[4..4 + len];
        let (msg, used) = bincode::serde::decode_from_slice(body, config()).map_err(|e| FrameError::Decode(e.to_string()))?;
        if used != len {
            return Err(FrameError::Decode(format!("{} trailing bytes in frame", len - used)));
        }
        self.start += 4 + len;
        Ok(Some(msg))
    }
}

/// A record's header: the one place its layout is written and read (see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub cap_len: u32,
    pub flags: u32,
}

impl RecordHeader {
    /// The header at the start of `buf`, if a whole header is there.
    pub fn read(buf: &[u8]) -> Option<RecordHeader> {
        let h: &[u8; RECORD_HEADER] = buf.get(..RECORD_HEADER)?.try_into().ok()?;
        let word = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        Some(RecordHeader { ts_ns: u64::from_le_bytes(h[0..8].try_into().expect("8 bytes")), orig_len: word(8), cap_len: word(12), flags: word(16) })
    }

    fn write(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.ts_ns.to_le_bytes());
        buf.extend_from_slice(&self.orig_len.to_le_bytes());
        buf.extend_from_slice(&self.cap_len.to_le_bytes());
        buf.extend_from_slice(&self.flags.to_le_bytes());
    }

    /// The whole record's length: header and packet bytes.
    pub fn record_len(&self) -> usize {
        RECORD_HEADER + self.cap_len as usize
    }
}

/// Appends one packet record to a batch buffer.
pub fn push_record(buf: &mut Vec<u8>, ts_ns: u64, orig_len: u32, data: &[u8], dir: Direction) {
    RecordHeader { ts_ns, orig_len, cap_len: data.len() as u32, flags: dir as u32 }.write(buf);
    buf.extend_from_slice(data);
}

/// One packet record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub direction: Direction,
    pub data: &'a [u8],
}

/// Iterates over the records of a batch buffer; stops with an error at the
/// first record that does not fit.
pub struct Records<'a> {
    rest: &'a [u8],
    offset: usize,
}

pub fn records(buf: &[u8]) -> Records<'_> {
    Records { rest: buf, offset: 0 }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(h) = RecordHeader::read(self.rest) else {
            let e = FrameError::Decode(format!("truncated record header at offset {}", self.offset));
            self.rest = &[];
            return Some(Err(e));
        };
        let r = self.rest;
        let (ts_ns, orig_len, cap_len, flags) = (h.ts_ns, h.orig_len, h.cap_len as usize, h.flags);
        if r.len() - RECORD_HEADER < cap_len {
            let e = FrameError::Decode(format!("record at offset {} claims {cap_len} bytes, {} left", self.offset, r.len() - RECORD_HEADER));
            self.rest = &[];
            return Some(Err(e));
        }
        let data = &r[RECORD_HEADER..RECORD_HEADER + cap_len];
        self.rest = &r[RECORD_HEADER + cap_len..];
        self.offset += RECORD_HEADER + cap_len;
        Some(Ok(Record { ts_ns, orig_len, direction: Direction::from_bits(flags), data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn borrowed_and_owned_batches_encode_alike() {
        let mut recs = Vec::new();
        push_record(&mut recs, 1, 60, &[1; 60], Direction::Inbound);
        let mut a = Vec::new();
        encode_frame(&WorkerMsgRef::Batch(BatchRef { count: 1, records: &recs }), &mut a).unwrap();
        let mut b = Vec::new();
        encode_frame(&WorkerMsg::Batch(Batch { count: 1, records: recs.clone() }), &mut b).unwrap();
        assert_eq!(a, b);
        let mut d = FrameDecoder::new();
        d.push(&a);
        let msg: WorkerMsg = d.next().unwrap().unwrap();
        assert_eq!(msg, WorkerMsg::Batch(Batch { count: 1, records: recs }));
    }

    #[test]
    fn batch_header_is_the_start_of_the_encoded_frame() {
        for n in [0usize, 1, 3] {
            let mut recs = Vec::new();
            for i in 0..n {
                push_record(&mut recs, i as u64, 60, &[i as u8; 60], Direction::Outbound);
            }
            let mut frame = Vec::new();
            encode_frame(&WorkerMsgRef::Batch(BatchRef { count: n as u32, records: &recs }), &mut frame).unwrap();
            let header = batch_frame_header(n as u32, recs.len()).unwrap();
            assert_eq!(&frame[..BATCH_FRAME_HEADER], &header[..]);
            assert_eq!(&frame[BATCH_FRAME_HEADER..], &recs[..]);
        }
        assert_eq!(batch_frame_header(1, MAX_FRAME), Err(FrameError::TooLarge(MAX_FRAME + 16)));
    }

    #[test]
    fn actions_and_their_stats_cross_the_socket() {
        use crate::actions::ActionStats;
        let set = SignedSet { payload: vec![1, 2, 3], signature: vec![9; 64] };
        let mut wire = Vec::new();
        encode_frame(&UplinkMsg::Actions { set: set.clone() }, &mut wire).unwrap();
        let stats = vec![(1, ActionStats { connections_reset: 1, connections_refused: 2, resets_sent: 3, probes_sent: 4, frames_suppressed: 5 })];
        encode_frame(&WorkerMsgRef::ActionStats(stats.clone()), &mut wire).unwrap();
        let mut d = FrameDecoder::new();
        d.push(&wire);
        assert_eq!(d.next::<UplinkMsg>().unwrap(), Some(UplinkMsg::Actions { set }));
        assert_eq!(d.next::<WorkerMsg>().unwrap(), Some(WorkerMsg::ActionStats(stats)));
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut d = FrameDecoder::new();
        d.push(&(MAX_FRAME as u32 + 1).to_le_bytes());
        assert_eq!(d.next::<WorkerMsg>(), Err(FrameError::TooLarge(MAX_FRAME + 1)));
    }

    proptest! {
        #[test]
        fn frames_survive_any_split(iface in "[a-z0-9]{1,15}", packets in proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..10), split in 0usize..4000) {
            let mut recs = Vec::new();
            for (ts, d) in &packets {
                push_record(&mut recs, *ts, d.len() as u32, d, Direction::Outbound);
            }
            let msgs = vec![
                WorkerMsg::Hello { interface: iface, ifindex: 3, linktype: 1, pid: 9 },
                WorkerMsg::Batch(Batch { count: packets.len() as u32, records: recs }),
                WorkerMsg::Stats(CaptureStats { received: 5, dropped_kernel: 1, dropped_interface: 0, forwarded: 4 }),
            ];
            let mut wire = Vec::new();
            for m in &msgs { encode_frame(m, &mut wire).unwrap(); }
            let cut = split.min(wire.len());
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            d.push(&wire[..cut]);
            while let Some(m) = d.next::<WorkerMsg>().unwrap() { got.push(m); }
            d.push(&wire[cut..]);
            while let Some(m) = d.next::<WorkerMsg>().unwrap() { got.push(m); }
            prop_assert_eq!(&got, &msgs);
            if let WorkerMsg::Batch(b) = &got[1] {
                let back: Vec<_> = records(&b.records).map(|r| r.map(|r| (r.ts_ns, r.data.to_vec()))).collect::<Result<_, _>>().unwrap();
                prop_assert_eq!(back, packets);
            }
        }

        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            for _ in 0..4 { if !matches!(d.next::<WorkerMsg>(), Ok(Some(_))) { break; } }
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            let _ = d.next::<UplinkMsg>();
            for r in records(&bytes) { let _ = r; }
        }
    }
}
