//! One frame, many interfaces: on a container host a packet crosses a pod's
//! veth, a bridge and the uplink (after NAT), and each capture sees it. The
//! uplink keeps the first copy and drops the others.
//!
//! A frame's identity is what survives forwarding and NAT: the IP protocol,
//! the L4 length, the IPv4 identification, TCP sequence/acknowledgement
//! numbers and flags, the ICMP type, code and echo sequence, and the first
//! 64 bytes of the L4 payload; not the MACs, addresses, ports, TTL or
//! checksums, which forwarding and NAT rewrite. A copy is a duplicate only
//! if the same identity was seen on another interface within `WINDOW_NS`
//! of capture time, so a frame seen twice on one interface (or a
//! retransmission, which comes a retransmission timeout later) is kept.
//! Frames that are not IP are never dropped. Pure: no clock, no I/O.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// Copies of one frame on different interfaces are captured within
/// microseconds of each other; 10 ms leaves room for a busy kernel.
pub const WINDOW_NS: u64 = 10_000_000;
/// Identities are kept this long after the newest capture time seen
/// (batches from different workers reach the uplink up to ~100 ms apart).
const KEEP_NS: u64 = 500_000_000;
const PAYLOAD_PREFIX: usize = 64;

#[derive(Default)]
pub struct Deduplicator {
    /// identity → (capture time, interface) of the last copy kept.
    seen: HashMap<u64, (u64, u16)>,
    newest_ns: u64,
    swept_ns: u64,
    hasher: std::collections::hash_map::RandomState,
}

impl Deduplicator {
    pub fn new() -> Deduplicator {
        Deduplicator::default()
    }

