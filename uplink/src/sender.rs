//! The sender thread: registers with the collector (applying the filter it
//! answers with), then delivers spooled chunks one at a time, in order,
//! retrying with backoff while the collector is away. A chunk leaves the
//! spool for good only when the collector acknowledged it, or refused it as
//! malformed (counted).

use crate::actions::ActionsShared;
use crate::collector::{Collector, SendError};
use crate::intake::Filters;
use crate::spool::{Spool, SpooledChunk};
use ossensor_shared::children::UplinkConfig;
use ossensor_shared::chunk::Encoding;
use ossensor_shared::control::{InterfaceInfo, InterfaceStatus, RegisterRequest, StatusReport};
use ossensor_shared::log::{audit, AuditSeverity, BASIC, SENDS};
use ossensor_shared::seqpacket;
use ossensor_shared::signed_actions::PublicKey;
use ossensor_shared::supervision::{self, FromUplink};
use ossensor_shared::{bpf, log};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// After the uplink is told to stop, how long it keeps trying to deliver.
pub const DELIVER_GRACE: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct State {
    pub spool: Spool,
    pub in_flight_packets: u64,
    /// Copies of frames dropped because another interface's copy was kept,
    /// per interface of the dropped copy.
    pub duplicates: std::collections::BTreeMap<String, u64>,
    closing: bool,
}

pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    pub fn new(spool_bytes: u64) -> Shared {
        Shared { state: Mutex::new(State { spool: Spool::new(spool_bytes), in_flight_packets: 0, duplicates: Default::default(), closing: false }), wake: Condvar::new() }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, chunk: SpooledChunk) -> Vec<u64> {
        let dropped = self.lock().spool.push(chunk);
        self.wake.notify_all();
        dropped
    }

    /// No more chunks will come; deliver what is left and stop.
    pub fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_all();
    }

    /// Counts everything still held as dropped at exit (the sender is stuck).
    pub fn abandon(&self) {
        let mut st = self.lock();
        let mut lost = std::mem::take(&mut st.in_flight_packets);
        while let Some(c) = st.spool.pop() {
            lost += c.packets;
        }
        st.spool.accounting.dropped_at_exit += lost;
    }

    /// Sleeps up to `d`, waking early when told to close.
    fn sleep(&self, d: Duration) {
        let st = self.lock();
        if !st.closing {
            let _ = self.wake.wait_timeout(st, d);
        }
    }
}

/// How often the sensor reports its running state to the collector.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// `control`: the supervisor's channel, where the collector's action key is
/// offered after each registration.
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

