//! Each packet once across sensors: a flow between two registered sensors
//! is seen by both, so the one with the larger id leaves it to the other.
//! Each sensor's filter is its own base (its traffic to this collector
//! excluded, fixed at registration) combined with an exclusion of traffic
//! between its addresses and those of the active sensors with smaller ids.
//! Sensors fetch it again with every status report (every 5 s), so a
//! sensor joining or leaving changes the others' filters within seconds,
//! without a restart.
//!
//! Only addresses that name one host take part: loopback, link-local and
//! unspecified addresses, and any address both sensors have (the same
//! container bridge on every node, say), are left out.

use std::collections::BTreeSet;
use std::net::IpAddr;

/// A sensor is active while it reported in the last this many seconds
/// (three status reports).
pub const ACTIVE_SECONDS: i64 = 15;

fn usable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => !(v.is_loopback() || v.is_link_local() || v.is_unspecified() || v.is_broadcast() || v.is_multicast()),
        IpAddr::V6(v) => !(v.is_loopback() || v.is_unspecified() || v.is_multicast() || (v.segments()[0] & 0xffc0) == 0xfe80),
    }
}

/// The exclusion for a sensor with addresses `own`, given the addresses of
/// the active sensors with smaller ids: `not ((host P…) and (host S…))`,
/// or empty when there is nothing to exclude.
pub fn exclusion(own: &[IpAddr], earlier_peers: &[IpAddr]) -> String {
    let mine: BTreeSet<IpAddr> = own.iter().copied().filter(usable).collect();
    let theirs: BTreeSet<IpAddr> = earlier_peers.iter().copied().filter(usable).collect();
    // An address on both sides names no single host.
    let own: BTreeSet<IpAddr> = mine.difference(&theirs).copied().collect();
    let peers: BTreeSet<IpAddr> = theirs.difference(&mine).copied().collect();
    if own.is_empty() || peers.is_empty() {
        return String::new();
    }
    let hosts = |s: &BTreeSet<IpAddr>| s.iter().map(|a| format!("host {a}")).collect::<Vec<_>>().join(" or ");
    format!("not (({}) and ({}))", hosts(&peers), hosts(&own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn only_addresses_that_name_one_host_take_part() {
        assert_eq!(
            exclusion(&ips(&["198.18.70.2", "127.0.0.1", "172.17.0.1", "fe80::1"]), &ips(&["198.18.70.1", "127.0.0.1", "172.17.0.1", "169.254.1.1"])),
            "not ((host 198.18.70.1) and (host 198.18.70.2))"
        );
        assert_eq!(exclusion(&ips(&["198.18.70.2"]), &[]), "");
        assert_eq!(exclusion(&ips(&["127.0.0.1"]), &ips(&["198.18.70.1"])), "");
        assert_eq!(
            exclusion(&ips(&["2001:db8::2", "198.18.0.2"]), &ips(&["2001:db8::1", "198.18.0.1"])),
            "not ((host 198.18.0.1 or host 2001:db8::1) and (host 198.18.0.2 or host 2001:db8::2))"
        );
    }

    #[test]
    fn the_exclusion_compiles() {
        let f = exclusion(&ips(&["198.18.70.2", "2001:db8::2"]), &ips(&["198.18.70.1", "2001:db8::1"]));
        ossensor_libpcap::compile(&f, 1).unwrap();
    }
}
