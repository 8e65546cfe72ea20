//! Destroying local sockets for response actions. For a connection that
//! ends on this host, a RST sent on the wire never reaches the local
//! socket; the kernel's socket-destroy request (`SOCK_DESTROY` over
//! `NETLINK_SOCK_DIAG`, what `ss -K` sends) aborts it directly, and the
//! kernel then sends the peer an exact RST itself. It needs CAP_NET_ADMIN,
//! which only the supervisor holds: a capture-worker asks it with a
//! fixed-size [`WorkerRequest`] on a socket pair made for that worker.
//!
//! A destroy request names a socket by its 4-tuple, and the kernel's lookup
//! falls back to a *listening* socket when no connection has that 4-tuple:
//! a destroy for a made-up pair would kill the listener. So, as `ss -K`
//! does, a socket is first found by a dump ([`dump_request`]) restricted to
//! connected states, matched on both endpoints ([`DiagSocket::is`]), and
//! destroyed by the cookie the dump gave ([`destroy_request`]): the kernel
//! refuses a cookie that is not the socket its lookup found.
//!
//! Here: that request, the netlink requests, and the kernel's answers.

use std::net::IpAddr;

/// `SOCK_DIAG_BY_FAMILY` and `SOCK_DESTROY` (linux/sock_diag.h).
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
pub const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 0x02;
const NLMSG_DONE: u16 = 0x03;
/// An error answer too short to say which errno: EIO.
const EIO: i32 = 5;
const IPPROTO_TCP: u8 = 6;
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
/// nlmsghdr (16) + inet_diag_req_v2 (8) + inet_diag_sockid (48).
pub const REQUEST_LEN: usize = 72;
/// inet_diag_msg: family, state, timer, retrans (4) + sockid (48) +
/// expires, rqueue, wqueue, uid, inode (20).
const DIAG_MSG_LEN: usize = 72;
/// "No cookie": the kernel then matches on the 4-tuple alone.
const NO_COOKIE: [u8; 8] = [0xff; 8];

/// TCP states (include/net/tcp_states.h) a connection can be destroyed in:
/// established or closing. Never LISTEN, SYN_SENT, SYN_RECV, TIME_WAIT.
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_FIN_WAIT1: u8 = 4;
pub const TCP_FIN_WAIT2: u8 = 5;
pub const TCP_CLOSE_WAIT: u8 = 8;
pub const TCP_LAST_ACK: u8 = 9;
pub const TCP_LISTEN: u8 = 10;
pub const TCP_CLOSING: u8 = 11;
pub const DESTROYABLE_STATES: [u8; 6] = [TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING];

fn states_mask(states: &[u8]) -> u32 {
    states.iter().fold(0u32, |m, s| m | (1 << s))
}

fn header(m: &mut [u8; REQUEST_LEN], kind: u16, flags: u16, seq: u32, family: u8) {
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&kind.to_ne_bytes());
    m[6..8].copy_from_slice(&flags.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states.
    m[16] = family;
    m[17] = IPPROTO_TCP;
}

/// A dump of the `family` TCP sockets in a destroyable state whose local
/// port is `local_port` and remote port `remote_port` (the kernel filters
/// on ports; addresses are compared by the caller).
pub fn dump_request(seq: u32, family: u8, local_port: u16, remote_port: u16) -> [u8; REQUEST_LEN] {
    let mut m = [0u8; REQUEST_LEN];
    header(&mut m, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, family);
    m[20..24].copy_from_slice(&states_mask(&DESTROYABLE_STATES).to_ne_bytes());
    m[24..26].copy_from_slice(&local_port.to_be_bytes());
    m[26..28].copy_from_slice(&remote_port.to_be_bytes());
    m[64..72].copy_from_slice(&NO_COOKIE);
    m
}

/// One socket of a dump, as the kernel described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub family: u8,
    pub state: u8,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub ifindex: u32,
    pub cookie: [u8; 8],
}

