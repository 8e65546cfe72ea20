//! The control channels' I/O (see `ossensor_shared::supervision`): datagrams on a
//! `SOCK_SEQPACKET` socket pair, each optionally carrying one descriptor.
//! The one module here that makes system calls; it decides nothing.

use nix::sys::socket::{recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A close-on-exec socket pair; which end goes to the child is the
/// caller's choice.
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(std::io::Error::from)
}

/// A stream socket pair for a worker and the uplink.
pub fn stream_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).map_err(std::io::Error::from)
}

/// Sends one datagram, with `pass` as its descriptor. Never blocks and
/// never raises SIGPIPE: a full or closed channel is an error.
pub fn send(fd: BorrowedFd<'_>, datagram: &[u8], pass: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let iov = [std::io::IoSlice::new(datagram)];
    let fds = pass.map(|p| [p.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage<'_>> = fds.as_ref().map(|f| ControlMessage::ScmRights(f)).into_iter().collect();
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    sendmsg::<()>(fd.as_raw_fd(), &iov, &cmsgs, flags, None).map_err(std::io::Error::from)?;
    Ok(())
}

/// One datagram received.
#[derive(Debug)]
pub enum Received {
    /// `len` bytes in the buffer, and the descriptor it carried, if any.
    Datagram { len: usize, fd: Option<OwnedFd> },
    /// The other end closed.
    Closed,
}

/// Receives one datagram into `buf` (a longer one is an error). With
/// `wait` false, an empty channel is `ErrorKind::WouldBlock`.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], wait: bool) -> std::io::Result<Received> {
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let (len, truncated, passed) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut space), flags).map_err(std::io::Error::from)?;
        let mut passed = Vec::new();
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these descriptors for us.
                passed.extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        (msg.bytes, msg.flags.intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC), passed)
    };
    if len == 0 && passed.is_empty() {
        return Ok(Received::Closed);
    }
    if truncated || passed.len() > 1 {
        // Extra descriptors close as `passed` drops.
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a control message longer than allowed, or with more than one descriptor"));
    }
    Ok(Received::Datagram { len, fd: passed.into_iter().next() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_datagram_carries_a_working_descriptor() {
        let (a, b) = pair().unwrap();
        let (s1, s2) = stream_pair().unwrap();
        send(a.as_fd(), b"hello", Some(s2.as_fd())).unwrap();
        drop(s2);
        let mut buf = [0u8; 64];
        let Received::Datagram { len, fd: Some(got) } = recv(b.as_fd(), &mut buf, true).unwrap() else { panic!("no descriptor") };
        assert_eq!(&buf[..len], b"hello");
        let mut ours = std::os::unix::net::UnixStream::from(s1);
        let mut theirs = std::os::unix::net::UnixStream::from(got);
        ours.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        theirs.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        send(a.as_fd(), b"plain", None).unwrap();
        assert!(matches!(recv(b.as_fd(), &mut buf, true).unwrap(), Received::Datagram { len: 5, fd: None }));
        assert_eq!(recv(b.as_fd(), &mut buf, false).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        drop(a);
        assert!(matches!(recv(b.as_fd(), &mut buf, true).unwrap(), Received::Closed));
    }

    #[test]
    fn an_oversized_datagram_is_an_error() {
        let (a, b) = pair().unwrap();
        send(a.as_fd(), &[1u8; 100], None).unwrap();
        let mut small = [0u8; 10];
        assert_eq!(recv(b.as_fd(), &mut small, true).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}
