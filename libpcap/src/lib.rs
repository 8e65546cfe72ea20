//! libpcap for the sensor, in one crate so that only the processes that
//! need it link it (the collector does not): the compiler of tcpdump-syntax
//! filters (no privilege needed: the supervisor checks `BPF` with it, the
//! uplink compiles the filters it hands the workers), and, in its build
//! script, the link order of a static build (scripts/build-static.sh).

use ossensor_shared::bpf::{check, raise_snaplen, BpfInsn};

/// Compiles a tcpdump-syntax expression for a link type. An empty
/// expression accepts everything.
pub fn compile(expression: &str, linktype: i32) -> Result<Vec<BpfInsn>, String> {
    let dead = pcap::Capture::dead(pcap::Linktype(linktype)).map_err(|e| e.to_string())?;
    let program = dead.compile(expression, true).map_err(|e| e.to_string())?;
    let insns = program.get_instructions();
    // SAFETY: pcap::BpfInstruction is repr(transparent) over libpcap's
    // `struct bpf_insn` {u16, u8, u8, u32}, which is repr(C) like BpfInsn.
    let ours: &[BpfInsn] = unsafe { std::slice::from_raw_parts(insns.as_ptr() as *const BpfInsn, insns.len()) };
    const _: () = assert!(std::mem::size_of::<pcap::BpfInstruction>() == std::mem::size_of::<BpfInsn>());
    let mut out = ours.to_vec();
    raise_snaplen(&mut out);
    check(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ossensor_shared::bpf::{with_direction_guard, Side, SNAPLEN};

    #[test]
    fn empty_expression_accepts_everything_at_full_length() {
        let p = compile("", 1).unwrap();
        assert_eq!(p, vec![BpfInsn { code: 0x06, jt: 0, jf: 0, k: SNAPLEN }]);
    }

    #[test]
    fn bad_expression_is_an_error() {
        assert!(compile("tcp port eighty", 1).is_err());
        assert!(compile("not", 1).is_err());
    }

    #[test]
    fn compiled_programs_pass_the_checks_and_guard_keeps_them_valid() {
        for expr in ["", "tcp port 80", "udp or icmp", "not (host 198.18.0.1 and tcp port 443)"] {
            let p = compile(expr, 1).unwrap();
            for side in [Side::Sent, Side::Received] {
                let g = with_direction_guard(&p, side);
                check(&g).unwrap();
                assert_eq!(g.len(), p.len() + 3);
            }
        }
    }
}
