//! Response actions on this interface: the thin shell around
//! `ossensor_shared::actions::ActionEnforcer`. It feeds the enforcer every
//! captured TCP segment and sends, on the same interface, the resets and
//! probes it decides. The uplink relays the set of actions in force as the
//! collector signed it; the set is verified here, with the key the
//! supervisor pinned (`actions::signed`), before anything is enforced, so a
//! compromised uplink cannot order, extend or replay an action. Every
//! packet sent is a RST or an empty ACK built from a flow this worker saw
//! itself. For a flow that ends on this host, the supervisor is also asked
//! to destroy the local socket (a RST on the wire never reaches it).

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recv, send, MsgFlags};
use ossensor_host::log;
use ossensor_host::log::{self as slog, ACTIONS};
use ossensor_shared::actions::signed::{PublicKey, Refusal, SetVerifier, SignedSet};
use ossensor_shared::actions::{Action, ActionEnforcer, ActionStats, Injection, Prepared, Reason, BATCH};
use ossensor_shared::sockdiag;
use ossensor_shared::tcpseg::{self, LINKTYPE_ETHERNET, RST};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Connections remembered per interface (for quiet connections), and a
/// quarter as many unconfirmed flows: about 29 MB in all (docs/protocol.md
/// 1.11, "Flow tracking").
const MAX_FLOWS: usize = 65_536;
/// How often the host's own addresses are read again.
const LOCAL_REFRESH: Duration = Duration::from_secs(5);
/// How long to wait for the supervisor to destroy a local socket.
const DESTROY_WAIT_MS: u16 = 50;
/// A refused action set of one kind is logged and audited at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);

pub struct WorkerActions {
    enforcer: ActionEnforcer,
    verifier: SetVerifier,
    /// A set that came before any key was pinned: verified once one is.
    unverified: Option<SignedSet>,
    /// Refusals of sets, by kind, and when each was last logged.
    refused_logged: HashMap<&'static str, Instant>,
    linktype: i32,
    /// Segments captured and prepared (their flows' hashes computed and
    /// the look-ups' cache lines requested), not yet observed: observed a
    /// block at a time (`flush`), by when those lines have come.
    pending: Vec<Prepared>,
    decided: Vec<Injection>,
    frame: Vec<u8>,
    interface: String,
    local: Option<LocalSockets>,
}

/// A TCP connection's two ends: (local, remote).
type Ends = ((IpAddr, u16), (IpAddr, u16));

/// Connections that end on this host: a RST on the wire never reaches the
/// local socket, so the supervisor (which holds CAP_NET_ADMIN) is asked to
/// destroy it, over the channel it passed us.
struct LocalSockets {
    channel: OwnedFd,
    addresses: Vec<IpAddr>,
    refreshed: Instant,
    /// Asked recently: not asked again within a second.
    asked: HashMap<Ends, Instant>,
}

impl LocalSockets {
    fn refresh(&mut self) {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            self.addresses = addrs
                .filter_map(|a| a.address)
                .filter_map(|s| s.as_sockaddr_in().map(|v| IpAddr::from(v.ip())).or_else(|| s.as_sockaddr_in6().map(|v| IpAddr::from(v.ip()))))
                .collect();
        }
        self.refreshed = Instant::now();
        self.asked.retain(|_, t| t.elapsed() < Duration::from_secs(1));
        // Answers that came after their wait: drop them.
        let mut b = [0u8; 64];
        while recv(self.channel.as_raw_fd(), &mut b, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n > 0) {}
    }

    /// If one end of `ends` is on this host, asks the supervisor to destroy
    /// that socket and waits (briefly) for the answer, so the socket is
    /// gone before any packet of ours makes a peer answer it. Returns the
    /// (local, remote) pair and the errno (0: destroyed), or None.
    fn destroy_if_local(&mut self, ends: [(IpAddr, u16); 2]) -> Option<(Ends, i32)> {
        let (local, remote) = if self.addresses.contains(&ends[0].0) {
            (ends[0], ends[1])
        } else if self.addresses.contains(&ends[1].0) {
            (ends[1], ends[0])
        } else {
            return None;
        };
        if self.asked.get(&(local, remote)).is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return None;
        }
        let req = sockdiag::encode_worker_request(local, remote)?;
        self.asked.insert((local, remote), Instant::now());
        let fd = self.channel.as_raw_fd();
        match send(fd, &req, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL) {
            Ok(n) if n == req.len() => {}
            Ok(_) => return Some(((local, remote), libc::EIO)),
            Err(e) => return Some(((local, remote), e as i32)),
        }
        let mut fds = [PollFd::new(self.channel.as_fd(), PollFlags::POLLIN)];
        let mut answer = [0u8; 4];
        let answered =
            poll(&mut fds, PollTimeout::from(DESTROY_WAIT_MS)).is_ok_and(|n| n == 1) && recv(fd, &mut answer, MsgFlags::MSG_DONTWAIT).is_ok_and(|n| n == 4);
        let errno = if answered { i32::from_ne_bytes(answer) } else { libc::ETIMEDOUT };
        Some(((local, remote), errno))
    }
}

