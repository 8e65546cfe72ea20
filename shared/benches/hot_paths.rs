//! The uplink's per-chunk work, one piece at a time: building a pcapng
//! section, compressing it (zstd levels compared by speed and ratio), and
//! signing the request (SHA-256 of the body, then HMAC). And the
//! capture-worker's per-segment work for response actions under a flood
//! (`cargo bench -p ossensor-shared --bench hot_paths -- observe_flood`).
//!
//! Frames come from a real capture when BENCH_PCAP names a classic pcap
//! file (e.g. ../shared/bench/traffic/make-traffic.sh /tmp/mixed-mtu.pcap mtu),
//! otherwise from a synthetic mix: full-size frames of random bytes (like
//! TLS) and small repetitive ones (like DNS and ACKs). Ratios printed for the
//! synthetic mix say little; speeds are comparable.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ossensor_shared::actions::{Action, ActionEnforcer, Target};
use ossensor_shared::auth::{self, RequestMeta};
use ossensor_shared::chunk;
use ossensor_shared::pcapng::{Direction, SectionWriter};
use ossensor_shared::tcpseg::{self, Outgoing, Segment, ACK, LINKTYPE_ETHERNET, SYN};
use std::hash::BuildHasher;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

fn frames() -> Vec<Vec<u8>> {
    if let Ok(path) = std::env::var("BENCH_PCAP") {
        let b = std::fs::read(&path).expect("BENCH_PCAP");
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= b.len() {
            let cap = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
            if at + 16 + cap > b.len() {
                break;
            }
            out.push(b[at + 16..at + 16 + cap].to_vec());
            at += 16 + cap;
        }
        return out;
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..4000)
        .map(|i| {
            if i % 5 < 3 {
                (0..1514).map(|_| rnd() as u8).collect()
            } else {
                let mut f = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00E\x00".to_vec();
                f.extend(std::iter::repeat_n(i as u8, 80));
                f
            }
        })
        .collect()
}

/// Eight chunks, each about 1 MiB of consecutive frames as a pcapng
/// section, taken at evenly spaced points of the capture (a chunk holds
/// consecutive traffic; different moments compress differently).
fn sections(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    (0..8).map(|i| section(&frames[i * frames.len() / 8..])).collect()
}

/// One chunk's worth (about 1 MiB) of frames as a pcapng section.
fn section(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = SectionWriter::new();
    w.begin("bench");
    let id = w.add_interface("eth0", 1, 262_144);
    for (i, f) in frames.iter().cycle().enumerate() {
        if w.len() >= 1 << 20 {
            break;
        }
        w.add_packet(id, i as u64, f.len() as u32, f, Direction::Inbound);
    }
    w.bytes().to_vec()
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let chunks = sections(&frames);
    let total: usize = chunks.iter().map(Vec::len).sum();
    let raw = &chunks[0];

    let mut g = c.benchmark_group("chunk_build");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("pcapng_section_1MiB", |b| b.iter(|| black_box(section(black_box(&frames)))));
    g.finish();

    let mut g = c.benchmark_group("compress_8x1MiB");
    g.throughput(Throughput::Bytes(total as u64));
    let mut out = Vec::new();
    for level in [3, 1, -1, -3, -5] {
        let compressed: usize = chunks
            .iter()
            .map(|ch| {
                chunk::compress(ch, level, &mut out).unwrap();
                out.len()
            })
            .sum();
        eprintln!("zstd level {level}: ratio {:.3} over {} frames", compressed as f64 / total as f64, frames.len());
        g.bench_with_input(BenchmarkId::new("zstd", level), &level, |b, &l| {
            b.iter(|| {
                for ch in &chunks {
                    chunk::compress(black_box(ch), l, &mut out).unwrap();
                }
            })
        });
    }
    // What the uplink does: one context kept across chunks.
    g.bench_function(BenchmarkId::new("zstd_reused_context", -3), |b| {
        let mut z = chunk::ChunkCompressor::new(-3).unwrap();
        b.iter(|| {
            for ch in &chunks {
                black_box(z.compress(black_box(ch)).unwrap());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("sign_request_1MiB_body");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.bench_function("sha256_body_and_hmac", |b| {
        b.iter(|| {
            let meta = RequestMeta {
                method: "POST".into(),
                path: "/v1/chunks".into(),
                sensor_id: "bench".into(),
                epoch: 1,
                seq: 2,
                timestamp: 1_800_000_000,
                nonce: "00112233445566778899aabbccddeeff".into(),
                body_sha256: auth::sha256(black_box(raw)),
            };
            black_box(auth::sign(b"key", &meta))
        })
    });
    g.finish();

    // De-duplication across interfaces: every frame looked up once, as the
    // uplink does while more than one interface is captured.
    let mut g = c.benchmark_group("dedup");
    let n = frames.len().min(10_000);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("frames_10k", |b| {
        let mut d = ossensor_shared::dedup::Deduplicator::new();
        let mut ts = 0u64;
        b.iter(|| {
            for f in &frames[..n] {
                ts += 2_500;
                black_box(d.is_duplicate(1, 0, ts, black_box(f)));
            }
        })
    });
    g.finish();
}

/// A random-source TCP flood towards one server, as `count` segments
/// (SYNs and ACKs), each a new 4-tuple.
fn flood(count: usize) -> Vec<Segment> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..count)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Segment {
                src_mac: [2, 0, 0, 0, 0, 0x66],
                dst_mac: [2, 0, 0, 0, 0, 2],
                vlan: None,
                src: (Ipv4Addr::new(198, 18, (x >> 8) as u8, x as u8).into(), (x >> 24) as u16 | 1024),
                dst: (Ipv4Addr::new(198, 19, 0, 2).into(), 80),
                seq: (x >> 32) as u32,
                ack: x as u32,
                flags: if i % 2 == 0 { SYN } else { ACK },
                len: 0,
            }
        })
        .collect()
}

/// An enforcer as a busy link leaves it: 65,536 connections (both ends
/// talked) and a full unconfirmed tier.
fn warm_enforcer() -> ActionEnforcer {
    let mut e = ActionEnforcer::new([2, 0, 0, 0, 0, 0xfe], 65_536, [7, 11]);
    let mut out = Vec::new();
    for i in 0..65_536u32 {
        let c = (IpAddr::from(Ipv4Addr::from(0xc613_0000 | i)), 40000);
        let s = (Ipv4Addr::new(198, 19, 0, 1).into(), 443);
        let seg = |src, dst, src_mac, dst_mac| Segment { src_mac, dst_mac, vlan: None, src, dst, seq: 1, ack: 1, flags: ACK, len: 0 };
        e.observe(1, &seg(c, s, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]), &mut out);
        e.observe(1, &seg(s, c, [2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]), &mut out);
    }
    for s in flood(20_000) {
        e.observe(2, &s, &mut out);
    }
    e
}

