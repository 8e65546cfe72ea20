//! The sensor's delivery state machine (`ossensor_shared::delivery`) driven
//! against the collector's real request handlers, in memory: no socket, no
//! TLS, a virtual clock for the sensor. Each request is the one the uplink
//! sends (`ossensor_shared::requests`), each answer checked as the uplink
//! checks it; faults are injected between the two: the collector away, slow
//! answers, a malformed chunk (400), a 503 from something in front of the
//! collector, the collector restarted, the spool overflowing. Every run
//! checks the accounting exactly and reads the collector's files back:
//! every delivered packet stored once, in order, and nothing else.

use ossensor_shared::auth;
use ossensor_shared::control::{InterfaceInfo, RegisterRequest};
use ossensor_shared::delivery::{Accounting, Chunk, Delivery, Next, Outcome, Timings};
use ossensor_shared::pcapng::{self, Direction, SectionWriter};
use ossensor_shared::requests::{self, Answer, Signer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vsensor::config::RawConfig;
use vsensor::http::{HeaderMap, HeaderValue, Method, Request};
use vsensor::router::{self, Serves};
use vsensor::state::App;
use vsensor::Collector;

const KEY: &str = "delivery-test-key";
const SENSOR: &str = "node-d";
const EPOCH: u64 = 1_795_900_000_000_000_000;
const PACKETS_PER_CHUNK: u64 = 4;

fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// A chunk whose packets carry their numbers (seq, index) in their bytes.
fn chunk(seq: u64) -> Chunk {
    let mut w = SectionWriter::new();
    w.begin("delivery-test");
    let i = w.add_interface("eth0", 1, 65535);
    for k in 0..PACKETS_PER_CHUNK {
        let mut frame = vec![0u8; 64];
        frame[12] = 0x08;
        frame[48..56].copy_from_slice(&seq.to_be_bytes());
        frame[56..64].copy_from_slice(&k.to_be_bytes());
        w.add_packet(i, EPOCH + seq * 1000 + k, 64, &frame, Direction::Outbound);
    }
    let raw = w.bytes().to_vec();
    let mut body = Vec::new();
    ossensor_shared::chunk::compress(&raw, 3, &mut body).unwrap();
    Chunk { seq, body, raw_len: raw.len(), packets: PACKETS_PER_CHUNK, compressed: true }
}

/// What stands between the sensor and the collector for one request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path_ {
    Up,
    /// No answer: connection refused or a timeout.
    Away,
    /// Something in front of the collector answers 503 (no proof).
    Unavailable,
}

struct Bed {
    dir: tempfile::TempDir,
    collector: Collector,
    app: Arc<App>,
    signer: Signer,
    delivery: Delivery,
    now: Instant,
    path: Path_,
    /// The virtual time each answer takes.
    answer_delay: Duration,
    next_seq: u64,
    registered: u32,
}

fn open(data_dir: &Path) -> Collector {
    let d = data_dir.to_str().unwrap().to_string();
    let config = RawConfig::from_pairs(&[("VSENSOR_HMAC_KEY", KEY), ("VSENSOR_DATA_DIR", &d)]).validate().unwrap();
    Collector::open(&config).unwrap()
}

