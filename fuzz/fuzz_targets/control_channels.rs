//! What the supervisor, a capture-worker and the uplink read from each
//! other's control channels (`supervision`: one bincode datagram each), the
//! kernel's sock_diag dump answers the supervisor parses (`sockdiag`), and
//! the signed action set as the uplink reads it from the collector's JSON
//! (`control::SignedSetHex`, `signed::decode`).
//! Properties: no panic; whatever decodes encodes back to the same bytes
//! (one datagram, one meaning); a dump's sockets are all well formed.
//! Input: [selector u8][bytes...]
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::control::SignedSetHex;
use ossensor_shared::actions::signed;
use ossensor_shared::sockdiag;
use ossensor_shared::supervision::{self, FromUplink, FromWorker, ToUplink, ToWorker};

fn round_trip<T: serde::Serialize + for<'de> serde::Deserialize<'de>>(bytes: &[u8]) {
    if let Ok(m) = supervision::decode::<T>(bytes) {
        assert_eq!(supervision::encode(&m), bytes, "a datagram has one meaning");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    match selector % 4 {
        0 => {
            round_trip::<ToWorker>(bytes);
            round_trip::<FromWorker>(bytes);
            round_trip::<ToUplink>(bytes);
            round_trip::<FromUplink>(bytes);
        }
        1 => {
            let seq = 7;
            let part = sockdiag::parse_dump(bytes, seq);
            for s in part.sockets {
                assert!(s.family == sockdiag::AF_INET || s.family == sockdiag::AF_INET6);
                assert_eq!(s.local.0.is_ipv4(), s.family == sockdiag::AF_INET);
            }
        }
        2 => {
            if let Ok(set) = signed::decode(bytes) {
                assert_eq!(signed::encode(&set), bytes);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(bytes);
            let (payload, signature) = text.split_once('\n').unwrap_or((&text, ""));
            let hex = SignedSetHex { payload: payload.to_string(), signature: signature.to_string() };
            if let Some(set) = hex.to_set() {
                assert_eq!(SignedSetHex::from_set(&set).payload, payload.to_ascii_lowercase());
            }
        }
    }
});
