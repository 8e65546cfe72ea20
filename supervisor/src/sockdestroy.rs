//! Local socket destroys for the capture-workers (response actions on
//! connections that end on this host; see `ossensor_shared::sockdiag`).
//!
//! Each worker started with response actions gets one end of a
//! SOCK_SEQPACKET socket pair as its fd 3; the supervisor keeps the other
//! and serves fixed-size requests from it: exactly one TCP 4-tuple each,
//! nothing else parsed. The uplink never holds such a socket, so only a
//! worker (which saw the flow) can ask.

use nix::sys::socket::{recv, send, sendto, setsockopt, socket, socketpair, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;
use ossensor_host::log;
use ossensor_host::log::{self as slog, ACTIONS, BASIC};
use ossensor_shared::sockdiag::{decode_worker_request, destroy_request, dump_request, parse_ack, parse_dump, DiagSocket, AF_INET, AF_INET6};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The fd number a worker finds its end at.
pub const WORKER_FD: i32 = 3;
/// Requests served per worker per second, at most (a bound, not a target:
/// one per local connection reset).
const MAX_PER_SECOND: u32 = 2000;

/// (the supervisor's end, the worker's end).
pub fn channel() -> Result<(OwnedFd, OwnedFd), String> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK).map_err(|e| format!("socketpair: {e}"))
}

/// The supervisor's end of one worker's channel.
pub struct Channel {
    pub fd: OwnedFd,
    window_start: Instant,
    served: u32,
    refused_said: bool,
}

impl Channel {
    pub fn new(fd: OwnedFd) -> Channel {
        Channel { fd, window_start: Instant::now(), served: 0, refused_said: false }
    }

    /// Serves every request waiting on the channel.
    pub fn serve(&mut self, who: &str, destroyer: &mut Destroyer) {
        let mut buf = [0u8; 64];
        loop {
            let n = match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) if n > 0 => n,
                _ => return, // EAGAIN, or the worker is gone (reaped elsewhere)
            };
            if self.window_start.elapsed() >= Duration::from_secs(1) {
                self.window_start = Instant::now();
                self.served = 0;
            }
            let errno = match decode_worker_request(&buf[..n as usize]) {
                None => {
                    if !self.refused_said {
                        log!(BASIC, "{who} sent a malformed socket-destroy request ({n} bytes); refused");
                        self.refused_said = true;
                    }
                    libc::EINVAL
                }
                Some(_) if self.served >= MAX_PER_SECOND => libc::EBUSY,
                Some((local, remote)) => {
                    self.served += 1;
                    let r = destroyer.destroy(local, remote);
                    if slog::enabled(ACTIONS) {
                        log!(
                            ACTIONS,
                            "{who}: local socket {} <-> {}: {}",
                            show(local),
                            show(remote),
                            match r {
                                Ok(()) => "destroyed".to_string(),
                                Err(e) => format!("not destroyed: {}", std::io::Error::from_raw_os_error(e)),
                            }
                        );
                    }
                    r.err().unwrap_or(0)
                }
            };
            // A worker that does not read its answers only loses them.
            let _ = send(self.fd.as_raw_fd(), &errno.to_ne_bytes(), MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL);
        }
    }
}

fn show((ip, port): (IpAddr, u16)) -> String {
    match ip {
        IpAddr::V6(v) => format!("[{v}]:{port}"),
        v4 => format!("{v4}:{port}"),
    }
}

/// A NETLINK_SOCK_DIAG socket for SOCK_DESTROY requests.
pub struct Destroyer {
    fd: OwnedFd,
    seq: u32,
}

