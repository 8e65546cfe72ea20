//! The worker's end of its Unix socket to the uplink: frames out, typed
//! commands in. If the uplink goes away (restarted by the supervisor) the
//! worker reconnects and resends what it had not delivered; meanwhile the
//! kernel ring buffers packets, and anything beyond it is a counted drop.

use interprocess::local_socket::{prelude::*, GenericFilePath};
// The Unix flavour, which exposes its file descriptor for poll().
use interprocess::os::unix::uds_local_socket::Stream;
use ossensor_shared::ipc::{batch_frame_header, encode_frame, FrameDecoder, UplinkMsg, WorkerMsgRef};
use ossensor_shared::log;
use ossensor_shared::log::BASIC;
use ossensor_shared::bpf::BpfInsn;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Link {
    path: String,
    /// The encoded hello, resent on every reconnection.
    hello: Vec<u8>,
    stop: &'static AtomicBool,
    stream: Stream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    readable: bool,
    pending: Vec<UplinkMsg>,
}

fn open(path: &str) -> std::io::Result<Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    Stream::connect(name)
}

impl Link {
    /// Connects (retrying while the uplink starts) and says hello.
    pub fn connect(path: &str, hello: &WorkerMsgRef<'_>, stop: &'static AtomicBool) -> Result<Link, String> {
        let mut frame = Vec::new();
        encode_frame(hello, &mut frame).map_err(|e| e.to_string())?;
        Self::connect_with(path, frame, stop)
    }

