//! The uplink's per-chunk work, one piece at a time: building a pcapng
//! section, compressing it (zstd levels compared by speed and ratio), and
//! signing the request (SHA-256 of the body, then HMAC).
//!
//! Frames come from a real capture when BENCH_PCAP names a classic pcap
//! file (e.g. ../shared/bench/traffic/make-traffic.sh /tmp/mixed-mtu.pcap mtu),
//! otherwise from a synthetic mix: full-size frames of random bytes (like
//! TLS) and small repetitive ones (like DNS and ACKs). Ratios printed for the
//! synthetic mix say little; speeds are comparable.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ossensor_shared::auth::{self, RequestMeta};
use ossensor_shared::chunk;
use ossensor_shared::pcapng::{Direction, SectionWriter};
use std::hint::black_box;

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

criterion_group!(benches, bench);
criterion_main!(benches);
