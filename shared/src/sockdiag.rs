//! Destroying local sockets for response actions. For a connection that
//! ends on this host, a RST sent on the wire never reaches the local
//! socket; the kernel's socket-destroy request (`SOCK_DESTROY` over
//! `NETLINK_SOCK_DIAG`, what `ss -K` sends) aborts it directly, and the
//! kernel then sends the peer an exact RST itself. It needs CAP_NET_ADMIN,
//! which only the supervisor holds: a capture-worker asks it with a
//! fixed-size [`WorkerRequest`] on a socket pair made for that worker.
//!
//! Here: that request, the netlink request, and the kernel's answer.

use std::net::IpAddr;

/// `SOCK_DESTROY` (linux/sock_diag.h).
pub const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLMSG_ERROR: u16 = 0x02;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// nlmsghdr (16) + inet_diag_req_v2 (8) + inet_diag_sockid (48).
pub const REQUEST_LEN: usize = 72;

/// The request that aborts the TCP socket `local` ↔ `remote` (exact
/// 4-tuple; any state). `None` if the two addresses differ in family.
pub fn destroy_request(seq: u32, local: (IpAddr, u16), remote: (IpAddr, u16)) -> Option<[u8; REQUEST_LEN]> {
    let mut m = [0u8; REQUEST_LEN];
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DESTROY.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states (all).
    m[16] = match (local.0, remote.0) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
        _ => return None,
    };
    m[17] = IPPROTO_TCP;
    m[20..24].copy_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: ports big-endian, addresses in network order (a
    // v4 address in the first word), interface 0 (any), no cookie.
    let id = 24;
    m[id..id + 2].copy_from_slice(&local.1.to_be_bytes());
    m[id + 2..id + 4].copy_from_slice(&remote.1.to_be_bytes());
    put_ip(&mut m, id + 4, local.0);
    put_ip(&mut m, id + 20, remote.0);
    m[id + 40..id + 48].copy_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    Some(m)
}

/// An address in network order into a 16-byte field (IPv4 in the first 4).
fn put_ip(m: &mut [u8], at: usize, ip: IpAddr) {
    match ip {
        IpAddr::V4(v) => m[at..at + 4].copy_from_slice(&v.octets()),
        IpAddr::V6(v) => m[at..at + 16].copy_from_slice(&v.octets()),
    }
}

/// The kernel's acknowledgement of request `seq`: `Ok(())`, or the errno it
/// answered (ENOENT: no such socket; EPERM: no CAP_NET_ADMIN; EOPNOTSUPP:
/// a kernel without CONFIG_INET_DIAG_DESTROY). `None` if `answer` is not an
/// acknowledgement of `seq`.
pub fn parse_ack(answer: &[u8], seq: u32) -> Option<Result<(), i32>> {
    let len = u32::from_ne_bytes(answer.get(0..4)?.try_into().ok()?) as usize;
    let kind = u16::from_ne_bytes(answer.get(4..6)?.try_into().ok()?);
    let got_seq = u32::from_ne_bytes(answer.get(8..12)?.try_into().ok()?);
    if kind != NLMSG_ERROR || got_seq != seq || len < 20 || answer.len() < 20 {
        return None;
    }
    let error = i32::from_ne_bytes(answer[16..20].try_into().ok()?);
    Some(if error == 0 { Ok(()) } else { Err(-error) })
}

/// Worker → supervisor: "destroy the local TCP socket `local` ↔ `remote`".
/// On the wire: family (4 or 6), 3 zero bytes, local port and remote port
/// (big-endian), local and remote address (16 bytes each; a v4 address in
/// the first 4). The answer is the errno as i32 (0: destroyed).
pub const WORKER_REQUEST_LEN: usize = 40;

