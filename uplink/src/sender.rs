//! The sender thread: the driver of delivery (`ossensor_shared::delivery`).
//! It asks the state machine what to do next, does it over HTTPS (register,
//! applying the filter the collector answers with; send the chunk in
//! flight; send a status report) and hands the outcome back. The machine
//! owns the spool, the retries and the accounting; this thread owns the
//! network, the clock and the log.

use crate::actions::ActionsShared;
use crate::collector::{Collector, SendError};
use crate::intake::Filters;
use ossensor_host::log;
use ossensor_host::log::{audit, AuditSeverity, BASIC, SENDS};
use ossensor_host::seqpacket;
use ossensor_shared::actions::signed::PublicKey;
use ossensor_shared::bpf;
use ossensor_shared::children::UplinkConfig;
use ossensor_shared::control::{InterfaceInfo, RegisterRequest};
use ossensor_shared::delivery::{Chunk, Delivery, Next, Outcome, Timings};
use ossensor_shared::supervision::{self, FromUplink};
use ossensor_shared::telemetry::UplinkSnapshot;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the chunker, the sender and the metrics share.
pub struct State {
    pub delivery: Delivery,
    /// Copies of frames dropped because another interface's copy was kept,
    /// per interface of the dropped copy.
    pub duplicates: BTreeMap<String, u64>,
}

pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Packets in the chunk the chunker is building.
    pub in_open_chunk: AtomicU64,
}

impl Shared {
    pub fn new(spool_bytes: u64) -> Shared {
        Shared {
            state: Mutex::new(State { delivery: Delivery::new(spool_bytes, Timings::default()), duplicates: BTreeMap::new() }),
            wake: Condvar::new(),
            in_open_chunk: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a chunk; the seqs the spool dropped to make room.
    pub fn push(&self, chunk: Chunk) -> Vec<u64> {
        let dropped = self.lock().delivery.push(chunk);
        self.wake.notify_all();
        dropped
    }

    /// No more chunks will come; deliver what is left and stop.
    pub fn close(&self) {
        self.lock().delivery.close(Instant::now());
        self.wake.notify_all();
    }
}

/// Per interface, the capture-workers' latest counters.
pub type WorkerStats = Mutex<BTreeMap<Arc<str>, ossensor_shared::ipc::CaptureStats>>;

/// Where a snapshot is read from.
pub struct Sources {
    pub shared: Arc<Shared>,
    pub workers: Arc<WorkerStats>,
    pub actions: Arc<ActionsShared>,
    pub filters: Arc<Mutex<Filters>>,
    pub sensor_id: String,
}

impl Sources {
    /// The uplink now: what the log, the metrics and the status report show.
    pub fn snapshot(&self) -> UplinkSnapshot {
        let interfaces = self.workers.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(i, s)| (i.to_string(), *s)).collect();
        let actions_in_force = self.filters.lock().unwrap_or_else(|e| e.into_inner()).actions_in_force() as u64;
        let actions = crate::actions::totals(&self.actions.stats.lock().unwrap_or_else(|e| e.into_inner()));
        let st = self.shared.lock();
        let d = &st.delivery;
        UplinkSnapshot {
            process: "uplink".into(),
            sensor_id: self.sensor_id.clone(),
            version: ossensor_shared::VERSION.into(),
            accounting: d.accounting(),
            held: d.held_packets() + self.shared.in_open_chunk.load(Ordering::Relaxed),
            spool_chunks: d.spool_chunks() as u64,
            spool_bytes: d.spool_bytes(),
            spool_capacity_bytes: d.spool_capacity(),
            duplicates: st.duplicates.clone(),
            interfaces,
            actions_in_force,
            actions,
        }
    }
}

/// Tells the supervisor which action key the collector named (it pins the
/// first one; the workers get it from the supervisor, never from us).
fn offer_action_key(key: Option<&str>, control: &OwnedFd) {
    match key.map(PublicKey::parse) {
        None => log!(BASIC, "the collector named no action key: response actions cannot be verified"),
        Some(Err(e)) => log!(BASIC, "the collector's action key {e}; response actions cannot be verified"),
        Some(Ok(k)) => {
            if let Err(e) = seqpacket::send(control.as_fd(), &supervision::encode(&FromUplink::ActionKey(k)), None) {
                log!(BASIC, "cannot offer the action key to the supervisor: {e}");
            }
        }
    }
}

pub fn run(cfg: &UplinkConfig, epoch: u64, sources: &Sources, control: &OwnedFd) {
    let mut collector = match Collector::new(&cfg.collector_host, cfg.collector_port, &cfg.hmac_key, &cfg.sensor_id, epoch, cfg.ca_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // Exit so the supervisor restarts us (and the cause shows in its log).
            log!(BASIC, "error: cannot set up the collector connection: {e}");
            std::process::exit(1);
        }
    };
    let shared = &sources.shared;
    let mut last_error = String::new();
    // The collector's part of the filter, as it last gave it.
    let mut collector_filter = String::new();
    loop {
        let next = shared.lock().delivery.poll(Instant::now());
        let outcome = match next {
            Next::Done => {
                let st = shared.lock();
                let a = st.delivery.accounting();
                if a.dropped_at_exit > 0 {
                    log!(BASIC, "stopping with the collector unreachable: {} packets not delivered ({last_error})", a.dropped_at_exit);
                }
                return;
            }
            Next::Wait { until } => {
                let st = shared.lock();
                let d = until.map_or(Duration::from_millis(500), |t| t.saturating_duration_since(Instant::now()));
                let _ = shared.wake.wait_timeout(st, d.min(Duration::from_millis(500)));
                continue;
            }
            Next::Register => match collector.register(&registration(cfg, epoch)) {
                Ok(resp) => {
                    collector_filter = resp.filter.clone();
                    let effective = bpf::combine(&resp.filter, &cfg.bpf);
                    let fp = collector.pinned_fingerprint().unwrap_or_default();
                    *sources.actions.dialer.lock().unwrap_or_else(|e| e.into_inner()) = collector.dialer();
                    log!(BASIC, "registered with the collector (certificate {fp}); effective filter: {effective:?}");
                    offer_action_key(resp.action_key.as_deref(), control);
                    audit(AuditSeverity::Notice, "collector_registered", &[("certificate_sha256", &fp), ("filter", &effective)]);
                    if let Err(e) = sources.filters.lock().unwrap_or_else(|e| e.into_inner()).replace(effective) {
                        log!(BASIC, "error: the collector's filter does not compile, keeping the previous one: {e}");
                    }
                    last_error.clear();
                    Outcome::Registered
                }
                Err(e) => {
                    report(&e, &mut last_error);
                    Outcome::Failed(e.failure())
                }
            },
            Next::SendStatus { leaving } => match collector.send_status(&sources.snapshot().status_report(leaving)) {
                Ok(answer) => {
                    if let Some(f) = answer.filter.filter(|f| *f != collector_filter && !leaving) {
                        let effective = bpf::combine(&f, &cfg.bpf);
                        match sources.filters.lock().unwrap_or_else(|e| e.into_inner()).replace(effective.clone()) {
                            Ok(()) => {
                                log!(BASIC, "the collector changed our filter (a sensor joined or left); effective filter: {effective:?}");
                                collector_filter = f;
                            }
                            Err(e) => log!(BASIC, "error: the collector's new filter does not compile, keeping the previous one: {e}"),
                        }
                    }
                    Outcome::StatusSent
                }
                Err(e) => {
                    log!(SENDS, "status report not sent: {e}");
                    Outcome::Failed(e.failure())
                }
            },
            Next::SendChunk(chunk) => {
                let (outcome, error) = collector.send_chunk(&chunk);
                match (outcome, error) {
                    (Outcome::ChunkAcked { stored }, _) => {
                        last_error.clear();
                        log!(
                            SENDS,
                            "sent chunk {}: {} packets, {} bytes; collector {}",
                            chunk.seq,
                            chunk.packets,
                            chunk.body.len(),
                            if stored { "stored it" } else { "already had it" }
                        );
                    }
                    (Outcome::ChunkRejected, e) => {
                        log!(
                            BASIC,
                            "collector refused chunk {} ({} packets dropped): {}",
                            chunk.seq,
                            chunk.packets,
                            e.map(|e| e.to_string()).unwrap_or_default()
                        );
                    }
                    (_, Some(e)) => {
                        log!(SENDS, "chunk {} not sent ({} packets held): {e}", chunk.seq, chunk.packets);
                        report(&e, &mut last_error);
                    }
                    _ => {}
                }
                outcome
            }
        };
        shared.lock().delivery.handle(Instant::now(), outcome);
    }
}

