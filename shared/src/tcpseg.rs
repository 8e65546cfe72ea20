//! TCP segments in captured Ethernet frames, for response actions: reading
//! the fields the enforcer tracks (addresses, ports, VLAN, MACs, sequence
//! numbers, flags, payload length) out of untrusted frames, and building the
//! reset and probe frames it decides to send.
//!
//! Pure: bytes in, values or bytes out.

use std::net::IpAddr;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// DLT_EN10MB: the only link type injection supports (it writes Ethernet).
pub const LINKTYPE_ETHERNET: i32 = 1;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const PROTO_TCP: u8 = 6;

/// One TCP segment as seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// The 802.1Q VLAN id, if the frame carried one tag.
    pub vlan: Option<u16>,
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// TCP payload length, from the IP header (not the captured length).
    pub len: u32,
}

impl Segment {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The sequence number just after this segment (SYN and FIN count one).
    pub fn end_seq(&self) -> u32 {
        self.seq.wrapping_add(self.len).wrapping_add(self.has(SYN) as u32).wrapping_add(self.has(FIN) as u32)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn mac(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)?.try_into().ok()
}

/// Reads a TCP segment from an Ethernet frame (one optional VLAN tag,
/// IPv4 without fragments, IPv6 with TCP as the first next header). Anything
/// else, truncated or malformed, is `None`.
pub fn parse(linktype: i32, frame: &[u8]) -> Option<Segment> {
    if linktype != LINKTYPE_ETHERNET {
        return None;
    }
    let dst_mac = mac(frame, 0)?;
    let src_mac = mac(frame, 6)?;
    let mut ethertype = be16(frame, 12)?;
    let mut at = 14;
    let mut vlan = None;
    if ethertype == ETH_VLAN || ethertype == ETH_QINQ {
        vlan = Some(be16(frame, 14)? & 0x0fff);
        ethertype = be16(frame, 16)?;
        at = 18;
    }
    let (src_ip, dst_ip, tcp_at, tcp_total) = match ethertype {
        ETH_IPV4 => {
            let ip = frame.get(at..)?;
            let ihl = (*ip.first()? & 0x0f) as usize * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || *ip.get(9)? != PROTO_TCP {
                return None;
            }
            // Fragments carry no (or no complete) TCP header.
            if be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            let total = be16(ip, 2)? as usize;
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), at + ihl, total.checked_sub(ihl)?)
        }
        ETH_IPV6 => {
            let ip = frame.get(at..)?;
            if *ip.first()? >> 4 != 6 || *ip.get(6)? != PROTO_TCP {
                return None;
            }
            let payload = be16(ip, 4)? as usize;
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (IpAddr::from(src), IpAddr::from(dst), at + 40, payload)
        }
        _ => return None,
    };
    let tcp = frame.get(tcp_at..)?;
    let data_offset = (*tcp.get(12)? >> 4) as usize * 4;
    if data_offset < 20 || tcp.len() < 20 {
        return None;
    }
    Some(Segment {
        src_mac,
        dst_mac,
        vlan,
        src: (src_ip, be16(tcp, 0)?),
        dst: (dst_ip, be16(tcp, 2)?),
        seq: be32(tcp, 4)?,
        ack: be32(tcp, 8)?,
        flags: *tcp.get(13)?,
        len: tcp_total.checked_sub(data_offset)? as u32,
    })
}

/// A segment to send: no payload, no options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// IPv4 identification (the caller's choice: random or a counter).
    pub ip_id: u16,
}

