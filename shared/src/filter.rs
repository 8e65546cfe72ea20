//! Filter text (tcpdump syntax) the sensor's own traffic is left out with,
//! built in one place for both ends: the collector answers a registration
//! with it (protocol.md §1.9), and the uplink uses it, from its own
//! resolution of the collector's name, until it has registered.
//!
//! Only typed values go in (addresses already parsed, port numbers), so
//! nothing a sensor sends can add filter syntax. Compiling the text is
//! `ossensor_libpcap::compile`'s job.

use std::net::{IpAddr, SocketAddr};

/// `not (tcp and (host A or host B …) and PORTS)`: TCP between this host
/// and the collector.
///
/// - hosts: `collector_addresses`, then the address the connection arrived
///   on (`arrived_on`, on the collector), in that order, each once, an
///   IPv4-mapped IPv6 address written as IPv4;
/// - `PORTS`: `port L`, L being the port the connection arrived on, and
///   `(port L or port P)` when the sensor's `configured_port` P is non-zero
///   and differs (NAT or a port forward between them); without `arrived_on`
///   (the uplink, before registering), `port P`.
///
/// Empty when there is no host (the uplink could not resolve the collector).
pub fn exclude_collector(collector_addresses: &[IpAddr], arrived_on: Option<SocketAddr>, configured_port: u16) -> String {
    let mut hosts: Vec<IpAddr> = Vec::new();
    for a in collector_addresses.iter().copied().chain(arrived_on.map(|l| l.ip())) {
        let a = a.to_canonical();
        if !hosts.contains(&a) {
            hosts.push(a);
        }
    }
    if hosts.is_empty() {
        return String::new();
    }
    let hosts = hosts.iter().map(|h| format!("host {h}")).collect::<Vec<_>>().join(" or ");
    let ports = match arrived_on {
        Some(local) if configured_port != 0 && configured_port != local.port() => format!("(port {} or port {configured_port})", local.port()),
        Some(local) => format!("port {}", local.port()),
        None => format!("port {configured_port}"),
    };
    format!("not (tcp and ({hosts}) and {ports})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn filter_single_host_and_port() {
        assert_eq!(exclude_collector(&[], sa("198.18.0.1:443"), 443), "not (tcp and (host 198.18.0.1) and port 443)");
        assert_eq!(exclude_collector(&[], sa("198.18.0.1:443"), 0), "not (tcp and (host 198.18.0.1) and port 443)");
    }

    #[test]
    fn filter_deduplicates_and_adds_ports() {
        assert_eq!(
            exclude_collector(&ips(&["198.18.0.1", "198.18.0.9", "198.18.0.1"]), sa("198.18.0.1:8443"), 443),
            "not (tcp and (host 198.18.0.1 or host 198.18.0.9) and (port 8443 or port 443))"
        );
    }

    #[test]
    fn filter_maps_v4_in_v6_and_keeps_v6() {
        assert_eq!(
            exclude_collector(&ips(&["2001:db8::1", "198.18.0.1"]), sa("[::ffff:198.18.0.1]:443"), 443),
            "not (tcp and (host 2001:db8::1 or host 198.18.0.1) and port 443)"
        );
    }

    #[test]
    fn before_registration_the_configured_port_and_nothing_without_an_address() {
        assert_eq!(exclude_collector(&ips(&["198.18.0.1", "2001:db8::1"]), None, 8443), "not (tcp and (host 198.18.0.1 or host 2001:db8::1) and port 8443)");
        assert_eq!(exclude_collector(&[], None, 443), "");
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
            // IPv4-mapped IPv6
            any::<[u8; 4]>().prop_map(|v| IpAddr::from(std::net::Ipv4Addr::from(v).to_ipv6_mapped())),
        ]
    }

    proptest! {
        /// Every word of the text is filter syntax, a port given, or an
        /// address given (canonical, once); nothing else gets in.
        #[test]
        fn only_given_addresses_and_ports(
            addrs in proptest::collection::vec(any_ip(), 0..6),
            local in proptest::option::of((any_ip(), any::<u16>())),
            port in any::<u16>(),
        ) {
            let arrived_on = local.map(|(ip, p)| SocketAddr::new(ip, p));
            let text = exclude_collector(&addrs, arrived_on, port);
            let given: Vec<IpAddr> = addrs.iter().copied().chain(arrived_on.map(|l| l.ip())).map(|a| a.to_canonical()).collect();
            if given.is_empty() {
                prop_assert_eq!(text, "");
                return Ok(());
            }
            prop_assert!(text.starts_with("not (tcp and (host ") && text.ends_with(')'));
            let ports = [Some(port), arrived_on.map(|l| l.port())];
            let mut hosts = Vec::new();
            let words: Vec<&str> = text.split([' ', '(', ')']).filter(|w| !w.is_empty()).collect();
            for (i, w) in words.iter().enumerate() {
                if matches!(*w, "not" | "tcp" | "and" | "or" | "host" | "port") {
                    continue;
                }
                match words[i - 1] {
                    "host" => {
                        let ip: IpAddr = w.parse().map_err(|_| TestCaseError::fail(format!("{w:?} is not an address")))?;
                        prop_assert!(given.contains(&ip) && ip == ip.to_canonical(), "{} was not given", ip);
                        hosts.push(ip);
                    }
                    "port" => {
                        let p: u16 = w.parse().map_err(|_| TestCaseError::fail(format!("{w:?} is not a port")))?;
                        prop_assert!(ports.contains(&Some(p)), "port {} was not given", p);
                    }
                    other => prop_assert!(false, "{:?} after {:?}", w, other),
                }
            }
            let mut unique = given.clone();
            unique.sort();
            unique.dedup();
            prop_assert_eq!(hosts.len(), unique.len(), "each address once");
        }
    }

    #[test]
    fn the_texts_compile() {
        for text in
            [exclude_collector(&ips(&["198.18.0.1", "2001:db8::1"]), sa("[::ffff:198.18.0.9]:443"), 8443), exclude_collector(&ips(&["198.18.0.1"]), None, 443)]
        {
            ossensor_libpcap::compile(&text, 1).unwrap();
        }
    }
}
