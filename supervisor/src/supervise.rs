//! The supervisor's event loop: one thread, woken by a signalfd (SIGCHLD,
//! SIGTERM, SIGINT), by the netlink link watch, or by the next restart
//! that falls due.
//!
//! Stopping order on SIGTERM: the workers first (each flushes its last
//! batch to the uplink), then the uplink (it drains them, closes its last
//! chunk and delivers its spool), then the supervisor exits 0.

use crate::action_key::{Offer, Pin};
use crate::children::{self, Output};
use crate::config::Config;
use crate::interfaces;
use crate::netlink::LinkWatch;
use crate::privileges::{Identity, Role};
use crate::restart::Backoff;
use crate::sockdestroy::{self, Channel, Destroyer};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use ossensor_host::log;
use ossensor_host::log::{audit, AuditSeverity, BASIC};
use ossensor_host::seqpacket::{self, Received};
use ossensor_shared::actions::signed::PublicKey;
use ossensor_shared::supervision::{self, FromUplink, FromWorker, ToUplink, ToWorker, MAX_MESSAGE, UPLINK_CONTROL_FD, WORKER_CONTROL_FD};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Child;
use std::time::{Duration, Instant};

const WORKER_STOP_GRACE: Duration = Duration::from_secs(5);
/// The uplink drains for up to 2 s and delivers for up to 6 s.
const UPLINK_STOP_GRACE: Duration = Duration::from_secs(12);

struct Slot {
    child: Option<Child>,
    /// Kernel ring bytes its running worker holds (0 when not running).
    ring: u64,
    /// Our end of its control channel (`supervision`): the connections
    /// between workers and the uplink, the action key.
    control: Option<OwnedFd>,
    /// A worker's socket-destroy channel (response actions), our end.
    destroys: Option<Channel>,
    backoff: Backoff,
    /// When to start again (None while running or retired).
    restart_at: Option<Instant>,
    /// Its interface is gone (said once).
    absent: bool,
}

impl Slot {
    fn new() -> Slot {
        Slot { child: None, ring: 0, control: None, destroys: None, backoff: Backoff::default(), restart_at: Some(Instant::now()), absent: false }
    }
}

pub struct Supervisor {
    cfg: Config,
    who: Identity,
    log_file: Option<File>,
    uplink: Slot,
    /// Interface name → its worker.
    workers: BTreeMap<String, Slot>,
    signals: SignalFd,
    links: LinkWatch,
    /// With response actions: destroys local sockets for the workers.
    destroyer: Option<Destroyer>,
    /// The collector's action key, as pinned.
    pin: Pin,
}

/// Which control channel is readable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ready {
    Uplink,
    Worker(String),
    Destroys(String),
}