    fn connect_with(path: &str, hello: Vec<u8>, stop: &'static AtomicBool) -> Result<Link, String> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            match open(path) {
                Ok(stream) => {
                    let mut link = Link {
                        path: path.to_string(),
                        hello: hello.clone(),
                        stop,
                        stream,
                        decoder: FrameDecoder::new(),
                        out: Vec::new(),
                        readable: false,
                        pending: Vec::new(),
                    };
                    if link.stream.write_all(&hello).is_ok() {
                        return Ok(link);
                    }
                }
                Err(e) if started.elapsed() > Duration::from_secs(60) => {
                    return Err(format!("cannot reach the uplink at {path}: {e}"));
                }
                Err(_) => {}
            }
            if stop.load(Ordering::Relaxed) {
                return Err("stopped before the uplink answered".into());
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    fn write(&mut self, msg: &WorkerMsgRef<'_>) -> std::io::Result<()> {
        self.out.clear();
        encode_frame(msg, &mut self.out).map_err(std::io::Error::other)?;
        self.stream.write_all(&self.out)
    }

    /// Blocks until the uplink sends the first filter.
    pub fn wait_for_filter(&mut self) -> Result<Vec<BpfInsn>, String> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err("stopped before the uplink sent a filter".into());
            }
            self.poll(&[], Duration::from_millis(200));
            let mut filter = None;
            for cmd in self.commands()? {
                match cmd {
                    UplinkMsg::SetFilter { program } => filter = Some(program),
                    // Kept for the caller, which applies them once capturing.
                    other => self.pending.push(other),
                }
            }
            if let Some(program) = filter {
                return Ok(program);
            }
        }
    }

    /// Sends a frame; on failure reconnects and sends it again, so a batch
    /// survives an uplink restart.
    pub fn send(&mut self, msg: &WorkerMsgRef<'_>) -> Result<(), String> {
        self.send_with(|link| link.write(msg))
    }

    /// Sends a batch frame: its header and `records` in one vectored write
    /// (one syscall per batch, no copy of the records), with the same
    /// reconnection as [`Link::send`].
    pub fn send_batch(&mut self, count: u32, records: &[u8]) -> Result<(), String> {
        let header = batch_frame_header(count, records.len()).map_err(|e| e.to_string())?;
        self.send_with(|link| write_all_vectored(&mut link.stream, &header, records))
    }

    fn send_with(&mut self, mut write: impl FnMut(&mut Link) -> std::io::Result<()>) -> Result<(), String> {
        let mut attempts = 0;
        loop {
            match write(self) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    attempts += 1;
                    if attempts > 3 {
                        return Err(format!("uplink connection keeps failing: {e}"));
                    }
                    self.reconnect(&e.to_string())?;
                }
            }
        }
    }

    fn reconnect(&mut self, why: &str) -> Result<(), String> {
        log!(BASIC, "uplink connection lost ({why}); reconnecting");
        *self = Link::connect_with(&self.path, std::mem::take(&mut self.hello), self.stop)?;
        // The uplink answers a hello with the current filter; keep it for
        // the caller, which re-attaches it.
        let program = self.wait_for_filter()?;
        self.pending.push(UplinkMsg::SetFilter { program });
        Ok(())
    }

    /// Waits up to `timeout` for any of `fds` or the socket to be readable.
    pub fn poll(&mut self, fds: &[RawFd], timeout: Duration) {
        let sock = self.stream.as_fd();
        // SAFETY: the capture fds stay open for the duration of this call.
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| unsafe { BorrowedFd::borrow_raw(*fd) }).collect();
        let mut pfds: Vec<PollFd<'_>> = borrowed.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
        pfds.push(PollFd::new(sock, PollFlags::POLLIN));
        let ms = timeout.as_millis().min(60_000) as u16;
        if poll(&mut pfds, PollTimeout::from(ms)).is_ok() {
            self.readable = pfds.last().and_then(|p| p.revents()).is_some_and(|r| !r.is_empty());
        }
    }

    /// Commands that arrived (reads the socket only if poll saw it readable).
    pub fn commands(&mut self) -> Result<Vec<UplinkMsg>, String> {
        if self.readable {
            self.readable = false;
            let buf = self.decoder.read_buf(64 * 1024);
            let n = self.stream.read(buf);
            match n {
                Ok(0) => {
                    self.decoder.commit(64 * 1024, 0);
                    self.reconnect("closed by the uplink")?;
                    return Ok(std::mem::take(&mut self.pending));
                }
                Ok(n) => self.decoder.commit(64 * 1024, n),
                Err(e) => {
                    self.decoder.commit(64 * 1024, 0);
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        self.reconnect(&e.to_string())?;
                        return Ok(std::mem::take(&mut self.pending));
                    }
                }
            }
        }
        loop {
            match self.decoder.next::<UplinkMsg>() {
                Ok(Some(m)) => self.pending.push(m),
                Ok(None) => break,
                Err(e) => {
                    // A byte stream cannot be resynchronised after a bad
                    // frame: refuse it, keep the commands that came before
                    // it, and start a new connection (the uplink answers
                    // it with the filter). The rings keep capturing
                    // meanwhile, and the worker stays up.
                    log!(BASIC, "refused a malformed frame from the uplink: {e}");
                    let mut good = std::mem::take(&mut self.pending);
                    self.reconnect("after a malformed frame")?;
                    good.append(&mut self.pending);
                    return Ok(good);
                }
            }
        }
        Ok(std::mem::take(&mut self.pending))
    }
}

/// Writes `head` then `body` completely, with as few writev calls as the
/// socket allows (one, unless the uplink is slower than us).
fn write_all_vectored(out: &mut impl Write, head: &[u8], body: &[u8]) -> std::io::Result<()> {
    let mut done = 0;
    let total = head.len() + body.len();
    while done < total {
        let (h, b) = if done < head.len() { (&head[done..], body) } else { (&[][..], &body[done - head.len()..]) };
        match out.write_vectored(&[IoSlice::new(h), IoSlice::new(b)]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_all_vectored;
    use std::io::Write;

    /// A writer that takes at most `step` bytes per call, as a full socket does.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.calls += 1;
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_where_they_stopped() {
        let head = [1u8, 2, 3, 4, 5];
        let body: Vec<u8> = (0..=255).collect();
        for step in [1, 3, 5, 7, 1000] {
            let mut w = Trickle { got: Vec::new(), step, calls: 0 };
            write_all_vectored(&mut w, &head, &body).unwrap();
            assert_eq!(&w.got[..5], &head);
            assert_eq!(&w.got[5..], &body[..]);
        }
    }
}
