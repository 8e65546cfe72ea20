//! Which interfaces to capture. [`select`] and [`passes`] are pure: they
//! take the rules, the interfaces present and the default route's
//! interface, so every rule is tested without touching the machine. The
//! readers ([`list_system`], [`read_default_route_interface`]) are thin
//! wrappers over /sys and /proc.
//!
//! The rules (docs/configuration.md, "Interfaces"):
//! 1. Loopback is never captured, even when listed.
//! 2. With OSSENSOR_NETWORK_DEVICE, the candidates are exactly the listed
//!    interfaces (`default` = the default route's interface). A listed
//!    interface that does not exist stops start-up, except with
//!    NETWORK_DEVICE_ANY=1, where it is waited for. Without a list, every
//!    interface present is a candidate.
//! 3. The include list, if non-empty, keeps candidates matching one of its
//!    patterns; the exclude list then removes those matching any of its
//!    patterns (it wins over everything).
//! 4. Nothing left: start-up fails with what each rule removed, except with
//!    NETWORK_DEVICE_ANY=1, where the supervisor waits.
//! 5. Later (NETWORK_DEVICE_ANY=1): an interface that appears is captured if
//!    [`passes`] says so — with an explicit list that means it is listed.

use std::fmt;
use std::io;
use std::path::Path;

use crate::config::{ConfigError, RawConfig};
use crate::variables::{self, DeviceRules, Pattern};

/// ARPHRD_LOOPBACK.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// IFF_LOOPBACK.
pub const IFF_LOOPBACK: u32 = 0x8;
/// IFF_UP.
pub const IFF_UP: u32 = 0x1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub is_loopback: bool,
    /// ARPHRD_* link type (1 = Ethernet, 772 = loopback, 65534 = none/tun).
    pub arphrd: u16,
    /// IFF_UP: libpcap cannot open an interface that is down, so its worker
    /// starts when it comes up.
    pub is_up: bool,
}

/// The interfaces in /sys/class/net, sorted by ifindex.
pub fn list_system() -> io::Result<Vec<Interface>> {
    list_in(Path::new("/sys/class/net"))
}

/// Reads `DIR/*/{ifindex,type,flags}`; an interface that vanishes while
/// being read is skipped.
pub fn list_in(dir: &Path) -> io::Result<Vec<Interface>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).map(|s| s.trim().to_string());
        // An interface being deleted makes its sysfs files fail with
        // ENOENT, ENODEV or EINVAL: it is gone, skip it. Only a failure to
        // list the directory itself is an error.
        let (ifindex, kind, flags) = match (read("ifindex"), read("type"), read("flags")) {
            (Ok(i), Ok(t), Ok(f)) => (i, t, f),
            _ => continue,
        };
        let bad = |what: &str, v: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: bad {what} {v:?}"));
        let ifindex: u32 = ifindex.parse().map_err(|_| bad("ifindex", &ifindex))?;
        let arphrd: u16 = kind.parse().map_err(|_| bad("type", &kind))?;
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).map_err(|_| bad("flags", &flags))?;
        out.push(Interface { name, ifindex, is_loopback: arphrd == ARPHRD_LOOPBACK || flags & IFF_LOOPBACK != 0, arphrd, is_up: flags & IFF_UP != 0 });
    }
    out.sort_by_key(|i| i.ifindex);
    Ok(out)
}

const RTF_UP: u32 = 0x1;
const RTF_REJECT: u32 = 0x200;

/// The interface of the lowest-metric IPv4 default route (0.0.0.0/0), else
/// of the lowest-metric IPv6 one (::/0), from the text of /proc/net/route
/// and /proc/net/ipv6_route. Routes that are down or reject, and routes
/// through `lo`, do not count.
pub fn default_route_interface(proc_net_route: &str, proc_net_ipv6_route: &str) -> Option<String> {
    let v4 = proc_net_route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            usable(f[0], flags).then(|| (metric, f[0].to_string()))
        })
        .min_by_key(|(m, _)| *m);
    if let Some((_, name)) = v4 {
        return Some(name);
    }
    proc_net_ipv6_route
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // dest plen src splen nexthop metric refcnt use flags iface (hex)
            if f.len() < 10 || f[0].bytes().any(|b| b != b'0') || f[1] != "00" {
                return None;
            }
            let metric = u32::from_str_radix(f[5], 16).ok()?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            usable(f[9], flags).then(|| (metric, f[9].to_string()))
        })
        .min_by_key(|(m, _)| *m)
        .map(|(_, n)| n)
}