impl Bed {
    fn new(spool_bytes: u64) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let collector = open(dir.path());
        let app = collector.app();
        Bed {
            dir,
            collector,
            app,
            signer: Signer { sensor_id: SENSOR.into(), epoch: EPOCH, key: KEY.as_bytes().to_vec() },
            delivery: Delivery::new(spool_bytes, Timings::default()),
            now: Instant::now(),
            path: Path_::Up,
            answer_delay: Duration::ZERO,
            next_seq: 0,
            registered: 0,
        }
    }

    /// The chunker's part: `n` new chunks.
    fn capture(&mut self, n: u64) {
        for _ in 0..n {
            self.next_seq += 1;
            self.delivery.captured(PACKETS_PER_CHUNK);
            self.delivery.push(chunk(self.next_seq));
        }
    }

    /// Carries one request to the collector and brings back its answer,
    /// checked as the uplink checks it.
    async fn carry(&mut self, r: &requests::Request) -> Result<Vec<u8>, requests::SendError> {
        self.now += self.answer_delay;
        match self.path {
            Path_::Away => return Err(requests::SendError::Transport("connection refused".into())),
            Path_::Unavailable => {
                let a = Answer { status: 503, proof: None, body: b"{\"error\":\"busy\"}".to_vec() };
                return requests::check(KEY.as_bytes(), r, &self.collector.cert_sha256(), true, &a);
            }
            Path_::Up => {}
        }
        let mut h = HeaderMap::new();
        for (k, v) in &r.headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        let req = Request::new(Method::POST, r.path, h, r.body.clone(), "198.18.0.2:40000".parse().unwrap(), "198.18.0.1:443".parse().unwrap());
        let resp = router::handle(&self.app, Serves::All, req).await;
        let proof = resp.headers.get(auth::H_PROOF).map(|v| v.to_str().unwrap().to_string());
        requests::check(KEY.as_bytes(), r, &self.collector.cert_sha256(), true, &Answer { status: resp.status.as_u16(), proof, body: resp.body })
    }

    /// One step of the uplink's sender; false once delivery is done.
    async fn step(&mut self) -> bool {
        let outcome = match self.delivery.poll(self.now) {
            Next::Done => return false,
            Next::Wait { until } => {
                // The sender sleeps until then (or half a second at most).
                self.now = until.unwrap_or(self.now + Duration::from_millis(500)).max(self.now + Duration::from_millis(1));
                return true;
            }
            Next::Register => {
                let reg = RegisterRequest {
                    sensor_id: SENSOR.into(),
                    hostname: "node-d.test".into(),
                    version: "0.1.0".into(),
                    epoch: EPOCH,
                    interfaces: vec![InterfaceInfo { name: "eth0".into(), addresses: vec!["198.18.0.2".into()] }],
                    collector_addresses: vec!["198.18.0.1".into()],
                    collector_port: 443,
                };
                let r = self.signer.register(wall_ns(), ossensor_host::nonce(), &reg);
                match self.carry(&r).await.and_then(|b| requests::registered(&b)) {
                    Ok(_) => {
                        self.registered += 1;
                        Outcome::Registered
                    }
                    Err(e) => Outcome::Failed(e.failure()),
                }
            }
            Next::SendStatus { leaving } => {
                let report = ossensor_shared::control::StatusReport { packets_captured: self.delivery.accounting().captured, leaving, ..Default::default() };
                let r = self.signer.status(wall_ns(), ossensor_host::nonce(), &report);
                match self.carry(&r).await {
                    Ok(_) => Outcome::StatusSent,
                    Err(e) => Outcome::Failed(e.failure()),
                }
            }
            Next::SendChunk(c) => {
                let r = self.signer.chunk(wall_ns(), ossensor_host::nonce(), &c);
                requests::chunk_outcome(self.carry(&r).await).0
            }
        };
        self.delivery.handle(self.now, outcome);
        true
    }

    /// Runs for `d` of virtual time.
    async fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            assert!(self.step().await, "stopped early");
        }
    }

    /// Closes and runs until delivery is done; then the collector closes
    /// its files. Returns the accounting.
    async fn finish(&mut self) -> Accounting {
        self.delivery.close(self.now);
        let mut steps = 0;
        while self.step().await {
            steps += 1;
            assert!(steps < 10_000, "closing never ended");
        }
        vsensor::server::close_all(self.app.clone()).await.unwrap();
        let a = self.delivery.accounting();
        assert_eq!(a.captured, a.delivered + a.dropped() + self.delivery.held_packets(), "the accounting balances: {a:?}");
        assert_eq!(self.delivery.held_packets(), 0);
        a
    }

    /// The collector restarts: its files closed, a new process on the same
    /// data folder.
    async fn restart_collector(&mut self) {
        vsensor::server::close_all(self.app.clone()).await.unwrap();
        self.collector = open(self.dir.path());
        self.app = self.collector.app();
    }

    /// Every packet stored for the sensor: (seq, index), in file order.
    fn stored(&self) -> Vec<(u64, u64)> {
        let folder: PathBuf = self.dir.path().join("sensors").join(SENSOR);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map(|d| d.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "pcapng")).collect())
            .unwrap_or_default();
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            pcapng::for_each_packet(&bytes, |p| {
                out.push((u64::from_be_bytes(p.data[48..56].try_into().unwrap()), u64::from_be_bytes(p.data[56..64].try_into().unwrap())));
            })
            .unwrap();
        }
        out
    }

    /// The collector holds exactly the packets of `chunks`, once, in order.
    fn assert_stored(&self, chunks: &[u64]) {
        let want: Vec<(u64, u64)> = chunks.iter().flat_map(|s| (0..PACKETS_PER_CHUNK).map(move |k| (*s, k))).collect();
        assert_eq!(self.stored(), want);
    }
}

