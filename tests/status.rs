//! What operators see of the fleet: a sensor with real traffic, then the
//! collector's JSON status API, its `/status` page loaded in headless
//! Chromium, and its Prometheus metrics, all with the operators' read-only
//! token (and refused without it).

use ossensor_suite::sensor::{base_env, Collector, Sensor};
use ossensor_suite::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The operators' read-only token: what browsers and Prometheus hold.
fn token(collector: &Collector) -> String {
    let f: Value = serde_json::from_slice(&std::fs::read(collector.data_dir.join("operator.json")).unwrap()).unwrap();
    f["read_token"].as_str().unwrap().to_string()
}

/// curl inside `ns`: (HTTP status, body).
fn get(ns: &Netns, url: &str, auth: Option<&str>) -> (String, String) {
    let mut args = vec!["curl", "-sk", "--noproxy", "*", "--max-time", "10", "-w", "\n%{http_code}"];
    let header;
    if let Some(t) = auth {
        header = format!("Authorization: Bearer {t}");
        args.extend(["-H", header.as_str()]);
    }
    args.push(url);
    let out = ns.run_unchecked(&args, Duration::from_secs(20)).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.to_string(), body.to_string())
}

#[test]
fn status_api_page_and_metrics_show_the_sensor() {
    let (host, peer) = host_and_peer("198.18.67").unwrap();
    let dir = TestDir::new("status");
    let collector = Collector::start(&host, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    env.retain(|(k, _)| k != "OSSENSOR_SENSOR_ID");
    env.push(("OSSENSOR_SENSOR_ID".into(), "node-a".into()));
    let mut sensor = Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    let base = format!("https://127.0.0.1:{}", collector.port);
    let t = token(&collector);

    // Steady traffic: 50 datagrams a second.
    let sender = {
        let script = "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                      for i in range(1000):\n    s.sendto(b'status-%05d' % i, ('198.18.67.1', 7000)); time.sleep(0.02)\n";
        peer.spawn(&["python3", "-c", script], dir.join("udp.log")).unwrap()
    };
    // Rates need two status reports (5 s apart).
    let deadline = Instant::now() + Duration::from_secs(20);
    let sensor_view = loop {
        let (code, body) = get(&host, &format!("{base}/v1/operator/status"), Some(&t));
        assert_eq!(code, "200", "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let s = v["sensors"].as_array().unwrap().iter().find(|s| s["id"] == "node-a").cloned();
        if let Some(s) = s.filter(|s| s["packets_per_second"].as_f64().unwrap_or(0.0) > 0.0) {
            break s;
        }
        assert!(Instant::now() < deadline, "no rate after 20 s: {body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(sensor_view["version"], env!("CARGO_PKG_VERSION"));
    assert!(sensor_view["last_seen_seconds_ago"].as_i64().unwrap() <= 10, "{sensor_view}");
    let h1 = sensor_view["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "h1").cloned().expect("h1 listed");
    assert!(h1["addresses"].to_string().contains("198.18.67.1"), "{sensor_view}");
    assert!(h1["received"].as_u64().unwrap() > 0, "{sensor_view}");
    assert_eq!(sensor_view["spool_capacity_bytes"], 64 * 1024 * 1024);
    assert_eq!(sensor_view["kernel_drops"], 0);
    assert_eq!(sensor_view["actions_in_force"], 0);
    let pps = sensor_view["packets_per_second"].as_f64().unwrap();
    assert!((20.0..=80.0).contains(&pps), "about 50 packets a second: {pps}");

    // Without the token: refused, and the page asks for it.
    assert_eq!(get(&host, &format!("{base}/v1/operator/status"), None).0, "401");
    assert_eq!(get(&host, &format!("{base}/metrics"), Some("wrong")).0, "401");
    let headers =
        host.run_unchecked(&["curl", "-sk", "--noproxy", "*", "-D", "-", "-o", "/dev/null", &format!("{base}/status")], Duration::from_secs(20)).unwrap();
    assert!(String::from_utf8_lossy(&headers.stdout).to_ascii_lowercase().contains("www-authenticate: basic"));

    // The page, in a real browser: the token as the Basic password.
    let profile = dir.join("chromium-profile");
    let page_url = format!("https://operator:{t}@127.0.0.1:{}/status", collector.port);
    let out = host
        .run_unchecked(
            &[
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--ignore-certificate-errors",
                &format!("--user-data-dir={}", profile.display()),
                "--dump-dom",
                &page_url,
            ],
            Duration::from_secs(60),
        )
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<tr data-sensor=\"node-a\">"), "the sensor's row:\n{dom}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(dom.contains("1 sensors, 0 response actions active"), "{dom}");
    assert!(dom.contains("h1 <span class=\"dim\">198.18.67.1"), "interface and address: {dom}");
    assert!(dom.contains("pkt/s") && !dom.contains("<td class=\"num pps\">0 pkt/s"), "a packet rate: {dom}");
    assert!(dom.contains("http-equiv=\"refresh\""), "refreshes itself");

    // Metrics, with the token.
    let (code, text) = get(&host, &format!("{base}/metrics"), Some(&t));
    assert_eq!(code, "200");
    assert!(text.contains("vsensor_sensors_registered 1"), "{text}");
    let stored = text
        .lines()
        .find(|l| l.starts_with("vsensor_stored_packets_total{sensor=\"node-a\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(stored > 0.0, "{text}");

    let mut sender = sender;
    sender.kill();
    sensor.stop().unwrap();
}
