//! `ossensor-uplink`: the sensor's unprivileged process (no capabilities, an
//! unprivileged uid). It receives the workers' batches, builds pcapng
//! chunks, compresses them, keeps them in a bounded spool and delivers them
//! to the collector over HTTPS with HMAC-signed requests, in order, each
//! exactly once (the collector ignores a (epoch, seq) it already stored).
//!
//! Threads: the control channel (the supervisor hands over each worker's
//! connection) and one reader per worker (intake), the
//! chunker (this thread), and the sender. Shutdown on SIGTERM: the
//! supervisor stops the workers first; the uplink then drains what they
//! sent, closes the last chunk, and delivers the spool before exiting.

mod actions;
mod chunker;
mod collector;
mod intake;
mod metrics;
mod sender;
mod spool;
mod tls_stream;

use chunker::{Chunker, RawChunk};
use intake::{Filters, Intake};
use ossensor_host::log;
use ossensor_host::log::{self as slog, BASIC, CHUNKS, STATS};
use ossensor_shared::children::UplinkConfig;
use ossensor_shared::delivery::{Chunk, Timings};
use ossensor_shared::{bpf, chunk};
use sender::Shared;
use sender::Sources;
use spool::OverflowReport;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tests count allocations (see `hot_path_allocations_are_per_batch_and_per_chunk`).
#[cfg(test)]
#[global_allocator]
static ALLOC: ossensor_host::alloc_count::Counting = ossensor_host::alloc_count::Counting;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

const STATS_LOG_EVERY: Duration = Duration::from_secs(10);
/// A spool that keeps overflowing is said once, then summed this often.
const OVERFLOW_REPORT_EVERY: Duration = Duration::from_secs(10);
/// After SIGTERM, how long to wait for workers still sending.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let cfg: UplinkConfig = match ossensor_host::child::config("ossensor-uplink") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let _ = slog::init("uplink", cfg.log.level, cfg.log.path.as_deref(), ossensor_host::child::audit_target(&cfg.log));
    // This process holds the key: no core dumps, no ptrace by the workers,
    // which run as the same uid.
    let _ = nix::sys::prctl::set_dumpable(false);
    ossensor_host::privileges::audit_current();
    install_signal_handlers();
    keep_freed_chunk_memory();
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log!(BASIC, "error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Chunks are megabyte buffers allocated by one thread and freed by another.
/// With glibc's defaults each is a fresh mmap (or trimmed heap) whose pages
/// fault in again, about 300 page faults per MiB of traffic; keeping freed
/// memory in the heap lets the next chunk reuse warm pages. The spool bounds
/// how much is live, so this does not raise the peak.
/// Messages from the workers waiting for the chunker.
const INTAKE_QUEUE: usize = 16;

fn keep_freed_chunk_memory() {
    // SAFETY: mallopt only adjusts the allocator's tunables; called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn install_signal_handlers() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(SigHandler::Handler(on_stop), SaFlags::SA_RESTART, SigSet::empty());
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { sigaction(s, &act) }.expect("sigaction");
    }
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: ignoring a signal installs no code.
    unsafe { sigaction(Signal::SIGPIPE, &ign) }.expect("sigaction");
}

/// Excludes our own traffic to the collector until the collector's filter
/// arrives (registration), so the sensor never captures what it sends.
fn provisional_filter(host: &str, port: u16) -> String {
    use std::net::ToSocketAddrs;
    let mut addrs: Vec<std::net::IpAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.map(|a| a.ip()).collect(),
        Err(_) => Vec::new(),
    };
    // In the order of their text, as before.
    addrs.sort_by_cached_key(|a| a.to_string());
    addrs.dedup();
    ossensor_shared::filter::exclude_collector(&addrs, None, port)
}

