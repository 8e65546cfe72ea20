//! What a capture-worker does with the bytes on its command channel from
//! the uplink (capture-worker/src/link.rs and main.rs): frames read in
//! pieces of up to 64 KiB through `read_buf`/`commit`, decoded as
//! `UplinkMsg`; a malformed one ends the connection (the worker refuses it
//! and connects again). `SetFilter`: `bpf::check`, then the direction guard
//! for each handle, as `InterfaceCapture::attach` does before the kernel
//! sees the program. `Actions`: the signed set verified with a pinned key
//! (as `WorkerActions::take_signed` does) and, whatever the verdict, its
//! payload decoded and the decoded set applied to an enforcer that has seen
//! no flow (cancel the missing, apply the new), then ticked.
//! Properties: a checked program stays within the kernel's limit once
//! guarded and every jump of the guarded program lands inside it; no set
//! the fuzzer makes verifies (it holds no key); actions for flows never
//! seen make the worker send nothing, at any time.
//! Input: [piece size u16 LE][stream...]
#![no_main]
use libfuzzer_sys::fuzz_target;
use ossensor_shared::bpf::{self, Side, MAX_INSNS};
use ossensor_shared::ipc::{FrameDecoder, UplinkMsg};
use ossensor_shared::actions::{Action, ActionEnforcer};
use ossensor_shared::actions::signed::{self, PublicKey, SetVerifier};

fn guarded_ok(program: &[bpf::BpfInsn]) {
    if bpf::check(program).is_err() {
        return;
    }
    for side in [Side::Received, Side::Sent] {
        let g = bpf::with_direction_guard(program, side);
        assert_eq!(g.len(), program.len() + 3);
        assert!(g.len() <= MAX_INSNS, "a checked program passes the kernel's limit once guarded");
        assert!(bpf::check(&g).is_ok(), "the guarded program is still well formed");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let piece = (u16::from_le_bytes([data[0], data[1]]) as usize % 65536).max(1);
    let stream = &data[2..];
    let mut decoder = FrameDecoder::new();
    let mut enforcer = ActionEnforcer::new([2, 0, 0, 0, 0, 1], 64, [7, 11]);
    let mut out = Vec::new();
    let mut now: u64 = 1_800_000_000_000_000_000;
    // A valid Ed25519 point (the key of an all-zero seed): signatures by
    // anyone else fail.
    let pinned = PublicKey::parse("ed25519:3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29").expect("a key");
    let mut verifier = SetVerifier::new(Some(pinned));
    'read: for part in stream.chunks(piece) {
        let buf = decoder.read_buf(64 * 1024);
        let n = part.len().min(buf.len());
        buf[..n].copy_from_slice(&part[..n]);
        decoder.commit(64 * 1024, n);
        loop {
            match decoder.next::<UplinkMsg>() {
                Ok(Some(UplinkMsg::SetFilter { program })) => guarded_ok(&program),
                Ok(Some(UplinkMsg::Actions { set })) => {
                    assert!(verifier.accept(now, &set).is_err(), "only the key's holder signs sets");
                    let Ok(decoded) = signed::decode(&set.payload) else { continue };
                    let actions = decoded.actions;
                    let current: Vec<Action> = enforcer.actions().to_vec();
                    for old in &current {
                        if !actions.iter().any(|a| a.id == old.id) {
                            enforcer.cancel(old.id);
                        }
                    }
                    for a in &actions {
                        if !current.contains(a) {
                            let _ = enforcer.apply(now, *a, &mut out);
                        }
                    }
                    now = now.wrapping_add(1_000_000_000);
                    enforcer.tick(now, &mut out);
                    assert!(out.is_empty(), "nothing sent for flows never seen");
                    assert_eq!(enforcer.flows(), 0);
                    assert_eq!(enforcer.take_matched().count(), 0);
                }
                Ok(None) => break,
                // The worker drops the connection here.
                Err(_) => break 'read,
            }
        }
    }
});
