//! What a process really holds, read from the text of `/proc/self/status`:
//! uids, gids, capability sets, no_new_privs. Every sensor process audits it
//! once it has dropped what it does not need (`privileges` event), so the
//! audit trail shows the kernel's view rather than what we meant to keep.

/// Capability names by bit number (linux/capability.h, up to 40).
const CAP_NAMES: [&str; 41] = [
    "cap_chown",
    "cap_dac_override",
    "cap_dac_read_search",
    "cap_fowner",
    "cap_fsetid",
    "cap_kill",
    "cap_setgid",
    "cap_setuid",
    "cap_setpcap",
    "cap_linux_immutable",
    "cap_net_bind_service",
    "cap_net_broadcast",
    "cap_net_admin",
    "cap_net_raw",
    "cap_ipc_lock",
    "cap_ipc_owner",
    "cap_sys_module",
    "cap_sys_rawio",
    "cap_sys_chroot",
    "cap_sys_ptrace",
    "cap_sys_pacct",
    "cap_sys_admin",
    "cap_sys_boot",
    "cap_sys_nice",
    "cap_sys_resource",
    "cap_sys_time",
    "cap_sys_tty_config",
    "cap_mknod",
    "cap_lease",
    "cap_audit_write",
    "cap_audit_control",
    "cap_setfcap",
    "cap_mac_override",
    "cap_mac_admin",
    "cap_syslog",
    "cap_wake_alarm",
    "cap_block_suspend",
    "cap_audit_read",
    "cap_perfmon",
    "cap_bpf",
    "cap_checkpoint_restore",
];

/// The privileges of one process, as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Privileges {
    /// Real, effective, saved uid.
    pub uid: [u32; 3],
    pub gid: [u32; 3],
    pub effective: u64,
    pub permitted: u64,
    pub bounding: u64,
    pub ambient: u64,
    pub no_new_privs: bool,
}

impl Privileges {
    /// Parses `/proc/<pid>/status`. Missing or malformed lines read as
    /// zero (nothing held), which is what an audit line should then say.
    pub fn from_status(text: &str) -> Privileges {
        let mut p = Privileges::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key {
                "Uid" => p.uid = ids(value),
                "Gid" => p.gid = ids(value),
                "CapEff" => p.effective = mask(value),
                "CapPrm" => p.permitted = mask(value),
                "CapBnd" => p.bounding = mask(value),
                "CapAmb" => p.ambient = mask(value),
                "NoNewPrivs" => p.no_new_privs = value == "1",
                _ => {}
            }
        }
        p
    }

    /// The audit fields: `uid`, `gid` (effective), `effective`, `permitted`,
    /// `bounding`, `ambient` (capability names, or `none`), `no_new_privs`.
    pub fn audit_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("uid", self.uid[1].to_string()),
            ("gid", self.gid[1].to_string()),
            ("effective", names(self.effective)),
            ("permitted", names(self.permitted)),
            ("bounding", names(self.bounding)),
            ("ambient", names(self.ambient)),
            ("no_new_privs", if self.no_new_privs { "1" } else { "0" }.to_string()),
        ]
    }
}

fn ids(value: &str) -> [u32; 3] {
    let mut out = [0; 3];
    for (slot, v) in out.iter_mut().zip(value.split_whitespace()) {
        *slot = v.parse().unwrap_or(0);
    }
    out
}

fn mask(value: &str) -> u64 {
    u64::from_str_radix(value, 16).unwrap_or(0)
}

/// Comma-separated capability names (`cap_N` for bits this table does not
/// know yet), or `none`.
pub fn names(set: u64) -> String {
    if set == 0 {
        return "none".into();
    }
    let mut out: Vec<String> = Vec::new();
    for bit in 0..64 {
        if set & (1u64 << bit) != 0 {
            out.push(CAP_NAMES.get(bit).map_or_else(|| format!("cap_{bit}"), |n| (*n).to_string()));
        }
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER: &str = "Name:\tossensor-captur\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n\
CapInh:\t0000000000002000\nCapPrm:\t0000000000002000\nCapEff:\t0000000000002000\nCapBnd:\t0000000000002000\n\
CapAmb:\t0000000000002000\nNoNewPrivs:\t1\nSeccomp:\t0\n";

    #[test]
    fn a_worker_holds_net_raw_only() {
        let p = Privileges::from_status(WORKER);
        assert_eq!(p.uid, [65534; 3]);
        let fields = p.audit_fields();
        let get = |k: &str| fields.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("effective"), "cap_net_raw");
        assert_eq!(get("bounding"), "cap_net_raw");
        assert_eq!(get("no_new_privs"), "1");
        assert_eq!(get("uid"), "65534");
    }

    #[test]
    fn names_cover_known_and_future_bits() {
        assert_eq!(names(0), "none");
        assert_eq!(names((1 << 12) | (1 << 13)), "cap_net_admin,cap_net_raw");
        assert_eq!(names(1 << 40), "cap_checkpoint_restore");
        assert_eq!(names(1 << 41), "cap_41");
    }

    #[test]
    fn garbage_reads_as_nothing_held() {
        let p = Privileges::from_status("CapEff:\tzz\nUid:\tx\n\u{0}");
        assert_eq!(p, Privileges::default());
    }
}