impl WorkerActions {
    /// None when the link type cannot carry what we would send (only
    /// Ethernet can).
    /// `destroy_fd`: the supervisor's socket-destroy channel, if it gave one;
    /// `key`: the action key it pinned, if one is pinned yet.
    pub fn new(interface: &str, linktype: i32, destroy_fd: Option<i32>, key: Option<PublicKey>) -> Option<WorkerActions> {
        if linktype != LINKTYPE_ETHERNET {
            return None;
        }
        let own_mac = interface_mac(interface).unwrap_or([0; 6]);
        let channel = destroy_fd.and_then(ossensor_host::child::inherited_fd);
        let local = channel.map(|channel| {
            let mut l = LocalSockets { channel, addresses: Vec::new(), refreshed: Instant::now(), asked: HashMap::new() };
            l.refresh();
            l
        });
        Some(WorkerActions {
            enforcer: ActionEnforcer::with_advice(own_mac, MAX_FLOWS, ossensor_host::random_key(), huge_pages),
            verifier: SetVerifier::new(key),
            unverified: None,
            refused_logged: HashMap::new(),
            linktype,
            pending: Vec::with_capacity(BATCH),
            decided: Vec::new(),
            frame: Vec::with_capacity(80),
            interface: interface.to_string(),
            local,
        })
    }

    /// One captured frame: prepared now, observed with the next ones, at
    /// the latest at `flush` (which everything else here does first).
    pub fn observe(&mut self, ts_ns: u64, frame: &[u8]) {
        if let Some(seg) = tcpseg::parse(self.linktype, frame) {
            self.pending.push(self.enforcer.prepare(ts_ns, &seg));
            if self.pending.len() == BATCH {
                self.flush();
            }
        }
    }

