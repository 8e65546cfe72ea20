//! One packet, three interfaces: a container host in namespaces. Two pods
//! on veths to a bridge, NAT (nftables masquerade) to an uplink veth, a
//! server outside. The sensor captures every interface of the host, so
//! each datagram and ping is seen on the pod's veth, on the bridge and, after
//! NAT, on the uplink. The collector must hold each of them once.
//!
//!   pod1 198.18.68.2 --veth-- vp1 -+- cbr0 198.18.68.1 (host) NAT up0 198.18.69.1 --veth-- ext 198.18.69.2
//!   pod2 198.18.68.3 --veth-- vp2 -+

use ossensor_suite::sensor::{base_env, Collector, Sensor};
use ossensor_suite::*;
use std::time::{Duration, Instant};

struct Host {
    host: Netns,
    pods: [Netns; 2],
    ext: Netns,
}

fn container_host() -> Host {
    let prefix = unique_prefix();
    let host = Netns::new(&prefix, "host").unwrap();
    let pods = [Netns::new(&prefix, "pod1").unwrap(), Netns::new(&prefix, "pod2").unwrap()];
    let ext = Netns::new(&prefix, "ext").unwrap();
    for ns in [&host, &pods[0], &pods[1], &ext] {
        ns.disable_ipv6().unwrap();
    }
    host.ip(&["link", "add", "cbr0", "type", "bridge"]).unwrap();
    host.ip(&["addr", "add", "198.18.68.1/24", "dev", "cbr0"]).unwrap();
    host.ip(&["link", "set", "cbr0", "up"]).unwrap();
    for (i, pod) in pods.iter().enumerate() {
        let port = format!("vp{}", i + 1);
        pod.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", host.name()]).unwrap();
        pod.ip(&["addr", "add", &format!("198.18.68.{}/24", i + 2), "dev", "eth0"]).unwrap();
        pod.ip(&["link", "set", "eth0", "up"]).unwrap();
        pod.ip(&["route", "add", "default", "via", "198.18.68.1"]).unwrap();
        host.ip(&["link", "set", &port, "master", "cbr0"]).unwrap();
        host.ip(&["link", "set", &port, "up"]).unwrap();
    }
    veth_pair(&host, "up0", "198.18.69.1/24", &ext, "ex0", "198.18.69.2/24").unwrap();
    host.sysctl("net.ipv4.ip_forward", "1").unwrap();
    host.run(&["nft", "add", "table", "ip", "nat"]).unwrap();
    host.run(&["nft", "add", "chain", "ip", "nat", "postrouting", "{ type nat hook postrouting priority 100 ; }"]).unwrap();
    host.run(&["nft", "add", "rule", "ip", "nat", "postrouting", "oifname", "up0", "ip", "saddr", "198.18.68.0/24", "masquerade"]).unwrap();
    Host { host, pods, ext }
}

/// Runs the container host with deduplication on or off; returns (each
/// marked datagram's count in the collector, ICMP echo frames stored, bytes
/// the collector stored).
fn run(deduplicate: bool) -> (Vec<usize>, usize, u64, String) {
    let h = container_host();
    let dir = TestDir::new(if deduplicate { "dedup-on" } else { "dedup-off" });
    let collector = Collector::start(&h.host, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_DEDUPLICATE".into(), deduplicate.to_string()));
    let mut sensor = Sensor::start(&h.host, dir.path(), &env, &["vp1", "vp2", "cbr0", "up0"]).unwrap();
    let mut udp = UdpListener::start(&h.ext, "198.18.69.2", 7000, dir.path()).unwrap();
    for (i, pod) in h.pods.iter().enumerate() {
        let script = format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for n in range(100):\n    s.sendto(b'pod{i}-dgram-%03d' % n, ('198.18.69.2', 7000)); time.sleep(0.005)\n"
        );
        let mut p = pod.spawn(&["python3", "-c", &script], dir.join(format!("pod{i}.log"))).unwrap();
        assert!(p.wait_timeout(Duration::from_secs(30)).unwrap().success());
        pod.run(&["ping", "-c", "5", "-i", "0.05", "-W", "2", "198.18.69.2"]).unwrap();
    }
    udp.wait_for(b"pod1-dgram-099", Duration::from_secs(5)).unwrap();
    let count = |frames: &[Frame]| -> Vec<usize> { (0..2).flat_map(|i| count_marks(frames, format!("pod{i}-dgram-").as_bytes(), 3, 100)).collect() };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !count(&collector.frames().unwrap()).iter().all(|c| *c >= 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    // Counted once the sensor stopped and delivered everything: a datagram
    // seen in the collector on one interface may still be on its way from
    // the others (counting before the stop made the run without
    // de-duplication miss the last copies now and then).
    sensor.stop().unwrap();
    let frames = collector.frames().unwrap();
    let counts = count(&frames);
    let icmp = frames.iter().filter(|f| f.data.len() > 34 && f.data[12..14] == [8, 0] && f.data[23] == 1).count();
    let bytes = collector.files().iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    (counts, icmp, bytes, sensor.guard.log())
}

#[test]
fn each_packet_of_a_container_host_is_stored_once() {
    let (counts, icmp, bytes_on, log) = run(true);
    let missing = counts.iter().filter(|c| **c == 0).count();
    let dups: usize = counts.iter().map(|c| c.saturating_sub(1)).sum();
    assert_eq!(missing, 0, "every datagram stored");
    // 10 pings: requests and replies, each at least once. A copy captured
    // more than the window (10 ms) after the first is kept (a retransmission
    // looks the same): on this shared 2-core machine a few are, so at most
    // 1% of all marked frames may be kept twice.
    assert!(icmp >= 20, "each echo request and reply stored: {icmp}");
    let extra = dups + (icmp - 20);
    assert!(extra * 100 <= counts.len() + 20, "at most 1% kept twice: {dups} datagrams and {} echo frames of {}", icmp - 20, counts.len() + 20);
    assert!(log.contains("duplicates removed"), "{log}");

    // The same traffic without de-duplication: three copies of each.
    let (counts_off, icmp_off, bytes_off, log_off) = run(false);
    let odd: Vec<(usize, usize)> = counts_off.iter().copied().enumerate().filter(|(_, c)| *c != 3).collect();
    assert!(odd.is_empty(), "vp, bridge, uplink: three copies of each; (datagram, copies) otherwise: {odd:?}\n{log_off}");
    assert_eq!(icmp_off, 60);
    println!(
        "container host: 200 datagrams + 20 ICMP; stored with de-duplication {bytes_on} bytes ({} duplicates), without {bytes_off} bytes ({:.2}x)",
        dups,
        bytes_off as f64 / bytes_on as f64
    );
}
