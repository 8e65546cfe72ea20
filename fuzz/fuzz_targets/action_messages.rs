//! The JSON that crosses the response-action WebSocket and the operators'
//! API, from either side: `ToSensor` (read by the uplink), `FromSensor` (read
//! by the collector) and `NewAction` (read by the collector's API). Parsing
//! must never panic, and whatever parses must serialise and parse back to
//! the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::control::{FromSensor, NewAction, ToSensor};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<T>(data) {
        let text = serde_json::to_string(&v).expect("serialises");
        assert_eq!(serde_json::from_str::<T>(&text).expect("parses back"), v);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<ToSensor>(data);
    round_trip::<FromSensor>(data);
    round_trip::<NewAction>(data);
});
