//! Who the children run as and what they may do.
//!
//! The supervisor starts as root. Each child drops to an unprivileged user
//! between fork and exec:
//! - capture-worker: keeps CAP_NET_RAW (as an ambient capability, so it
//!   survives exec of a binary without file capabilities) and nothing else;
//! - uplink: keeps no capability at all.
//!
//! Both get an empty bounding set (apart from the worker's CAP_NET_RAW),
//! no supplementary groups, no_new_privs, and a parent-death signal.
//!
//! The user: OSSENSOR_USER (a name or a numeric uid) if set; else the
//! `ossensor` system user if it exists (the packages create it); else
//! 65534 (`nobody`), which exists in every container image, even `FROM
//! scratch`, as a number.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

pub const NOBODY: Identity = Identity { uid: 65534, gid: 65534 };

/// Resolves OSSENSOR_USER (or the default) to a uid and gid; or why the
/// user cannot be used (the caller names the variable and the value).
pub fn resolve(user: Option<&str>) -> Result<Identity, String> {
    match user {
        Some(u) if u.bytes().all(|b| b.is_ascii_digit()) => {
            let uid: u32 = u.parse().map_err(|_| "not a valid uid".to_string())?;
            // A numeric uid may have no passwd entry (containers): use it as its own gid.
            let gid = User::from_uid(Uid::from_raw(uid)).ok().flatten().map_or(uid, |p| p.gid.as_raw());
            if uid == 0 {
                return Err("the children must not run as root".into());
            }
            Ok(Identity { uid, gid })
        }
        Some(u) => match User::from_name(u) {
            Ok(Some(p)) if p.uid.is_root() => Err("the children must not run as root".into()),
            Ok(Some(p)) => Ok(Identity { uid: p.uid.as_raw(), gid: p.gid.as_raw() }),
            _ => Err("no such user".into()),
        },
        None => match User::from_name("ossensor") {
            Ok(Some(p)) if !p.uid.is_root() => Ok(Identity { uid: p.uid.as_raw(), gid: p.gid.as_raw() }),
            _ => Ok(NOBODY),
        },
    }
}

/// What the supervisor must hold to start and stop its children, and why
/// (architecture.md, "Container"). As root it changes their uid, so it also
/// needs SETUID, SETGID, CHOWN (their runtime directory) and KILL (they are
/// another uid: SIGTERM and SIGKILL need it).
const ROOT_NEEDS: &[(Capability, &str)] = &[
    (Capability::CAP_NET_RAW, "the capture-workers' packet sockets"),
    (Capability::CAP_SETUID, "the children's uid"),
    (Capability::CAP_SETGID, "the children's gid"),
    (Capability::CAP_CHOWN, "the children's runtime directory"),
    (Capability::CAP_KILL, "stopping the children"),
];

/// Refuses a start that could only fail later: without these, every child
/// start fails with a bare EINVAL and is retried forever, or every stop hangs
/// on children the signals never reach (a container with --cap-drop=all, a
/// unit's CapabilityBoundingSet). Not root: the children keep our uid and
/// only CAP_NET_RAW is passed on.
pub fn check_capabilities(euid_is_root: bool, has: impl Fn(Capability) -> bool) -> Result<(), String> {
    let needed = if euid_is_root { ROOT_NEEDS } else { &ROOT_NEEDS[..1] };
    let missing: Vec<String> = needed.iter().filter(|(c, _)| !has(*c)).map(|(c, why)| format!("{c} ({why})")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = needed.iter().map(|(c, _)| c.to_string().trim_start_matches("CAP_").to_string()).collect();
    Err(format!(
        "missing {}: {}; {} needs {} (e.g. docker run --cap-add {})",
        if missing.len() == 1 { "capability" } else { "capabilities" },
        missing.join(", "),
        if euid_is_root { "as root, ossensor" } else { "ossensor" },
        all.join(", "),
        all.join(" --cap-add ")
    ))
}

/// [`check_capabilities`] for this process (its effective set).
pub fn check_own_capabilities() -> Result<(), String> {
    check_capabilities(nix::unistd::geteuid().is_root(), |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false))
}