pub fn encode_worker_request(local: (IpAddr, u16), remote: (IpAddr, u16)) -> Option<[u8; WORKER_REQUEST_LEN]> {
    let mut m = [0u8; WORKER_REQUEST_LEN];
    m[0] = match (local.0, remote.0) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 4,
        (IpAddr::V6(_), IpAddr::V6(_)) => 6,
        _ => return None,
    };
    m[4..6].copy_from_slice(&local.1.to_be_bytes());
    m[6..8].copy_from_slice(&remote.1.to_be_bytes());
    put_ip(&mut m, 8, local.0);
    put_ip(&mut m, 24, remote.0);
    Some(m)
}

/// Reads a worker's request; `None` for anything that is not exactly one
/// well-formed request.
pub fn decode_worker_request(m: &[u8]) -> Option<((IpAddr, u16), (IpAddr, u16))> {
    if m.len() != WORKER_REQUEST_LEN || m[1..4] != [0, 0, 0] {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([m[at], m[at + 1]]);
    let ip = |at: usize| -> Option<IpAddr> {
        match m[0] {
            4 if m[at + 4..at + 16].iter().all(|b| *b == 0) => Some(IpAddr::from(<[u8; 4]>::try_from(&m[at..at + 4]).ok()?)),
            6 => Some(IpAddr::from(<[u8; 16]>::try_from(&m[at..at + 16]).ok()?)),
            _ => None,
        }
    };
    Some(((ip(8)?, port(4)), (ip(24)?, port(6))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn worker_requests_round_trip() {
        for (l, r) in [(("198.18.0.1", 7000), ("198.18.0.2", 40000)), (("2001:db8::1", 1), ("2001:db8::2", 65535))] {
            let local = (l.0.parse().unwrap(), l.1);
            let remote = (r.0.parse().unwrap(), r.1);
            let m = encode_worker_request(local, remote).unwrap();
            assert_eq!(decode_worker_request(&m), Some((local, remote)));
        }
        let mut m = encode_worker_request(("198.18.0.1".parse().unwrap(), 1), ("198.18.0.2".parse().unwrap(), 2)).unwrap();
        m[12] = 1;
        assert_eq!(decode_worker_request(&m), None, "garbage after a v4 address");
        assert_eq!(decode_worker_request(&m[..39]), None);
    }

    #[test]
    fn request_layout_matches_the_kernel_structs() {
        let m = destroy_request(7, ("198.18.0.1".parse().unwrap(), 7000), ("198.18.0.2".parse().unwrap(), 40000)).unwrap();
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 21);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!((m[16], m[17]), (2, 6));
        assert_eq!(&m[24..28], &[0x1b, 0x58, 0x9c, 0x40], "ports 7000 and 40000, big-endian");
        assert_eq!(&m[28..32], &[198, 18, 0, 1]);
        assert_eq!(&m[44..48], &[198, 18, 0, 2]);
        assert_eq!(&m[64..72], &[0xff; 8]);
        let v6 = destroy_request(1, ("2001:db8::1".parse().unwrap(), 1), ("2001:db8::2".parse().unwrap(), 2)).unwrap();
        assert_eq!(v6[16], 10);
        assert_eq!(v6[28 + 15], 1);
        assert_eq!(v6[44 + 15], 2);
        assert!(destroy_request(1, ("198.18.0.1".parse().unwrap(), 1), ("2001:db8::2".parse().unwrap(), 2)).is_none());
    }

    #[test]
    fn acks_are_read() {
        let mut a = [0u8; 36];
        a[0..4].copy_from_slice(&36u32.to_ne_bytes());
        a[4..6].copy_from_slice(&2u16.to_ne_bytes());
        a[8..12].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(parse_ack(&a, 7), Some(Ok(())));
        a[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert_eq!(parse_ack(&a, 7), Some(Err(2)));
        assert_eq!(parse_ack(&a, 8), None, "another request's answer");
    }

    proptest! {
        #[test]
        fn any_worker_request_is_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            if let Some((l, r)) = decode_worker_request(&bytes) {
                prop_assert_eq!(decode_worker_request(&encode_worker_request(l, r).unwrap()), Some((l, r)));
            }
        }

        #[test]
        fn any_answer_is_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), seq in any::<u32>()) {
            let _ = parse_ack(&bytes, seq);
        }
    }
}