fn usable(iface: &str, flags: u32) -> bool {
    iface != "lo" && flags & RTF_UP != 0 && flags & RTF_REJECT == 0
}

/// [`default_route_interface`] on this machine's /proc (a missing file
/// counts as no routes: IPv6 may be disabled).
pub fn read_default_route_interface() -> Option<String> {
    let r = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    default_route_interface(&r("/proc/net/route"), &r("/proc/net/ipv6_route"))
}

/// What each rule removed, in the order the rules apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Explanation {
    /// The candidates before the lists (listed and present, or all present).
    pub candidates: Vec<String>,
    pub loopback: Vec<String>,
    /// Candidates the include list did not match.
    pub not_included: Vec<String>,
    /// Candidates the exclude list removed.
    pub excluded: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(INCLUDE, EXCLUDE))
    }
}

const DEVICES: &str = "OSSENSOR_NETWORK_DEVICE";
const INCLUDE: &str = "NETWORK_DEVICE_INCLUDELIST";
const EXCLUDE: &str = "NETWORK_DEVICE_EXCLUDELIST";

/// The name a list was given under (its old name, if that is what the user
/// set; the current name if unset).
fn given_name(raw: &RawConfig, name: &str) -> &'static str {
    let var = variables::variable(name).unwrap_or_else(|| panic!("{name} is not declared"));
    raw.given(var).map_or(var.name, |(n, _)| n)
}

impl Explanation {
    /// What each rule removed, naming the lists as the user set them.
    pub fn explain(&self, raw: &RawConfig) -> String {
        self.describe(given_name(raw, INCLUDE), given_name(raw, EXCLUDE))
    }

    fn describe(&self, include: &str, exclude: &str) -> String {
        let mut parts = Vec::new();
        if self.candidates.is_empty() {
            parts.push("no candidate interface".to_string());
        } else {
            parts.push(format!("candidates {}", self.candidates.join(", ")));
        }
        if !self.loopback.is_empty() {
            parts.push(format!("loopback is never captured: {}", self.loopback.join(", ")));
        }
        if !self.not_included.is_empty() {
            let kept = self.candidates.len() - self.loopback.len() - self.not_included.len();
            parts.push(if kept == 0 {
                format!("include list ({include}) kept none of {}", self.not_included.join(", "))
            } else {
                format!("include list ({include}) left out {}", self.not_included.join(", "))
            });
        }
        if !self.excluded.is_empty() {
            parts.push(format!("exclude list ({exclude}) removed {}", self.excluded.join(", ")));
        }
        parts.join("; ")
    }
}

/// The interfaces to capture at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub chosen: Vec<String>,
    /// NETWORK_DEVICE_ANY=1 and nothing chosen yet: the supervisor says so at
    /// level 0 and captures the first interface that [`passes`].
    pub waiting: bool,
    /// Listed interfaces not present yet (only with NETWORK_DEVICE_ANY=1);
    /// may contain `default` when there is no default route yet.
    pub waiting_for: Vec<String>,
    pub explanation: Explanation,
    /// Every interface present that the exclude list matches, loopback
    /// and those the other rules left out included: what the reference's
    /// entrypoint records as `blacklist_device` (the generated file).
    pub exclude_matches: Vec<String>,
}

/// Why start-up cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// Listed interfaces that do not exist (NETWORK_DEVICE_ANY=0).
    Missing { devices: Vec<String>, present: Vec<String> },
    /// `default` listed but no default route (NETWORK_DEVICE_ANY=0).
    NoDefaultRoute,
    /// Nothing left after the rules (NETWORK_DEVICE_ANY=0).
    NothingLeft(Explanation),
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason(INCLUDE, EXCLUDE);
        match self {
            SelectError::Missing { .. } => write!(f, "{DEVICES}: {reason}"),
            SelectError::NoDefaultRoute => write!(f, "{DEVICES}=\"default\": {reason}"),
            SelectError::NothingLeft(_) => f.write_str(&reason),
        }
    }
}

impl std::error::Error for SelectError {}

