//! The chunk envelope: one pcapng section, compressed, with what the
//! collector needs to check it before storing it.
//!
//! A chunk travels as the body of `POST /v1/chunks`; the headers
//! `x-vsensor-encoding` (`zstd` or `identity`), `x-vsensor-raw-length` (bytes
//! after decompression) and `x-vsensor-packets` describe it, and the
//! authentication headers (see [`crate::auth`]) carry its sensor id, boot epoch
//! and sequence.

use crate::pcapng::{check_sections, PcapngError, SectionSummary};
use std::fmt;
use std::io::Read;

pub const H_ENCODING: &str = "x-vsensor-encoding";
pub const H_RAW_LENGTH: &str = "x-vsensor-raw-length";
pub const H_PACKETS: &str = "x-vsensor-packets";

/// Largest decompressed chunk the collector accepts.
pub const MAX_RAW_CHUNK: usize = 32 << 20;
/// Largest request body the collector accepts.
pub const MAX_BODY: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Zstd,
    Identity,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Zstd => "zstd",
            Encoding::Identity => "identity",
        }
    }

    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "zstd" => Some(Encoding::Zstd),
            "identity" => Some(Encoding::Identity),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    TooLarge { declared: usize, limit: usize },
    LengthMismatch { declared: usize, actual: usize },
    Decompress(String),
    Pcapng(PcapngError),
    PacketCountMismatch { declared: u64, actual: u64 },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::TooLarge { declared, limit } => write!(f, "raw length {declared} exceeds the limit of {limit}"),
            ChunkError::LengthMismatch { declared, actual } => {
                write!(f, "declared raw length {declared} but the body holds {actual} bytes")
            }
            ChunkError::Decompress(e) => write!(f, "cannot decompress: {e}"),
            ChunkError::Pcapng(e) => write!(f, "{e}"),
            ChunkError::PacketCountMismatch { declared, actual } => {
                write!(f, "declared {declared} packets but the chunk holds {actual}")
            }
        }
    }
}

impl std::error::Error for ChunkError {}

/// Compresses one chunk with a fresh zstd context (tools and benches; the
/// uplink keeps a [`ChunkCompressor`]).
pub fn compress(raw: &[u8], level: i32, out: &mut Vec<u8>) -> std::io::Result<()> {
    out.clear();
    zstd::stream::copy_encode(raw, &mut *out, level)
}

/// A zstd context kept across chunks: creating one per chunk allocates and
/// touches its tables every time.
pub struct ChunkCompressor {
    zstd: zstd::bulk::Compressor<'static>,
}

impl ChunkCompressor {
    pub fn new(level: i32) -> std::io::Result<ChunkCompressor> {
        Ok(ChunkCompressor { zstd: zstd::bulk::Compressor::new(level)? })
    }

    /// Compresses `raw` into a new body (a single zstd frame, the same
    /// format [`compress`] writes).
    pub fn compress(&mut self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        self.zstd.compress(raw)
    }
}

/// Decodes and checks a chunk body: decompresses at most `declared_raw`
/// bytes (never more than [`MAX_RAW_CHUNK`]), requires exactly that many,
/// and requires well-formed pcapng holding `declared_packets` packets.
pub fn decode(encoding: Encoding, body: &[u8], declared_raw: usize, declared_packets: u64) -> Result<(Vec<u8>, SectionSummary), ChunkError> {
    if declared_raw > MAX_RAW_CHUNK {
        return Err(ChunkError::TooLarge { declared: declared_raw, limit: MAX_RAW_CHUNK });
    }
    let raw = match encoding {
        Encoding::Identity => body.to_vec(),
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(body).map_err(|e| ChunkError::Decompress(e.to_string()))?;
            let mut raw = Vec::with_capacity(declared_raw);
            // Read one byte past the declared size to detect a lie without
            // ever inflating an unbounded amount.
            decoder.take(declared_raw as u64 + 1).read_to_end(&mut raw).map_err(|e| ChunkError::Decompress(e.to_string()))?;
            raw
        }
    };
    if raw.len() != declared_raw {
        return Err(ChunkError::LengthMismatch { declared: declared_raw, actual: raw.len() });
    }
    let summary = check_sections(&raw).map_err(ChunkError::Pcapng)?;
    if summary.packets != declared_packets {
        return Err(ChunkError::PacketCountMismatch { declared: declared_packets, actual: summary.packets });
    }
    Ok((raw, summary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapng::{Direction, SectionWriter};
    use proptest::prelude::*;

    fn raw_section(n: usize) -> Vec<u8> {
        let mut w = SectionWriter::new();
        w.begin("t");
        let i = w.add_interface("eth0", 1, 262144);
        for k in 0..n {
            w.add_packet(i, k as u64, 64, &[k as u8; 64], Direction::Inbound);
        }
        w.bytes().to_vec()
    }

    #[test]
    fn round_trip_zstd_and_identity() {
        let raw = raw_section(10);
        let mut z = Vec::new();
        compress(&raw, 1, &mut z).unwrap();
        assert!(z.len() < raw.len());
        let (back, sum) = decode(Encoding::Zstd, &z, raw.len(), 10).unwrap();
        assert_eq!(back, raw);
        assert_eq!(sum.packets, 10);
        assert_eq!(decode(Encoding::Identity, &raw, raw.len(), 10).unwrap().0, raw);
    }

    #[test]
    fn a_reused_context_writes_what_the_collector_decodes() {
        let mut z = ChunkCompressor::new(-3).unwrap();
        for n in [1, 50, 7] {
            let raw = raw_section(n);
            let body = z.compress(&raw).unwrap();
            let (back, sum) = decode(Encoding::Zstd, &body, raw.len(), n as u64).unwrap();
            assert_eq!(back, raw);
            assert_eq!(sum.packets, n as u64);
        }
    }

    #[test]
    fn lies_are_refused() {
        let raw = raw_section(3);
        let mut z = Vec::new();
        compress(&raw, 1, &mut z).unwrap();
        assert!(matches!(decode(Encoding::Zstd, &z, raw.len() - 1, 3), Err(ChunkError::LengthMismatch { .. })));
        assert!(matches!(decode(Encoding::Zstd, &z, raw.len() + 1, 3), Err(ChunkError::LengthMismatch { .. })));
        assert!(matches!(decode(Encoding::Zstd, &z, raw.len(), 4), Err(ChunkError::PacketCountMismatch { .. })));
        assert!(matches!(decode(Encoding::Zstd, &z, MAX_RAW_CHUNK + 1, 3), Err(ChunkError::TooLarge { .. })));
        assert!(matches!(decode(Encoding::Zstd, b"not zstd", 10, 0), Err(ChunkError::Decompress(_))));
    }

    #[test]
    fn decompression_bomb_stops_at_the_declared_size() {
        let zeros = vec![0u8; 8 << 20];
        let mut z = Vec::new();
        compress(&zeros, 3, &mut z).unwrap();
        assert!(matches!(decode(Encoding::Zstd, &z, 1024, 0), Err(ChunkError::LengthMismatch { actual: 1025, .. })));
    }

    proptest! {
        #[test]
        fn decode_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), raw in 0usize..4096, n in 0u64..5) {
            let _ = decode(Encoding::Zstd, &body, raw, n);
            let _ = decode(Encoding::Identity, &body, raw, n);
        }
    }
}
