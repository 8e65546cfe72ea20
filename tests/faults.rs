//! Faults on the way to the collector, under sustained traffic: the
//! collector's link down, and a black hole (its packets dropped, so
//! connections hang). The sensor keeps capturing and spooling, delivers
//! everything in order once the way is back, stores nothing twice, and
//! its accounting holds: captured = delivered + dropped, with 0 dropped.
//!
//!   netns src 198.18.72.2 (traffic) --veth-- h1 198.18.72.1 netns sen (sensor on h1)
//!   netns col 198.18.73.2 (collector)  --veth-- k1 198.18.73.1 netns sen

use ossensor_suite::sensor::{base_env, Collector, Sensor};
use ossensor_suite::*;
use std::time::{Duration, Instant};

const DATAGRAMS: usize = 600;

/// Sends DATAGRAMS numbered datagrams over about 6 s while `fault` runs
/// (started 1 s in), then checks that the collector stored each once.
fn under_fault(label: &str, fault: impl FnOnce(&Netns, u16), heal: impl FnOnce(&Netns, u16)) {
    let (sen, src) = host_and_peer("198.18.72").unwrap();
    let col = Netns::new(sen.prefix(), "col").unwrap();
    col.disable_ipv6().unwrap();
    veth_pair(&sen, "k1", "198.18.73.1/24", &col, "c0", "198.18.73.2/24").unwrap();
    let dir = TestDir::new(label);
    let collector = Collector::start_on(&col, dir.path(), "198.18.73.2").unwrap();
    let _listener = UdpListener::start(&sen, "198.18.72.1", 7000, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.retain(|(k, _)| k != "VSENSOR_HOSTNAME");
    env.push(("VSENSOR_HOSTNAME".into(), "198.18.73.2".into()));
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    let mut sensor = Sensor::start(&sen, dir.path(), &env, &["h1"]).unwrap();
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for n in range({DATAGRAMS}):\n    s.sendto(b'{label}-%05d' % n, ('198.18.72.1', 7000)); time.sleep(0.01)\n"
    );
    let mut traffic = src.spawn(&["python3", "-c", &script], dir.join("traffic.log")).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    fault(&col, collector.port);
    std::thread::sleep(Duration::from_secs(5));
    heal(&col, collector.port);
    let healed = Instant::now();
    assert!(traffic.wait_timeout(Duration::from_secs(30)).unwrap().success());
    let marks: Vec<String> = (0..DATAGRAMS).map(|n| format!("{label}-{n:05}")).collect();
    // A request caught in the fault may hang until its 30 s timeout.
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let frames = collector.frames().unwrap();
        let counts: Vec<usize> = marks.iter().map(|m| frames.iter().filter(|f| f.data.windows(m.len()).any(|w| w == m.as_bytes())).count()).collect();
        if counts.iter().all(|c| *c >= 1) || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!("{label}: all {DATAGRAMS} datagrams stored {:.1} s after the fault ended", healed.elapsed().as_secs_f64());
    let missing = counts.iter().filter(|c| **c == 0).count();
    let twice = counts.iter().filter(|c| **c > 1).count();
    sensor.stop().unwrap();
    let log = sensor.guard.log();
    assert_eq!((missing, twice), (0, 0), "every datagram stored exactly once (missing, twice)");
    assert!(log.contains("dropped (spool full 0, refused 0, at exit 0)"), "nothing dropped:\n{log}");
    // Stored in order: the datagrams' sequence in the files is ascending.
    let frames = collector.frames().unwrap();
    let order: Vec<usize> = frames
        .iter()
        .filter_map(|f| marks.iter().position(|m| f.data.windows(m.len()).any(|w| w == m.as_bytes())))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "delivered in order");
    for f in collector.files() {
        tshark_count(&f);
    }
}

#[test]
fn collector_link_down_for_5_s_loses_nothing() {
    under_fault("linkdown", |col, _| set_link_up(col, "c0", false).unwrap(), |col, _| set_link_up(col, "c0", true).unwrap());
}

#[test]
fn collector_black_hole_for_5_s_loses_nothing() {
    under_fault(
        "blackhole",
        |col, port| {
            // The collector's packets vanish: connections hang, nothing is refused.
            col.run(&["nft", "add", "table", "inet", "hole"]).unwrap();
            col.run(&["nft", "add", "chain", "inet", "hole", "input", "{ type filter hook input priority 0 ; }"]).unwrap();
            col.run(&["nft", "add", "rule", "inet", "hole", "input", "tcp", "dport", &port.to_string(), "drop"]).unwrap();
        },
        |col, _| col.run(&["nft", "delete", "table", "inet", "hole"]).map(|_| ()).unwrap(),
    );
}
