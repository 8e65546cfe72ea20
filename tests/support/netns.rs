//! Network namespaces and links inside them.

use crate::process::{spawn_logged, ProcessGuard};
use crate::{command, process_tag, run, run_unchecked, Error, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// A network namespace `<prefix>-<name>` with `lo` up, deleted on drop
/// (also during a panic). Processes the harness started inside are killed
/// by their guards first (declare guards after the namespace, so they drop
/// before it); any process still left inside is killed by pid on drop.
pub struct Netns {
    name: String,
    prefix: String,
}

impl Netns {
    /// `ip netns add <prefix>-<name>` and `ip -n NAME link set lo up`.
    /// Use a prefix from [`crate::unique_prefix`]. A namespace of that name
    /// left over by a dead process of the same pid is removed first.
    pub fn new(prefix: &str, name: &str) -> Result<Netns> {
        let full = format!("{prefix}-{name}");
        if full.len() > 64 || full.contains('/') || full.contains(char::is_whitespace) {
            return Err(Error(format!("bad namespace name {full:?}")));
        }
        if Path::new("/run/netns").join(&full).exists() {
            if prefix.starts_with(&process_tag()) {
                // Same pid as ours but we never made it: a leftover of a dead process.
                let _ = run(command("ip").args(["netns", "delete", &full]));
            } else {
                return Err(Error(format!("namespace {full} already exists (another test using the same prefix?)")));
            }
        }
        run(command("ip").args(["netns", "add", &full])).map_err(|e| Error(format!("cannot create network namespace {full} (root needed): {e}")))?;
        let ns = Netns { name: full, prefix: prefix.to_string() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><suffix>`, checked to fit an interface name (≤ 15 bytes).
    pub fn ifname(&self, suffix: &str) -> String {
        let n = format!("{}{}", self.prefix, suffix);
        assert!(n.len() <= 15, "interface name {n:?} is longer than 15 bytes");
        n
    }

    /// A command running `program` inside the namespace
    /// (`ip netns exec NAME program ...`; `ip` execs the program, so the
    /// child's pid is the program's). Proxy variables are removed.
    pub fn exec(&self, program: &str) -> Command {
        let mut c = command("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args[0] args[1..]` inside and requires success.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        run(self.exec(args[0]).args(&args[1..]))
    }

    /// Runs inside and returns the output whatever the status.
    pub fn run_unchecked(&self, args: &[&str], timeout: Duration) -> Result<Output> {
        run_unchecked(self.exec(args[0]).args(&args[1..]), timeout)
    }

    /// `ip -n NAME args...`; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut c = command("ip");
        c.args(["-n", &self.name]).args(args);
        let out = run(&mut c)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a long-running program inside, stdout and stderr to `log`.
    pub fn spawn(&self, args: &[&str], log: impl AsRef<Path>) -> Result<ProcessGuard> {
        spawn_logged(self.exec(args[0]).args(&args[1..]), log)
    }

    /// `sysctl -w` inside the namespace (namespaced sysctls only).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")]).map(|_| ())
    }

    /// Turns IPv6 off in the namespace, so no router solicitations or MLD
    /// reports appear in captures (call before creating links).
    pub fn disable_ipv6(&self) -> Result<()> {
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
    }

    /// Names of the links inside the namespace.
    pub fn links(&self) -> Result<Vec<String>> {
        let out = self.ip(&["-o", "link", "show"])?;
        Ok(out.lines().filter_map(|l| l.split(": ").nth(1)).map(|n| n.split('@').next().unwrap_or(n).to_string()).collect())
    }

    /// Pids of processes in the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        match run(command("ip").args(["netns", "pids", &self.name])) {
            Ok(o) => String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only processes inside our own namespace are touched, by pid.
        for pid in self.pids() {
            // SAFETY: kill(2) touches no memory of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Err(e) = run(command("ip").args(["netns", "delete", &self.name])) {
            eprintln!("warning: cannot delete namespace {}: {e}", self.name);
        }
    }
}

/// Is `a` in 198.18.0.0/15?
pub fn is_benchmark_addr(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && (o[1] == 18 || o[1] == 19)
}

fn check_cidr(cidr: &str) -> Result<Ipv4Addr> {
    let (addr, len) = cidr.split_once('/').ok_or_else(|| Error(format!("{cidr:?} is not ADDR/LEN")))?;
    let a: Ipv4Addr = addr.parse().map_err(|_| Error(format!("{cidr:?}: bad IPv4 address")))?;
    let l: u8 = len.parse().map_err(|_| Error(format!("{cidr:?}: bad prefix length")))?;
    if !is_benchmark_addr(a) || !(15..=32).contains(&l) {
        return Err(Error(format!("{cidr}: test addresses must lie in 198.18.0.0/15 (design.md, Test conventions)")));
    }
    Ok(a)
}