impl Supervisor {
    pub fn new(cfg: Config, who: Identity, interfaces: Vec<String>) -> Result<Supervisor, String> {
        prepare_runtime_dir(&cfg.runtime_dir, who)?;
        let pin = Pin::load(cfg.action_key, &cfg.state_dir).map_err(|e| format!("OSSENSOR_STATE_DIR: {e}"))?;
        match (pin.key(), pin.source()) {
            (Some(k), Some(source)) => {
                log!(BASIC, "response actions are verified with the collector's action key {k} (pinned by {})", source.name());
                audit(AuditSeverity::Notice, "action_key", &[("key", &k.to_string()), ("source", source.name())]);
            }
            _ => {
                log!(BASIC, "no action key pinned yet: the key the collector names at the first registration will be pinned in {}", pin.state_file().display())
            }
        }
        let log_file = match &cfg.logfile {
            Some(p) => {
                Some(std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| format!("OSSENSOR_LOGFILE_PATH={:?}: {e}", p.display()))?)
            }
            None => None,
        };
        let mut mask = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
            mask.add(s);
        }
        mask.thread_block().map_err(|e| format!("blocking signals: {e}"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| format!("signalfd: {e}"))?;
        let links = LinkWatch::open()?;
        let workers = interfaces.into_iter().map(|i| (i, Slot::new())).collect();
        let destroyer = match cfg.antigena_enabled {
            true => match Destroyer::open() {
                Ok(d) => Some(d),
                Err(e) => {
                    log!(BASIC, "response actions will not destroy local sockets: {e}");
                    None
                }
            },
            false => None,
        };
        Ok(Supervisor { cfg, who, log_file, uplink: Slot::new(), workers, signals, links, destroyer, pin })
    }

    pub fn run(&mut self) -> Result<(), String> {
        loop {
            self.start_due();
            let timeout = self.next_due().map_or(Duration::from_secs(5), |t| t.saturating_duration_since(Instant::now()));
            let (sig_ready, link_ready, channels) = {
                let mut fds = vec![PollFd::new(self.signals.as_fd(), PollFlags::POLLIN), PollFd::new(self.links.as_fd(), PollFlags::POLLIN)];
                let mut which = Vec::new();
                if let Some(c) = &self.uplink.control {
                    fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                    which.push(Ready::Uplink);
                }
                for (name, slot) in &self.workers {
                    if let Some(c) = &slot.control {
                        fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                        which.push(Ready::Worker(name.clone()));
                    }
                    if let Some(d) = &slot.destroys {
                        fds.push(PollFd::new(d.fd.as_fd(), PollFlags::POLLIN));
                        which.push(Ready::Destroys(name.clone()));
                    }
                }
                let ms = timeout.as_millis().min(5000) as u16;
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(format!("poll: {e}")),
                }
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                let channels: Vec<Ready> = which.into_iter().zip(&fds[2..]).filter(|(_, f)| ready(f)).map(|(w, _)| w).collect();
                (ready(&fds[0]), ready(&fds[1]), channels)
            };
            for ch in channels {
                match ch {
                    Ready::Uplink => self.serve_uplink(),
                    Ready::Worker(name) => self.serve_worker(&name),
                    Ready::Destroys(name) => {
                        if let (Some(d), Some(slot)) = (self.destroyer.as_mut(), self.workers.get_mut(&name)) {
                            if let Some(c) = slot.destroys.as_mut() {
                                c.serve(&format!("capture-worker for {name}"), d);
                            }
                        }
                    }
                }
            }
            if sig_ready {
                let mut stop = None;
                while let Ok(Some(info)) = self.signals.read_signal() {
                    let sig = info.ssi_signo as i32;
                    if sig == libc::SIGTERM || sig == libc::SIGINT {
                        stop = Some(if sig == libc::SIGTERM { "SIGTERM" } else { "SIGINT" });
                    }
                }
                self.reap();
                if let Some(name) = stop {
                    return self.shutdown(name);
                }
            }
            if link_ready && self.links.drain() {
                self.rescan();
            }
        }
    }

    /// What the uplink says: the action key the collector named.
    fn serve_uplink(&mut self) {
        let mut buf = [0u8; MAX_MESSAGE];
        loop {
            let Some(control) = self.uplink.control.as_ref() else { return };
            let msg = match seqpacket::recv(control.as_fd(), &mut buf, false) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Ok(Received::Closed) | Err(_) => {
                    // Closed (the uplink is exiting) or broken: no more
                    // from this one; the next uplink gets a new channel.
                    self.uplink.control = None;
                    return;
                }
                Ok(Received::Datagram { len, .. }) => supervision::decode::<FromUplink>(&buf[..len]),
            };
            match msg {
                Ok(FromUplink::ActionKey(key)) => self.offered(key),
                Err(e) => log!(BASIC, "refused a malformed message from the uplink: {e}"),
            }
        }
    }

    /// The collector named `key` at a registration.
    fn offered(&mut self, key: PublicKey) {
        match self.pin.offer(key) {
            Offer::Same => {}
            Offer::Pinned { saved } => {
                let where_ = match &saved {
                    Ok(()) => format!("saved in {}", self.pin.state_file().display()),
                    Err(e) => format!("NOT saved, pinned until the sensor stops: {e}"),
                };
                log!(BASIC, "pinned the collector's action key {key} at the first registration ({where_})");
                audit(
                    AuditSeverity::Notice,
                    "action_key_pinned",
                    &[("key", &key.to_string()), ("source", "first_registration"), ("saved", if saved.is_ok() { "yes" } else { "no" })],
                );
                let msg = supervision::encode(&ToWorker::ActionKey(key));
                for (name, slot) in &self.workers {
                    if let Some(c) = &slot.control {
                        if let Err(e) = seqpacket::send(c.as_fd(), &msg, None) {
                            log!(BASIC, "capture-worker for {name}: cannot hand over the action key: {e}");
                        }
                    }
                }
            }
            Offer::Refused { pinned, first } => {
                if first {
                    log!(
                        BASIC,
                        "the collector names action key {key}, but {pinned} is pinned: actions signed with it are refused \
                         (set OSSENSOR_ACTION_KEY, or delete {} while the sensor is stopped, to pin another)",
                        self.pin.state_file().display()
                    );
                    audit(AuditSeverity::Warning, "action_key_mismatch", &[("offered", &key.to_string()), ("pinned", &pinned.to_string())]);
                }
            }
        }
    }

    /// What a worker says: its connection to the uplink failed.
    fn serve_worker(&mut self, name: &str) {
        let mut buf = [0u8; MAX_MESSAGE];
        loop {
            let Some(control) = self.workers.get(name).and_then(|s| s.control.as_ref()) else { return };
            let msg = match seqpacket::recv(control.as_fd(), &mut buf, false) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Ok(Received::Closed) | Err(_) => {
                    if let Some(slot) = self.workers.get_mut(name) {
                        slot.control = None;
                    }
                    return;
                }
                Ok(Received::Datagram { len, .. }) => supervision::decode::<FromWorker>(&buf[..len]),
            };
            match msg {
                Ok(FromWorker::NeedUplink) => self.connect(name),
                Err(e) => log!(BASIC, "refused a malformed message from the capture-worker for {name}: {e}"),
            }
        }
    }

    /// Connects `name`'s worker to the uplink: a stream socket pair, one
    /// end to each. The uplink's end goes first: a worker only gets a
    /// connection the uplink holds the other end of.
    fn connect(&mut self, name: &str) {
        let Some(slot) = self.workers.get(name) else { return };
        let (Some(to_uplink), Some(to_worker), Some(pid)) = (&self.uplink.control, &slot.control, slot.child.as_ref().map(Child::id)) else {
            return; // the uplink's start connects every running worker
        };
        let result = seqpacket::stream_pair().and_then(|(w, u)| {
            seqpacket::send(to_uplink.as_fd(), &supervision::encode(&ToUplink::Worker { interface: name.to_string(), pid }), Some(u.as_fd()))?;
            seqpacket::send(to_worker.as_fd(), &supervision::encode(&ToWorker::Uplink), Some(w.as_fd()))
        });
        if let Err(e) = result {
            log!(BASIC, "cannot connect the capture-worker for {name} to the uplink: {e}");
        }
    }

    fn output(&self) -> Output<'_> {
        self.log_file.as_ref().map_or(Output::Inherit, Output::File)
    }

    fn start_due(&mut self) {
        let now = Instant::now();
        if self.uplink.restart_at.is_some_and(|t| t <= now) {
            let mut cfg = self.cfg.uplink_config(UPLINK_CONTROL_FD);
            // The supervisor hands children the open log file as stdout.
            cfg.log.path = None;
            let result = seqpacket::pair().map_err(|e| format!("uplink control channel: {e}")).and_then(|(ours, theirs)| {
                let child = children::spawn(Role::Uplink, self.who, &cfg, self.output(), &[(UPLINK_CONTROL_FD, theirs.as_raw_fd())])?;
                Ok((child, ours))
            });
            let result = result.map(|(child, ours)| {
                self.uplink.control = Some(ours);
                child
            });
            if started(&mut self.uplink, "uplink", Role::Uplink, self.who, result, now) {
                // A new uplink: every running worker gets a connection to it.
                let names: Vec<String> = self.workers.iter().filter(|(_, s)| s.child.is_some()).map(|(n, _)| n.clone()).collect();
                for name in names {
                    self.connect(&name);
                }
            }
        }
        let due: Vec<String> = self.workers.iter().filter(|(_, s)| s.restart_at.is_some_and(|t| t <= now)).map(|(n, _)| n.clone()).collect();
        if due.is_empty() {
            return; // this runs on every wake-up: no /sys scan unless needed
        }
        let Some(present) = present_interfaces() else { return };
        let mut starting = due.iter().filter(|n| present.iter().any(|i| &i.name == *n && i.is_up)).count();
        for name in due {
            let slot = self.workers.get_mut(&name).expect("present");
            if !present.iter().any(|i| i.name == name && i.is_up) {
                // libpcap cannot open it now; the link watch starts the
                // worker when the interface comes (back) up.
                log!(BASIC, "interface {name} is down or gone: its capture-worker starts when it is up");
                slot.restart_at = None;
                continue;
            }
            let in_use: u64 = self.workers.values().filter(|s| s.child.is_some()).map(|s| s.ring).sum();
            let ring = self.cfg.ring_share(in_use, starting);
            starting = starting.saturating_sub(1);
            let mut cfg = self.cfg.worker_config(&name, WORKER_CONTROL_FD, ring, self.pin.key());
            cfg.log.path = None;
            // A fresh channel per start: a restarted worker never reads its
            // predecessor's answers.
            let channel = match (&self.destroyer, sockdestroy::channel()) {
                (Some(_), Ok(pair)) => Some(pair),
                (Some(_), Err(e)) => {
                    log!(BASIC, "capture-worker for {name}: no socket-destroy channel: {e}");
                    None
                }
                (None, _) => None,
            };
            cfg.destroy_fd = channel.as_ref().map(|_| sockdestroy::WORKER_FD);
            let result = seqpacket::pair().map_err(|e| format!("capture-worker for {name}: control channel: {e}")).and_then(|(ours, theirs)| {
                let mut pass = vec![(WORKER_CONTROL_FD, theirs.as_raw_fd())];
                pass.extend(channel.as_ref().map(|(_, w)| (sockdestroy::WORKER_FD, w.as_raw_fd())));
                let child = children::spawn(Role::CaptureWorker, self.who, &cfg, self.output(), &pass)?;
                Ok((child, ours))
            });
            let slot = self.workers.get_mut(&name).expect("present");
            let result = result.map(|(child, ours)| {
                slot.control = Some(ours);
                child
            });
            // Our copies of the worker's ends close here.
            slot.destroys = channel.map(|(ours, _)| Channel::new(ours));
            slot.ring = ring;
            if started(slot, &format!("capture-worker for {name}"), Role::CaptureWorker, self.who, result, now) {
                self.connect(&name);
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        std::iter::once(&self.uplink).chain(self.workers.values()).filter_map(|s| s.restart_at).min()
    }

    /// Collects every child that exited and schedules its restart.
    fn reap(&mut self) {
        let now = Instant::now();
        // Without a listing, assume the interface is still usable: the
        // restart checks again before starting the worker.
        let present = present_interfaces();
        reap_slot(&mut self.uplink, "uplink", now, true);
        for (name, slot) in &mut self.workers {
            let usable = present.as_ref().is_none_or(|p| p.iter().any(|i| &i.name == name && i.is_up));
            reap_slot(slot, &format!("capture-worker for {name}"), now, usable);
        }
    }

    /// Starts workers for interfaces that appeared and passes the rules;
    /// retires workers whose interface vanished.
    fn rescan(&mut self) {
        let Some(present) = present_interfaces() else { return };
        if self.cfg.devices.any {
            let default_if = interfaces::read_default_route_interface();
            for iface in &present {
                if !self.workers.contains_key(&iface.name) && interfaces::passes(&self.cfg.devices, iface, default_if.as_deref()) {
                    log!(BASIC, "interface {} appeared: starting its capture-worker", iface.name);
                    self.workers.insert(iface.name.clone(), Slot::new());
                }
            }
        }
        let now = Instant::now();
        for (name, slot) in &mut self.workers {
            let there = present.iter().any(|i| &i.name == name);
            let up = present.iter().any(|i| &i.name == name && i.is_up);
            if !there {
                if !slot.absent {
                    log!(BASIC, "interface {name} disappeared: retiring its capture-worker");
                    slot.absent = true;
                }
                if let Some(mut c) = slot.child.take() {
                    terminate(&mut c, WORKER_STOP_GRACE);
                }
                slot.control = None;
                slot.destroys = None;
                slot.restart_at = None;
                continue;
            }
            slot.absent = false;
            if up && slot.child.is_none() && slot.restart_at.is_none() {
                log!(BASIC, "interface {name} is up: starting its capture-worker");
                slot.restart_at = Some(now);
            }
        }
        // Without NETWORK_DEVICE_ANY, interfaces captured at start may come
        // back; new ones are not added. With it, vanished ones are forgotten.
        if self.cfg.devices.any {
            self.workers.retain(|name, slot| slot.child.is_some() || slot.restart_at.is_some() || present.iter().any(|i| &i.name == name));
        }
    }

    fn shutdown(&mut self, signal: &str) -> Result<(), String> {
        log!(BASIC, "{signal} received: stopping the capture-workers, then the uplink");
        audit(AuditSeverity::Notice, "stop", &[("signal", signal)]);
        let mut workers: Vec<Child> = self.workers.values_mut().filter_map(|s| s.child.take()).collect();
        for c in &workers {
            send_term(c);
        }
        let deadline = Instant::now() + WORKER_STOP_GRACE;
        for c in &mut workers {
            wait_until(c, deadline);
        }
        if let Some(mut up) = self.uplink.child.take() {
            send_term(&up);
            wait_until(&mut up, Instant::now() + UPLINK_STOP_GRACE);
        }
        log!(BASIC, "stopped");
        Ok(())
    }
}

/// The interfaces now, retried briefly: a listing can fail while the
/// kernel is changing them. None (logged) if it keeps failing; callers then
/// change nothing and act on the next event.
fn present_interfaces() -> Option<Vec<interfaces::Interface>> {
    let mut last = None;
    for _ in 0..3 {
        match interfaces::list_system() {
            Ok(p) => return Some(p),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    log!(BASIC, "cannot list interfaces: {}", last.map_or(String::new(), |e| e.to_string()));
    None
}

/// Records a start; whether the child runs.
fn started(slot: &mut Slot, what: &str, role: Role, who: Identity, result: Result<Child, String>, now: Instant) -> bool {
    match result {
        Ok(child) => {
            log!(BASIC, "started {what} (pid {})", child.id());
            let (pid, uid, ring_kib) = (child.id().to_string(), who.uid.to_string(), (slot.ring / 2 / 1024).to_string());
            let mut fields = vec![("child", what), ("pid", pid.as_str()), ("uid", uid.as_str()), ("capabilities", role.describe())];
            if role == Role::CaptureWorker {
                // Each of the interface's two rings.
                fields.push(("ring_kib", ring_kib.as_str()));
            }
            audit(AuditSeverity::Notice, "child_started", &fields);
            slot.child = Some(child);
            slot.restart_at = None;
            slot.backoff.started(now);
            true
        }
        Err(e) => {
            let at = slot.backoff.died(now);
            log!(BASIC, "error: {e}; trying again in {} ms", at.duration_since(now).as_millis());
            slot.restart_at = Some(at);
            slot.control = None;
            false
        }
    }
}

fn reap_slot(slot: &mut Slot, what: &str, now: Instant, restart: bool) {
    let Some(child) = slot.child.as_mut() else { return };
    let Ok(Some(status)) = child.try_wait() else { return };
    let pid = child.id();
    slot.child = None;
    slot.control = None;
    slot.destroys = None;
    if restart {
        let at = slot.backoff.died(now);
        slot.restart_at = Some(at);
        log!(BASIC, "{what} (pid {pid}) exited ({status}); restarting in {} ms", at.duration_since(now).as_millis());
        audit(
            AuditSeverity::Warning,
            "child_restart",
            &[
                ("child", what),
                ("pid", &pid.to_string()),
                ("status", &status.to_string()),
                ("failures", &slot.backoff.failures().to_string()),
                ("delay_ms", &at.duration_since(now).as_millis().to_string()),
            ],
        );
    } else {
        slot.restart_at = None;
        log!(BASIC, "{what} (pid {pid}) exited ({status}); its interface is down or gone: restarted when it is up");
    }
}

fn send_term(c: &Child) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), Signal::SIGTERM);
}