#[tokio::test]
async fn everything_captured_is_delivered_once_in_order() {
    let mut b = Bed::new(1 << 20);
    b.capture(5);
    b.run_for(Duration::from_secs(3)).await;
    b.capture(5);
    let a = b.finish().await;
    assert_eq!((a.delivered, a.dropped(), a.chunks_delivered), (40, 0, 10));
    assert_eq!(b.registered, 1);
    b.assert_stored(&(1..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_collector_away_for_a_minute_loses_nothing_and_the_backlog_goes_when_it_answers() {
    let mut b = Bed::new(1 << 20);
    b.run_for(Duration::from_secs(1)).await;
    b.path = Path_::Away;
    for _ in 0..60 {
        b.capture(1);
        b.run_for(Duration::from_secs(1)).await;
    }
    assert_eq!(b.delivery.accounting().delivered, 0);
    b.path = Path_::Up;
    // The next status report (every 5 s) finds the collector back; the
    // backlog goes without waiting out the chunk's backoff.
    b.run_for(Duration::from_secs(6)).await;
    assert_eq!(b.delivery.accounting().delivered, 60 * PACKETS_PER_CHUNK, "delivered within 6 s of the return");
    let a = b.finish().await;
    assert_eq!(a.dropped(), 0);
    b.assert_stored(&(1..=60).collect::<Vec<_>>());
}

#[tokio::test]
async fn slow_answers_and_a_503_in_front_of_the_collector_lose_nothing() {
    let mut b = Bed::new(1 << 20);
    b.answer_delay = Duration::from_secs(2);
    b.capture(3);
    b.run_for(Duration::from_secs(10)).await;
    b.path = Path_::Unavailable;
    b.capture(3);
    b.run_for(Duration::from_secs(20)).await;
    let during = b.delivery.accounting().delivered;
    b.path = Path_::Up;
    b.capture(2);
    // Two seconds an answer: the backlog takes a while (closing allows only
    // 5 s, and would count the rest as dropped at exit).
    b.run_for(Duration::from_secs(30)).await;
    let a = b.finish().await;
    assert!(during < a.delivered);
    assert_eq!((a.delivered, a.dropped()), (8 * PACKETS_PER_CHUNK, 0));
    b.assert_stored(&(1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_malformed_chunk_is_refused_counted_and_does_not_block_the_rest() {
    let mut b = Bed::new(1 << 20);
    b.capture(2);
    // Chunk 3 claims a packet count its body does not hold: the collector
    // answers 400 (proven), the sensor drops it and counts it.
    b.next_seq += 1;
    let mut bad = chunk(b.next_seq);
    bad.packets = 99;
    b.delivery.captured(99);
    b.delivery.push(bad);
    b.capture(2);
    let a = b.finish().await;
    assert_eq!((a.delivered, a.dropped_refused), (16, 99));
    b.assert_stored(&[1, 2, 4, 5]);
}

#[tokio::test]
async fn a_collector_restart_keeps_last_seq_and_stores_nothing_twice() {
    let mut b = Bed::new(1 << 20);
    b.capture(4);
    b.run_for(Duration::from_secs(2)).await;
    assert_eq!(b.delivery.accounting().delivered, 16);
    // The collector restarts; its answers now carry another proof
    // context only if its certificate changed (it did not): the sensor
    // goes on, and registers again when told so.
    b.restart_collector().await;
    b.capture(2);
    b.run_for(Duration::from_secs(2)).await;
    assert_eq!(b.delivery.accounting().delivered, 24, "delivery goes on across the restart");
    // A registration after the restart says where the collector stands.
    let reg = RegisterRequest {
        sensor_id: SENSOR.into(),
        hostname: "node-d.test".into(),
        version: "0.1.0".into(),
        epoch: EPOCH,
        interfaces: vec![],
        collector_addresses: vec![],
        collector_port: 443,
    };
    let r = b.signer.register(wall_ns(), ossensor_host::nonce(), &reg);
    let answer = requests::registered(&b.carry(&r).await.unwrap()).unwrap();
    assert_eq!(answer.last_seq, Some(6), "the collector kept its last seq across the restart");
    // A chunk the collector already has, sent again (its acknowledgement
    // lost): acknowledged, not stored twice.
    let again = chunk(6);
    let r = b.signer.chunk(wall_ns(), ossensor_host::nonce(), &again);
    assert_eq!(requests::chunk_outcome(b.carry(&r).await).0, Outcome::ChunkAcked { stored: false });
    b.capture(1);
    let a = b.finish().await;
    assert_eq!(a.delivered, 7 * PACKETS_PER_CHUNK);
    b.assert_stored(&(1..=7).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_spool_that_overflows_drops_the_oldest_and_counts_every_packet() {
    // Room for about four chunks, the one in flight included.
    let bytes = chunk(1).body.len() as u64;
    let mut b = Bed::new(bytes * 4);
    b.capture(1);
    b.run_for(Duration::from_secs(1)).await;
    b.path = Path_::Away;
    for _ in 0..20 {
        b.capture(1);
        b.run_for(Duration::from_millis(500)).await;
    }
    b.path = Path_::Up;
    let a = b.finish().await;
    assert_eq!(a.delivered + a.dropped_spool_full, 21 * PACKETS_PER_CHUNK);
    assert!(a.dropped_spool_full >= 16 * PACKETS_PER_CHUNK, "{a:?}");
    // The collector holds chunk 1 (before the outage), chunk 2 (in flight
    // all along: never dropped), then the newest: the oldest queued went.
    let stored: Vec<u64> = b.stored().iter().map(|(s, _)| *s).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    assert_eq!(stored[..2], [1, 2], "{stored:?}");
    assert_eq!(*stored.last().unwrap(), 21, "the newest kept");
    assert!(stored.len() > 2 && stored[2..].windows(2).all(|w| w[1] == w[0] + 1), "one run of the newest: {stored:?}");
    assert_eq!(stored.len() as u64 * PACKETS_PER_CHUNK, a.delivered);
}
