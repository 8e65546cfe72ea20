//! The uplink's connections to the capture-workers: the supervisor hands
//! each over on the control channel (`supervision`; no socket has a name,
//! so nobody else can connect). Each worker's hello is answered with the
//! filter compiled for its link type, and its batches and statistics go to
//! the chunker through a bounded channel (when the chunker falls behind,
//! workers block and the kernel rings absorb the burst; beyond them the
//! kernel counts drops).

use ossensor_host::log;
use ossensor_host::log::BASIC;
use ossensor_host::seqpacket::{self, Received};
use ossensor_shared::actions::signed::{self, SignedSet};
use ossensor_shared::actions::ActionStats;
use ossensor_shared::ipc::{encode_frame, CaptureStats, FrameDecoder, UplinkMsg, WorkerMsg};
use ossensor_shared::supervision::{self, ToUplink, MAX_MESSAGE};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

pub enum Intake {
    Batch { interface: Arc<str>, linktype: i32, count: u32, records: Vec<u8> },
    Stats { interface: Arc<str>, stats: CaptureStats },
    ActionStats { interface: Arc<str>, stats: Vec<(u64, ActionStats)> },
    Connected { interface: Arc<str> },
    Disconnected { interface: Arc<str> },
}

/// The filter and the response actions in force, and the workers to tell
/// when they change.
#[derive(Default)]
pub struct Filters {
    expression: String,
    actions: Option<Relayed>,
    workers: Vec<(u64, i32, UnixStream)>,
    next_id: u64,
}

/// The signed set the collector sent last, relayed as it is (the workers
/// verify it), and when each of its actions ends on our clock (read from
/// the payload without verifying it: for counting only).
struct Relayed {
    set: SignedSet,
    ends_ns: Vec<u64>,
}

impl Filters {
    pub fn new(expression: String) -> Filters {
        Filters { expression, ..Default::default() }
    }

    /// Replaces the expression and sends it to every connected worker.
    /// A collector filter that does not compile is refused; the old one stays.
    pub fn replace(&mut self, expression: String) -> Result<(), String> {
        // Checked for Ethernet even with no worker connected, so a filter
        // that cannot compile never becomes the one new workers get.
        let mut programs = std::collections::HashMap::new();
        programs.insert(1, ossensor_libpcap::compile(&expression, 1).map_err(|e| format!("filter {expression:?}: {e}"))?);
        for (_, lt, _) in &self.workers {
            if !programs.contains_key(lt) {
                programs.insert(*lt, ossensor_libpcap::compile(&expression, *lt).map_err(|e| format!("filter {expression:?}: {e}"))?);
            }
        }
        self.expression = expression;
        for (_, lt, stream) in &mut self.workers {
            let _ = send(stream, &UplinkMsg::SetFilter { program: programs[lt].clone() });
        }
        Ok(())
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Replaces the set of response actions (as the collector signed it)
    /// and sends it to every worker. `now_ns`: our clock, for counting.
    pub fn set_actions(&mut self, set: SignedSet, now_ns: u64) {
        let ends_ns = match signed::decode(&set.payload) {
            Ok(s) => s.actions.iter().map(|a| now_ns.saturating_add(a.until_ns.saturating_sub(s.issued_ns))).collect(),
            Err(_) => Vec::new(),
        };
        let msg = UplinkMsg::Actions { set: set.clone() };
        self.actions = Some(Relayed { set, ends_ns });
        for (_, _, stream) in &mut self.workers {
            let _ = send(stream, &msg);
        }
    }

    /// How many actions are in force now (as the set says; the workers
    /// enforce only what verifies).
    pub fn actions_in_force(&self) -> usize {
        let now = ossensor_host::clock::now_ns();
        self.actions.as_ref().map_or(0, |r| r.ends_ns.iter().filter(|t| **t > now).count())
    }
}

fn send(stream: &mut UnixStream, msg: &UplinkMsg) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out).map_err(std::io::Error::other)?;
    stream.write_all(&out)
}