impl DiagSocket {
    /// Is this the connection `local` ↔ `remote`, in a destroyable state?
    /// IPv4-mapped IPv6 addresses (a dual-stack socket's IPv4 connection)
    /// compare equal to their IPv4 form.
    pub fn is(&self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> bool {
        DESTROYABLE_STATES.contains(&self.state)
            && (self.local.0.to_canonical(), self.local.1) == (local.0.to_canonical(), local.1)
            && (self.remote.0.to_canonical(), self.remote.1) == (remote.0.to_canonical(), remote.1)
    }
}

/// What one netlink answer of a dump held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DumpPart {
    pub sockets: Vec<DiagSocket>,
    /// NLMSG_DONE seen: the dump is complete.
    pub done: bool,
    /// The kernel answered an error (errno) instead.
    pub error: Option<i32>,
}

/// Reads one `recv` worth of a dump answer to request `seq`: every
/// well-formed `inet_diag_msg`; messages for other requests are skipped.
pub fn parse_dump(answer: &[u8], seq: u32) -> DumpPart {
    let mut part = DumpPart::default();
    let mut at = 0;
    while let Some(hdr) = answer.get(at..at + 16) {
        let len = u32::from_ne_bytes(hdr[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(hdr[4..6].try_into().expect("2 bytes"));
        let got_seq = u32::from_ne_bytes(hdr[8..12].try_into().expect("4 bytes"));
        if len < 16 || at + len > answer.len() {
            break; // truncated or nonsense: stop here
        }
        let body = &answer[at + 16..at + len];
        if got_seq == seq {
            match kind {
                NLMSG_DONE => part.done = true,
                NLMSG_ERROR => {
                    let errno = body.get(0..4).map_or(EIO, |b| -i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                    part.error = Some(errno);
                    part.done = true;
                }
                SOCK_DIAG_BY_FAMILY => {
                    if let Some(s) = parse_diag_msg(body) {
                        part.sockets.push(s);
                    }
                }
                _ => {}
            }
        }
        // Messages are 4-byte aligned.
        at += (len + 3) & !3;
    }
    part
}

fn parse_diag_msg(b: &[u8]) -> Option<DiagSocket> {
    if b.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = b[0];
    let ip = |at: usize| -> Option<IpAddr> {
        match family {
            AF_INET => Some(IpAddr::from(<[u8; 4]>::try_from(&b[at..at + 4]).ok()?)),
            AF_INET6 => Some(IpAddr::from(<[u8; 16]>::try_from(&b[at..at + 16]).ok()?)),
            _ => None,
        }
    };
    let id = 4;
    Some(DiagSocket {
        family,
        state: b[1],
        local: (ip(id + 4)?, u16::from_be_bytes([b[id], b[id + 1]])),
        remote: (ip(id + 20)?, u16::from_be_bytes([b[id + 2], b[id + 3]])),
        ifindex: u32::from_ne_bytes(b[id + 36..id + 40].try_into().ok()?),
        cookie: b[id + 40..id + 48].try_into().ok()?,
    })
}

/// The request that aborts exactly the socket `s` a dump found: its
/// family, 4-tuple, bound interface and cookie.
pub fn destroy_request(seq: u32, s: &DiagSocket) -> [u8; REQUEST_LEN] {
    let mut m = [0u8; REQUEST_LEN];
    header(&mut m, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq, s.family);
    m[20..24].copy_from_slice(&states_mask(&DESTROYABLE_STATES).to_ne_bytes());
    // inet_diag_sockid: ports big-endian, addresses in network order (a
    // v4 address in the first word).
    let id = 24;
    m[id..id + 2].copy_from_slice(&s.local.1.to_be_bytes());
    m[id + 2..id + 4].copy_from_slice(&s.remote.1.to_be_bytes());
    put_ip(&mut m, id + 4, s.local.0);
    put_ip(&mut m, id + 20, s.remote.0);
    m[id + 36..id + 40].copy_from_slice(&s.ifindex.to_ne_bytes());
    m[id + 40..id + 48].copy_from_slice(&s.cookie);
    m
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

    fn sock(local: (&str, u16), remote: (&str, u16)) -> DiagSocket {
        let l: IpAddr = local.0.parse().unwrap();
        DiagSocket {
            family: if l.is_ipv4() { AF_INET } else { AF_INET6 },
            state: TCP_ESTABLISHED,
            local: (l, local.1),
            remote: (remote.0.parse().unwrap(), remote.1),
            ifindex: 3,
            cookie: [1, 2, 3, 4, 5, 6, 7, 8],
        }
    }

    #[test]
    fn request_layout_matches_the_kernel_structs() {
        let m = destroy_request(7, &sock(("198.18.0.1", 7000), ("198.18.0.2", 40000)));
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 21);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!((m[16], m[17]), (2, 6));
        assert_eq!(&m[24..28], &[0x1b, 0x58, 0x9c, 0x40], "ports 7000 and 40000, big-endian");
        assert_eq!(&m[28..32], &[198, 18, 0, 1]);
        assert_eq!(&m[44..48], &[198, 18, 0, 2]);
        assert_eq!(u32::from_ne_bytes(m[60..64].try_into().unwrap()), 3, "the bound interface the dump gave");
        assert_eq!(&m[64..72], &[1, 2, 3, 4, 5, 6, 7, 8], "the dump's cookie: the kernel refuses any other socket");
        let v6 = destroy_request(1, &sock(("2001:db8::1", 1), ("2001:db8::2", 2)));
        assert_eq!(v6[16], 10);
        assert_eq!(v6[28 + 15], 1);
        assert_eq!(v6[44 + 15], 2);
        let d = dump_request(9, AF_INET6, 7000, 40000);
        assert_eq!(u16::from_ne_bytes(d[4..6].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes(d[6..8].try_into().unwrap()), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!((d[16], d[17]), (10, 6));
        let states = u32::from_ne_bytes(d[20..24].try_into().unwrap());
        assert_eq!(states & (1 << TCP_LISTEN), 0, "never a listener");
        assert_eq!(states, (1 << 1) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11));
        assert_eq!(&d[24..28], &[0x1b, 0x58, 0x9c, 0x40]);
        assert_eq!(&d[64..72], &[0xff; 8]);
    }

    /// A dump answer as the kernel writes it: one inet_diag_msg per socket,
    /// then NLMSG_DONE.
    fn dump_answer(seq: u32, socks: &[DiagSocket]) -> Vec<u8> {
        let mut out = Vec::new();
        for s in socks {
            let mut m = vec![0u8; 16 + DIAG_MSG_LEN];
            m[0..4].copy_from_slice(&((16 + DIAG_MSG_LEN) as u32).to_ne_bytes());
            m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            m[8..12].copy_from_slice(&seq.to_ne_bytes());
            let b = &mut m[16..];
            b[0] = s.family;
            b[1] = s.state;
            b[4..6].copy_from_slice(&s.local.1.to_be_bytes());
            b[6..8].copy_from_slice(&s.remote.1.to_be_bytes());
            put_ip(b, 8, s.local.0);
            put_ip(b, 24, s.remote.0);
            b[40..44].copy_from_slice(&s.ifindex.to_ne_bytes());
            b[44..52].copy_from_slice(&s.cookie);
            out.extend(m);
        }
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        done[8..12].copy_from_slice(&seq.to_ne_bytes());
        out.extend(done);
        out
    }

    #[test]
    fn dumps_are_read_and_matched_on_both_ends() {
        let a = sock(("198.18.0.1", 7000), ("198.18.0.2", 40000));
        let mut mapped = sock(("::ffff:198.18.0.1", 7000), ("::ffff:198.18.0.3", 40000));
        mapped.cookie = [9; 8];
        let part = parse_dump(&dump_answer(4, &[a, mapped]), 4);
        assert!(part.done);
        assert_eq!(part.sockets, vec![a, mapped]);
        let l: IpAddr = "198.18.0.1".parse().unwrap();
        assert!(part.sockets[0].is((l, 7000), ("198.18.0.2".parse().unwrap(), 40000)));
        assert!(!part.sockets[0].is((l, 7000), ("198.18.0.9".parse().unwrap(), 40000)), "another remote address");
        assert!(part.sockets[1].is((l, 7000), ("198.18.0.3".parse().unwrap(), 40000)), "a dual-stack socket's IPv4 connection");
        let mut listening = a;
        listening.state = TCP_LISTEN;
        assert!(!listening.is(a.local, a.remote), "a listener is never the connection");
        assert_eq!(parse_dump(&dump_answer(4, &[a]), 5), DumpPart::default(), "another request's answer");
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
        fn any_answer_is_read_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), seq in any::<u32>()) {
            let _ = parse_ack(&bytes, seq);
            let _ = parse_dump(&bytes, seq);
        }
    }
}
