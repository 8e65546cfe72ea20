//! `ipc::FrameDecoder` fed arbitrary bytes in arbitrary pieces, decoding
//! both directions' messages, and `ipc::records` over every batch (and over
//! the raw bytes), as a worker or the uplink reads its Unix socket.
//! Input: [split point u16 LE][stream...]
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::ipc::{records, FrameDecoder, UplinkMsg, WorkerMsg, MAX_FRAME};

fn walk_records(buf: &[u8]) {
    let mut total = 0usize;
    for r in records(buf) {
        match r {
            Ok(rec) => {
                total += rec.data.len();
                assert!(total <= buf.len());
            }
            Err(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = u16::from_le_bytes([data[0], data[1]]) as usize;
    let stream = &data[2..];
    let cut = split.min(stream.len());

    let mut d = FrameDecoder::new();
    d.push(&stream[..cut]);
    let mut frames = 0;
    for part in [&stream[cut..], &[][..]] {
        loop {
            match d.next::<WorkerMsg>() {
                Ok(Some(WorkerMsg::Batch(b))) => {
                    assert!(b.records.len() <= MAX_FRAME);
                    walk_records(&b.records);
                    frames += 1;
                }
                Ok(Some(_)) => frames += 1,
                Ok(None) | Err(_) => break,
            }
            if frames > 10_000 {
                break;
            }
        }
        d.push(part);
    }

    // Through read_buf/commit, as a socket reader does.
    let mut d = FrameDecoder::new();
    let b = d.read_buf(stream.len().max(1));
    let n = stream.len().min(b.len());
    b[..n].copy_from_slice(&stream[..n]);
    d.commit(stream.len().max(1), n);
    for _ in 0..16 {
        if !matches!(d.next::<UplinkMsg>(), Ok(Some(_))) {
            break;
        }
    }

    walk_records(stream);
});
