//! `ossensor-uplink`: the sensor's unprivileged process (no capabilities, an
//! unprivileged uid). It receives the workers' batches, builds pcapng
//! chunks, compresses them, keeps them in a bounded spool and delivers them
//! to the collector over HTTPS with HMAC-signed requests, in order, each
//! exactly once (the collector ignores a (epoch, seq) it already stored).
//!
//! Threads: the socket acceptor and one reader per worker (intake), the
//! chunker (this thread), and the sender. Shutdown on SIGTERM: the
//! supervisor stops the workers first; the uplink then drains what they
//! sent, closes the last chunk, and delivers the spool before exiting.

mod chunker;
mod collector;
mod intake;
mod sender;
mod spool;

use chunker::{Chunker, RawChunk};
use intake::{Filters, Intake};
use ossensor_shared::children::{child_config, UplinkConfig};
use ossensor_shared::ipc::CaptureStats;
use ossensor_shared::log::{self as slog, BASIC, CHUNKS, STATS};
use ossensor_shared::{bpf, chunk, log};
use sender::Shared;
use spool::SpooledChunk;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

const STATS_LOG_EVERY: Duration = Duration::from_secs(10);
/// After SIGTERM, how long to wait for workers still sending.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let cfg: UplinkConfig = match child_config("ossensor-uplink") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let _ = slog::init("uplink", cfg.log.level, cfg.log.path.as_deref(), cfg.log.audit());
    // This process holds the key: no core dumps, no ptrace by the workers,
    // which run as the same uid.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    install_signal_handlers();
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!(BASIC, "error: {e}");
            ExitCode::from(1)
        }
    }
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(SigHandler::Handler(on_stop), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        unsafe { sigaction(s, &act) }.expect("sigaction");
    }
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    unsafe { sigaction(Signal::SIGPIPE, &ign) }.expect("sigaction");
}