fn check_ifname(n: &str) -> Result<()> {
    if n.is_empty() || n.len() > 15 || n.contains(['/', ':']) || n.contains(char::is_whitespace) {
        return Err(Error(format!("bad interface name {n:?} (1-15 bytes, no '/', ':' or spaces)")));
    }
    Ok(())
}

/// Names of a veth pair made by [`veth_pair`]: (namespace, interface) each side.
#[derive(Debug, Clone)]
pub struct Veth {
    pub a_ns: String,
    pub a_if: String,
    pub a_addr: Ipv4Addr,
    pub b_ns: String,
    pub b_if: String,
    pub b_addr: Ipv4Addr,
}

/// Creates a veth pair between two namespaces, with addresses (CIDR, in
/// 198.18.0.0/15 only) and both links up. The pair is created inside `a`
/// with its peer moved straight into `b`: nothing ever appears in the root
/// namespace. Call it at any time, e.g. to make an interface appear while
/// a sensor runs. `a` and `b` may be the same namespace. The veth goes away
/// with its namespaces, or earlier with [`delete_link`].
pub fn veth_pair(a: &Netns, a_if: &str, a_cidr: &str, b: &Netns, b_if: &str, b_cidr: &str) -> Result<Veth> {
    check_ifname(a_if)?;
    check_ifname(b_if)?;
    let a_addr = check_cidr(a_cidr)?;
    let b_addr = check_cidr(b_cidr)?;
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name()])?;
    a.ip(&["addr", "add", a_cidr, "dev", a_if])?;
    b.ip(&["addr", "add", b_cidr, "dev", b_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(Veth { a_ns: a.name().into(), a_if: a_if.into(), a_addr, b_ns: b.name().into(), b_if: b_if.into(), b_addr })
}

/// Deletes an interface inside `ns` (deleting one end of a veth deletes both).
pub fn delete_link(ns: &Netns, ifname: &str) -> Result<()> {
    ns.ip(&["link", "delete", ifname]).map(|_| ())
}

/// Sets an interface inside `ns` up or down.
pub fn set_link_up(ns: &Netns, ifname: &str, up: bool) -> Result<()> {
    ns.ip(&["link", "set", ifname, if up { "up" } else { "down" }]).map(|_| ())
}

/// Namespaces that exist now (`ip netns list`, names only).
pub fn list_namespaces() -> Vec<String> {
    match run(command("ip").args(["netns", "list"])) {
        Ok(o) => String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect(),
        Err(_) => Vec::new(),
    }
}

fn mac_of(ns: &Netns, ifname: &str) -> Result<String> {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname])?;
    out.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).map(str::to_string).ok_or_else(|| Error(format!("no MAC address for {ifname} in {out:?}")))
}

/// Permanent neighbour entries on both ends of a veth, so no ARP traffic
/// appears at moments a test does not control (a reachability probe just
/// after a reference capture stopped, say).
pub fn pin_neighbours(a: &Netns, a_if: &str, a_ip: &str, b: &Netns, b_if: &str, b_ip: &str) -> Result<()> {
    let (a_mac, b_mac) = (mac_of(a, a_if)?, mac_of(b, b_if)?);
    a.ip(&["neigh", "replace", b_ip, "lladdr", &b_mac, "dev", a_if, "nud", "permanent"])?;
    b.ip(&["neigh", "replace", a_ip, "lladdr", &a_mac, "dev", b_if, "nud", "permanent"])?;
    Ok(())
}

/// The most common bed: namespaces "host" and "peer" (IPv6 off) joined by
/// a veth, `h1` = `NET.1/24` in host and `p1` = `NET.2/24` in peer, with
/// pinned neighbours. `net` is a /24 prefix in 198.18.0.0/15, e.g.
/// "198.18.66".
pub fn host_and_peer(net: &str) -> Result<(Netns, Netns)> {
    let prefix = crate::unique_prefix();
    let host = Netns::new(&prefix, "host")?;
    let peer = Netns::new(&prefix, "peer")?;
    for ns in [&host, &peer] {
        ns.disable_ipv6()?;
    }
    let (h, p) = (format!("{net}.1"), format!("{net}.2"));
    veth_pair(&host, "h1", &format!("{h}/24"), &peer, "p1", &format!("{p}/24"))?;
    pin_neighbours(&host, "h1", &h, &peer, "p1", &p)?;
    Ok((host, peer))
}