impl SelectError {
    /// What is wrong, without the variable; the lists named as given.
    fn reason(&self, include: &str, exclude: &str) -> String {
        match self {
            SelectError::Missing { devices, present } => format!(
                "no such interface: {} (present: {}); set NETWORK_DEVICE_ANY=1 to wait for it",
                devices.join(", "),
                if present.is_empty() { "none".to_string() } else { present.join(", ") }
            ),
            SelectError::NoDefaultRoute => "there is no default route (read /proc/net/route and /proc/net/ipv6_route)".to_string(),
            SelectError::NothingLeft(e) => format!("no interface left after the lists: {}", e.describe(include, exclude)),
        }
    }

    /// As a configuration error (exit status 2, like every other): it names
    /// the variable that refused the start as the user set it (the old name
    /// too), with its value — OSSENSOR_NETWORK_DEVICE for a missing
    /// interface or default route; for nothing left, the list that removed
    /// the last candidates (the exclude list, else the include list, else
    /// OSSENSOR_NETWORK_DEVICE) — and, under `-c FILE`, the file and key.
    pub fn to_config_error(&self, raw: &RawConfig) -> ConfigError {
        let var = match self {
            SelectError::NothingLeft(e) if !e.excluded.is_empty() => EXCLUDE,
            SelectError::NothingLeft(e) if !e.not_included.is_empty() => INCLUDE,
            _ => DEVICES,
        };
        raw.refuse(var, self.reason(given_name(raw, INCLUDE), given_name(raw, EXCLUDE)))
    }
}

fn matches_any(patterns: &[Pattern], name: &str) -> bool {
    patterns.iter().any(|p| p.is_match(name))
}

/// True if an interface passes the include and exclude lists.
fn lists_pass(rules: &DeviceRules, name: &str) -> bool {
    (rules.include.is_empty() || matches_any(&rules.include, name)) && !matches_any(&rules.exclude, name)
}

/// Whether an interface (typically one that appeared after start) is to be
/// captured: not loopback, listed if there is a list (`default` meaning
/// `default_if`), and passing the include and exclude lists.
pub fn passes(rules: &DeviceRules, iface: &Interface, default_if: Option<&str>) -> bool {
    if iface.is_loopback {
        return false;
    }
    let listed = rules.explicit.is_empty() || rules.explicit.iter().any(|d| d == &iface.name || (d == "default" && default_if == Some(iface.name.as_str())));
    listed && lists_pass(rules, &iface.name)
}