    /// Observes the segments captured so far.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            for p in &self.pending {
                self.enforcer.observe_prepared(p, &mut self.decided);
            }
            self.pending.clear();
        }
    }

    /// The action key the supervisor pinned after this worker started.
    pub fn set_key(&mut self, now_ns: u64, key: PublicKey) {
        self.flush();
        if self.verifier.key() != Some(key) {
            log!(ACTIONS, "{}: response actions are verified with the action key {key}", self.interface);
            self.verifier.set_key(key);
            if let Some(set) = self.unverified.take() {
                self.take_signed(now_ns, &set);
            }
        }
    }

    /// The set of actions in force as the collector signed it, relayed by
    /// the uplink. Once verified, new actions are applied (resetting and
    /// probing the known flows they cover) and missing ones cancelled. A
    /// refused set changes nothing.
    pub fn take_signed(&mut self, now_ns: u64, set: &SignedSet) {
        self.flush();
        match self.verifier.accept(now_ns, set) {
            Ok(accepted) => {
                log!(ACTIONS, "{}: action set version {} verified: {} in force", self.interface, accepted.version, accepted.actions.len());
                self.set_actions(now_ns, &accepted.actions);
            }
            Err(Refusal::NoKey) => {
                // The first registration pins the key; this set waits for it.
                log!(ACTIONS, "{}: an action set waits for the action key to be pinned", self.interface);
                self.unverified = Some(set.clone());
            }
            Err(refusal) => {
                let kind = refusal.kind();
                let due = self.refused_logged.get(kind).is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY);
                if due {
                    self.refused_logged.insert(kind, Instant::now());
                    log!(slog::BASIC, "{}: refused an action set: {refusal}; nothing of it is enforced", self.interface);
                    slog::audit(slog::AuditSeverity::Warning, "action_set_refused", &[("interface", &self.interface), ("reason", kind)]);
                }
            }
        }
    }

    /// Applies a verified set: actions are told apart by id (a set signed
    /// again later carries the same ids, and must not reset their flows
    /// again); new ones applied, missing ones cancelled.
    fn set_actions(&mut self, now_ns: u64, actions: &[Action]) {
        let current: Vec<Action> = self.enforcer.actions().to_vec();
        for old in &current {
            if !actions.iter().any(|a| a.id == old.id) && self.enforcer.cancel(old.id) {
                log!(ACTIONS, "{}: action {} cancelled", self.interface, old.id);
            }
        }
        for a in actions {
            if current.iter().any(|c| c.id == a.id) {
                continue;
            }
            if let Err(e) = self.enforcer.apply(now_ns, *a, &mut self.decided) {
                log!(slog::BASIC, "{}: action {} refused: {e}", self.interface, a.id);
                continue;
            }
            let until = ossensor_shared::timefmt::rfc3339_millis(a.until_ns);
            log!(ACTIONS, "{}: action {} applied: {:?} until {until}", self.interface, a.id, a.target);
            slog::audit(
                slog::AuditSeverity::Notice,
                "action_applied",
                &[("interface", &self.interface), ("id", &a.id.to_string()), ("target", &format!("{:?}", a.target)), ("until", &until)],
            );
        }
    }

    pub fn tick(&mut self, now_ns: u64) {
        self.flush();
        if let Some(l) = self.local.as_mut().filter(|l| l.refreshed.elapsed() >= LOCAL_REFRESH) {
            l.refresh();
        }
        for id in self.enforcer.tick(now_ns, &mut self.decided) {
            log!(ACTIONS, "{}: action {id} expired", self.interface);
        }
    }

    pub fn stats(&self) -> &BTreeMap<u64, ActionStats> {
        self.enforcer.stats()
    }

    /// Sends what the enforcer decided, with `inject`.
    pub fn send(&mut self, mut inject: impl FnMut(&[u8]) -> Result<(), String>) {
        self.flush();
        // Local sockets first: destroyed before our packets reach a peer.
        let matched: Vec<_> = self.enforcer.take_matched().collect();
        if let Some(l) = self.local.as_mut() {
            for m in matched {
                if let Some(((local, remote), errno)) = l.destroy_if_local(m.ends) {
                    let how = if errno == 0 { "destroyed".to_string() } else { format!("not destroyed: {}", std::io::Error::from_raw_os_error(errno)) };
                    log!(ACTIONS, "{}: action {}: local socket {}:{} <-> {}:{} {how}", self.interface, m.action, local.0, local.1, remote.0, remote.1);
                }
            }
        }
        for d in self.decided.drain(..) {
            if tcpseg::build(&d.segment, &mut self.frame).is_none() {
                continue;
            }
            let result = inject(&self.frame);
            if slog::enabled(ACTIONS) {
                let s = &d.segment;
                let what = match d.reason {
                    Reason::Reset if s.flags & RST != 0 => "reset",
                    Reason::RefuseHandshake => "reset (new connection)",
                    _ => "probe",
                };
                log!(
                    ACTIONS,
                    "{}: action {}: {what} sent to {}:{} (from {}:{}) seq {} ack {}{}",
                    self.interface,
                    d.action,
                    s.dst.0,
                    s.dst.1,
                    s.src.0,
                    s.src.1,
                    s.seq,
                    s.ack,
                    result.err().map(|e| format!(" FAILED: {e}")).unwrap_or_default()
                );
            }
        }
    }
}

/// The interface's MAC address, the source of every frame we send.
fn interface_mac(interface: &str) -> Option<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

/// The enforcer's large tables on huge pages where the kernel gives them
/// (each random read of a 4 KiB-paged table also misses the TLB).
fn huge_pages(memory: &mut [std::mem::MaybeUninit<u8>]) {
    // SAFETY: advice on memory the enforcer just allocated and owns; its
    // only effect is which pages back it. Refused (THP off): ordinary pages.
    unsafe { libc::madvise(memory.as_mut_ptr().cast(), memory.len(), libc::MADV_HUGEPAGE) };
}
