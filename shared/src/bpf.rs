//! Classic BPF programs: compiled from tcpdump syntax by libpcap outside the
//! privileged worker (`ossensor-libpcap`; compiling needs no privilege),
//! then handed to the worker, which only checks them, prefixes the
//! direction guard and attaches the result; the kernel verifies it.

use serde::{Deserialize, Serialize};

/// One classic BPF instruction, laid out as Linux's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Linux's BPF_MAXINSNS.
pub const MAX_INSNS: usize = 4096;
/// Snap length every accepting `ret` is raised to: libpcap's compiler caps it
/// at 65,535 on a dead handle, and GSO frames on veths reach 65,226 bytes (BIG
/// TCP more).
pub const SNAPLEN: u32 = 262_144;

const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const SKF_AD_OFF: u32 = 0xFFFF_F000; // -0x1000
const SKF_AD_PKTTYPE: u32 = 4;
const PACKET_OUTGOING: u32 = 4;

/// Which packets one capture handle takes: the worker opens one handle per
/// direction so each packet keeps its direction (libpcap does not report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Everything the host receives or sees pass (not PACKET_OUTGOING).
    Received,
    /// What the host sends (PACKET_OUTGOING).
    Sent,
}

/// Joins two filters as the spec defines: `(a) and (b)`, either may be empty.
pub fn combine(collector: &str, user: &str) -> String {
    match (collector.trim(), user.trim()) {
        ("", "") => String::new(),
        (c, "") => c.to_string(),
        ("", u) => u.to_string(),
        (c, u) => format!("({c}) and ({u})"),
    }
}

/// Raises every accepting `ret` to [`SNAPLEN`] (libpcap caps it on a dead handle).
pub fn raise_snaplen(program: &mut [BpfInsn]) {
    for insn in program {
        if insn.code == BPF_RET_K && insn.k != 0 {
            insn.k = SNAPLEN;
        }
    }
}

/// Structural checks the worker applies before prefixing: size and jump
/// targets. The kernel verifies the rest.
pub fn check(program: &[BpfInsn]) -> Result<(), String> {
    if program.is_empty() {
        return Err("empty BPF program".into());
    }
    if program.len() + 3 > MAX_INSNS {
        return Err(format!("BPF program of {} instructions is too long", program.len()));
    }
    for (i, insn) in program.iter().enumerate() {
        if insn.code & 0x07 == 0x05 {
            // BPF_JMP: conditional jumps use jt/jf, BPF_JA uses k.
            let far = if insn.code == 0x05 { insn.k as usize } else { insn.jt.max(insn.jf) as usize };
            if i + 1 + far >= program.len() {
                return Err(format!("BPF jump at instruction {i} leaves the program"));
            }
        }
    }
    if program.last().map(|l| l.code & 0x07) != Some(0x06) {
        return Err("BPF program does not end with a return".into());
    }
    Ok(())
}

/// The program one handle attaches: a guard that keeps only `side`'s packet
/// types, then `program`. Jumps in `program` are relative, so they hold.
pub fn with_direction_guard(program: &[BpfInsn], side: Side) -> Vec<BpfInsn> {
    let (jt, jf) = match side {
        Side::Sent => (1, 0),     // outgoing: skip the reject
        Side::Received => (0, 1), // outgoing: fall into the reject
    };
    let mut out = Vec::with_capacity(program.len() + 3);
    out.push(BpfInsn { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: SKF_AD_OFF + SKF_AD_PKTTYPE });
    out.push(BpfInsn { code: BPF_JEQ_K, jt, jf, k: PACKET_OUTGOING });
    out.push(BpfInsn { code: BPF_RET_K, jt: 0, jf: 0, k: 0 });
    out.extend_from_slice(program);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_parenthesises_each_side() {
        assert_eq!(combine("not port 443", "tcp"), "(not port 443) and (tcp)");
        assert_eq!(combine("", " udp "), "udp");
        assert_eq!(combine("a", ""), "a");
        assert_eq!(combine("", ""), "");
    }

    #[test]
    fn check_refuses_wild_jumps() {
        let p = vec![BpfInsn { code: BPF_JEQ_K, jt: 9, jf: 0, k: 0 }, BpfInsn { code: BPF_RET_K, jt: 0, jf: 0, k: 1 }];
        assert!(check(&p).is_err());
        assert!(check(&[]).is_err());
    }
}