pub fn run(cfg: &UplinkConfig, epoch: u64, shared: &Shared, filters: &Mutex<Filters>, actions: &ActionsShared, workers: &WorkerStats, control: &OwnedFd) {
    let mut collector = match Collector::new(&cfg.collector_host, cfg.collector_port, &cfg.hmac_key, &cfg.sensor_id, epoch, cfg.ca_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            // Exit so the supervisor restarts us (and the cause shows in its log).
            log!(BASIC, "error: cannot set up the collector connection: {e}");
            std::process::exit(1);
        }
    };
    let mut registered = false;
    let mut backoff = Duration::from_millis(250);
    let mut in_flight: Option<SpooledChunk> = None;
    let mut close_seen: Option<Instant> = None;
    let mut last_error = String::new();
    let mut last_status: Option<Instant> = None;
    // The collector's part of the filter, as it last gave it.
    let mut collector_filter = String::new();
    loop {
        if registered && last_status.is_none_or(|t| t.elapsed() >= STATUS_EVERY) {
            last_status = Some(Instant::now());
            match collector.send_status(&status_report(shared, filters, workers, false)) {
                Ok(answer) => match answer.filter {
                    Some(f) if f != collector_filter => {
                        let effective = bpf::combine(&f, &cfg.bpf);
                        match filters.lock().unwrap_or_else(|e| e.into_inner()).replace(effective.clone()) {
                            Ok(()) => {
                                log!(BASIC, "the collector changed our filter (a sensor joined or left); effective filter: {effective:?}");
                                collector_filter = f;
                            }
                            Err(e) => log!(BASIC, "error: the collector's new filter does not compile, keeping the previous one: {e}"),
                        }
                    }
                    _ => {}
                },
                Err(e) => log!(SENDS, "status report not sent: {e}"),
            }
        }
        let closing = shared.lock().closing;
        if closing && close_seen.is_none() {
            close_seen = Some(Instant::now());
        }
        if close_seen.is_some_and(|t| t.elapsed() > DELIVER_GRACE) {
            let mut st = shared.lock();
            let mut lost = in_flight.as_ref().map_or(0, |c| c.packets);
            while let Some(c) = st.spool.pop() {
                lost += c.packets;
            }
            st.spool.accounting.dropped_at_exit += lost;
            st.in_flight_packets = 0;
            if lost > 0 {
                log!(BASIC, "stopping with the collector unreachable: {lost} packets not delivered ({last_error})");
            }
            return;
        }
        if !registered {
            match collector.register(&registration(cfg, epoch)) {
                Ok(resp) => {
                    registered = true;
                    backoff = Duration::from_millis(250);
                    collector_filter = resp.filter.clone();
                    let effective = bpf::combine(&resp.filter, &cfg.bpf);
                    let fp = collector.pinned_fingerprint().unwrap_or_default();
                    *actions.dialer.lock().unwrap_or_else(|e| e.into_inner()) = collector.dialer();
                    log!(BASIC, "registered with the collector (certificate {fp}); effective filter: {effective:?}");
                    offer_action_key(resp.action_key.as_deref(), control);
                    audit(AuditSeverity::Notice, "collector_registered", &[("certificate_sha256", &fp), ("filter", &effective)]);
                    if let Err(e) = filters.lock().unwrap_or_else(|e| e.into_inner()).replace(effective) {
                        log!(BASIC, "error: the collector's filter does not compile, keeping the previous one: {e}");
                    }
                }
                Err(e) => {
                    report(&e, &mut last_error);
                    shared.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        let chunk = match in_flight.take() {
            Some(c) => c,
            None => {
                let mut st = shared.lock();
                match st.spool.pop() {
                    Some(c) => {
                        st.in_flight_packets = c.packets;
                        c
                    }
                    None => {
                        if st.closing {
                            drop(st);
                            // Tell the collector, so the other sensors
                            // take back the flows they left to us.
                            if registered {
                                let _ = collector.send_status(&status_report(shared, filters, workers, true));
                            }
                            return;
                        }
                        let _ = shared.wake.wait_timeout(st, Duration::from_millis(500));
                        continue;
                    }
                }
            }
        };
        let enc = if chunk.compressed { Encoding::Zstd } else { Encoding::Identity };
        match collector.send_chunk(chunk.seq, &chunk.body, chunk.raw_len, chunk.packets, enc) {
            Ok(ack) => {
                backoff = Duration::from_millis(250);
                last_error.clear();
                let mut st = shared.lock();
                st.spool.accounting.delivered += chunk.packets;
                st.spool.accounting.chunks_delivered += 1;
                st.spool.accounting.bytes_delivered += chunk.body.len() as u64;
                st.spool.accounting.raw_bytes_delivered += chunk.raw_len as u64;
                st.in_flight_packets = 0;
                log!(
                    SENDS,
                    "sent chunk {}: {} packets, {} bytes; collector {}",
                    chunk.seq,
                    chunk.packets,
                    chunk.body.len(),
                    if ack.stored { "stored it" } else { "already had it" }
                );
            }
            Err(SendError::Refused { status, reason }) if status == 400 || status == 413 => {
                let mut st = shared.lock();
                st.spool.accounting.dropped_refused += chunk.packets;
                st.in_flight_packets = 0;
                log!(BASIC, "collector refused chunk {} ({} packets dropped): {status} {reason}", chunk.seq, chunk.packets);
            }
            Err(e) => {
                log!(SENDS, "chunk {} not sent ({} packets held): {e}", chunk.seq, chunk.packets);
                report(&e, &mut last_error);
                if matches!(e, SendError::CertificateChanged | SendError::BadProof(_)) || matches!(e, SendError::Refused { status: 401, .. }) {
                    registered = false;
                }
                in_flight = Some(chunk);
                shared.sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Logs an error at level 0 once per distinct message (not every retry).
fn report(e: &SendError, last: &mut String) {
    let text = e.to_string();
    if *last != text {
        log!(BASIC, "{text}; retrying with backoff");
        if matches!(e, SendError::BadProof(_) | SendError::Refused { status: 401, .. }) {
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
            let ip = a.address.as_ref().and_then(|s| {
                s.as_sockaddr_in().map(|v| v.ip().to_string()).or_else(|| s.as_sockaddr_in6().map(|v| v.ip().to_string()))
            });
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
    let collector_addresses = (cfg.collector_host.as_str(), cfg.collector_port)
        .to_socket_addrs()
        .map(|a| a.map(|a| a.ip().to_string()).collect())
        .unwrap_or_default();
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

/// Per interface, the capture-workers' latest counters.
pub type WorkerStats = Mutex<std::collections::BTreeMap<std::sync::Arc<str>, ossensor_shared::ipc::CaptureStats>>;

/// The running state the collector's status page shows.
fn status_report(shared: &Shared, filters: &Mutex<Filters>, workers: &WorkerStats, leaving: bool) -> StatusReport {
    let interfaces = workers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(name, s)| InterfaceStatus {
            name: name.to_string(),
            received: s.received,
            dropped_kernel: s.dropped_kernel,
            dropped_interface: s.dropped_interface,
            forwarded: s.forwarded,
        })
        .collect();
    let actions_in_force = filters.lock().unwrap_or_else(|e| e.into_inner()).actions_in_force() as u64;
    let st = shared.lock();
    let a = st.spool.accounting;
    StatusReport {
        interfaces,
        packets_captured: a.captured,
        packets_delivered: a.delivered,
        packets_dropped: a.dropped_spool_full + a.dropped_refused + a.dropped_at_exit,
        packets_held: st.spool.held_packets() + st.in_flight_packets,
        bytes_delivered: a.bytes_delivered,
        spool_bytes: st.spool.bytes(),
        spool_capacity_bytes: st.spool.capacity(),
        duplicates_removed: st.duplicates.values().sum(),
        actions_in_force,
        leaving,
    }
}
