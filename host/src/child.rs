//! A child's start: it refuses to run unless the supervisor started it, then
//! reads its configuration (`ossensor_shared::children`) from standard
//! input, where the key travels so it never shows in argv or environ.

use ossensor_shared::children::{LogConfig, CHILD_MARKER};
use serde::Deserialize;
use std::io::Read;

/// The configuration on standard input; the error is the line to print
/// before exiting with status 2.
pub fn config<T: for<'de> Deserialize<'de>>(binary: &str) -> Result<T, String> {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return Err(format!("{binary} is started by the ossensor supervisor, not by hand"));
    }
    read_from_stdin().map_err(|e| format!("{binary}: {e}"))
}

/// Reads a child's configuration from standard input (at most 1 MiB).
pub fn read_from_stdin<T: for<'de> Deserialize<'de>>() -> Result<T, String> {
    let mut buf = Vec::new();
    std::io::stdin().take(1 << 20).read_to_end(&mut buf).map_err(|e| format!("cannot read configuration from stdin: {e}"))?;
    serde_json::from_slice(&buf).map_err(|e| format!("malformed configuration on stdin: {e}"))
}

/// Where a child's audit events go, as its configuration says.
pub fn audit_target(log: &LogConfig) -> crate::log::Audit<'_> {
    match &log.syslog_socket {
        Some(p) => crate::log::Audit::SyslogAt(p),
        None => crate::log::Audit::Syslog,
    }
}

/// Takes ownership of a descriptor the supervisor left open for this child
/// (its control channel, the socket-destroy channel), if it is open; None
/// if nothing is open at `fd`.
pub fn inherited_fd(fd: std::os::fd::RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD reads the descriptor's flags and nothing else; a
    // closed `fd` only makes it fail.
    if fd < 0 || unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: `fd` is open, and the supervisor passed it to this process
    // alone, to be owned once: each caller takes one fixed number, once.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
