//! Wakes the supervisor when a network interface appears, disappears or
//! changes: a NETLINK_ROUTE socket subscribed to RTMGRP_LINK. The messages
//! are not parsed; any of them (or an overflow, ENOBUFS) triggers a fresh
//! scan of /sys/class/net, which is the source of truth. No polling.

use nix::sys::socket::{bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

const RTMGRP_LINK: u32 = 1;

pub struct LinkWatch {
    fd: OwnedFd,
}

impl LinkWatch {
    pub fn open() -> Result<LinkWatch, String> {
        let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, SockProtocol::NetlinkRoute)
            .map_err(|e| format!("netlink socket: {e}"))?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &NetlinkAddr::new(0, RTMGRP_LINK)).map_err(|e| format!("netlink bind: {e}"))?;
        Ok(LinkWatch { fd })
    }

    /// Reads every pending message; true if anything arrived.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 16384];
        let mut any = false;
        loop {
            match recv(std::os::fd::AsRawFd::as_raw_fd(&self.fd), &mut buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return any,
                Ok(_) => any = true,
                Err(nix::errno::Errno::ENOBUFS) => any = true, // overflowed: rescan anyway
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return any,
            }
        }
    }
}

impl AsFd for LinkWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