/// The response enforcer's per-segment work under a random-source flood
/// (every segment a new 4-tuple into full tables): with no action, with
/// an action that covers none of it, and with one that covers all of it;
/// and the keyed hash of a flow key alone (SipHash-1-3 of 40 bytes).
fn bench_observe(c: &mut Criterion) {
    let segments = flood(200_000);
    let mut g = c.benchmark_group("observe_flood");
    const PER_ITER: usize = 10_000;
    g.throughput(Throughput::Elements(PER_ITER as u64));
    let unrelated = Action { id: 1, target: Target::Quarantine { host: Ipv4Addr::new(203, 0, 113, 9).into() }, until_ns: u64::MAX };
    let matching = Action { id: 2, target: Target::Quarantine { host: Ipv4Addr::new(198, 19, 0, 2).into() }, until_ns: u64::MAX };
    for (name, action) in [("no_action", None), ("unrelated_action", Some(unrelated)), ("matching_action", Some(matching))] {
        let mut e = warm_enforcer();
        let mut out = Vec::new();
        if let Some(a) = action {
            e.apply(3, a, &mut out).unwrap();
        }
        let (mut at, mut now) = (0, 10u64);
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..PER_ITER {
                    now += 50_000;
                    e.observe(now, black_box(&segments[at]), &mut out);
                    at = (at + 1) % segments.len();
                }
                out.clear();
                e.take_matched().for_each(drop);
            })
        });
    }
    g.finish();

    // As in the capture-worker under the flood: 40 segments per wake-up
    // (20,000 pps, 2 ms ring timeout), with the caches (and TLB) emptied
    // in between by other work; only the enforcer's part is timed.
    let mut g = c.benchmark_group("observe_flood_cold");
    const WAKE: usize = 40;
    g.throughput(Throughput::Elements(WAKE as u64));
    let mut junk = vec![0u64; 32 << 17]; // 32 MiB
    for (name, action) in [("one_by_one", None), ("batch", None), ("batch_unrelated_action", Some(unrelated)), ("batch_hot", None)] {
        let mut e = warm_enforcer();
        let mut out = Vec::new();
        if let Some(a) = action {
            e.apply(3, a, &mut out).unwrap();
        }
        let (mut at, mut now) = (0, 10u64);
        let mut wake: Vec<(u64, Segment)> = Vec::with_capacity(WAKE);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = std::time::Duration::ZERO;
                for _ in 0..iters {
                    if name != "batch_hot" {
                        for (i, x) in junk.iter_mut().enumerate().step_by(8) {
                            *x = x.wrapping_add(i as u64);
                        }
                    }
                    black_box(&junk);
                    wake.clear();
                    for _ in 0..WAKE {
                        now += 50_000;
                        wake.push((now, segments[at]));
                        at = (at + 1) % segments.len();
                    }
                    let t = std::time::Instant::now();
                    if name == "one_by_one" {
                        for (now, s) in &wake {
                            e.observe(*now, black_box(s), &mut out);
                        }
                    } else {
                        e.observe_batch(black_box(&wake), &mut out);
                    }
                    spent += t.elapsed();
                    out.clear();
                }
                spent
            })
        });
    }
    g.finish();

    // What the capture-worker does per captured frame before the look-up:
    // parse the TCP segment out of the frame.
    let mut g = c.benchmark_group("segment_in");
    let frames: Vec<Vec<u8>> = segments[..1024]
        .iter()
        .map(|s| {
            let o = Outgoing { src_mac: s.src_mac, dst_mac: s.dst_mac, vlan: None, src: s.src, dst: s.dst, seq: s.seq, ack: s.ack, flags: s.flags, ip_id: 1 };
            let mut f = Vec::new();
            tcpseg::build(&o, &mut f).unwrap();
            f
        })
        .collect();
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("parse", |b| b.iter(|| frames.iter().filter_map(|f| tcpseg::parse(LINKTYPE_ETHERNET, black_box(f))).count()));
    g.finish();

    let mut g = c.benchmark_group("flow_hash");
    let state = std::hash::RandomState::new();
    let key = [7u8; 40];
    g.bench_function("siphash13_40_bytes", |b| b.iter(|| black_box(state.hash_one(black_box(&key)))));
    g.finish();

    // A new action walks the table once (82k flows): the cost of `apply`.
    let mut g = c.benchmark_group("apply_full_table");
    let mut e = warm_enforcer();
    let mut out = Vec::new();
    g.bench_function("unrelated_quarantine", |b| {
        b.iter(|| {
            e.apply(3, black_box(unrelated), &mut out).unwrap();
            e.cancel(unrelated.id);
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_observe);
criterion_main!(benches);
