//! `ossensor-capture-worker`: the sensor's only privileged process, one per
//! interface. It holds CAP_NET_RAW and nothing else, as an unprivileged user
//! (the supervisor arranges both before exec). It opens the interface with
//! libpcap, attaches the filter the uplink compiled, and streams packets to
//! the uplink in batches over the socket the supervisor connected.
//!
//! What it parses: from the uplink, typed frames (`ipc`), of which it obeys
//! two commands: SetFilter (a program the kernel verifies) and the set of
//! response actions in force, enforced only once its signature verifies
//! with the action key the supervisor pinned. From the network, with
//! response actions on, the Ethernet, VLAN, IP and TCP headers of every
//! captured TCP segment (`tcpseg`, fuzzed): the enforcer's input. Packet
//! payloads are copied, never read.

// libpcap's link order in a static build comes with this crate's build
// script (the worker opens its captures with the `pcap` crate directly).
extern crate ossensor_libpcap;

mod actions;
mod capture;
mod link;
mod merge;

use capture::InterfaceCapture;
use link::Link;
use merge::DirectionMerge;
use ossensor_host::log;
use ossensor_host::log::{self as slog, BASIC, STATS};
use ossensor_shared::actions::signed::PublicKey;
use ossensor_shared::children::WorkerConfig;
use ossensor_shared::ipc::{UplinkMsg, WorkerMsgRef};
use ossensor_shared::privileges::{self, Privileges};
use ossensor_shared::telemetry::WorkerSnapshot;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A batch is sent when it holds this many bytes of records...
const BATCH_BYTES: usize = 1 << 20;
/// ...or when its first packet is this old.
const BATCH_MAX_AGE: Duration = Duration::from_millis(50);
const STATS_EVERY: Duration = Duration::from_secs(1);
/// How long a packet of one direction waits for the other direction's ring,
/// so the two are sent in time order: ten ring timeouts, as a ring block's
/// timer can fire late on a busy machine (three proved too few).
const MERGE_HOLD: Duration = Duration::from_millis(10 * capture::RING_TIMEOUT_MS as u64);
/// Beyond this, a direction's queue sends without waiting for the hold:
/// bounded memory under a one-directional flood, where the other ring is
/// idle anyway. 8 MiB is 8 ms at 8 Gbit/s, four ring timeouts: long enough
/// for the other ring's partial block to arrive when both directions flow.
const MERGE_QUEUE_BYTES: usize = 8 << 20;
const STATS_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often response actions expire and quiet flows are re-probed.
const ACTION_TICK: Duration = Duration::from_millis(50);

/// Tests count allocations (merge.rs shows none per packet).
#[cfg(test)]
#[global_allocator]
static ALLOC: ossensor_host::alloc_count::Counting = ossensor_host::alloc_count::Counting;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let cfg: WorkerConfig = match ossensor_host::child::config("ossensor-capture-worker") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let _ = slog::init(&format!("capture-worker[{}]", cfg.interface), cfg.log.level, cfg.log.path.as_deref(), ossensor_host::child::audit_target(&cfg.log));
    // No core dumps or ptrace by our own uid: this process holds CAP_NET_RAW.
    let _ = nix::sys::prctl::set_dumpable(false);
    let held = ossensor_host::privileges::audit_current();
    install_signal_handlers();
    match run(&cfg, &held) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!(BASIC, "error: {e}");
            ExitCode::from(1)
        }
    }
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    // No SA_RESTART: poll() must return so the loop sees STOP.
    let act = SigAction::new(SigHandler::Handler(on_stop), SaFlags::empty(), SigSet::empty());
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(s, &act) }.expect("sigaction");
    }
    // SAFETY: ignoring a signal installs no code.
    unsafe { sigaction(Signal::SIGPIPE, &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty())) }.expect("sigaction");
}

