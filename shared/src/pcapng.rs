//! pcapng sections: a writer for the uplink's chunks and a checker for the
//! collector, which must refuse anything that is not a well-formed section
//! before appending it to a file other tools will read.
//!
//! Only what the sensor produces is accepted: little-endian sections made of a
//! Section Header Block, Interface Description Blocks and Enhanced Packet
//! Blocks (other block types are skipped but must be well framed). Layout per
//! draft-ietf-opsawg-pcapng: every block is `type u32, total length u32, body,
//! total length u32`, padded to 32 bits.

use std::fmt;

pub const BLOCK_SHB: u32 = 0x0A0D_0D0A;
pub const BLOCK_IDB: u32 = 0x0000_0001;
pub const BLOCK_EPB: u32 = 0x0000_0006;
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_END: u16 = 0;
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_EPB_FLAGS: u16 = 2;
const OPT_SHB_USERAPPL: u16 = 4;

/// Largest block the checker accepts (a 256 KiB frame plus headers).
pub const MAX_BLOCK_LEN: usize = 256 * 1024 + 1024;

/// Packet direction as pcapng's `epb_flags` bits 0-1 encode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Unknown = 0,
    Inbound = 1,
    Outbound = 2,
}

impl Direction {
    pub fn from_bits(bits: u32) -> Direction {
        match bits & 3 {
            1 => Direction::Inbound,
            2 => Direction::Outbound,
            _ => Direction::Unknown,
        }
    }
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Builds one pcapng section; `begin` starts the next one in the same
/// allocation, so a chunker reuses its buffer from chunk to chunk.
#[derive(Default)]
pub struct SectionWriter {
    out: Vec<u8>,
    interfaces: u32,
}

impl SectionWriter {
    pub fn new() -> SectionWriter {
        SectionWriter::default()
    }

    /// Discards what was written and writes a new Section Header Block.
    pub fn begin(&mut self, user_appl: &str) {
        self.interfaces = 0;
        let out = &mut self.out;
        out.clear();
        let opts_len = option_len(user_appl.len()) + 4;
        let total = 28 + opts_len;
        put_u32(out, BLOCK_SHB);
        put_u32(out, total as u32);
        put_u32(out, BYTE_ORDER_MAGIC);
        put_u16(out, 1);
        put_u16(out, 0);
        out.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
        put_option(out, OPT_SHB_USERAPPL, user_appl.as_bytes());
        put_u32(out, OPT_END as u32);
        put_u32(out, total as u32);
    }

    /// Adds an Interface Description Block with nanosecond timestamps and
    /// returns its interface id within this section.
    pub fn add_interface(&mut self, name: &str, linktype: u16, snaplen: u32) -> u32 {
        let opts_len = option_len(name.len()) + option_len(1) + 4;
        let total = 20 + opts_len;
        let out = &mut self.out;
        put_u32(out, BLOCK_IDB);
        put_u32(out, total as u32);
        put_u16(out, linktype);
        put_u16(out, 0);
        put_u32(out, snaplen);
        put_option(out, OPT_IF_NAME, name.as_bytes());
        put_option(out, OPT_IF_TSRESOL, &[9]);
        put_u32(out, OPT_END as u32);
        put_u32(out, total as u32);
        self.interfaces += 1;
        self.interfaces - 1
    }

    /// Adds an Enhanced Packet Block. `ts_ns` is nanoseconds since the epoch.
    pub fn add_packet(&mut self, interface: u32, ts_ns: u64, orig_len: u32, data: &[u8], dir: Direction) {
        debug_assert!(interface < self.interfaces);
        let with_flags = dir != Direction::Unknown;
        let opts_len = if with_flags { option_len(4) + 4 } else { 0 };
        let total = 32 + pad4(data.len()) + opts_len;
        let out = &mut self.out;
        out.reserve(total);
        put_u32(out, BLOCK_EPB);
        put_u32(out, total as u32);
        put_u32(out, interface);
        put_u32(out, (ts_ns >> 32) as u32);
        put_u32(out, ts_ns as u32);
        put_u32(out, data.len() as u32);
        put_u32(out, orig_len);
        out.extend_from_slice(data);
        out.resize(out.len() + pad4(data.len()) - data.len(), 0);
        if with_flags {
            put_option(out, OPT_EPB_FLAGS, &(dir as u32).to_le_bytes());
            put_u32(out, OPT_END as u32);
        }
        put_u32(out, total as u32);
    }