/// Waits for `c` until `deadline`, then kills it.
fn wait_until(c: &mut Child, deadline: Instant) {
    loop {
        match c.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) if Instant::now() >= deadline => {
                log!(BASIC, "pid {} did not stop in time: killing it", c.id());
                // Waiting on a child the kill did not reach would block forever.
                match c.kill() {
                    Ok(()) => {
                        let _ = c.wait();
                    }
                    Err(e) => log!(BASIC, "error: cannot kill pid {}: {e}", c.id()),
                }
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn terminate(c: &mut Child, grace: Duration) {
    send_term(c);
    wait_until(c, Instant::now() + grace);
}

/// The directory for the uplink's socket: owned by the children's user,
/// mode 0700, so only they (and root) can reach the socket.
///
/// The mode is set before the owner: once the directory belongs to the
/// children's user, changing its mode would take CAP_FOWNER, which the
/// supervisor is not given (architecture.md). A directory already 0700 is
/// left as it is (a restart finds its own directory, now the children's).
fn prepare_runtime_dir(dir: &std::path::Path, who: Identity) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |e: std::io::Error| format!("OSSENSOR_RUNTIME_DIR={:?}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    if std::fs::metadata(dir).map_err(fail)?.permissions().mode() & 0o7777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(dir, Some(who.uid), Some(who.gid)).map_err(fail)?;
    }
    Ok(())
}