/// Logs an error at level 0 once per distinct message (not every retry).
fn report(e: &SendError, last: &mut String) {
    let text = e.to_string();
    if *last != text {
        log!(BASIC, "{text}; retrying with backoff");
        if e.untrusted() {
            audit(AuditSeverity::Warning, "collector_not_trusted", &[("reason", &text)]);
        }
        *last = text;
    }
}

fn registration(cfg: &UplinkConfig, epoch: u64) -> RegisterRequest {
    use std::net::ToSocketAddrs;
    let mut interfaces: Vec<InterfaceInfo> = Vec::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let ip =
                a.address.as_ref().and_then(|s| s.as_sockaddr_in().map(|v| v.ip().to_string()).or_else(|| s.as_sockaddr_in6().map(|v| v.ip().to_string())));
            let entry = match interfaces.iter_mut().find(|i| i.name == a.interface_name) {
                Some(e) => e,
                None => {
                    interfaces.push(InterfaceInfo { name: a.interface_name.clone(), addresses: Vec::new() });
                    interfaces.last_mut().unwrap()
                }
            };
            if let Some(ip) = ip {
                entry.addresses.push(ip);
            }
        }
    }
    let collector_addresses =
        (cfg.collector_host.as_str(), cfg.collector_port).to_socket_addrs().map(|a| a.map(|a| a.ip().to_string()).collect()).unwrap_or_default();
    RegisterRequest {
        sensor_id: cfg.sensor_id.clone(),
        hostname: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        version: ossensor_shared::VERSION.into(),
        epoch,
        interfaces,
        collector_addresses,
        collector_port: cfg.collector_port,
    }
}
