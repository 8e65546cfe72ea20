//! Long-running processes with their output in a log file.

use crate::{describe, tail, Error, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long [`Drop`] waits after SIGTERM before SIGKILL.
pub const DROP_GRACE: Duration = Duration::from_secs(3);

/// A child process whose stdout and stderr go to one log file. Dropping it
/// sends SIGTERM, then SIGKILL after [`DROP_GRACE`], and reaps it. Signals
/// go to its pid only, and only while it is unreaped (so the pid cannot
/// have been reused).
pub struct ProcessGuard {
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
    /// Where this process's output starts in `log`.
    start: u64,
    desc: String,
}

/// Starts `cmd` (stdin closed) with stdout and stderr appended to `log`.
pub fn spawn_logged(cmd: &mut Command, log: impl AsRef<Path>) -> Result<ProcessGuard> {
    let log = log.as_ref().to_path_buf();
    let desc = describe(cmd);
    let f = File::options().create(true).append(true).open(&log).map_err(|e| Error(format!("cannot open log {}: {e}", log.display())))?;
    // A log shared with an earlier run (a restarted sensor) is appended to:
    // this guard's log starts where the file ended.
    let start = f.metadata().map(|m| m.len()).unwrap_or(0);
    let f2 = f.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(f2))
        .spawn()
        .map_err(|e| Error(format!("cannot start `{desc}`: {e} (is it installed? run scripts/deps.sh)")))?;
    Ok(ProcessGuard { child: Some(child), status: None, log, start, desc })
}

impl ProcessGuard {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// This process's log so far (lossy UTF-8): what was written to the
    /// file since it started.
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(b.get(self.start as usize..).unwrap_or(&b)).into_owned()).unwrap_or_default()
    }

    /// The command line, for messages.
    pub fn description(&self) -> &str {
        &self.desc
    }

    /// The exit status if the process has ended (it is reaped then).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.status = Some(st);
                }
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Sends `sig` if the process is still running (unreaped).
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        if self.try_wait().is_some() {
            return Err(Error(format!("`{}` already exited ({:?})", self.desc, self.status)));
        }
        // SAFETY: a signal to our own child, not yet reaped (try_wait above).
        let rc = unsafe { libc::kill(self.pid() as i32, sig) };
        if rc != 0 {
            return Err(Error(format!("kill({}, {sig}): {}", self.pid(), std::io::Error::last_os_error())));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the log to contain `pattern`; returns the
    /// first line containing it. Fails early if the process exits first;
    /// the error shows the end of the log.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(pattern)) {
                return Ok(line.to_string());
            }
            if let Some(st) = self.try_wait() {
                // One last look: the line may have been written just before exit.
                let log = self.log();
                if let Some(line) = log.lines().find(|l| l.contains(pattern)) {
                    return Ok(line.to_string());
                }
                return Err(Error(format!("`{}` exited ({st}) before printing {pattern:?}; log {}:\n{}", self.desc, self.log.display(), tail(&log, 4000))));
            }
            if Instant::now() > deadline {
                return Err(Error(format!("`{}` did not print {pattern:?} within {timeout:?}; log {}:\n{}", self.desc, self.log.display(), tail(&log, 4000))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Ok(st);
            }
            if Instant::now() > deadline {
                return Err(Error(format!("`{}` still running after {timeout:?}; log:\n{}", self.desc, tail(&self.log(), 4000))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `sig` and waits up to 10 s for the exit status. If it does not
    /// exit, it is killed and this fails.
    pub fn stop(&mut self, sig: i32) -> Result<ExitStatus> {
        self.stop_timeout(sig, Duration::from_secs(10))
    }

    pub fn stop_timeout(&mut self, sig: i32, timeout: Duration) -> Result<ExitStatus> {
        if let Some(st) = self.try_wait() {
            return Ok(st);
        }
        self.signal(sig)?;
        match self.wait_timeout(timeout) {
            Ok(st) => Ok(st),
            Err(e) => {
                self.kill();
                Err(Error(format!("did not exit on signal {sig}, killed: {e}")))
            }
        }
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            if let Some(c) = self.child.as_mut() {
                // SAFETY: our own child, not yet reaped.
                unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
                if let Ok(st) = c.wait() {
                    self.status = Some(st);
                }
            }
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        let _ = self.signal(libc::SIGTERM);
        if self.wait_timeout(DROP_GRACE).is_err() {
            self.kill();
        }
    }
}
