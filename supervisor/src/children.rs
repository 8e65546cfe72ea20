//! Starting a child: the right binary, its configuration as JSON on its
//! standard input (the key never appears in argv or environ), its output to
//! the log, and its privileges dropped between fork and exec.

use crate::privileges::{drop_in_child, Identity, Role};
use ossensor_shared::children::CHILD_MARKER;
use serde::Serialize;
use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The children's binaries live beside the supervisor's (the packages and
/// the container install them together); OSSENSOR_LIBEXEC_DIR overrides it.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("OSSENSOR_LIBEXEC_DIR") {
        return Path::new(&dir).join(name);
    }
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/ossensor"));
    me.parent().unwrap_or(Path::new("/usr/bin")).join(name)
}

/// Where children write: the supervisor's log file (opened by the
/// supervisor, so the children need no access to its path) or its stdout.
#[derive(Clone, Copy)]
pub enum Output<'a> {
    Inherit,
    File(&'a std::fs::File),
}

/// Starts `role`. `pass`: (fd number in the child, our descriptor) pairs:
/// its control channel and, for a worker, its socket-destroy channel.
pub fn spawn<C: Serialize>(role: Role, who: Identity, config: &C, output: Output<'_>, pass: &[(RawFd, RawFd)]) -> Result<Child, String> {
    let name = match role {
        Role::CaptureWorker => "ossensor-capture-worker",
        Role::Uplink => "ossensor-uplink",
    };
    let path = binary(name);
    let mut cmd = Command::new(&path);
    cmd.env_clear().env(CHILD_MARKER, "1").env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").stdin(Stdio::piped()).current_dir("/");
    match output {
        Output::Inherit => {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
        Output::File(f) => {
            let out = f.try_clone().map_err(|e| format!("log file: {e}"))?;
            let err = f.try_clone().map_err(|e| format!("log file: {e}"))?;
            cmd.stdout(out).stderr(err);
        }
    }
    let pass = pass.to_vec();
    // SAFETY: the supervisor is single-threaded when it forks, and the
    // closure only makes system calls.
    unsafe {
        cmd.pre_exec(move || {
            pass_fds(&pass)?;
            drop_in_child(role, who)
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let json = serde_json::to_vec(config).map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    if let Err(e) = stdin.write_all(&json) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("cannot hand {name} its configuration: {e}"));
    }
    drop(stdin);
    Ok(child)
}

/// In the child, before exec: each descriptor moves to its number, kept
/// across exec. They are first copied above every target, so moving one
/// never overwrites another that is still to move.
fn pass_fds(pass: &[(RawFd, RawFd)]) -> std::io::Result<()> {
    let high = pass.iter().map(|(target, _)| *target).max().unwrap_or(0) + 1;
    let mut copies = [0 as RawFd; 8];
    for (i, (_, fd)) in pass.iter().enumerate().take(copies.len()) {
        // SAFETY: fcntl on a descriptor the parent holds open until spawn
        // returns; no allocation (we are between fork and exec).
        copies[i] = check(unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, high) })?;
    }
    for (i, (target, _)) in pass.iter().enumerate().take(copies.len()) {
        // SAFETY: as above; dup2 clears close-on-exec on the target.
        check(unsafe { libc::dup2(copies[i], *target) })?;
    }
    Ok(())
}

fn check(rc: libc::c_int) -> std::io::Result<RawFd> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