/// Excludes our own traffic to the collector until the collector's filter
/// arrives (registration), so the sensor never captures what it sends.
fn provisional_filter(host: &str, port: u16) -> String {
    use std::net::ToSocketAddrs;
    let addrs: Vec<String> = match (host, port).to_socket_addrs() {
        Ok(a) => a.map(|a| a.ip().to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
        Err(_) => Vec::new(),
    };
    if addrs.is_empty() {
        return String::new();
    }
    let hosts = addrs.iter().map(|a| format!("host {a}")).collect::<Vec<_>>().join(" or ");
    format!("not (tcp and ({hosts}) and port {port})")
}

fn run(cfg: UplinkConfig) -> Result<(), String> {
    let epoch = ossensor_shared::timefmt::now_ns();
    let start_filter = bpf::combine(&provisional_filter(&cfg.collector_host, cfg.collector_port), &cfg.bpf);
    bpf::compile(&start_filter, 1).map_err(|e| format!("filter {start_filter:?}: {e}"))?;
    let filters = Arc::new(Mutex::new(Filters::new(start_filter.clone())));
    log!(
        BASIC,
        "uplink {} for sensor {} (boot epoch {epoch}), collector {}:{}, spool {} MiB, compression {}, filter until registration: {:?}",
        ossensor_shared::VERSION,
        cfg.sensor_id,
        cfg.collector_host,
        cfg.collector_port,
        cfg.spool_bytes >> 20,
        cfg.compression_level.map_or("off".to_string(), |l| format!("zstd level {l}")),
        start_filter
    );

    let listener = intake::listen(&cfg.socket_path)?;
    // Room for a few batches per worker; beyond that workers wait.
    let (tx, rx) = sync_channel::<Intake>(64);
    {
        let filters = filters.clone();
        std::thread::Builder::new()
            .name("intake".into())
            .spawn(move || intake::serve(listener, filters, tx))
            .map_err(|e| e.to_string())?;
    }

    let shared = Arc::new(Shared::new(cfg.spool_bytes));
    let sender = {
        let shared = shared.clone();
        let cfg = cfg.clone();
        let filters = filters.clone();
        std::thread::Builder::new()
            .name("sender".into())
            .spawn(move || sender::run(&cfg, epoch, &shared, &filters))
            .map_err(|e| e.to_string())?
    };

    let mut chunker = Chunker::new(cfg.chunk_bytes, Duration::from_millis(cfg.chunk_max_age_ms), format!("ossensor {}", ossensor_shared::VERSION));
    let mut seq: u64 = 0;
    let mut connected: BTreeMap<Arc<str>, usize> = BTreeMap::new();
    let mut worker_stats: BTreeMap<Arc<str>, CaptureStats> = BTreeMap::new();
    let mut closed: Vec<RawChunk> = Vec::new();
    let mut last_stats_log = Instant::now();
    let mut stop_since: Option<Instant> = None;

    loop {
        if STOP.load(Ordering::Relaxed) && stop_since.is_none() {
            stop_since = Some(Instant::now());
            log!(BASIC, "stopping: draining workers, then delivering the spool");
        }
        let wait = chunker.deadline().map_or(Duration::from_millis(200), |d| d.saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait.min(Duration::from_millis(200))) {
            Ok(Intake::Batch { interface, linktype, count, records }) => {
                let (n, err) = chunker.add_batch(&interface, linktype, &records, Instant::now(), &mut closed);
                shared.lock().spool.accounting.captured += n;
                if let Some(e) = err {
                    log!(BASIC, "batch from {interface}: {e}");
                } else if n != count as u64 {
                    log!(BASIC, "batch from {interface} announced {count} packets, held {n}");
                }
            }
            Ok(Intake::Stats { interface, stats }) => {
                worker_stats.insert(interface, stats);
            }
            Ok(Intake::Connected { interface }) => *connected.entry(interface).or_default() += 1,
            Ok(Intake::Disconnected { interface }) => {
                if let Some(n) = connected.get_mut(&interface) {
                    *n -= 1;
                    if *n == 0 {
                        connected.remove(&interface);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err("intake thread ended".into()),
        }
        closed.extend(chunker.tick(Instant::now()));
        let draining_done = stop_since.is_some_and(|t| connected.is_empty() || t.elapsed() > DRAIN_GRACE);
        if draining_done {
            // Whatever is still queued from workers that already left.
            while let Ok(msg) = rx.try_recv() {
                if let Intake::Batch { interface, linktype, records, .. } = msg {
                    let (n, _) = chunker.add_batch(&interface, linktype, &records, Instant::now(), &mut closed);
                    shared.lock().spool.accounting.captured += n;
                }
            }
            closed.extend(chunker.flush());
        }
        for raw in closed.drain(..) {
            seq += 1;
            let spooled = compress(raw, seq, cfg.compression_level);
            let dropped = shared.push(spooled);
            if !dropped.is_empty() {
                log!(BASIC, "spool full ({} MiB): dropped the oldest chunks {:?}", cfg.spool_bytes >> 20, dropped);
            }
        }
        if last_stats_log.elapsed() >= STATS_LOG_EVERY {
            log_stats(&shared, &worker_stats, chunker.pending_packets());
            last_stats_log = Instant::now();
        }
        if draining_done {
            break;
        }
    }
    shared.close();
    // The sender gives up delivering DELIVER_GRACE after close; a request
    // hanging on a dead collector could take longer, so bound the wait here.
    let deadline = Instant::now() + sender::DELIVER_GRACE + Duration::from_secs(1);
    while !sender.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !sender.is_finished() {
        shared.abandon();
        log!(BASIC, "stopping with a request to the collector still in flight");
    }
    log_stats(&shared, &worker_stats, chunker.pending_packets());
    Ok(())
}

fn compress(raw: RawChunk, seq: u64, level: Option<i32>) -> SpooledChunk {
    let raw_len = raw.pcapng.len();
    // The body is moved into the spool: compress straight into it (sized
    // for this traffic's ratio, about a third) rather than copy it out of a
    // reused buffer.
    let mut compressed_body = Vec::with_capacity(raw_len / 2);
    let (body, compressed) = match level {
        Some(l) if chunk::compress(&raw.pcapng, l, &mut compressed_body).is_ok() => (compressed_body, true),
        _ => (raw.pcapng, false),
    };
    log!(
        CHUNKS,
        "chunk {seq}: {} packets, {} .. {} ({} ms), {raw_len} bytes raw, {} bytes {}",
        raw.packets,
        ossensor_shared::timefmt::rfc3339_millis(raw.first_ts_ns),
        ossensor_shared::timefmt::rfc3339_millis(raw.last_ts_ns),
        (raw.last_ts_ns.saturating_sub(raw.first_ts_ns)) / 1_000_000,
        body.len(),
        if compressed { "compressed" } else { "sent as is" }
    );
    SpooledChunk { seq, body, raw_len, packets: raw.packets, compressed }
}

fn log_stats(shared: &Shared, workers: &BTreeMap<Arc<str>, CaptureStats>, in_open_chunk: u64) {
    for (iface, s) in workers {
        log!(
            STATS,
            "capture {iface}: received {} dropped by kernel {} dropped by interface {} forwarded {}",
            s.received,
            s.dropped_kernel,
            s.dropped_interface,
            s.forwarded
        );
    }
    let st = shared.lock();
    let a = st.spool.accounting;
    log!(
        STATS,
        "packets: captured {} delivered {} dropped (spool full {}, refused {}, at exit {}) held {} in {} chunks ({} KiB)",
        a.captured,
        a.delivered,
        a.dropped_spool_full,
        a.dropped_refused,
        a.dropped_at_exit,
        st.spool.held_packets() + st.in_flight_packets + in_open_chunk,
        st.spool.len(),
        st.spool.bytes() / 1024
    );
}
