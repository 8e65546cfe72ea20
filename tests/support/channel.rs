//! What a compromised process would hold: a duplicate of one end of the
//! connection between a capture-worker and the uplink, taken from the
//! running process with `pidfd_getfd` (as root). The connection is a
//! socket pair the supervisor made; `ss` tells its two ends apart by inode.

use crate::netns::Netns;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The worker's stream socket as `ss` shows it: (its inode, its peer's).
fn worker_stream(ns: &Netns, worker: i32) -> Option<(u64, u64)> {
    let out = ns.run(&["ss", "-x", "-p", "-n", "-H"]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains(&format!("pid={worker},")) && l.starts_with("u_str"))?;
    // u_str ESTAB 0 0 <local path or *> <inode> <peer path or *> <peer inode> users:…
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f.get(5)?.parse().ok()?, f.get(7)?.parse().ok()?))
}

/// A duplicate of the descriptor `owner` holds for socket `inode`.
fn take(owner: i32, inode: u64) -> Option<UnixStream> {
    let want = format!("socket:[{inode}]");
    for e in std::fs::read_dir(format!("/proc/{owner}/fd")).ok()?.flatten() {
        if std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want) {
            let target: i32 = e.file_name().to_string_lossy().parse().ok()?;
            // SAFETY: plain system calls; the fd returned is ours.
            let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, owner, 0) } as i32;
            assert!(pidfd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0) } as i32;
            assert!(fd >= 0, "pidfd_getfd: {}", std::io::Error::last_os_error());
            // SAFETY: both descriptors were just made for this process: the pidfd
            // is closed once, the copied socket owned once.
            unsafe { libc::close(pidfd) };
            return Some(unsafe { UnixStream::from_raw_fd(fd) });
        }
    }
    None
}

/// The uplink's end of `worker`'s connection (what a compromised uplink
/// writes commands on), and its inode; `not`: skip the connection with
/// that inode (one already abused and since replaced).
pub fn uplink_end(ns: &Netns, uplink: i32, worker: i32, not: Option<u64>) -> (UnixStream, u64) {
    wait_for(|| {
        let (_, peer) = worker_stream(ns, worker).filter(|(_, p)| Some(*p) != not)?;
        take(uplink, peer).map(|s| (s, peer))
    })
}

/// The worker's own end of its connection (what a compromised worker
/// writes batches on), and its inode.
pub fn worker_end(ns: &Netns, worker: i32, not: Option<u64>) -> (UnixStream, u64) {
    wait_for(|| {
        let (own, _) = worker_stream(ns, worker).filter(|(o, _)| Some(*o) != not)?;
        take(worker, own).map(|s| (s, own))
    })
}

fn wait_for<T>(mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(Instant::now() < deadline, "no connection between the uplink and the worker");
        std::thread::sleep(Duration::from_millis(100));
    }
}
