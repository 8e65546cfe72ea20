//! Host protection: the sensor capped at 1% of a CPU (a cgroup's CPU quota,
//! what `CPUQuota=1%` or `docker run --cpus=0.01` sets) while real UDP
//! traffic floods the interface. The sensor must degrade by counting the
//! packets its ring could not hold, never by slowing the host's own
//! traffic, and every packet the kernel saw must be accounted for.

use ossensor_suite::sensor::{base_env, scrape_metrics, Collector, Sensor};
use ossensor_suite::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A cgroup v1 `cpu` group with a quota, removed on drop (its processes
/// moved back to the root group first).
struct CpuCap {
    path: PathBuf,
}

impl CpuCap {
    fn new(name: &str, quota_us: i64) -> CpuCap {
        let path = PathBuf::from("/sys/fs/cgroup/cpu").join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("cgroup {}: {e} (needs the cgroup v1 cpu controller)", path.display()));
        let cap = CpuCap { path };
        cap.set_quota(quota_us);
        cap
    }

    fn set_quota(&self, quota_us: i64) {
        std::fs::write(self.path.join("cpu.cfs_period_us"), "100000").unwrap();
        std::fs::write(self.path.join("cpu.cfs_quota_us"), quota_us.to_string()).unwrap();
    }

    fn add(&self, pid: i32) {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string()).unwrap_or_else(|e| panic!("moving {pid} into the cgroup: {e}"));
    }

    /// Times the group was held back by its quota.
    fn throttled(&self) -> u64 {
        let stat = std::fs::read_to_string(self.path.join("cpu.stat")).unwrap();
        stat.lines().find_map(|l| l.strip_prefix("nr_throttled ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.lines() {
                let _ = std::fs::write("/sys/fs/cgroup/cpu/cgroup.procs", pid);
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Packets through `ifname` in both directions, as the kernel counts them.
fn link_packets(ns: &Netns, ifname: &str) -> u64 {
    let read = |what: &str| {
        let out = ns.run(&["cat", &format!("/sys/class/net/{ifname}/statistics/{what}")]).unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().unwrap()
    };
    read("rx_packets") + read("tx_packets")
}

/// Waits until the sensor's counters and the link's stop moving (a quiet
/// link: statistics reach the uplink every second).
fn settle(ns: &Netns, url: &str) -> (BTreeMap<String, f64>, u64) {
    let mut last = (scrape_metrics(ns, url), link_packets(ns, "h1"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(2500));
        let now = (scrape_metrics(ns, url), link_packets(ns, "h1"));
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "the sensor's counters never settled");
        last = now;
    }
}

#[test]
fn a_cpu_capped_sensor_counts_its_drops_and_never_slows_the_host() {
    // A flood whose sender must reach its rate (and a worker that must be
    // starved by its quota, not by another test): nothing that takes the
    // machine beside it.
    let _slot = exclusive_slot();
    let (host, peer) = host_and_peer("198.18.67").unwrap();
    let dir = TestDir::new("cpucap");
    let collector = Collector::start(&host, dir.path()).unwrap();
    let metrics = "127.0.0.1:19274";
    let url = format!("http://{metrics}/metrics");
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    env.push(("OSSENSOR_METRICS_ADDR".into(), metrics.into()));
    // Small rings, so a starved worker overflows them within the run.
    env.push(("OSSENSOR_CAPTURE_BUFFER_MB".into(), "2".into()));
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();

    let cap = CpuCap::new(&format!("ossensor-{}", host.prefix()), 1000);
    let pids = [Some(sensor.guard.pid() as i32), sensor.child_pid("uplink"), sensor.child_pid("capture-worker for h1")];
    for pid in pids {
        cap.add(pid.expect("the sensor's processes"));
    }
    let (before, link_before) = settle(&host, &url);

    // The host's own traffic: 10,000 datagrams/s of 500 bytes for 3 s, ten
    // times what the capped sensor can take.
    let server = Iperf3Server::start(&host, "198.18.67.1", 5210, dir.path()).unwrap();
    let out = run_timeout(
        peer.exec("iperf3").args(["-c", "198.18.67.1", "-p", "5210", "-u", "-b", "40M", "-l", "500", "-t", "3", "-J", "--connect-timeout", "5000"]),
        Duration::from_secs(30),
    )
    .unwrap();
    server.finish().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sum = &report["end"]["sum"];
    let (sent, lost) = (sum["packets"].as_u64().unwrap(), sum["lost_packets"].as_u64().unwrap());
    let rate = sum["bits_per_second"].as_f64().unwrap();
    let throttled = cap.throttled();

    // Lift the cap so the backlog drains, then account for every packet.
    cap.set_quota(-1);
    let (after, link_after) = settle(&host, &url);
    let delta = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let received = delta("ossensor_interface_packets_received_total{interface=\"h1\"}");
    let forwarded = delta("ossensor_interface_packets_forwarded_total{interface=\"h1\"}");
    let dropped_kernel = delta("ossensor_interface_packets_dropped_total{interface=\"h1\",where=\"kernel\"}");
    let captured = delta("ossensor_packets_captured_total");
    let delivered = delta("ossensor_packets_delivered_total");
    let dropped_uplink: f64 =
        after.iter().filter(|(k, _)| k.starts_with("ossensor_packets_dropped_total{")).map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0)).sum();
    eprintln!(
        "cpu cap 1%: iperf3 sent {sent} at {rate:.0} bit/s, receiver lost {lost}; cgroup throttled {throttled} times; link {} packets; \
         sensor received {received}, forwarded {forwarded}, dropped in the kernel {dropped_kernel}; \
         uplink captured {captured}, delivered {delivered}, dropped {dropped_uplink}",
        link_after - link_before
    );

    // The cap really bit, and the sensor said so by counting.
    assert!(throttled > 0, "the quota never throttled the sensor");
    assert!(dropped_kernel > 0.0, "a worker at 1% of a CPU kept up with {sent} datagrams: the test did not starve it");
    // The host's traffic did not wait for the sensor: the sender kept its
    // rate and every datagram crossed the link. (The receiver's own losses,
    // printed above, depend on how busy this shared machine is, not on the
    // capture: a packet socket never holds the stack back.)
    assert!(rate >= 0.95 * 40e6, "the host's sender reached only {rate} bit/s");
    assert!(link_after - link_before >= sent, "fewer packets crossed the link than were sent");
    // Every packet the kernel passed on h1 is either forwarded or counted as dropped.
    assert_eq!(received as u64, link_after - link_before, "the sensor's received count differs from the link's");
    assert_eq!(received, forwarded + dropped_kernel, "received = forwarded + dropped in the kernel");
    assert_eq!(forwarded, captured, "every forwarded packet reached the uplink");
    assert_eq!(captured, delivered + dropped_uplink, "captured = delivered + dropped with a reason");
    let udp = collector.frames().unwrap().iter().filter(|f| f.data.len() >= 542 && f.data[23] == 17).count() as f64;
    assert!(udp <= delivered && udp + dropped_kernel + dropped_uplink >= sent as f64, "{udp} iperf3 datagrams stored");
    sensor.stop().unwrap();
}