/// What a child keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    CaptureWorker,
    Uplink,
}

impl Role {
    pub fn capabilities(self) -> &'static [Capability] {
        match self {
            Role::CaptureWorker => &[Capability::CAP_NET_RAW],
            Role::Uplink => &[],
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Role::CaptureWorker => "cap_net_raw",
            Role::Uplink => "none",
        }
    }
}

/// Runs in the child between fork and exec: the parent is single-threaded,
/// so the calls below are safe there. Any failure aborts the exec (the
/// child never runs with more than intended).
pub fn drop_in_child(role: Role, who: Identity) -> std::io::Result<()> {
    let keep: CapsHashSet = role.capabilities().iter().copied().collect();
    let err = |what: &str, e: &dyn std::fmt::Display| std::io::Error::other(format!("{what}: {e}"));
    // Signals the supervisor blocks (to read them from a signalfd) must
    // reach the child normally.
    nix::sys::signal::sigprocmask(nix::sys::signal::SigmaskHow::SIG_SETMASK, Some(&nix::sys::signal::SigSet::empty()), None)
        .map_err(|e| err("sigprocmask", &e))?;
    // The bounding set can only shrink with CAP_SETPCAP (root has it; a
    // container may not grant it, and no_new_privs below still stops any
    // gain through exec).
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).unwrap_or(false) {
        for cap in caps::runtime::thread_all_supported() {
            if !keep.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| err("dropping the bounding set", &e))?;
            }
        }
    }
    if nix::unistd::geteuid().is_root() {
        nix::unistd::setgroups(&[]).map_err(|e| err("setgroups", &e))?;
        let gid = Gid::from_raw(who.gid);
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| err("setresgid", &e))?;
        // Keep the permitted set across the uid change; trimmed just below.
        nix::sys::prctl::set_keepcaps(true).map_err(|e| err("PR_SET_KEEPCAPS", &e))?;
        let uid = Uid::from_raw(who.uid);
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| err("setresuid", &e))?;
    }
    caps::set(None, CapSet::Effective, &keep).map_err(|e| err("effective set", &e))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(|e| err("permitted set", &e))?;
    caps::set(None, CapSet::Inheritable, &keep).map_err(|e| err("inheritable set", &e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient set", &e))?;
    for cap in &keep {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| err("raising the ambient set", &e))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| err("PR_SET_NO_NEW_PRIVS", &e))?;
    // Set last: a credential change clears it. If the supervisor dies, so do we.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(|e| err("PR_SET_PDEATHSIG", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_default_users() {
        assert_eq!(resolve(Some("65534")).unwrap().uid, 65534);
        assert!(resolve(Some("0")).unwrap_err().contains("must not run as root"));
        assert!(resolve(Some("root")).unwrap_err().contains("must not run as root"));
        assert!(resolve(Some("no-such-user-here")).unwrap_err().contains("no such user"));
        let d = resolve(None).unwrap();
        assert_ne!(d.uid, 0);
    }

    #[test]
    fn missing_capabilities_are_named() {
        let all = |_| true;
        assert!(check_capabilities(true, all).is_ok());
        let e = check_capabilities(true, |c| c != Capability::CAP_KILL).unwrap_err();
        assert_eq!(
            e,
            "missing capability: CAP_KILL (stopping the children); as root, ossensor needs NET_RAW, SETUID, SETGID, CHOWN, KILL \
             (e.g. docker run --cap-add NET_RAW --cap-add SETUID --cap-add SETGID --cap-add CHOWN --cap-add KILL)"
        );
        let e = check_capabilities(true, |c| c == Capability::CAP_KILL).unwrap_err();
        assert!(e.starts_with("missing capabilities: CAP_NET_RAW (the capture-workers' packet sockets), CAP_SETUID"), "{e}");
        // Not root: the children keep the supervisor's uid; only NET_RAW is passed on.
        assert!(check_capabilities(false, |c| c == Capability::CAP_NET_RAW).is_ok());
        assert!(check_capabilities(false, |_| false).unwrap_err().starts_with("missing capability: CAP_NET_RAW"));
    }
}