/// `held`: this process's privileges, read once at start.
fn run(cfg: &WorkerConfig, held: &Privileges) -> Result<(), String> {
    let mut cap = InterfaceCapture::open(&cfg.interface, cfg.ring_bytes)?;
    log!(
        BASIC,
        "capturing on {} (link type {}, two rings of {} KiB, uid {}, capabilities {})",
        cfg.interface,
        cap.linktype,
        cfg.ring_bytes / 1024,
        nix::unistd::getuid(),
        privileges::names(held.effective)
    );
    let ifindex = nix::net::if_::if_nametoindex(cfg.interface.as_str()).unwrap_or(0);
    let hello = WorkerMsgRef::Hello { interface: &cfg.interface, ifindex, linktype: cap.linktype, pid: std::process::id() };
    let mut link = Link::connect(cfg.control_fd, &hello, &STOP)?;
    let program = link.wait_for_filter()?;
    cap.attach(&program, true)?;
    log!(BASIC, "filter attached ({} instructions)", program.len());

    let pinned = match cfg.action_key.as_deref().map(PublicKey::parse) {
        Some(Ok(k)) => Some(k),
        Some(Err(e)) => return Err(format!("the action key the supervisor gave {e}")),
        None => None,
    };
    let mut actions = if cfg.enforce_actions {
        let r = actions::WorkerActions::new(&cfg.interface, cap.linktype, cfg.destroy_fd, pinned);
        if r.is_none() {
            log!(BASIC, "{}: response actions cannot be enforced on link type {} (Ethernet only)", cfg.interface, cap.linktype);
        }
        r
    } else {
        None
    };
    let mut last_action_tick = Instant::now();
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES + ossensor_shared::bpf::SNAPLEN as usize + 64);
    let mut merge = DirectionMerge::new(MERGE_HOLD.as_nanos() as u64, MERGE_QUEUE_BYTES);
    let mut count: u32 = 0;
    let mut first_at: Option<Instant> = None;
    let mut last_stats = Instant::now();
    let mut last_stats_log = Instant::now();
    let fds = cap.fds();
    loop {
        let stopping = STOP.load(Ordering::Relaxed);
        let mut timeout = match first_at {
            Some(t) => BATCH_MAX_AGE.saturating_sub(t.elapsed()),
            None => STATS_EVERY,
        };
        if merge.held() > 0 {
            timeout = timeout.min(MERGE_HOLD / 4);
        }
        if !stopping {
            link.poll(&fds, timeout);
        }
        // Always drain the rings (a ring left half read keeps poll() waking
        // us); the merge bounds what it holds.
        let (n, failure) = cap.read_into(&mut merge, actions.as_mut());
        if let Some(r) = actions.as_mut() {
            if last_action_tick.elapsed() >= ACTION_TICK {
                r.tick(ossensor_host::clock::now_ns());
                last_action_tick = Instant::now();
            }
            r.send(|frame| cap.inject(frame));
        }
        let drain_all = stopping || failure.is_some();
        let moved = merge.drain_into(&mut batch, ossensor_host::clock::now_ns(), BATCH_BYTES, drain_all);
        count += moved;
        if moved > 0 && first_at.is_none() {
            first_at = Some(Instant::now());
        }
        let due = first_at.is_some_and(|t| t.elapsed() >= BATCH_MAX_AGE);
        if count > 0 && (batch.len() >= BATCH_BYTES || due || stopping || failure.is_some()) {
            link.send_batch(count, &batch)?;
            batch.clear();
            count = 0;
            first_at = None;
        }
        if let Some(e) = failure {
            // What was read is delivered; the supervisor restarts us (or
            // waits for the interface to come back).
            let stats = cap.stats();
            let _ = link.send(&WorkerMsgRef::Stats(&stats));
            return Err(e);
        }
        let commands = link.commands()?;
        if let Some(r) = actions.as_mut() {
            for key in link.take_action_keys() {
                r.set_key(ossensor_host::clock::now_ns(), key);
            }
        }
        for cmd in commands {
            match cmd {
                UplinkMsg::SetFilter { program } => match cap.attach(&program, false) {
                    Ok(()) => log!(BASIC, "new filter attached ({} instructions)", program.len()),
                    Err(e) => log!(BASIC, "refused a filter from the uplink: {e}"),
                },
                UplinkMsg::Actions { set } => match actions.as_mut() {
                    Some(r) => {
                        r.take_signed(ossensor_host::clock::now_ns(), &set);
                        r.send(|frame| cap.inject(frame));
                    }
                    None => log!(STATS, "{}: response actions are not enforced here", cfg.interface),
                },
            }
        }
        if last_stats.elapsed() >= STATS_EVERY || stopping {
            let stats = cap.stats();
            link.send(&WorkerMsgRef::Stats(&stats))?;
            if let Some(r) = actions.as_ref().filter(|r| !r.stats().is_empty()) {
                link.send(&WorkerMsgRef::ActionStats(r.stats().iter().map(|(id, s)| (*id, *s)).collect()))?;
            }
            last_stats = Instant::now();
            if last_stats_log.elapsed() >= STATS_LOG_EVERY {
                let snap = WorkerSnapshot::new(&cfg.interface, stats, false);
                log!(STATS, "{}", snap.line());
                log!(STATS, "{}", snap.json_line());
                last_stats_log = Instant::now();
            }
        }
        if stopping && n == 0 && count == 0 && merge.held() == 0 {
            let snap = WorkerSnapshot::new(&cfg.interface, cap.stats(), true);
            log!(BASIC, "{}", snap.line());
            log!(BASIC, "{}", snap.json_line());
            return Ok(());
        }
    }
}