/// Ones' complement sum of `data` as big-endian 16-bit words.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Builds the Ethernet frame for `o` into `out` (cleared first): TTL/hop
/// limit 64, IPv4 with DF, checksums computed. `None` if the two addresses
/// are of different families.
pub fn build(o: &Outgoing, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(&o.dst_mac);
    out.extend_from_slice(&o.src_mac);
    if let Some(v) = o.vlan {
        out.extend_from_slice(&ETH_VLAN.to_be_bytes());
        out.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    let mut tcp = [0u8; 20];
    tcp[0..2].copy_from_slice(&o.src.1.to_be_bytes());
    tcp[2..4].copy_from_slice(&o.dst.1.to_be_bytes());
    tcp[4..8].copy_from_slice(&o.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&o.ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = o.flags;
    // A RST carries no window; a probe offers a small one.
    let window: u16 = if o.flags & RST != 0 { 0 } else { 512 };
    tcp[14..16].copy_from_slice(&window.to_be_bytes());
    let pseudo = match (o.src.0, o.dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&ETH_IPV4.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[4..6].copy_from_slice(&o.ip_id.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = PROTO_TCP;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = fold(sum16(0, &ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ip);
            sum16(sum16(PROTO_TCP as u32 + 20, &s.octets()), &d.octets())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&ETH_IPV6.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = PROTO_TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&ip);
            sum16(sum16(PROTO_TCP as u32 + 20, &s.octets()), &d.octets())
        }
        _ => {
            out.clear();
            return None;
        }
    };
    let c = fold(sum16(pseudo, &tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&tcp);
    Some(())
}

/// `a` is after `b` in sequence space (RFC 793 comparison modulo 2^32).
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn out(src: IpAddr, dst: IpAddr, vlan: Option<u16>, flags: u8) -> Outgoing {
        Outgoing {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vlan,
            src: (src, 40000),
            dst: (dst, 7000),
            seq: 0xfffffff0,
            ack: 77,
            flags,
            ip_id: 0x1234,
        }
    }

    #[test]
    fn built_frames_parse_back() {
        let v4 = (IpAddr::from(Ipv4Addr::new(198, 18, 0, 1)), IpAddr::from(Ipv4Addr::new(198, 18, 0, 2)));
        let v6 = (IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)), IpAddr::from(Ipv6Addr::LOCALHOST));
        for (s, d) in [v4, v6] {
            for vlan in [None, Some(42)] {
                let o = out(s, d, vlan, RST | ACK);
                let mut f = Vec::new();
                build(&o, &mut f).unwrap();
                let seg = parse(LINKTYPE_ETHERNET, &f).unwrap();
                assert_eq!((seg.src, seg.dst, seg.vlan, seg.seq, seg.ack, seg.flags, seg.len), (o.src, o.dst, vlan, o.seq, o.ack, o.flags, 0));
                assert_eq!((seg.src_mac, seg.dst_mac), (o.src_mac, o.dst_mac));
            }
        }
        let mut f = Vec::new();
        assert!(build(&out(v4.0, v6.1, None, RST), &mut f).is_none(), "mixed families");
    }

    /// The checksums verify: summing a header with its checksum gives 0.
    #[test]
    fn checksums_verify() {
        let s = Ipv4Addr::new(198, 18, 9, 1);
        let d = Ipv4Addr::new(198, 18, 9, 2);
        let mut f = Vec::new();
        build(&out(s.into(), d.into(), None, RST), &mut f).unwrap();
        assert_eq!(fold(sum16(0, &f[14..34])), 0, "IPv4 header checksum");
        let pseudo = sum16(sum16(PROTO_TCP as u32 + 20, &s.octets()), &d.octets());
        assert_eq!(fold(sum16(pseudo, &f[34..54])), 0, "TCP checksum");
    }

    #[test]
    fn payload_length_comes_from_the_ip_header() {
        let mut f = Vec::new();
        build(&out(Ipv4Addr::new(198, 18, 0, 1).into(), Ipv4Addr::new(198, 18, 0, 2).into(), None, ACK | PSH), &mut f).unwrap();
        // 100 bytes of payload, captured only in part (snaplen).
        f[16..18].copy_from_slice(&140u16.to_be_bytes());
        f.extend_from_slice(&[0; 10]);
        let seg = parse(LINKTYPE_ETHERNET, &f).unwrap();
        assert_eq!(seg.len, 100);
        assert_eq!(seg.end_seq(), 0xfffffff0u32.wrapping_add(100));
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_after(5, 0xffff_fff0));
        assert!(!seq_after(0xffff_fff0, 5));
        assert!(!seq_after(7, 7));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = parse(LINKTYPE_ETHERNET, &bytes);
        }

        #[test]
        fn mutated_frames_never_panic(pos in 0usize..54, byte in any::<u8>(), cut in 0usize..60) {
            let mut f = Vec::new();
            build(&out(Ipv4Addr::new(198, 18, 0, 1).into(), Ipv4Addr::new(198, 18, 0, 2).into(), None, ACK), &mut f).unwrap();
            f[pos] = byte;
            f.truncate(cut);
            let _ = parse(LINKTYPE_ETHERNET, &f);
        }
    }
}
