//! `pcapng::check_sections` (and `for_each_packet`) on arbitrary bytes, as
//! the collector checks a decompressed chunk before appending it to a file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::pcapng::{check_sections, for_each_packet};

fuzz_target!(|data: &[u8]| {
    let checked = check_sections(data);
    let mut n = 0u64;
    let mut bytes = 0u64;
    let walked = for_each_packet(data, |p| {
        n += 1;
        bytes += p.data.len() as u64;
        assert!(p.data.len() as u64 <= p.orig_len as u64);
    });
    // The checker and the walker agree on what is well formed.
    assert_eq!(checked.is_ok(), walked.is_ok());
    if let Ok(summary) = checked {
        assert_eq!(summary.packets, n);
        assert_eq!(summary.packet_bytes, bytes);
        assert!(summary.sections >= 1);
    }
});
