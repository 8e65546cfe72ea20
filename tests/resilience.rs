//! Failures during capture, with real traffic: a capture-worker killed with
//! SIGKILL (restarted, the other interfaces undisturbed) and the collector
//! restarted in the middle of traffic (nothing lost, nothing stored twice).

use ossensor_suite::sensor::{audit_events, base_env, Collector, Sensor};
use ossensor_suite::*;
use std::time::Duration;

fn icmp_echo_frames(frames: &[Frame], iface: &str) -> usize {
    frames.iter().filter(|f| f.interface == iface && f.data.len() > 34 && f.data[12..14] == [8, 0] && f.data[23] == 1).count()
}

#[test]
fn killed_worker_is_restarted_and_other_interfaces_are_undisturbed() {
    let prefix = unique_prefix();
    let host = Netns::new(&prefix, "host").unwrap();
    let p1 = Netns::new(&prefix, "p1").unwrap();
    let p2 = Netns::new(&prefix, "p2").unwrap();
    for ns in [&host, &p1, &p2] {
        ns.disable_ipv6().unwrap();
    }
    let dir = TestDir::new("kill");
    veth_pair(&host, "h1", "198.18.60.1/24", &p1, "e1", "198.18.60.2/24").unwrap();
    veth_pair(&host, "h2", "198.18.61.1/24", &p2, "e2", "198.18.61.2/24").unwrap();
    pin_neighbours(&host, "h1", "198.18.60.1", &p1, "e1", "198.18.60.2").unwrap();
    pin_neighbours(&host, "h2", "198.18.61.1", &p2, "e2", "198.18.61.2").unwrap();
    let collector = Collector::start(&host, dir.path()).unwrap();
    let env = base_env(&collector, dir.path());
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1", "h2"]).unwrap();
    let reference = Tcpdump::start(&host, "h2", None, dir.path()).unwrap();

    // Steady traffic on h2 throughout.
    let steady = {
        let log = dir.join("steady-ping.log");
        p2.spawn(&["ping", "-c", "150", "-i", "0.02", "198.18.61.1"], &log).unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let victim = sensor.child_pid("capture-worker for h1").unwrap();
    nix_kill(victim);
    sensor.guard.wait_for_line(&format!("(pid {victim}) exited"), Duration::from_secs(10)).unwrap();
    // Restarted with backoff, as a new process.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let new_pid = loop {
        match sensor.child_pid("capture-worker for h1") {
            Some(p) if p != victim => break p,
            _ if std::time::Instant::now() > deadline => panic!("worker for h1 not restarted:\n{}", sensor.guard.log()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    // Wait for its filter, then h1 captures again.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !sensor.guard.log().lines().filter(|l| l.contains(&format!("[{new_pid}]"))).any(|l| l.contains("filter attached")) {
        assert!(std::time::Instant::now() < deadline, "restarted worker never attached its filter:\n{}", sensor.guard.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    p1.run(&["ping", "-c", "5", "-i", "0.1", "198.18.60.1"]).unwrap();
    let mut steady = steady;
    steady.wait_timeout(Duration::from_secs(20)).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let expected = reference.stop_and_read().unwrap();
    sensor.stop().unwrap();
    assert!(sensor.guard.log().contains("event=child_restart"), "the restart is an audit event");

    let got = collector.frames().unwrap();
    let h2_got: Vec<Frame> = got.iter().filter(|f| f.interface == "h2").cloned().collect();
    assert_same_frames(&expected, &h2_got);
    assert_eq!(icmp_echo_frames(&h2_got, "h2"), 300, "every echo request and reply on h2");
    assert!(icmp_echo_frames(&got, "h1") >= 10, "h1 captured again after the restart");
}

fn nix_kill(pid: i32) {
    // SAFETY: plain kill(2) on a pid this test's sensor started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

#[test]
fn collector_restart_mid_traffic_loses_nothing_and_stores_nothing_twice() {
    let prefix = unique_prefix();
    let host = Netns::new(&prefix, "host").unwrap();
    let peer = Netns::new(&prefix, "peer").unwrap();
    for ns in [&host, &peer] {
        ns.disable_ipv6().unwrap();
    }
    let dir = TestDir::new("crestart");
    veth_pair(&host, "h1", "198.18.62.1/24", &peer, "e1", "198.18.62.2/24").unwrap();
    pin_neighbours(&host, "h1", "198.18.62.1", &peer, "e1", "198.18.62.2").unwrap();
    let mut collector = Collector::start(&host, dir.path()).unwrap();
    let env = base_env(&collector, dir.path());
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    let filter = sensor.effective_filter();
    let reference = Tcpdump::start(&host, "h1", Some(&filter), dir.path()).unwrap();

    // Numbered UDP datagrams and pings for about 4 s; the collector is
    // down for 1.5 s in the middle.
    let mut udp = UdpListener::start(&host, "198.18.62.1", 7000, dir.path()).unwrap();
    let sender = {
        let script = "import socket,time\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
for i in range(400):\n    s.sendto(b'seq-%05d' % i, ('198.18.62.1', 7000)); time.sleep(0.01)\n";
        peer.spawn(&["python3", "-c", script], dir.join("udp-sender.log")).unwrap()
    };
    std::thread::sleep(Duration::from_millis(1000));
    collector.restart(&host, Duration::from_millis(1500)).unwrap();
    let mut sender = sender;
    assert!(sender.wait_timeout(Duration::from_secs(30)).unwrap().success());
    udp.wait_for(b"seq-00399", Duration::from_secs(5)).unwrap();
    // Enough time for the spool to drain after the collector's return.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let got = collector.frames().unwrap();
        if got.iter().any(|f| f.data.windows(9).any(|w| w == b"seq-00399")) || std::time::Instant::now() > deadline {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let expected = reference.stop_and_read().unwrap();
    sensor.stop().unwrap();
    let log = sensor.guard.log();
    assert!(log.contains("dropped (spool full 0, refused 0, at exit 0)"), "nothing dropped:\n{log}");
    let got = collector.frames().unwrap();
    assert_same_frames(&expected, &got);
    let numbered = got.iter().filter(|f| f.data.windows(4).any(|w| w == b"seq-")).count();
    assert_eq!(numbered, 400, "each datagram stored exactly once");
    for f in collector.files() {
        tshark_count(&f);
    }
}

/// The sensor pins the certificate that proved the key. A collector that
/// comes back with another certificate gets nothing until it proves the key
/// again; then delivery resumes, with nothing lost.
#[test]
fn new_collector_certificate_is_pinned_only_after_it_proves_the_key() {
    let prefix = unique_prefix();
    let host = Netns::new(&prefix, "host").unwrap();
    let peer = Netns::new(&prefix, "peer").unwrap();
    for ns in [&host, &peer] {
        ns.disable_ipv6().unwrap();
    }
    let dir = TestDir::new("newcert");
    veth_pair(&host, "h1", "198.18.63.1/24", &peer, "e1", "198.18.63.2/24").unwrap();
    pin_neighbours(&host, "h1", "198.18.63.1", &peer, "e1", "198.18.63.2").unwrap();
    let mut collector = Collector::start(&host, dir.path()).unwrap();
    let first = collector.guard.wait_for_line("fingerprint", Duration::from_secs(5)).unwrap();
    let env = base_env(&collector, dir.path());
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    let mut udp = UdpListener::start(&host, "198.18.63.1", 7000, dir.path()).unwrap();
    let send = |from: u32, to: u32| {
        let script = format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for i in range({from},{to}):\n    s.sendto(b'cert-%05d' % i, ('198.18.63.1', 7000)); time.sleep(0.01)\n"
        );
        let mut p = peer.spawn(&["python3", "-c", &script], dir.join(format!("udp-{from}.log"))).unwrap();
        assert!(p.wait_timeout(Duration::from_secs(30)).unwrap().success());
    };
    send(0, 50);
    udp.wait_for(b"cert-00049", Duration::from_secs(5)).unwrap();
    collector.restart_with_new_certificate(&host, Duration::from_millis(500)).unwrap();
    let second = collector.guard.wait_for_line("fingerprint", Duration::from_secs(5)).unwrap();
    assert_ne!(first, second, "the collector made a new certificate");
    send(50, 100);
    udp.wait_for(b"cert-00099", Duration::from_secs(5)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let numbered = || collector.frames().unwrap().iter().filter(|f| f.data.windows(5).any(|w| w == b"cert-")).count();
    while numbered() < 100 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    sensor.stop().unwrap();
    let log = sensor.guard.log();
    assert!(log.contains("collector certificate differs from the one that proved the key"), "the new certificate was noticed:\n{log}");
    assert!(log.contains("dropped (spool full 0, refused 0, at exit 0)"), "nothing dropped:\n{log}");
    assert_eq!(numbered(), 100, "every datagram stored once, before and after the new certificate");
}

/// A capture-worker and the uplink each killed with SIGKILL four times in
/// a row, each time as soon as its successor runs: each is restarted with
/// a growing delay (500 ms, 1 s, 2 s, 4 s: supervisor/src/restart.rs),
/// the supervisor stays up, and capture and delivery work afterwards.
#[test]
fn children_killed_repeatedly_are_restarted_with_backoff_and_the_supervisor_stays_up() {
    let (host, peer) = host_and_peer("198.18.93").unwrap();
    let dir = TestDir::new("killloop");
    let collector = Collector::start(&host, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    let roles = ["capture-worker for h1", "uplink"];
    let mut last: Vec<i32> = roles.iter().map(|r| sensor.child_pid(r).unwrap()).collect();
    for round in 0..4 {
        for (i, role) in roles.iter().enumerate() {
            // Its successor is running (a new pid, alive).
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let pid = loop {
                match sensor.child_pid(role) {
                    Some(p) if round == 0 || p != last[i] => break p,
                    _ => {}
                }
                assert!(std::time::Instant::now() < deadline, "{role} not restarted:\n{}", sensor.guard.log());
                std::thread::sleep(Duration::from_millis(20));
            };
            nix_kill(pid);
            sensor.guard.wait_for_line(&format!("{role} (pid {pid}) exited"), Duration::from_secs(10)).unwrap();
            last[i] = pid;
        }
        assert!(sensor.guard.is_running(), "the supervisor is up after round {round}");
    }
    let log = sensor.guard.log();
    let events = audit_events(&log);
    let delays = |role: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["event"] == "child_restart" && e.get("child").is_some_and(|c| c.starts_with(role)))
            .filter_map(|e| e.get("delay_ms")?.parse().ok())
            .collect()
    };
    for role in roles {
        assert_eq!(delays(role), [500, 1000, 2000, 4000], "{role}: backoff grows:\n{log}");
    }
    // Both come back, and the path works end to end.
    let since = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut n = 0;
    loop {
        let mark = format!("after-the-kills-{n}");
        udp_send(&peer, "198.18.93.1", 7000, mark.as_bytes(), None).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        if collector.frames().unwrap().iter().any(|f| f.data.windows(mark.len()).any(|w| w == mark.as_bytes())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing stored after the kills:\n{}", sensor.guard.log());
        n += 1;
    }
    assert!(sensor.guard.is_running());
    assert_eq!(log.matches("event=child_restart").count(), 8, "each restart audited");
    println!(
        "worker and uplink killed 4 times each: restarted after {:?} and {:?} ms; supervisor up; a datagram stored {:.1} s after the last kill",
        delays(roles[0]),
        delays(roles[1]),
        since.elapsed().as_secs_f64()
    );
    sensor.stop().unwrap();
}