    /// The section so far.
    pub fn bytes(&self) -> &[u8] {
        &self.out
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub fn interfaces(&self) -> u32 {
        self.interfaces
    }
}

fn option_len(value_len: usize) -> usize {
    4 + pad4(value_len)
}

fn put_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    put_u16(out, code);
    put_u16(out, value.len() as u16);
    out.extend_from_slice(value);
    out.resize(out.len() + pad4(value.len()) - value.len(), 0);
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Why a byte string is not an acceptable pcapng section stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcapngError {
    /// Byte offset of the block that failed.
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for PcapngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pcapng block at offset {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for PcapngError {}

/// What a well-formed section stream holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SectionSummary {
    pub sections: u32,
    pub interfaces: u32,
    pub packets: u64,
    pub packet_bytes: u64,
    pub first_ts_ns: Option<u64>,
    pub last_ts_ns: Option<u64>,
}

/// One packet as [`for_each_packet`] presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketView<'a> {
    pub interface: u32,
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
    pub direction: Direction,
}

/// Checks that `bytes` is a sequence of complete little-endian pcapng
/// sections as the sensor writes them, and summarises it. Never panics.
pub fn check_sections(bytes: &[u8]) -> Result<SectionSummary, PcapngError> {
    let mut summary = SectionSummary::default();
    walk(
        bytes,
        &mut |p| {
            summary.packets += 1;
            summary.packet_bytes += p.data.len() as u64;
            summary.first_ts_ns = Some(summary.first_ts_ns.map_or(p.ts_ns, |t| t.min(p.ts_ns)));
            summary.last_ts_ns = Some(summary.last_ts_ns.map_or(p.ts_ns, |t| t.max(p.ts_ns)));
        },
        &mut summary.sections,
        &mut summary.interfaces,
    )?;
    Ok(summary)
}

/// Calls `f` for every packet of a well-formed section stream, with the
/// interface id local to its section.
pub fn for_each_packet<'a>(bytes: &'a [u8], mut f: impl FnMut(PacketView<'a>)) -> Result<(), PcapngError> {
    let (mut s, mut i) = (0, 0);
    walk(bytes, &mut f, &mut s, &mut i)
}

fn walk<'a>(bytes: &'a [u8], f: &mut dyn FnMut(PacketView<'a>), sections: &mut u32, interfaces_total: &mut u32) -> Result<(), PcapngError> {
    let mut offset = 0usize;
    let mut interfaces_in_section: Option<u32> = None;
    let err = |offset: usize, reason: String| PcapngError { offset, reason };
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < 12 {
            return Err(err(offset, format!("truncated block header ({} bytes left)", rest.len())));
        }
        let block_type = le32(rest, 0);
        let total = le32(rest, 4) as usize;
        if total < 12 || total & 3 != 0 || total > MAX_BLOCK_LEN {
            return Err(err(offset, format!("bad block length {total}")));
        }
        if total > rest.len() {
            return Err(err(offset, format!("block length {total} exceeds the {} bytes left", rest.len())));
        }
        if le32(rest, total - 4) as usize != total {
            return Err(err(offset, "trailing block length does not match".into()));
        }
        let body = &rest[8..total - 4];
        match block_type {
            BLOCK_SHB => {
                if body.len() < 16 {
                    return Err(err(offset, "section header too short".into()));
                }
                if le32(body, 0) != BYTE_ORDER_MAGIC {
                    return Err(err(offset, "not a little-endian section".into()));
                }
                if u16::from_le_bytes([body[4], body[5]]) != 1 {
                    return Err(err(offset, "unsupported major version".into()));
                }
                *sections += 1;
                interfaces_in_section = Some(0);
            }
            BLOCK_IDB => {
                let Some(n) = interfaces_in_section.as_mut() else {
                    return Err(err(offset, "interface block before any section header".into()));
                };
                if body.len() < 8 {
                    return Err(err(offset, "interface block too short".into()));
                }
                check_options(&body[8..]).map_err(|r| err(offset, r))?;
                *n += 1;
                *interfaces_total += 1;
            }
            BLOCK_EPB => {
                let Some(n) = interfaces_in_section else {
                    return Err(err(offset, "packet block before any section header".into()));
                };
                if body.len() < 20 {
                    return Err(err(offset, "packet block too short".into()));
                }
                let interface = le32(body, 0);
                if interface >= n {
                    return Err(err(offset, format!("packet for undeclared interface {interface}")));
                }
                let ts_ns = ((le32(body, 4) as u64) << 32) | le32(body, 8) as u64;
                let caplen = le32(body, 12) as usize;
                let orig_len = le32(body, 16);
                if 20 + pad4(caplen) > body.len() {
                    return Err(err(offset, format!("captured length {caplen} exceeds the block")));
                }
                if caplen as u64 > orig_len as u64 {
                    return Err(err(offset, format!("captured length {caplen} above original length {orig_len}")));
                }
                let opts = &body[20 + pad4(caplen)..];
                let flags = check_options(opts).map_err(|r| err(offset, r))?;
                f(PacketView { interface, ts_ns, orig_len, data: &body[20..20 + caplen], direction: Direction::from_bits(flags.unwrap_or(0)) });
            }
            _ => {
                if interfaces_in_section.is_none() {
                    return Err(err(offset, "block before any section header".into()));
                }
            }
        }
        offset += total;
    }
    if *sections == 0 {
        return Err(err(0, "no section header".into()));
    }
    Ok(())
}

/// Checks an option list; returns the value of option code 2 when it is 4
/// bytes long (epb_flags in an EPB).
fn check_options(mut opts: &[u8]) -> Result<Option<u32>, String> {
    let mut flags = None;
    while opts.len() >= 4 {
        let code = u16::from_le_bytes([opts[0], opts[1]]);
        let len = u16::from_le_bytes([opts[2], opts[3]]) as usize;
        if code == OPT_END {
            return Ok(flags);
        }
        if 4 + pad4(len) > opts.len() {
            return Err(format!("option {code} of length {len} overruns its block"));
        }
        if code == OPT_EPB_FLAGS && len == 4 {
            flags = Some(le32(opts, 4));
        }
        opts = &opts[4 + pad4(len)..];
    }
    if opts.is_empty() {
        Ok(flags)
    } else {
        Err("trailing bytes in option list".into())
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn section(packets: &[(u64, Vec<u8>, Direction)]) -> Vec<u8> {
        let mut w = SectionWriter::new();
        w.begin("test");
        let a = w.add_interface("eth0", 1, 262144);
        let b = w.add_interface("veth-with-a-longer-name", 1, 262144);
        for (i, (ts, data, dir)) in packets.iter().enumerate() {
            w.add_packet(if i % 2 == 0 { a } else { b }, *ts, data.len() as u32 + 3, data, *dir);
        }
        w.bytes().to_vec()
    }

    #[test]
    fn empty_section_is_valid() {
        let s = section(&[]);
        let sum = check_sections(&s).unwrap();
        assert_eq!((sum.sections, sum.interfaces, sum.packets), (1, 2, 0));
    }

    #[test]
    fn garbage_is_refused_with_offset() {
        let e = check_sections(&[1, 2, 3]).unwrap_err();
        assert_eq!(e.offset, 0);
        let mut s = section(&[(1, vec![1, 2, 3], Direction::Inbound)]);
        s.truncate(s.len() - 1);
        assert!(check_sections(&s).is_err());
        assert!(check_sections(&[]).is_err(), "an empty body is not a section");
    }

    #[test]
    fn packet_for_unknown_interface_is_refused() {
        let mut w = SectionWriter::new();
        w.begin("t");
        w.add_interface("a", 1, 100);
        w.interfaces = 2; // pretend, to write a packet for interface 1
        w.add_packet(1, 5, 1, &[0], Direction::Unknown);
        let e = check_sections(w.bytes()).unwrap_err();
        assert!(e.reason.contains("undeclared interface 1"), "{e}");
    }

    proptest! {
        #[test]
        fn written_packets_read_back(packets in proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300), 0u32..3), 0..20)) {
            let packets: Vec<_> = packets.into_iter().map(|(t, d, f)| (t, d, Direction::from_bits(f))).collect();
            let s = section(&packets);
            // Two sections back to back, as the collector's files hold them.
            let mut two = s.clone();
            two.extend_from_slice(&s);
            let sum = check_sections(&two).unwrap();
            prop_assert_eq!(sum.sections, 2);
            prop_assert_eq!(sum.packets, 2 * packets.len() as u64);
            let mut seen = Vec::new();
            for_each_packet(&s, |p| seen.push((p.ts_ns, p.data.to_vec(), p.direction, p.orig_len))).unwrap();
            let want: Vec<_> = packets.iter().map(|(t, d, dir)| (*t, d.clone(), *dir, d.len() as u32 + 3)).collect();
            prop_assert_eq!(seen, want);
        }

        #[test]
        fn checker_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = check_sections(&bytes);
        }

        #[test]
        fn any_single_byte_flip_is_caught_or_harmless(packets in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..64), 1..5), at in any::<prop::sample::Index>(), val in any::<u8>()) {
            let p: Vec<_> = packets.into_iter().map(|d| (7u64, d, Direction::Outbound)).collect();
            let mut s = section(&p);
            let i = at.index(s.len());
            s[i] = val;
            let _ = check_sections(&s); // must not panic
        }
    }
}