fn run(cfg: UplinkConfig) -> Result<(), String> {
    let epoch = ossensor_host::clock::now_ns();
    let start_filter = bpf::combine(&provisional_filter(&cfg.collector_host, cfg.collector_port), &cfg.bpf);
    ossensor_libpcap::compile(&start_filter, 1).map_err(|e| format!("filter {start_filter:?}: {e}"))?;
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

    let control = ossensor_host::child::inherited_fd(cfg.control_fd)
        .ok_or_else(|| format!("no control channel at fd {}: the supervisor starts this process", cfg.control_fd))?;
    let control = Arc::new(control);
    // Room for a few batches (each at most about 1.3 MiB); beyond that
    // workers wait and their rings hold the packets. Bounded in count, so
    // in memory: INTAKE_QUEUE batches at most (docs/reliability.md, host
    // protection).
    let (tx, rx) = sync_channel::<Intake>(INTAKE_QUEUE);
    {
        let (filters, control) = (filters.clone(), control.clone());
        std::thread::Builder::new().name("intake".into()).spawn(move || intake::serve(control, filters, tx)).map_err(|e| e.to_string())?;
    }

    let shared = Arc::new(Shared::new(cfg.spool_bytes));
    let actions = Arc::new(actions::ActionsShared::default());
    let worker_stats: Arc<sender::WorkerStats> = Arc::default();
    let sources = || Sources {
        shared: shared.clone(),
        workers: worker_stats.clone(),
        actions: actions.clone(),
        filters: filters.clone(),
        sensor_id: cfg.sensor_id.clone(),
    };
    let sender = {
        let (cfg, sources, control) = (cfg.clone(), sources(), control.clone());
        std::thread::Builder::new().name("sender".into()).spawn(move || sender::run(&cfg, epoch, &sources, &control)).map_err(|e| e.to_string())?
    };
    if let Some(a) = &cfg.actions {
        let every = Duration::from_secs(a.report_every_secs.max(1) as u64);
        let (actions, filters) = (actions.clone(), filters.clone());
        std::thread::Builder::new().name("actions".into()).spawn(move || actions::run(&actions, &filters, every, &STOP)).map_err(|e| e.to_string())?;
    } else {
        log!(BASIC, "response actions off (ANTIGENA_ENABLED=false): no WebSocket, nothing is ever sent on a captured interface");
    }

    if let Some(addr) = &cfg.metrics_addr {
        let listener = metrics::bind(addr)?;
        log!(BASIC, "Prometheus metrics on http://{addr}/metrics");
        let sources = sources();
        std::thread::Builder::new().name("metrics".into()).spawn(move || metrics::serve(listener, sources)).map_err(|e| e.to_string())?;
    }

    let mut chunker =
        Chunker::new(cfg.chunk_bytes, Duration::from_millis(cfg.chunk_max_age_ms), format!("ossensor {}", ossensor_shared::VERSION), cfg.deduplicate);
    let mut seq: u64 = 0;
    let mut compressor = match cfg.compression_level {
        Some(level) => Some(chunk::ChunkCompressor::new(level).map_err(|e| format!("zstd level {level}: {e}"))?),
        None => None,
    };
    let mut connected: BTreeMap<Arc<str>, usize> = BTreeMap::new();
    let mut closed: Vec<RawChunk> = Vec::new();
    let mut last_stats_log = Instant::now();
    let mut overflow = OverflowReport::new(cfg.spool_bytes >> 20, OVERFLOW_REPORT_EVERY);
    let mut stop_since: Option<Instant> = None;

    loop {
        if STOP.load(Ordering::Relaxed) && stop_since.is_none() {
            stop_since = Some(Instant::now());
            log!(BASIC, "stopping: draining workers, then delivering the spool");
        }
        let wait = chunker.deadline().map_or(Duration::from_millis(200), |d| d.saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait.min(Duration::from_millis(200))) {
            Ok(Intake::Batch { interface, linktype, count, records }) => {
                take_batch(&mut chunker, &shared, (&interface, linktype, count, &records), &mut closed);
            }
            Ok(Intake::Stats { interface, stats }) => {
                worker_stats.lock().unwrap_or_else(|e| e.into_inner()).insert(interface, stats);
            }
            Ok(Intake::ActionStats { interface, stats }) => {
                actions.stats.lock().unwrap_or_else(|e| e.into_inner()).insert(interface, stats.into_iter().collect());
            }
            Ok(Intake::Connected { interface }) => {
                *connected.entry(interface).or_default() += 1;
                chunker.set_interfaces(connected.len());
            }
            Ok(Intake::Disconnected { interface }) => {
                if let Some(n) = connected.get_mut(&interface) {
                    *n -= 1;
                    if *n == 0 {
                        connected.remove(&interface);
                    }
                }
                chunker.set_interfaces(connected.len());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err("intake thread ended".into()),
        }
        closed.extend(chunker.tick(Instant::now()));
        let draining_done = stop_since.is_some_and(|t| connected.is_empty() || t.elapsed() > DRAIN_GRACE);
        if draining_done {
            // Whatever is still queued from workers that already left.
            while let Ok(msg) = rx.try_recv() {
                if let Intake::Batch { interface, linktype, count, records } = msg {
                    take_batch(&mut chunker, &shared, (&interface, linktype, count, &records), &mut closed);
                }
            }
            closed.extend(chunker.flush());
        }
        for raw in closed.drain(..) {
            seq += 1;
            let spooled = compress(raw, seq, compressor.as_mut());
            overflow.dropped(&shared.push(spooled));
        }
        if let Some(line) = overflow.due(Instant::now()) {
            log!(BASIC, "{line}");
        }
        shared.in_open_chunk.store(chunker.pending_packets(), Ordering::Relaxed);
        if last_stats_log.elapsed() >= STATS_LOG_EVERY {
            log_stats(&sources());
            last_stats_log = Instant::now();
        }
        if draining_done {
            break;
        }
    }
    shared.close();
    // The sender gives up delivering DELIVER_GRACE after close; a request
    // hanging on a dead collector could take longer, so bound the wait here.
    let deadline = Instant::now() + Timings::default().grace + Duration::from_secs(1);
    while !sender.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !sender.is_finished() {
        // Past the grace the machine counts what it holds as dropped at exit.
        shared.lock().delivery.poll(Instant::now() + Timings::default().grace);
        log!(BASIC, "stopping with a request to the collector still in flight");
    }
    shared.in_open_chunk.store(chunker.pending_packets(), Ordering::Relaxed);
    log_stats(&sources());
    Ok(())
}

/// One worker's batch into the chunker, and its packets into the
/// accounting (during the run and while draining at stop alike).
fn take_batch(chunker: &mut Chunker, shared: &Shared, (interface, linktype, count, records): (&Arc<str>, i32, u32, &[u8]), closed: &mut Vec<RawChunk>) {
    let a = chunker.add_batch(interface, linktype, records, Instant::now(), closed);
    {
        let mut st = shared.lock();
        st.delivery.captured(a.packets);
        if a.duplicates > 0 {
            *st.duplicates.entry(interface.to_string()).or_default() += a.duplicates;
        }
    }
    if let Some(e) = a.error {
        log!(BASIC, "batch from {interface}: {e}");
    } else if a.packets + a.duplicates != count as u64 {
        log!(BASIC, "batch from {interface} announced {count} packets, held {}", a.packets + a.duplicates);
    }
}

/// Compresses a closed chunk (when compression is on) into the body that
/// moves to the spool; a chunk zstd fails on is sent as is.
fn compress(raw: RawChunk, seq: u64, compressor: Option<&mut chunk::ChunkCompressor>) -> Chunk {
    let raw_len = raw.pcapng.len();
    let (mut body, compressed) = match compressor.map(|z| z.compress(&raw.pcapng)) {
        Some(Ok(body)) => (body, true),
        _ => (raw.pcapng, false),
    };
    // zstd hands back a buffer of its worst-case size (about the raw
    // length); the spool counts the body's length. Without this, each
    // spooled chunk would keep a ~1 MiB allocation for a few hundred KiB,
    // and once the heap's pages are warm the spool's real memory grew to
    // about twice its bound.
    body.shrink_to_fit();
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
    Chunk { seq, body, raw_len, packets: raw.packets, compressed }
}

/// The level-1 statistics, and the same snapshot as one JSON line (what
/// scripts and tests read: `telemetry::JSON_MARK`).
fn log_stats(sources: &Sources) {
    let snap = sources.snapshot();
    for line in snap.lines() {
        log!(STATS, "{line}");
    }
    log!(STATS, "{}", snap.json_line());
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossensor_host::alloc_count::allocations_on_this_thread;
    use ossensor_shared::ipc::{encode_frame, push_record, BatchRef, FrameDecoder, WorkerMsg, WorkerMsgRef};
    use ossensor_shared::pcapng::Direction;

    /// Goal 6 of issue 3: from the worker's frames to compressed chunks
    /// (frame decoding, pcapng building, compression), the uplink allocates
    /// per batch and per chunk, never per packet.
    #[test]
    fn hot_path_allocations_are_per_batch_and_per_chunk() {
        // Frames as a worker sends them: about 1 MiB batches of mixed sizes.
        let payload: Vec<u8> = (0..1514u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut wire = Vec::new();
        let (mut packets, mut ts) = (0u64, 0u64);
        for _ in 0..40 {
            let mut records = Vec::new();
            let mut count = 0;
            while records.len() < 1 << 20 {
                ts += 1_000;
                let len = [60, 1514, 590, 1514, 98][(ts / 1_000 % 5) as usize];
                push_record(&mut records, ts, len as u32, &payload[..len], Direction::Inbound);
                count += 1;
            }
            encode_frame(&WorkerMsgRef::Batch(BatchRef { count, records: &records }), &mut wire).unwrap();
            packets += count as u64;
        }

        let mut chunker = Chunker::new(1 << 20, Duration::from_secs(3600), "t".into(), true);
        let mut decoder = FrameDecoder::new();
        let mut closed = Vec::new();
        let mut compressor = chunk::ChunkCompressor::new(-3).unwrap();
        let (mut seq, mut chunks) = (0, 0);
        let now = Instant::now();
        let before = allocations_on_this_thread();
        for piece in wire.chunks(256 * 1024) {
            // As intake reads the socket.
            let buf = decoder.read_buf(piece.len());
            buf.copy_from_slice(piece);
            while let Some(msg) = decoder.next::<WorkerMsg>().unwrap() {
                let WorkerMsg::Batch(b) = msg else { panic!("only batches were sent") };
                chunker.add_batch("eth0", 1, &b.records, now, &mut closed);
            }
            for raw in closed.drain(..) {
                seq += 1;
                chunks += 1;
                std::hint::black_box(compress(raw, seq, Some(&mut compressor)));
            }
        }
        let allocations = allocations_on_this_thread() - before;
        let per_packet = allocations as f64 / packets as f64;
        println!("uplink path: {allocations} allocations for {packets} packets in 40 batches and {chunks} chunks ({per_packet:.4} per packet)");
        assert!(chunks >= 40);
        assert!(per_packet < 0.02, "{allocations} allocations for {packets} packets: something allocates per packet");
    }
}
