//! `chunk::decode` on an arbitrary body with arbitrary declared headers, in
//! both encodings, as the collector receives it from the network.
//! Input: [encoding selector u8][declared raw length u32 LE][declared packets u16 LE][body...]
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::chunk::{decode, Encoding, MAX_RAW_CHUNK};

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let encoding = if data[0] & 1 == 0 { Encoding::Zstd } else { Encoding::Identity };
    let mut declared_raw = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data[0] & 2 != 0 {
        // Mostly keep the declared size plausible, so the checker is reached.
        declared_raw %= 1 << 16;
    }
    let declared_packets = u16::from_le_bytes([data[5], data[6]]) as u64;
    let body = &data[7..];
    if let Ok((raw, summary)) = decode(encoding, body, declared_raw, declared_packets) {
        assert_eq!(raw.len(), declared_raw);
        assert!(raw.len() <= MAX_RAW_CHUNK);
        assert_eq!(summary.packets, declared_packets);
        assert!(ossensor_shared::pcapng::check_sections(&raw).is_ok());
    }
    // The identity body as its own declared length: reaches the pcapng checker.
    let _ = decode(Encoding::Identity, body, body.len(), declared_packets);
});