/// Takes the workers' connections the supervisor hands over on `control`
/// until it closes, one reader thread each.
pub fn serve(control: Arc<OwnedFd>, filters: Arc<Mutex<Filters>>, tx: SyncSender<Intake>) {
    let mut buf = [0u8; MAX_MESSAGE];
    loop {
        let (len, fd) = match seqpacket::recv(control.as_fd(), &mut buf, true) {
            Ok(Received::Datagram { len, fd }) => (len, fd),
            Ok(Received::Closed) => {
                log!(BASIC, "the supervisor closed the control channel: no more workers");
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log!(BASIC, "control channel: {e}");
                return;
            }
        };
        let (interface, pid, stream) = match (supervision::decode::<ToUplink>(&buf[..len]), fd) {
            (Ok(ToUplink::Worker { interface, pid }), Some(fd)) => (interface, pid, UnixStream::from(fd)),
            (m, fd) => {
                log!(BASIC, "refused a malformed control message ({m:?}, descriptor {})", fd.is_some());
                continue;
            }
        };
        let filters = filters.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Err(e) = read_worker(stream, (&interface, pid), &filters, &tx) {
                log!(BASIC, "connection of the worker for {interface} closed: {e}");
            }
        });
    }
}

/// `expected`: the interface and pid the supervisor connected; the
/// worker's hello must say the same.
fn read_worker(mut stream: UnixStream, expected: (&str, u32), filters: &Mutex<Filters>, tx: &SyncSender<Intake>) -> Result<(), String> {
    let mut decoder = FrameDecoder::new();
    // (interface, link type, id in Filters) once the worker said hello.
    let mut identity: Option<(Arc<str>, i32, u64)> = None;
    let result = loop {
        let buf = decoder.read_buf(256 * 1024);
        let n = match stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                decoder.commit(256 * 1024, 0);
                continue;
            }
            Err(e) => {
                decoder.commit(256 * 1024, 0);
                break Err(e.to_string());
            }
        };
        decoder.commit(256 * 1024, n);
        if n == 0 {
            break Ok(()); // the worker closed its end
        }
        let mut failed = None;
        loop {
            match decoder.next::<WorkerMsg>() {
                Ok(None) => break,
                Err(e) => {
                    failed = Some(format!("malformed frame from worker: {e}"));
                    break;
                }
                Ok(Some(msg)) => match (msg, &identity) {
                    (WorkerMsg::Hello { interface, pid, .. }, None) if (interface.as_str(), pid) != expected => {
                        failed =
                            Some(format!("the worker said hello as {interface:?} (pid {pid}), not as the supervisor's {:?} (pid {})", expected.0, expected.1));
                        break;
                    }
                    (WorkerMsg::Hello { interface, linktype, pid, .. }, None) => {
                        let interface: Arc<str> = interface.into();
                        let mut f = filters.lock().unwrap_or_else(|e| e.into_inner());
                        let program = ossensor_libpcap::compile(f.expression(), linktype)
                            .map_err(|e| format!("filter {:?} for link type {linktype}: {e}", f.expression()))?;
                        send(&mut stream, &UplinkMsg::SetFilter { program }).map_err(|e| e.to_string())?;
                        if let Some(r) = &f.actions {
                            send(&mut stream, &UplinkMsg::Actions { set: r.set.clone() }).map_err(|e| e.to_string())?;
                        }
                        let id = f.next_id;
                        f.next_id += 1;
                        f.workers.push((id, linktype, stream.try_clone().map_err(|e| e.to_string())?));
                        drop(f);
                        log!(BASIC, "worker for {interface} connected (pid {pid}, link type {linktype})");
                        let _ = tx.send(Intake::Connected { interface: interface.clone() });
                        identity = Some((interface, linktype, id));
                    }
                    (WorkerMsg::Batch(b), Some((iface, lt, _))) => {
                        let _ = tx.send(Intake::Batch { interface: iface.clone(), linktype: *lt, count: b.count, records: b.records });
                    }
                    (WorkerMsg::Stats(stats), Some((iface, _, _))) => {
                        let _ = tx.send(Intake::Stats { interface: iface.clone(), stats });
                    }
                    (WorkerMsg::ActionStats(stats), Some((iface, _, _))) => {
                        let _ = tx.send(Intake::ActionStats { interface: iface.clone(), stats });
                    }
                    (_, _) => {
                        failed = Some("worker broke the protocol (data before hello, or a second hello)".into());
                        break;
                    }
                },
            }
        }
        if let Some(f) = failed {
            break Err(f);
        }
    };
    if let Some((iface, _, id)) = identity {
        filters.lock().unwrap_or_else(|e| e.into_inner()).workers.retain(|(w, _, _)| *w != id);
        let _ = tx.send(Intake::Disconnected { interface: iface });
    }
    result
}
