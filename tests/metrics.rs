//! Prometheus metrics of the sensor (OSSENSOR_METRICS_ADDR), scraped with
//! curl inside the namespace after real traffic, and checked line by line
//! against the text format.

use ossensor_suite::sensor::{base_env, scrape_metrics, Collector, Sensor};
use ossensor_suite::*;
use std::time::{Duration, Instant};

#[test]
fn the_uplink_serves_prometheus_metrics_that_count_real_traffic() {
    let (host, peer) = host_and_peer("198.18.66").unwrap();
    let dir = TestDir::new("metrics");
    let collector = Collector::start(&host, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    env.push(("OSSENSOR_METRICS_ADDR".into(), "127.0.0.1:19273".into()));
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    assert!(sensor.guard.log().contains("Prometheus metrics on http://127.0.0.1:19273/metrics"));

    let mut udp = UdpListener::start(&host, "198.18.66.1", 7000, dir.path()).unwrap();
    for i in 0..50 {
        udp_send(&peer, "198.18.66.1", 7000, format!("metric-{i:03}").as_bytes(), None).unwrap();
    }
    udp.wait_for(b"metric-049", Duration::from_secs(5)).unwrap();
    // Statistics reach the uplink every second, chunks within 200 ms.
    let url = "http://127.0.0.1:19273/metrics";
    let deadline = Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = scrape_metrics(&host, url);
        let received = m.get("ossensor_interface_packets_received_total{interface=\"h1\"}").copied().unwrap_or(0.0);
        if (m["ossensor_packets_delivered_total"] >= 50.0 && received >= 50.0) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(m["ossensor_packets_captured_total"] >= 50.0, "{m:?}");
    assert!(m["ossensor_packets_delivered_total"] >= 50.0, "{m:?}");
    assert!(m["ossensor_interface_packets_received_total{interface=\"h1\"}"] >= 50.0, "{m:?}");
    assert!(m["ossensor_interface_packets_forwarded_total{interface=\"h1\"}"] >= 50.0, "{m:?}");
    assert_eq!(m["ossensor_interface_packets_dropped_total{interface=\"h1\",where=\"kernel\"}"], 0.0);
    assert_eq!(m["ossensor_packets_dropped_total{reason=\"spool_full\"}"], 0.0);
    assert!(m["ossensor_chunks_delivered_total"] >= 1.0);
    assert!(m["ossensor_delivered_raw_bytes_total"] >= m["ossensor_delivered_bytes_total"], "compressed is smaller");
    assert_eq!(m["ossensor_spool_capacity_bytes"], 64.0 * 1024.0 * 1024.0);
    assert_eq!(m["ossensor_response_actions_in_force"], 0.0);
    assert_eq!(m[&format!("ossensor_build_info{{version=\"{}\",sensor=\"test-sensor\"}}", env!("CARGO_PKG_VERSION"))], 1.0);

    // Anything else is refused.
    let other = host
        .run_unchecked(&["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*", "http://127.0.0.1:19273/"], Duration::from_secs(10))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
    sensor.stop().unwrap();
}

#[test]
fn a_bad_metrics_address_is_refused_naming_the_variable() {
    let prefix = unique_prefix();
    let host = Netns::new(&prefix, "host").unwrap();
    let dir = TestDir::new("badmetrics");
    let collector = Collector::start(&host, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_METRICS_ADDR".into(), "localhost:9273".into()));
    let out = ossensor_suite::sensor::sensor_command(&host, &env, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OSSENSOR_METRICS_ADDR=\"localhost:9273\"") && err.contains("must be an address and a port"), "{err}");
}
