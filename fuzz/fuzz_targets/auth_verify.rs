//! `auth::verify` with arbitrary header-like strings, as the collector
//! checks a request: every field of the signed metadata and the signature
//! come from the input (newline-separated), then the round trip must hold:
//! a signature made with the key verifies, one made with another key or for
//! other metadata does not. Also the nonce shape check and the replay window.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::auth::{sha256, sign, valid_nonce, verify, ReplayWindow, RequestMeta};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut f = text.split('\n');
    let mut next = || f.next().unwrap_or("").to_string();
    let key = next();
    let method = next();
    let path = next();
    let sensor_id = next();
    let epoch_s = next();
    let seq_s = next();
    let ts_s = next();
    let nonce = next();
    let signature = next();
    let body = next();
    let meta = RequestMeta {
        method,
        path,
        sensor_id,
        epoch: epoch_s.parse().unwrap_or(0),
        seq: seq_s.parse().unwrap_or(0),
        timestamp: ts_s.parse().unwrap_or(0),
        nonce: nonce.clone(),
        body_sha256: sha256(body.as_bytes()),
    };
    let key = key.as_bytes();

    // Arbitrary signature: must not panic; accepted only if it is the real one.
    if verify(key, &meta, &signature).is_ok() {
        assert_eq!(signature.to_ascii_lowercase(), sign(key, &meta));
    }
    let good = sign(key, &meta);
    assert!(verify(key, &meta, &good).is_ok());
    assert!(verify(b"\x00another key\x00", &meta, &good).is_err() || key == b"\x00another key\x00");
    let mut other = meta.clone();
    other.seq = other.seq.wrapping_add(1);
    assert!(verify(key, &other, &good).is_err());

    let _ = valid_nonce(&nonce);
    // The collector passes its own clock and the request's (attacker-chosen)
    // timestamp: fresh ones pass once, everything else is refused.
    let now: i64 = 1_800_000_000;
    let mut w = ReplayWindow::new(300, 4);
    let fresh = (meta.timestamp as i128 - now as i128).abs() <= 300;
    let first = w.check(now, meta.timestamp, &nonce);
    assert_eq!(first.is_ok(), fresh, "timestamp {} at now {now}: {first:?}", meta.timestamp);
    assert!(w.check(now, meta.timestamp, &nonce).is_err(), "replay accepted");
});
