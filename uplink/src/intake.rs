//! The uplink's Unix socket: accepts capture-workers, answers each hello
//! with the filter compiled for its link type, and passes their batches and
//! statistics to the chunker through a bounded channel (when the chunker
//! falls behind, workers block and the kernel rings absorb the burst; beyond
//! them the kernel counts drops).

use interprocess::local_socket::{prelude::*, GenericFilePath, ListenerOptions};
use interprocess::os::unix::uds_local_socket::{Listener, Stream};
use ossensor_shared::bpf::{self};
use ossensor_shared::ipc::{encode_frame, CaptureStats, FrameDecoder, UplinkMsg, WorkerMsg};
use ossensor_shared::log;
use ossensor_shared::log::BASIC;
use ossensor_shared::response::{Action, ActionStats};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
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
    actions: Vec<Action>,
    workers: Vec<(u64, i32, UnixStream)>,
    next_id: u64,
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
        programs.insert(1, bpf::compile(&expression, 1).map_err(|e| format!("filter {expression:?}: {e}"))?);
        for (_, lt, _) in &self.workers {
            if !programs.contains_key(lt) {
                programs.insert(*lt, bpf::compile(&expression, *lt).map_err(|e| format!("filter {expression:?}: {e}"))?);
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

    /// Replaces the set of response actions and sends it to every worker.
    pub fn set_actions(&mut self, actions: Vec<Action>) {
        self.actions = actions;
        let msg = self.actions_msg();
        for (_, _, stream) in &mut self.workers {
            let _ = send(stream, &msg);
        }
    }

    /// How many actions are in force now.
    pub fn actions_in_force(&self) -> usize {
        let now = ossensor_shared::timefmt::now_ns();
        self.actions.iter().filter(|a| a.until_ns > now).count()
    }

    /// The actions still in force, as a command for a worker.
    fn actions_msg(&self) -> UplinkMsg {
        let now = ossensor_shared::timefmt::now_ns();
        UplinkMsg::Actions { actions: self.actions.iter().filter(|a| a.until_ns > now).copied().collect() }
    }
}

fn send(stream: &mut UnixStream, msg: &UplinkMsg) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode_frame(msg, &mut out).map_err(std::io::Error::other)?;
    stream.write_all(&out)
}

pub fn listen(path: &str) -> Result<Listener, String> {
    let _ = std::fs::remove_file(path);
    let name = path.to_fs_name::<GenericFilePath>().map_err(|e| format!("socket path {path}: {e}"))?;
    let l = ListenerOptions::new().name(name).create_sync_as::<Listener>().map_err(|e| format!("cannot listen on {path}: {e}"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("chmod {path}: {e}"))?;
    Ok(l)
}

/// Accepts workers forever, one reader thread each.
pub fn serve(listener: Listener, filters: Arc<Mutex<Filters>>, tx: SyncSender<Intake>) {
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log!(BASIC, "accepting a worker connection failed: {e}");
                continue;
            }
        };
        let filters = filters.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            if let Err(e) = read_worker(stream, &filters, &tx) {
                log!(BASIC, "worker connection closed: {e}");
            }
        });
    }
}

fn read_worker(stream: Stream, filters: &Mutex<Filters>, tx: &SyncSender<Intake>) -> Result<(), String> {
    let mut stream = UnixStream::from(OwnedFd::from(stream));
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
                    (WorkerMsg::Hello { interface, linktype, pid, .. }, None) => {
                        let interface: Arc<str> = interface.into();
                        let mut f = filters.lock().unwrap_or_else(|e| e.into_inner());
                        let program = bpf::compile(f.expression(), linktype)
                            .map_err(|e| format!("filter {:?} for link type {linktype}: {e}", f.expression()))?;
                        send(&mut stream, &UplinkMsg::SetFilter { program }).map_err(|e| e.to_string())?;
                        if !f.actions.is_empty() {
                            send(&mut stream, &f.actions_msg()).map_err(|e| e.to_string())?;
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
