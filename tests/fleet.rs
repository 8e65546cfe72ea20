//! Two sensors on the two ends of one link, both reporting to one
//! collector: each packet of a flow between them is stored once (by the
//! sensor with the smaller id). When that sensor stops, the other takes
//! the flows back within seconds (its filter changes without a restart);
//! when it returns, it leaves them again.
//!
//!   netns a: sensor-a, collector on 198.18.70.1  a0 --veth-- b0  netns b: sensor-b, 198.18.70.2

use ossensor_suite::sensor::{base_env, Collector, Sensor};
use ossensor_suite::*;
use std::time::{Duration, Instant};

fn env_for(collector: &Collector, dir: &std::path::Path, id: &str, iface: &str) -> Vec<(String, String)> {
    let mut env = base_env(collector, dir);
    env.retain(|(k, _)| k != "OSSENSOR_SENSOR_ID" && k != "VSENSOR_HOSTNAME");
    env.push(("OSSENSOR_SENSOR_ID".into(), id.into()));
    env.push(("VSENSOR_HOSTNAME".into(), "198.18.70.1".into()));
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), iface.into()));
    env
}

/// Sends datagrams `tag-000`… from b to a and returns, for each, how many
/// copies each sensor's files hold (a, b), once every one is stored.
fn exchange(b: &Netns, collector: &Collector, dir: &TestDir, tag: &str) -> Vec<(usize, usize)> {
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
         for n in range(30):\n    s.sendto(b'{tag}-%03d' % n, ('198.18.70.1', 7000)); time.sleep(0.01)\n"
    );
    let mut p = b.spawn(&["python3", "-c", &script], dir.join(format!("{tag}.log"))).unwrap();
    assert!(p.wait_timeout(Duration::from_secs(30)).unwrap().success());
    let prefix = format!("{tag}-");
    let counts = || {
        let of = |sensor| count_marks(&collector.frames_of(Some(sensor)).unwrap(), prefix.as_bytes(), 3, 30);
        of("sensor-a").into_iter().zip(of("sensor-b")).collect::<Vec<(usize, usize)>>()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if counts().iter().all(|(x, y)| x + y >= 1) || Instant::now() > deadline {
            // A little longer, for copies still on their way.
            std::thread::sleep(Duration::from_millis(800));
            return counts();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_flow_between_two_sensors_is_stored_once_and_handed_over_when_one_leaves() {
    let prefix = unique_prefix();
    let a = Netns::new(&prefix, "a").unwrap();
    let b = Netns::new(&prefix, "b").unwrap();
    for ns in [&a, &b] {
        ns.disable_ipv6().unwrap();
    }
    veth_pair(&a, "a0", "198.18.70.1/24", &b, "b0", "198.18.70.2/24").unwrap();
    pin_neighbours(&a, "a0", "198.18.70.1", &b, "b0", "198.18.70.2").unwrap();
    let dir = TestDir::new("fleet");
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    for d in [&dir_a, &dir_b] {
        std::fs::create_dir_all(d).unwrap();
    }
    let collector = Collector::start_on(&a, dir.path(), "198.18.70.1").unwrap();
    let _udp = UdpListener::start(&a, "198.18.70.1", 7000, dir.path()).unwrap();
    let env_a = env_for(&collector, &dir_a, "sensor-a", "a0");
    let env_b = env_for(&collector, &dir_b, "sensor-b", "b0");
    let mut sensor_a = Sensor::start(&a, &dir_a, &env_a, &["a0"]).unwrap();
    let mut sensor_b = Sensor::start(&b, &dir_b, &env_b, &["b0"]).unwrap();
    // sensor-b registered after sensor-a: its filter leaves a's flows to a.
    assert!(sensor_b.effective_filter().contains("not ((host 198.18.70.1) and (host 198.18.70.2))"), "{}", sensor_b.effective_filter());

    let both = exchange(&b, &collector, &dir, "both");
    assert!(both.iter().all(|c| *c == (1, 0)), "each datagram once, by sensor-a: {both:?}");

    // sensor-a stops: sensor-b's filter changes within seconds.
    sensor_a.stop().unwrap();
    let started = Instant::now();
    sensor_b.guard.wait_for_line("the collector changed our filter", Duration::from_secs(15)).unwrap();
    println!("sensor-b took the flows back {} ms after sensor-a stopped", started.elapsed().as_millis());
    let alone = exchange(&b, &collector, &dir, "alone");
    assert!(alone.iter().all(|c| *c == (0, 1)), "stored by sensor-b now: {alone:?}");

    // sensor-a returns: sensor-b leaves the flows again.
    let mut sensor_a = Sensor::start(&a, &dir_a, &env_a, &["a0"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while sensor_b.guard.log().matches("the collector changed our filter").count() < 2 {
        assert!(Instant::now() < deadline, "sensor-b's filter did not change back:\n{}", sensor_b.guard.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let again = exchange(&b, &collector, &dir, "again");
    assert!(again.iter().all(|c| *c == (1, 0)), "once, by sensor-a again: {again:?}");
    sensor_a.stop().unwrap();
    sensor_b.stop().unwrap();
    for log in [sensor_a.guard.log(), sensor_b.guard.log()] {
        assert!(log.contains("dropped (spool full 0, refused 0, at exit 0)"), "nothing lost in the hand-overs:\n{log}");
    }
}