impl Destroyer {
    pub fn open() -> Result<Destroyer, String> {
        let fd = socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)
            .map_err(|e| format!("netlink sock_diag socket: {e}"))?;
        // The kernel answers at once; a second bounds a lost answer.
        setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(1, 0)).map_err(|e| format!("netlink sock_diag socket: {e}"))?;
        Ok(Destroyer { fd, seq: 0 })
    }

    /// Aborts the established (or closing) TCP socket `local` ↔ `remote`,
    /// if there is one: it is looked up by a dump, never by the kernel's
    /// 4-tuple lookup (which falls back to a listener), and destroyed by
    /// its cookie. The errno on failure (ENOENT: no such connection).
    pub fn destroy(&mut self, local: (IpAddr, u16), remote: (IpAddr, u16)) -> Result<(), i32> {
        if local.0.is_ipv4() != remote.0.is_ipv4() {
            return Err(libc::EINVAL);
        }
        // An IPv4 connection may belong to a dual-stack (AF_INET6) socket.
        let families: &[u8] = if local.0.is_ipv4() { &[AF_INET, AF_INET6] } else { &[AF_INET6] };
        let mut found = Vec::new();
        for family in families {
            found.extend(self.dump(*family, local.1, remote.1)?.into_iter().filter(|s| s.is(local, remote)));
        }
        if found.is_empty() {
            return Err(libc::ENOENT);
        }
        let mut result = Ok(());
        for s in found {
            self.seq = self.seq.wrapping_add(1);
            let req = destroy_request(self.seq, &s);
            self.send(&req)?;
            if let Err(e) = self.ack() {
                result = Err(e);
            }
        }
        result
    }

    /// The connected TCP sockets of `family` with these ports.
    fn dump(&mut self, family: u8, local_port: u16, remote_port: u16) -> Result<Vec<DiagSocket>, i32> {
        self.seq = self.seq.wrapping_add(1);
        self.send(&dump_request(self.seq, family, local_port, remote_port))?;
        let mut sockets = Vec::new();
        let mut answer = vec![0u8; 32 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut answer, MsgFlags::empty()).map_err(|e| e as i32)?;
            let part = parse_dump(&answer[..n], self.seq);
            sockets.extend(part.sockets);
            match part.error {
                // A kernel without this family's diag module: nothing there.
                Some(e) if e == libc::ENOENT || e == libc::EAFNOSUPPORT => return Ok(sockets),
                Some(e) => return Err(e),
                None if part.done => return Ok(sockets),
                None => {}
            }
        }
    }

    fn send(&self, req: &[u8]) -> Result<(), i32> {
        sendto(self.fd.as_raw_fd(), req, &NetlinkAddr::new(0, 0), MsgFlags::empty()).map(drop).map_err(|e| e as i32)
    }

    /// The kernel's acknowledgement of the last request.
    fn ack(&self) -> Result<(), i32> {
        let mut answer = [0u8; 256];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut answer, MsgFlags::empty()).map_err(|e| e as i32)?;
            // Answers to earlier requests that timed out are skipped.
            if let Some(r) = parse_ack(&answer[..n], self.seq) {
                return r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A real socket destroyed through the kernel: the local end of a TCP
    /// connection on loopback reads ECONNABORTED, the peer a reset.
    #[test]
    fn destroys_a_real_local_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        server.read_exact(&mut b).unwrap();
        let local = server.local_addr().unwrap();
        let remote = server.peer_addr().unwrap();
        let mut d = Destroyer::open().unwrap();
        d.destroy((local.ip(), local.port()), (remote.ip(), remote.port())).expect("root may destroy sockets");
        let e = server.read(&mut b).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNABORTED), "{e}");
        let e = client.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        let nobody = ("127.0.0.1".parse().unwrap(), 1);
        assert_eq!(d.destroy(nobody, nobody), Err(libc::ENOENT), "no such socket");
    }

    /// The kernel's own lookup for a 4-tuple that no connection has falls
    /// back to a listening socket: a destroy for a made-up pair (a spoofed
    /// segment to a listening port) must find nothing and leave the
    /// listener, and its established connections, alone.
    #[test]
    fn a_made_up_pair_never_destroys_a_listener_or_another_connection() {
        for any in ["127.0.0.1:0", "[::]:0"] {
            let listener = std::net::TcpListener::bind(any).unwrap();
            let port = listener.local_addr().unwrap().port();
            let there = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let mut client = std::net::TcpStream::connect(there).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let mut d = Destroyer::open().unwrap();
            let made_up = ("127.0.0.1".parse().unwrap(), client.local_addr().unwrap().port().wrapping_add(1));
            assert_eq!(d.destroy(("127.0.0.1".parse().unwrap(), port), made_up), Err(libc::ENOENT), "{any}: no such connection");
            // The listener still accepts, and the connection still carries data.
            let _second = std::net::TcpStream::connect(there).expect("the listener survived");
            listener.set_nonblocking(false).unwrap();
            let (_s2, _) = listener.accept().unwrap();
            client.write_all(b"y").unwrap();
            let mut b = [0u8; 1];
            server.read_exact(&mut b).unwrap();
            assert_eq!(&b, b"y");
        }
    }

    /// A dual-stack listener's IPv4 connection (an AF_INET6 socket with
    /// mapped addresses) is found and destroyed from its IPv4 4-tuple.
    #[test]
    fn a_dual_stack_sockets_ipv4_connection_is_destroyed() {
        let listener = std::net::TcpListener::bind("[::]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let remote = client.local_addr().unwrap();
        Destroyer::open().unwrap().destroy(("127.0.0.1".parse().unwrap(), port), (remote.ip(), remote.port())).expect("found by its IPv4 ends");
        let mut b = [0u8; 1];
        assert_eq!(server.read(&mut b).unwrap_err().raw_os_error(), Some(libc::ECONNABORTED));
        assert_eq!(client.read(&mut b).unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
    }
}
