//! Captured frames into the response-action enforcer, as a capture-worker
//! feeds it: `tcpseg::parse` must never panic on any bytes, and every
//! segment it accepts must go through the enforcer (with an action covering
//! everything seen) without panicking; every frame the enforcer decides to
//! send must build and parse back to the same addresses and numbers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::actions::{Action, ActionEnforcer, Target};
use ossensor_shared::tcpseg::{build, parse, LINKTYPE_ETHERNET};

fuzz_target!(|data: &[u8]| {
    let mut e = ActionEnforcer::new([2, 0, 0, 0, 0, 0xfe], 64, [7, 11]);
    let mut out = Vec::new();
    let mut frame = Vec::new();
    // The input is several frames, each prefixed by a one-byte length.
    let mut rest = data;
    let mut t = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let (f, tail) = tail.split_at((len as usize).min(tail.len()));
        rest = tail;
        t += 1_000_000;
        if let Some(seg) = parse(LINKTYPE_ETHERNET, f) {
            let _ = e.apply(t, Action { id: 1, target: Target::Quarantine { host: seg.src.0 }, until_ns: u64::MAX }, &mut out);
            e.observe(t, &seg, &mut out);
            e.tick(t, &mut out);
        }
        for d in out.drain(..) {
            if build(&d.segment, &mut frame).is_some() {
                let back = parse(LINKTYPE_ETHERNET, &frame).expect("our own frames parse");
                assert_eq!((back.src, back.dst, back.seq, back.ack, back.flags), (d.segment.src, d.segment.dst, d.segment.seq, d.segment.ack, d.segment.flags));
            }
        }
    }
});
