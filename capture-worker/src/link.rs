//! The worker's end of its connection to the uplink: frames out, typed
//! commands in. The connection is a socket pair the supervisor made: it
//! arrives on the worker's control channel (`supervision`), and no other
//! process can stand in for the uplink (nothing has a name to connect to).
//! If the connection fails (the uplink restarted, or sent a malformed
//! frame), the worker asks the supervisor for a new one and resends what
//! it had not delivered; meanwhile the kernel ring buffers packets, and
//! anything beyond it is a counted drop.
//!
//! The control channel also brings the collector's action key, as the
//! supervisor pinned it.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use ossensor_host::log;
use ossensor_host::log::BASIC;
use ossensor_host::seqpacket::{self, Received};
use ossensor_shared::actions::signed::PublicKey;
use ossensor_shared::bpf::BpfInsn;
use ossensor_shared::ipc::{batch_frame_header, encode_frame, FrameDecoder, UplinkMsg, WorkerMsgRef};
use ossensor_shared::supervision::{self, FromWorker, ToWorker, MAX_MESSAGE};
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the worker waits for a connection to the uplink before it
/// gives up (and the supervisor restarts it).
const CONNECT_WAIT: Duration = Duration::from_secs(60);

pub struct Link {
    /// The control channel to the supervisor.
    control: OwnedFd,
    /// The encoded hello, sent on every new connection.
    hello: Vec<u8>,
    stop: &'static AtomicBool,
    stream: UnixStream,
    decoder: FrameDecoder,
    out: Vec<u8>,
    readable: bool,
    control_readable: bool,
    pending: Vec<UplinkMsg>,
    /// Action keys the supervisor handed over, for the caller.
    keys: Vec<PublicKey>,
}

impl Link {
    /// Takes the control channel at `control_fd`, waits for the
    /// supervisor's connection to the uplink and says hello on it.
    pub fn connect(control_fd: RawFd, hello: &WorkerMsgRef<'_>, stop: &'static AtomicBool) -> Result<Link, String> {
        let control = ossensor_host::child::inherited_fd(control_fd)
            .ok_or_else(|| format!("no control channel at fd {control_fd}: the supervisor starts this process"))?;
        let mut frame = Vec::new();
        encode_frame(hello, &mut frame).map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        let stream = wait_for_uplink(&control, stop, &mut keys)?;
        let mut link = Link {
            control,
            hello: frame,
            stop,
            stream,
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            readable: false,
            control_readable: false,
            pending: Vec::new(),
            keys,
        };
        link.say_hello()?;
        Ok(link)
    }

    fn say_hello(&mut self) -> Result<(), String> {
        self.stream.write_all(&self.hello).map_err(|e| format!("hello to the uplink: {e}"))
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

    /// Sends a frame; on failure gets a new connection and sends it again,
    /// so a batch survives an uplink restart.
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

    /// Asks the supervisor for a new connection and waits for it.
    fn reconnect(&mut self, why: &str) -> Result<(), String> {
        log!(BASIC, "uplink connection lost ({why}); asking the supervisor for a new one");
        seqpacket::send(self.control.as_fd(), &supervision::encode(&FromWorker::NeedUplink), None).map_err(|e| format!("cannot reach the supervisor: {e}"))?;
        let stream = wait_for_uplink(&self.control, self.stop, &mut self.keys)?;
        self.replace(stream)
    }

    /// Starts over on `stream`: hello, and the filter the uplink answers
    /// it with, kept for the caller, which re-attaches it.
    fn replace(&mut self, stream: UnixStream) -> Result<(), String> {
        self.stream = stream;
        self.decoder = FrameDecoder::new();
        self.readable = false;
        self.say_hello()?;
        let program = self.wait_for_filter()?;
        self.pending.push(UplinkMsg::SetFilter { program });
        Ok(())
    }

    /// Waits up to `timeout` for any of `fds`, the connection or the
    /// control channel to be readable.
    pub fn poll(&mut self, fds: &[RawFd], timeout: Duration) {
        // SAFETY: the capture fds stay open for the duration of this call.
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| unsafe { BorrowedFd::borrow_raw(*fd) }).collect();
        let mut pfds: Vec<PollFd<'_>> = borrowed.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
        pfds.push(PollFd::new(self.stream.as_fd(), PollFlags::POLLIN));
        pfds.push(PollFd::new(self.control.as_fd(), PollFlags::POLLIN));
        let ms = timeout.as_millis().min(60_000) as u16;
        if poll(&mut pfds, PollTimeout::from(ms)).is_ok() {
            let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
            let n = pfds.len();
            self.readable = ready(&pfds[n - 2]);
            self.control_readable = ready(&pfds[n - 1]);
        }
    }

    /// Action keys the supervisor handed over since the last call.
    pub fn take_action_keys(&mut self) -> Vec<PublicKey> {
        std::mem::take(&mut self.keys)
    }

    /// Commands that arrived (reads only what poll saw readable).
    pub fn commands(&mut self) -> Result<Vec<UplinkMsg>, String> {
        if self.control_readable {
            self.control_readable = false;
            // A new connection from the supervisor replaces ours: the
            // uplink restarted.
            if let Some(stream) = read_control(&self.control, &mut self.keys)? {
                log!(BASIC, "a new connection to the uplink (the uplink restarted)");
                self.replace(stream)?;
            }
        }
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

/// Reads what waits on the control channel: action keys go to `keys`; the
/// newest connection to the uplink, if one came, is returned.
fn read_control(control: &OwnedFd, keys: &mut Vec<PublicKey>) -> Result<Option<UnixStream>, String> {
    let mut buf = [0u8; MAX_MESSAGE];
    let mut newest = None;
    loop {
        match seqpacket::recv(control.as_fd(), &mut buf, false) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(newest),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("control channel: {e}")),
            Ok(Received::Closed) => return Err("the supervisor closed the control channel".into()),
            Ok(Received::Datagram { len, fd }) => match (supervision::decode::<ToWorker>(&buf[..len]), fd) {
                (Ok(ToWorker::Uplink), Some(fd)) => newest = Some(UnixStream::from(fd)),
                (Ok(ToWorker::ActionKey(k)), None) => keys.push(k),
                (m, fd) => log!(BASIC, "refused a malformed control message ({m:?}, descriptor {})", fd.is_some()),
            },
        }
    }
}

/// Waits for the supervisor to hand over a connection to the uplink.
fn wait_for_uplink(control: &OwnedFd, stop: &AtomicBool, keys: &mut Vec<PublicKey>) -> Result<UnixStream, String> {
    let started = Instant::now();
    loop {
        if let Some(stream) = read_control(control, keys)? {
            return Ok(stream);
        }
        if stop.load(Ordering::Relaxed) {
            return Err("stopped before the uplink was reachable".into());
        }
        if started.elapsed() > CONNECT_WAIT {
            return Err(format!("no connection to the uplink within {} s", CONNECT_WAIT.as_secs()));
        }
        let mut pfd = [PollFd::new(control.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut pfd, PollTimeout::from(200u16));
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