/// Chooses the interfaces to capture at start.
pub fn select(rules: &DeviceRules, present: &[Interface], default_if: Option<&str>) -> Result<Selection, SelectError> {
    let mut candidates: Vec<&Interface> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut no_default = false;
    if rules.explicit.is_empty() {
        candidates.extend(present);
    } else {
        for dev in &rules.explicit {
            let name = if dev == "default" {
                match default_if {
                    Some(n) => n,
                    None => {
                        no_default = true;
                        continue;
                    }
                }
            } else {
                dev.as_str()
            };
            match present.iter().find(|i| i.name == name) {
                Some(i) if !candidates.iter().any(|c| c.name == i.name) => candidates.push(i),
                Some(_) => {}
                None => missing.push(name.to_string()),
            }
        }
    }
    if !rules.any {
        if no_default {
            return Err(SelectError::NoDefaultRoute);
        }
        if !missing.is_empty() {
            return Err(SelectError::Missing { devices: missing, present: present.iter().map(|i| i.name.clone()).collect() });
        }
    }
    let mut explanation = Explanation { candidates: candidates.iter().map(|i| i.name.clone()).collect(), ..Default::default() };
    let mut chosen = Vec::new();
    for i in candidates {
        if i.is_loopback {
            explanation.loopback.push(i.name.clone());
        } else if !rules.include.is_empty() && !matches_any(&rules.include, &i.name) {
            explanation.not_included.push(i.name.clone());
        } else if matches_any(&rules.exclude, &i.name) {
            explanation.excluded.push(i.name.clone());
        } else {
            chosen.push(i.name.clone());
        }
    }
    let mut waiting_for = missing;
    if no_default {
        waiting_for.push("default".to_string());
    }
    if chosen.is_empty() && !rules.any {
        return Err(SelectError::NothingLeft(explanation));
    }
    let exclude_matches = present.iter().filter(|i| matches_any(&rules.exclude, &i.name)).map(|i| i.name.clone()).collect();
    Ok(Selection { waiting: chosen.is_empty(), chosen, waiting_for, explanation, exclude_matches })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{validate, RawConfig};

    fn iface(name: &str, ifindex: u32) -> Interface {
        let lo = name == "lo";
        Interface { name: name.into(), ifindex, is_loopback: lo, arphrd: if lo { ARPHRD_LOOPBACK } else { 1 }, is_up: true }
    }

    fn present(names: &[&str]) -> Vec<Interface> {
        names.iter().enumerate().map(|(i, n)| iface(n, i as u32 + 1)).collect()
    }

    /// Rules through the real validation, from variables.
    fn rules(vars: &[(&str, &str)]) -> DeviceRules {
        let mut v = vec![("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("OSSENSOR_SENSOR_ID", "t")];
        v.extend_from_slice(vars);
        validate(&RawConfig::from_vars(v)).unwrap().devices
    }

    fn chosen(vars: &[(&str, &str)], names: &[&str], default_if: Option<&str>) -> Vec<String> {
        select(&rules(vars), &present(names), default_if).unwrap().chosen
    }

    const HOST: &[&str] = &["lo", "eth0", "eth1", "eth7", "veth12", "docker0"];

    #[test]
    fn default_is_every_interface_but_loopback() {
        assert_eq!(chosen(&[], HOST, None), ["eth0", "eth1", "eth7", "veth12", "docker0"]);
    }

    #[test]
    fn spec_example_include_eth_exclude_eth7() {
        let vars = [("NETWORK_DEVICE_INCLUDELIST", "^eth"), ("NETWORK_DEVICE_EXCLUDELIST", "eth7")];
        let s = select(&rules(&vars), &present(HOST), None).unwrap();
        assert_eq!(s.chosen, ["eth0", "eth1"]);
        assert_eq!(s.explanation.excluded, ["eth7"]);
        assert_eq!(s.explanation.not_included, ["veth12", "docker0"]);
        assert_eq!(s.explanation.loopback, ["lo"]);
    }

    #[test]
    fn old_names_apply_when_new_ones_are_unset() {
        let vars = [("NETWORK_DEVICE_WHITELIST", "^eth"), ("NETWORK_DEVICE_BLACKLIST", "eth7")];
        assert_eq!(chosen(&vars, HOST, None), ["eth0", "eth1"]);
        // New names win over old ones.
        let vars = [
            ("NETWORK_DEVICE_WHITELIST", "^eth"),
            ("NETWORK_DEVICE_INCLUDELIST", "^veth"),
            ("NETWORK_DEVICE_BLACKLIST", "eth"),
            ("NETWORK_DEVICE_EXCLUDELIST", "docker"),
        ];
        assert_eq!(chosen(&vars, HOST, None), ["veth12"]);
        // An empty new name counts as unset.
        let vars = [("NETWORK_DEVICE_INCLUDELIST", ""), ("NETWORK_DEVICE_WHITELIST", "^docker")];
        assert_eq!(chosen(&vars, HOST, None), ["docker0"]);
    }

    #[test]
    fn include_any_of_several_patterns() {
        // Unanchored, like grep -E: "eth1" also matches veth12.
        assert_eq!(chosen(&[("NETWORK_DEVICE_INCLUDELIST", "eth1 ^docker")], HOST, None), ["eth1", "veth12", "docker0"]);
        assert_eq!(chosen(&[("NETWORK_DEVICE_INCLUDELIST", "^eth1$ ^docker")], HOST, None), ["eth1", "docker0"]);
        assert_eq!(chosen(&[("NETWORK_DEVICE_EXCLUDELIST", "^eth  veth")], HOST, None), ["docker0"]);
    }

    #[test]
    fn explicit_list_captures_exactly_those() {
        assert_eq!(chosen(&[("OSSENSOR_NETWORK_DEVICE", "eth1, eth0")], HOST, None), ["eth1", "eth0"]);
        assert_eq!(chosen(&[("OSSENSOR_NETWORK_DEVICE", "eth1 eth1,eth1")], HOST, None), ["eth1"]);
    }

    #[test]
    fn default_means_the_default_route_interface() {
        assert_eq!(chosen(&[("OSSENSOR_NETWORK_DEVICE", "default")], HOST, Some("eth7")), ["eth7"]);
        assert_eq!(chosen(&[("OSSENSOR_NETWORK_DEVICE", "default,eth7")], HOST, Some("eth7")), ["eth7"]);
        let e = select(&rules(&[("OSSENSOR_NETWORK_DEVICE", "default")]), &present(HOST), None).unwrap_err();
        assert_eq!(e, SelectError::NoDefaultRoute);
        assert!(e.to_string().contains("OSSENSOR_NETWORK_DEVICE=\"default\""), "{e}");
        // With ANY=1 the default route is waited for.
        let s = select(&rules(&[("OSSENSOR_NETWORK_DEVICE", "default"), ("NETWORK_DEVICE_ANY", "1")]), &present(HOST), None).unwrap();
        assert!(s.waiting && s.chosen.is_empty());
        assert_eq!(s.waiting_for, ["default"]);
    }

    #[test]
    fn missing_listed_device_is_an_error_naming_it() {
        let e = select(&rules(&[("OSSENSOR_NETWORK_DEVICE", "eth0,eth9")]), &present(HOST), None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("OSSENSOR_NETWORK_DEVICE") && msg.contains("eth9") && !msg.contains("eth9,"), "{msg}");
        assert!(matches!(e, SelectError::Missing { ref devices, .. } if devices == &["eth9"]));
    }

    #[test]
    fn missing_listed_device_is_waited_for_with_any() {
        let r = rules(&[("OSSENSOR_NETWORK_DEVICE", "eth0,eth9"), ("NETWORK_DEVICE_ANY", "1")]);
        let s = select(&r, &present(HOST), None).unwrap();
        assert_eq!(s.chosen, ["eth0"]);
        assert!(!s.waiting);
        assert_eq!(s.waiting_for, ["eth9"]);
        assert!(passes(&r, &iface("eth9", 50), None));
        // An explicit list is exact: other new interfaces are not captured.
        assert!(!passes(&r, &iface("veth99", 51), None));
    }

    #[test]
    fn loopback_is_never_captured_even_when_listed() {
        assert_eq!(chosen(&[("OSSENSOR_NETWORK_DEVICE", "lo eth0")], HOST, None), ["eth0"]);
        let e = select(&rules(&[("OSSENSOR_NETWORK_DEVICE", "lo")]), &present(HOST), None).unwrap_err();
        assert!(e.to_string().contains("loopback is never captured: lo"), "{e}");
        // Loopback by flag/type, whatever its name.
        let mut odd = present(&["eth0"]);
        odd.push(Interface { name: "lo2".into(), ifindex: 9, is_loopback: true, arphrd: ARPHRD_LOOPBACK, is_up: true });
        assert_eq!(select(&rules(&[]), &odd, None).unwrap().chosen, ["eth0"]);
        assert!(!passes(&rules(&[]), &odd[1], None));
    }

    #[test]
    fn exclude_wins_over_explicit_and_include() {
        let e = select(&rules(&[("OSSENSOR_NETWORK_DEVICE", "eth0"), ("NETWORK_DEVICE_EXCLUDELIST", "eth0")]), &present(HOST), None).unwrap_err();
        assert_eq!(e.to_string(), "no interface left after the lists: candidates eth0; exclude list (NETWORK_DEVICE_EXCLUDELIST) removed eth0");
        assert_eq!(chosen(&[("NETWORK_DEVICE_INCLUDELIST", "eth"), ("NETWORK_DEVICE_EXCLUDELIST", "^v")], HOST, None), ["eth0", "eth1", "eth7"]);
    }

    #[test]
    fn nothing_left_says_what_each_list_removed() {
        let vars = [("NETWORK_DEVICE_INCLUDELIST", "^wlan")];
        let e = select(&rules(&vars), &present(&["lo", "eth0", "eth1"]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no interface left after the lists: candidates lo, eth0, eth1; loopback is never captured: lo; \
             include list (NETWORK_DEVICE_INCLUDELIST) kept none of eth0, eth1"
        );
        let vars = [("NETWORK_DEVICE_INCLUDELIST", "^eth"), ("NETWORK_DEVICE_EXCLUDELIST", "eth")];
        let e = select(&rules(&vars), &present(&["eth0", "veth1"]), None).unwrap_err().to_string();
        assert!(e.contains("left out veth1") && e.contains("exclude list (NETWORK_DEVICE_EXCLUDELIST) removed eth0"), "{e}");
        // No interface at all.
        let e = select(&rules(&[]), &present(&["lo"]), None).unwrap_err().to_string();
        assert!(e.contains("loopback is never captured: lo"), "{e}");
    }

    /// A refused selection as the user sees it (exit status 2): the
    /// variable as they set it, its value, the config file's key under -c.
    #[test]
    fn select_errors_name_the_variable_as_given_and_its_value() {
        let refused = |raw: RawConfig, names: &[&str]| {
            let rules = validate(&raw).unwrap().devices;
            select(&rules, &present(names), None).unwrap_err().to_config_error(&raw).to_string()
        };
        let env = |vars: &[(&'static str, &'static str)]| {
            let mut v = vec![("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("OSSENSOR_SENSOR_ID", "t")];
            v.extend_from_slice(vars);
            RawConfig::from_vars(v)
        };
        assert_eq!(
            refused(env(&[("OSSENSOR_NETWORK_DEVICE", "eth0, eth9")]), HOST),
            "OSSENSOR_NETWORK_DEVICE=\"eth0, eth9\": no such interface: eth9 (present: lo, eth0, eth1, eth7, veth12, docker0); \
             set NETWORK_DEVICE_ANY=1 to wait for it"
        );
        assert_eq!(
            refused(env(&[("OSSENSOR_NETWORK_DEVICE", "default")]), HOST),
            "OSSENSOR_NETWORK_DEVICE=\"default\": there is no default route (read /proc/net/route and /proc/net/ipv6_route)"
        );
        assert_eq!(
            refused(env(&[("NETWORK_DEVICE_WHITELIST", "^wlan")]), &["lo", "eth0"]),
            "NETWORK_DEVICE_WHITELIST=\"^wlan\": no interface left after the lists: candidates lo, eth0; loopback is never captured: lo; \
             include list (NETWORK_DEVICE_WHITELIST) kept none of eth0"
        );
        assert_eq!(
            refused(env(&[("NETWORK_DEVICE_WHITELIST", "^eth"), ("NETWORK_DEVICE_EXCLUDELIST", "eth")]), HOST),
            "NETWORK_DEVICE_EXCLUDELIST=\"eth\": no interface left after the lists: candidates lo, eth0, eth1, eth7, veth12, docker0; \
             loopback is never captured: lo; include list (NETWORK_DEVICE_WHITELIST) left out veth12, docker0; \
             exclude list (NETWORK_DEVICE_EXCLUDELIST) removed eth0, eth1, eth7"
        );
        assert_eq!(
            refused(env(&[("OSSENSOR_NETWORK_DEVICE", "lo")]), HOST),
            "OSSENSOR_NETWORK_DEVICE=\"lo\": no interface left after the lists: candidates lo; loopback is never captured: lo"
        );
        assert_eq!(refused(env(&[]), &["lo"]), "OSSENSOR_NETWORK_DEVICE: no interface left after the lists: candidates lo; loopback is never captured: lo");
        // Under -c: the file, the key and the variable.
        let raw = RawConfig {
            origin: crate::config::Origin::ConfigFile("/etc/x.cfg".into()),
            vars: [("VSENSOR_HOSTNAME", "c"), ("VSENSOR_HMAC_KEY", "k"), ("OSSENSOR_SENSOR_ID", "t"), ("NETWORK_DEVICE_EXCLUDELIST", ".")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file_keys: Default::default(),
            warnings: vec![],
        };
        assert!(
            refused(raw, HOST).starts_with("/etc/x.cfg: blacklist_pattern=\".\" (NETWORK_DEVICE_EXCLUDELIST): no interface left after the lists: candidates"),
        );
    }

    /// What the generated file records as blacklist_device: every
    /// interface present that the exclude list matches, as the reference's
    /// entrypoint writes it (loopback, and those the include list or an
    /// explicit list left out, included).
    #[test]
    fn exclude_matches_are_every_present_interface_the_list_matches() {
        let s = select(&rules(&[("NETWORK_DEVICE_INCLUDELIST", "^eth"), ("NETWORK_DEVICE_EXCLUDELIST", "0$ ^l")]), &present(HOST), None).unwrap();
        assert_eq!(s.chosen, ["eth1", "eth7"]);
        assert_eq!(s.exclude_matches, ["lo", "eth0", "docker0"]);
        let s = select(&rules(&[("OSSENSOR_NETWORK_DEVICE", "eth1"), ("NETWORK_DEVICE_EXCLUDELIST", "7")]), &present(HOST), None).unwrap();
        assert_eq!((s.chosen, s.exclude_matches), (vec!["eth1".to_string()], vec!["eth7".to_string()]));
        assert!(select(&rules(&[]), &present(HOST), None).unwrap().exclude_matches.is_empty());
    }

    #[test]
    fn nothing_left_with_any_waits() {
        let r = rules(&[("NETWORK_DEVICE_INCLUDELIST", "^veth"), ("NETWORK_DEVICE_ANY", "1")]);
        let s = select(&r, &present(&["lo", "eth0"]), None).unwrap();
        assert!(s.waiting && s.chosen.is_empty() && s.waiting_for.is_empty());
        assert!(passes(&r, &iface("veth3", 9), None));
        assert!(!passes(&r, &iface("eth3", 9), None));
        let s = select(&rules(&[("NETWORK_DEVICE_ANY", "true")]), &[], None).unwrap();
        assert!(s.waiting);
    }

    #[test]
    fn passes_applies_the_lists() {
        let r = rules(&[("NETWORK_DEVICE_INCLUDELIST", "^(veth|cali)"), ("NETWORK_DEVICE_EXCLUDELIST", "veth0$")]);
        assert!(passes(&r, &iface("veth1", 5), None));
        assert!(passes(&r, &iface("cali9", 5), None));
        assert!(!passes(&r, &iface("veth0", 5), None));
        assert!(!passes(&r, &iface("eth0", 5), None));
        let r = rules(&[("OSSENSOR_NETWORK_DEVICE", "default")]);
        assert!(passes(&r, &iface("eth3", 5), Some("eth3")));
        assert!(!passes(&r, &iface("eth3", 5), Some("eth0")));
    }

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t0012A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
        eth1\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        wlan0\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
        eth2\t00000000\t0101A8C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n";
    const ROUTE6: &str = "\
        fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth5\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000100 00000001 00000000 00000003 eth6\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo\n";

    #[test]
    fn default_route_lowest_metric_ipv4_first() {
        // eth2's route is not up; wlan0 has the lowest metric of the rest.
        assert_eq!(default_route_interface(ROUTE, ROUTE6).as_deref(), Some("wlan0"));
    }

    #[test]
    fn default_route_falls_back_to_ipv6_and_skips_reject_on_lo() {
        let header_only = ROUTE.lines().next().unwrap();
        assert_eq!(default_route_interface(header_only, ROUTE6).as_deref(), Some("eth6"));
        let only_lo = ROUTE6.lines().last().unwrap();
        assert_eq!(default_route_interface(header_only, only_lo), None);
        assert_eq!(default_route_interface("", ""), None);
        assert_eq!(default_route_interface("garbage\nx y z\n", "1 2 3\n"), None);
    }

    #[test]
    fn list_in_reads_sysfs_shape() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |name: &str, idx: &str, kind: &str, flags: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("ifindex"), format!("{idx}\n")).unwrap();
            std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
            std::fs::write(d.join("flags"), format!("{flags}\n")).unwrap();
        };
        mk("eth0", "2", "1", "0x1003");
        mk("lo", "1", "772", "0x9");
        mk("weird", "3", "1", "0x8"); // IFF_LOOPBACK without the type, down
        std::fs::create_dir(dir.path().join("vanishing")).unwrap();
        // Mid-deletion, sysfs reads fail with other errors than ENOENT
        // (EINVAL, ENODEV); a directory read as a file stands in for them.
        mk("dying", "4", "1", "0x1003");
        std::fs::remove_file(dir.path().join("dying/flags")).unwrap();
        std::fs::create_dir(dir.path().join("dying/flags")).unwrap();
        let got = list_in(dir.path()).unwrap();
        assert_eq!(
            got,
            vec![
                Interface { name: "lo".into(), ifindex: 1, is_loopback: true, arphrd: 772, is_up: true },
                Interface { name: "eth0".into(), ifindex: 2, is_loopback: false, arphrd: 1, is_up: true },
                Interface { name: "weird".into(), ifindex: 3, is_loopback: true, arphrd: 1, is_up: false },
            ]
        );
    }

    #[test]
    fn list_system_finds_loopback() {
        let all = list_system().unwrap();
        assert!(all.iter().any(|i| i.is_loopback), "{all:?}");
    }
}