    /// Whether the frame (Ethernet, captured at `ts_ns` on `interface`) is
    /// a copy of one already kept from another interface. Keeps a record of
    /// it otherwise.
    pub fn is_duplicate(&mut self, linktype: i32, interface: u16, ts_ns: u64, frame: &[u8]) -> bool {
        let Some(id) = identity(linktype, frame, &self.hasher) else { return false };
        self.newest_ns = self.newest_ns.max(ts_ns);
        if self.newest_ns.saturating_sub(self.swept_ns) > KEEP_NS {
            let horizon = self.newest_ns - KEEP_NS;
            self.seen.retain(|_, (t, _)| *t >= horizon);
            self.swept_ns = self.newest_ns;
        }
        match self.seen.get(&id) {
            Some(&(t, i)) if i != interface && t.abs_diff(ts_ns) <= WINDOW_NS => true,
            _ => {
                self.seen.insert(id, (ts_ns, interface));
                false
            }
        }
    }

    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

/// The frame's forwarding-invariant identity, hashed; None if it is not an
/// IP packet we can read.
fn identity(linktype: i32, frame: &[u8], hasher: &impl BuildHasher) -> Option<u64> {
    let l3 = match linktype {
        // Ethernet, with up to two VLAN tags.
        1 => {
            let mut at = 12;
            let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                at += 4;
                ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
            }
            &frame[at + 2..]
        }
        // Linux cooked capture (the "any" device): 16-byte header.
        113 => frame.get(16..)?,
        // Raw IP.
        12 | 14 | 101 => frame,
        _ => return None,
    };
    let mut h = hasher.build_hasher();
    let (proto, l4) = match l3.first()? >> 4 {
        4 => {
            let ihl = (l3[0] & 0x0f) as usize * 4;
            let total = u16::from_be_bytes([*l3.get(2)?, *l3.get(3)?]) as usize;
            h.write(l3.get(4..6)?); // identification
            h.write_usize(total.checked_sub(ihl)?);
            (*l3.get(9)?, l3.get(ihl..)?)
        }
        6 => {
            let payload = u16::from_be_bytes([*l3.get(4)?, *l3.get(5)?]) as usize;
            h.write(l3.get(1..4)?); // traffic class and flow label
            h.write_usize(payload);
            (*l3.get(6)?, l3.get(40..)?)
        }
        _ => return None,
    };
    h.write_u8(proto);
    let rest = match proto {
        // TCP: sequence, acknowledgement, flags; then the payload.
        6 => {
            h.write(l4.get(4..14)?);
            let off = (*l4.get(12)? >> 4) as usize * 4;
            l4.get(off..).unwrap_or(&[])
        }
        // UDP: the payload (ports and checksum may be rewritten).
        17 => l4.get(8..).unwrap_or(&[]),
        // ICMP / ICMPv6: type, code, and (echo) sequence, not the identifier.
        1 | 58 => {
            h.write(l4.get(0..2)?);
            h.write(l4.get(6..8).unwrap_or(&[]));
            l4.get(8..).unwrap_or(&[])
        }
        _ => l4,
    };
    h.write(&rest[..rest.len().min(PAYLOAD_PREFIX)]);
    Some(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An Ethernet/IPv4/UDP frame.
    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, ttl: u8, ip_id: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0];
        let total = 20 + 8 + payload.len();
        f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8]);
        f.extend_from_slice(&ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0, ttl, 17, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&53u16.to_be_bytes());
        f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_nated_copy_on_another_interface_is_a_duplicate() {
        let mut d = Deduplicator::new();
        let pod = udp([10, 88, 0, 2], [198, 18, 9, 9], 40000, 64, 777, b"query 1");
        // After the bridge and NAT: other MACs, source address and port, TTL.
        let mut out = udp([198, 18, 0, 1], [198, 18, 9, 9], 61000, 63, 777, b"query 1");
        out[0] = 0xaa;
        assert!(!d.is_duplicate(1, 0, 1_000, &pod));
        assert!(d.is_duplicate(1, 1, 1_050, &pod), "the bridge's copy");
        assert!(d.is_duplicate(1, 2, 1_200, &out), "the uplink's copy, after NAT");
    }

    #[test]
    fn unique_frames_are_kept() {
        let mut d = Deduplicator::new();
        let a = udp([10, 88, 0, 2], [198, 18, 9, 9], 40000, 64, 1, b"query 1");
        assert!(!d.is_duplicate(1, 0, 0, &a));
        assert!(!d.is_duplicate(1, 0, 10, &a), "twice on the same interface: kept");
        assert!(!d.is_duplicate(1, 1, WINDOW_NS + 20, &a), "outside the window: a retransmission, kept");
        assert!(!d.is_duplicate(1, 1, 20, &udp([10, 88, 0, 2], [198, 18, 9, 9], 40000, 64, 2, b"query 1")), "another IP id");
        assert!(!d.is_duplicate(1, 1, 20, &udp([10, 88, 0, 2], [198, 18, 9, 9], 40000, 64, 1, b"query 2")), "another payload");
        assert!(!d.is_duplicate(1, 1, 20, &[0xff; 60]), "not IP: never dropped");
    }

    #[test]
    fn memory_is_bounded_by_time() {
        let mut d = Deduplicator::new();
        for i in 0..10_000u64 {
            d.is_duplicate(1, 0, i * 1_000_000, &udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 64, i as u16, &i.to_be_bytes()));
        }
        assert!(d.remembered() <= 1_001, "{}", d.remembered());
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_without_panic(frame in proptest::collection::vec(any::<u8>(), 0..200), lt in prop_oneof![Just(1), Just(113), Just(101), Just(0)]) {
            let mut d = Deduplicator::new();
            let _ = d.is_duplicate(lt, 0, 0, &frame);
            let _ = d.is_duplicate(lt, 1, 0, &frame);
        }

        #[test]
        fn distinct_payloads_are_never_dropped(payloads in proptest::collection::hash_set(proptest::collection::vec(any::<u8>(), 1..40), 1..50)) {
            let mut d = Deduplicator::new();
            for (i, p) in payloads.iter().enumerate() {
                prop_assert!(!d.is_duplicate(1, (i % 3) as u16, i as u64, &udp([10, 0, 0, 1], [10, 0, 0, 2], 9, 64, 7, p)));
            }
        }
    }
}
