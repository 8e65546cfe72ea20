//! Response actions end to end, with real TCP connections through a bridge
//! the sensor watches: the collector's operator command (`vsensor action`),
//! the WebSocket push, the worker's resets, and the reports back.
//!
//! Topology (all in namespaces of the test):
//!   cli 198.18.64.1 (c0) --veth-- cv -+- br0 (sensor namespace,
//!   srv 198.18.64.2 (s0) --veth-- sv -+   198.18.64.254, collector on lo)

use ossensor_suite::sensor::{base_env, Collector, Sensor};
use ossensor_suite::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const CLI: &str = "198.18.64.1";
const SRV: &str = "198.18.64.2";

struct Bed {
    cli: Netns,
    srv: Netns,
    sen: Netns,
}

fn bed() -> Bed {
    let prefix = unique_prefix();
    let (cli, srv, sen) = (Netns::new(&prefix, "cli").unwrap(), Netns::new(&prefix, "srv").unwrap(), Netns::new(&prefix, "sen").unwrap());
    for ns in [&cli, &srv, &sen] {
        ns.disable_ipv6().unwrap();
    }
    sen.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    for (ns, end, port, cidr) in [(&cli, "c0", "cv", "198.18.64.1/24"), (&srv, "s0", "sv", "198.18.64.2/24")] {
        ns.ip(&["link", "add", end, "type", "veth", "peer", "name", port, "netns", sen.name()]).unwrap();
        ns.ip(&["addr", "add", cidr, "dev", end]).unwrap();
        ns.ip(&["link", "set", end, "up"]).unwrap();
        sen.ip(&["link", "set", port, "master", "br0"]).unwrap();
        sen.ip(&["link", "set", port, "up"]).unwrap();
    }
    sen.ip(&["addr", "add", "198.18.64.254/24", "dev", "br0"]).unwrap();
    sen.ip(&["link", "set", "br0", "up"]).unwrap();
    Bed { cli, srv, sen }
}

fn script() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tcpends.py").display().to_string()
}

/// The JSON events a tcpends.py process printed so far.
fn events(p: &ProcessGuard) -> Vec<Value> {
    p.log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vsensor action ARGS` in the sensor's namespace; its stdout.
fn action(bed: &Bed, collector: &Collector, args: &[&str]) -> String {
    let mut cmd = bed.sen.exec(bin("vsensor").to_str().unwrap());
    cmd.arg("action").args(args).env_clear().env("VSENSOR_DATA_DIR", &collector.data_dir);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "vsensor action {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn ended(p: &ProcessGuard) -> Option<Value> {
    events(p).into_iter().find(|e| e["event"] == "ended")
}

fn server_end(server: &ProcessGuard, port: u64) -> Option<String> {
    events(server).into_iter().find(|e| e["event"] == "server_ended" && e["peer_port"] == port).map(|e| e["how"].as_str().unwrap().to_string())
}

fn local_port(p: &ProcessGuard) -> u64 {
    events(p).iter().find(|e| e["event"] == "connected").and_then(|e| e["local_port"].as_u64()).expect("connected")
}

fn probe(bed: &Bed, dir: &TestDir, n: usize, port: u16) -> bool {
    let mut p = bed.cli.spawn(&["python3", &script(), "probe", SRV, &port.to_string()], dir.join(format!("probe-{n}.log"))).unwrap();
    p.wait_timeout(Duration::from_secs(10)).unwrap().success()
}

#[test]
fn block_kills_busy_and_idle_connections_refuses_new_ones_and_reports() {
    let bed = bed();
    let dir = TestDir::new("actions");
    let collector = Collector::start(&bed.sen, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "br0".into()));
    env.push(("OSSENSOR_DEBUG".into(), "3".into()));
    env.push(("ANTIGENA_TIME_PERIOD".into(), "1".into()));
    // A syslog socket of our own, writable by the unprivileged children.
    let sock_path = dir.join("syslog.sock");
    let syslog = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    syslog.set_nonblocking(true).unwrap();
    env.push(("OSSENSOR_SYSLOG_SOCKET".into(), sock_path.display().to_string()));
    let mut sensor = Sensor::start(&bed.sen, dir.path(), &env, &["br0"]).unwrap();
    sensor.guard.wait_for_line("response actions: connected", Duration::from_secs(20)).unwrap();

    let mut server = bed.srv.spawn(&["python3", &script(), "server", SRV, "7000", "7001"], dir.join("server.log")).unwrap();
    server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
    let mut busy = bed.cli.spawn(&["python3", &script(), "busy", SRV, "7000", "busy"], dir.join("busy.log")).unwrap();
    let mut idle = bed.cli.spawn(&["python3", &script(), "idle", SRV, "7000", "idle"], dir.join("idle.log")).unwrap();
    let mut other = bed.cli.spawn(&["python3", &script(), "busy", SRV, "7001", "other"], dir.join("other.log")).unwrap();
    for p in [&mut busy, &mut idle, &mut other] {
        p.wait_for_line("echoed", Duration::from_secs(10)).unwrap();
    }
    // The idle connection is quiet from here on: only a probe can learn
    // its numbers now.
    std::thread::sleep(Duration::from_millis(500));

    // Every reset on the wire for the unrelated port, if any were sent.
    let unrelated_rsts = Tcpdump::start(&bed.sen, "br0", Some("tcp port 7001 and tcp[tcpflags] & tcp-rst != 0"), dir.path()).unwrap();
    let id = action(&bed, &collector, &["block", "--src", CLI, "--dst", SRV, "--dport", "7000", "--proto", "tcp", "--for", "4"]);
    let id: u64 = id.trim().parse().expect("the new action's id");
    let created = Instant::now();
    wait_until("both blocked clients reset", Duration::from_secs(3), || ended(&busy).is_some() && ended(&idle).is_some());
    for (name, p) in [("busy", &busy), ("idle", &idle)] {
        assert_eq!(ended(p).unwrap()["how"], "ECONNRESET", "{name} client: {:?}", events(p));
        let port = local_port(p);
        let deadline = Instant::now() + Duration::from_secs(2);
        while server_end(&server, port).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(server_end(&server, port).is_some(), "the server end of the {name} connection (port {port}) was not reset: {:?}", events(&server));
        assert_eq!(server_end(&server, port).unwrap(), "ECONNRESET", "{name} connection, server end");
    }

    // New connections during the action cannot exchange data.
    for n in 0..3 {
        assert!(!probe(&bed, &dir, n, 7000), "a new connection survived the block: {:?}", std::fs::read_to_string(dir.join(format!("probe-{n}.log"))));
    }
    // The unrelated connection (another port) is untouched.
    assert!(ended(&other).is_none(), "unrelated connection ended: {:?}", events(&other));

    let rsts = unrelated_rsts.stop_and_read().unwrap();
    assert!(rsts.is_empty(), "{} resets on the unrelated connection", rsts.len());

    // After the action, new connections work again.
    let left = Duration::from_secs(4).saturating_sub(created.elapsed()) + Duration::from_millis(300);
    std::thread::sleep(left);
    assert!(probe(&bed, &dir, 10, 7000), "new connections work once the action is over");
    assert!(ended(&other).is_none(), "unrelated connection ended: {:?}", events(&other));

    // The sensor's report reached the collector.
    let mut report = Value::Null;
    wait_until("a report on the collector", Duration::from_secs(5), || {
        let list: Value = serde_json::from_str(&action(&bed, &collector, &["list", "--json"])).unwrap();
        report = list["actions"].as_array().unwrap().iter().find(|a| a["id"] == id).map(|a| a["reports"]["test-sensor"].clone()).unwrap_or(Value::Null);
        report["connections_reset"].as_u64().unwrap_or(0) >= 2
    });
    assert!(report["connections_refused"].as_u64().unwrap() >= 3, "{report}");
    let table = action(&bed, &collector, &["list"]);
    assert!(table.contains(&format!("block {CLI} <-> {SRV}:7000")), "{table}");

    let log = sensor.guard.log();
    assert!(log.contains(&format!("action {id} applied")), "level 3 shows the action applied");
    assert!(log.contains("reset sent to"), "level 3 shows each reset sent");
    assert!(log.contains(&format!("action {id} expired")), "level 3 shows the expiry");
    assert!(log.contains(&format!("ossensor-audit event=action_applied process=capture-worker[br0] interface=br0 id={id}")), "audited:\n{log}");
    let mut messages = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = syslog.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let all = messages.join("\n");
    for event in [format!("event=action_received process=uplink id={id}"), format!("event=action_applied process=capture-worker[br0] interface=br0 id={id}")] {
        assert!(all.contains(&event), "no {event:?} in syslog:\n{all}");
    }
    sensor.stop().unwrap();
    other.kill();
    server.kill();
}

#[test]
fn with_antigena_disabled_nothing_is_sent() {
    let bed = bed();
    let dir = TestDir::new("noaction");
    let collector = Collector::start(&bed.sen, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "br0".into()));
    env.push(("ANTIGENA_ENABLED".into(), "false".into()));
    let mut sensor = Sensor::start(&bed.sen, dir.path(), &env, &["br0"]).unwrap();
    let mac = String::from_utf8(bed.sen.run(&["cat", "/sys/class/net/br0/address"]).unwrap().stdout).unwrap();
    let watch = Tcpdump::start(&bed.sen, "cv", Some(&format!("tcp and ether src {}", mac.trim())), dir.path()).unwrap();

    let mut server = bed.srv.spawn(&["python3", &script(), "server", SRV, "7000"], dir.join("server.log")).unwrap();
    server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
    let mut busy = bed.cli.spawn(&["python3", &script(), "busy", SRV, "7000", "busy"], dir.join("busy.log")).unwrap();
    busy.wait_for_line("echoed", Duration::from_secs(10)).unwrap();
    action(&bed, &collector, &["block", "--src", CLI, "--dst", SRV, "--for", "3"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(probe(&bed, &dir, 0, 7000), "new connections work: nothing enforces");
    assert!(ended(&busy).is_none(), "the connection lives: {:?}", events(&busy));
    let sent = watch.stop_and_read().unwrap();
    assert!(sent.is_empty(), "the sensor sent {} TCP frames", sent.len());
    let log = sensor.guard.log();
    assert!(log.contains("response actions off"), "{log}");
    assert!(!log.contains("response actions: connected"), "no WebSocket");
    sensor.stop().unwrap();
    busy.kill();
    server.kill();
}

/// A client namespace and the sensor's, joined by a plain veth
/// (198.18.`subnet`.1 and .254, the sensor's end `l0`), a collector in the
/// sensor's namespace, and a sensor capturing `l0` at level 3 whose
/// actions' channel is open. Declared in the order the test's locals were,
/// so they are dropped as before: the sensor first, the namespaces last.
fn local_bed(subnet: u8, label: &str) -> (Netns, Netns, TestDir, Collector, Sensor) {
    let prefix = unique_prefix();
    let (cli, sen) = (Netns::new(&prefix, "cli").unwrap(), Netns::new(&prefix, "sen").unwrap());
    for ns in [&cli, &sen] {
        ns.disable_ipv6().unwrap();
    }
    veth_pair(&cli, "c0", &format!("198.18.{subnet}.1/24"), &sen, "l0", &format!("198.18.{subnet}.254/24")).unwrap();
    let dir = TestDir::new(label);
    let collector = Collector::start(&sen, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "l0".into()));
    env.push(("OSSENSOR_DEBUG".into(), "3".into()));
    let mut sensor = Sensor::start(&sen, dir.path(), &env, &["l0"]).unwrap();
    sensor.guard.wait_for_line("response actions: connected", Duration::from_secs(20)).unwrap();
    (cli, sen, dir, collector, sensor)
}

/// A connection that ends on the sensor's own host, seen on a plain veth
/// (no bridge to loop frames back): the RST the worker sends leaves on the
/// wire and never reaches the local socket, so the supervisor destroys that
/// socket through the kernel (as `ss -K` does): the local server reads
/// ECONNABORTED, the remote client the kernel's reset.
#[test]
fn a_connection_ending_on_the_sensor_host_is_destroyed_locally() {
    let (cli, sen, dir, collector, mut sensor) = local_bed(65, "localkill");

    let mut server = sen.spawn(&["python3", &script(), "server", "198.18.65.254", "7002"], dir.join("server.log")).unwrap();
    server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
    let mut busy = cli.spawn(&["python3", &script(), "busy", "198.18.65.254", "7002", "busy"], dir.join("busy.log")).unwrap();
    busy.wait_for_line("echoed", Duration::from_secs(10)).unwrap();
    let mut cmd = sen.exec(bin("vsensor").to_str().unwrap());
    cmd.args(["action", "quarantine", "--host", "198.18.65.1", "--for", "3"]).env_clear().env("VSENSOR_DATA_DIR", &collector.data_dir);
    assert!(cmd.output().unwrap().status.success());
    wait_until("the client reset", Duration::from_secs(3), || ended(&busy).is_some());
    assert_eq!(ended(&busy).unwrap()["how"], "ECONNRESET", "{:?}", events(&busy));
    let port = local_port(&busy);
    wait_until("the local server's end", Duration::from_secs(2), || server_end(&server, port).is_some());
    let log = sensor.guard.log();
    assert_eq!(server_end(&server, port).unwrap(), "ECONNABORTED", "destroyed by the kernel, not reset by a packet:\n{log}");
    assert!(log.contains(&format!("local socket 198.18.65.254:7002 <-> 198.18.65.1:{port}: destroyed")), "{log}");
    sensor.stop().unwrap();
    server.kill();
}

/// The collector keeps its actions across a restart, and the sensor, back
/// on its WebSocket, enforces the set it is sent again.
#[test]
fn actions_survive_a_collector_restart() {
    let bed = bed();
    let dir = TestDir::new("actrestart");
    let mut collector = Collector::start(&bed.sen, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "br0".into()));
    env.push(("OSSENSOR_DEBUG".into(), "3".into()));
    let mut sensor = Sensor::start(&bed.sen, dir.path(), &env, &["br0"]).unwrap();
    sensor.guard.wait_for_line("response actions: connected", Duration::from_secs(20)).unwrap();
    let mut server = bed.srv.spawn(&["python3", &script(), "server", SRV, "7000"], dir.join("server.log")).unwrap();
    server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
    let id = action(&bed, &collector, &["quarantine", "--host", SRV, "--for", "60"]);
    let id: u64 = id.trim().parse().unwrap();

    collector.restart(&bed.sen, Duration::from_millis(300)).unwrap();
    let list: Value = serde_json::from_str(&action(&bed, &collector, &["list", "--json"])).unwrap();
    let kept = list["actions"].as_array().unwrap().iter().find(|a| a["id"] == id).cloned().expect("the action is still in the book");
    assert_eq!(kept["state"], "active", "{kept}");
    // The sensor reconnects (backoff from 0.5 s to 5 s) and is sent the
    // set again.
    wait_until("the sensor back on its WebSocket", Duration::from_secs(20), || sensor.guard.log().matches("response actions: connected").count() >= 2);
    wait_until("the set received again", Duration::from_secs(10), || sensor.guard.log().matches(&format!("response action {id} received")).count() >= 2);
    assert!(!probe(&bed, &dir, 0, 7000), "the quarantine holds after the collector's restart");
    assert!(action(&bed, &collector, &["cancel", &id.to_string()]).contains("cancelled"));
    wait_until("the cancellation applied", Duration::from_secs(10), || sensor.guard.log().contains(&format!("action {id} cancelled")));
    assert!(probe(&bed, &dir, 1, 7000), "connections work once the action is cancelled");
    sensor.stop().unwrap();
    server.kill();
}

/// A quarantine, then bare ACKs from the quarantined host to a port the
/// sensor's host listens on, with no connection behind them (what one
/// spoofed segment looks like). The kernel's lookup for such a 4-tuple
/// falls back to the listener; the supervisor only destroys a connection a
/// sock_diag dump found, so the listener lives on. The host's real
/// connection from the quarantined host is still destroyed.
#[test]
fn a_quarantine_and_bare_segments_never_destroy_a_listening_socket() {
    let (cli, sen, dir, collector, mut sensor) = local_bed(66, "listener");

    let mut server = sen.spawn(&["python3", &script(), "server", "198.18.66.254", "7003"], dir.join("server.log")).unwrap();
    server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
    let mut busy = cli.spawn(&["python3", &script(), "busy", "198.18.66.254", "7003", "busy"], dir.join("busy.log")).unwrap();
    busy.wait_for_line("echoed", Duration::from_secs(10)).unwrap();
    let listening = || !sen.run(&["ss", "-H", "-ltn", "sport = :7003"]).unwrap().stdout.is_empty();
    assert!(listening());

    let mut cmd = sen.exec(bin("vsensor").to_str().unwrap());
    cmd.args(["action", "quarantine", "--host", "198.18.66.1", "--for", "30"]).env_clear().env("VSENSOR_DATA_DIR", &collector.data_dir);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    wait_until("the real connection destroyed", Duration::from_secs(3), || ended(&busy).is_some());
    assert_eq!(ended(&busy).unwrap()["how"], "ECONNRESET", "{:?}", events(&busy));

    // Twenty bare ACKs from random ports of the quarantined host.
    let mut acks = cli.spawn(&["python3", &script(), "bare-acks", "198.18.66.1", "198.18.66.254", "7003", "20"], dir.join("acks.log")).unwrap();
    assert!(acks.wait_timeout(Duration::from_secs(10)).unwrap().success(), "{}", acks.log());
    assert_eq!(events(&acks).len(), 20);
    // Give the sensor time to act on each (it answers within 50 ms).
    std::thread::sleep(Duration::from_secs(1));
    assert!(listening(), "the listener was destroyed:\n{}", sensor.guard.log());

    let mut cmd = sen.exec(bin("vsensor").to_str().unwrap());
    cmd.args(["action", "cancel", &id]).env_clear().env("VSENSOR_DATA_DIR", &collector.data_dir);
    assert!(cmd.output().unwrap().status.success());
    wait_until("the cancellation applied", Duration::from_secs(10), || sensor.guard.log().contains(&format!("action {id} cancelled")));
    assert!(probe_to(&cli, &dir, "198.18.66.254", 7003), "the listener still accepts");
    sensor.stop().unwrap();
    server.kill();
}

fn probe_to(ns: &Netns, dir: &TestDir, host: &str, port: u16) -> bool {
    let mut p = ns.spawn(&["python3", &script(), "probe", host, &port.to_string()], dir.join(format!("probe-{host}-{port}.log"))).unwrap();
    p.wait_timeout(Duration::from_secs(10)).unwrap().success()
}

mod forged {
    use super::*;
    use ossensor_shared::actions::signed::{self, ActionSet, SignedSet};
    use ossensor_shared::actions::{Action, Target};
    use ossensor_shared::ipc::{encode_frame, UplinkMsg};
    use ossensor_suite::channel;
    use ring::signature::Ed25519KeyPair;
    use std::io::Write;

    fn now_ns() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }

    fn frame(set: SignedSet) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&UplinkMsg::Actions { set }, &mut out).unwrap();
        out
    }

    fn quarantine(id: u64, host: &str, until_ns: u64) -> Action {
        Action { id, target: Target::Quarantine { host: host.parse().unwrap() }, until_ns }
    }

    /// The audit events that reached the syslog socket since the last call.
    fn audit_events(socket: &std::os::unix::net::UnixDatagram, seen: &mut Vec<std::collections::BTreeMap<String, String>>) {
        let mut buf = [0u8; 8192];
        while let Ok(n) = socket.recv(&mut buf) {
            seen.extend(ossensor_suite::sensor::audit_events(&String::from_utf8_lossy(&buf[..n])));
        }
    }

    /// What a compromised uplink (or anyone writing on its end of a
    /// worker's connection) can do with response actions: nothing. With a
    /// live connection between the blocked hosts on the wire, the test
    /// writes action sets that target it: signed by another key; the
    /// collector's own set with its target changed; an older set of the
    /// collector's after a newer one (a replay); one signed an hour ago;
    /// one whose action has expired; one with a garbage signature. The
    /// connection lives, no reset crosses the link, and each refusal is
    /// audited with its reason. Then a real action through the collector
    /// resets it: the same path works when the operator orders it.
    #[test]
    fn forged_replayed_retargeted_and_expired_sets_on_a_workers_channel_send_nothing() {
        let bed = bed();
        let dir = TestDir::new("forged");
        let collector = Collector::start(&bed.sen, dir.path()).unwrap();
        let mut env = base_env(&collector, dir.path());
        env.push(("OSSENSOR_NETWORK_DEVICE".into(), "br0".into()));
        env.push(("OSSENSOR_DEBUG".into(), "3".into()));
        let sock_path = dir.join("syslog.sock");
        let syslog = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o666)).unwrap();
        syslog.set_nonblocking(true).unwrap();
        env.push(("OSSENSOR_SYSLOG_SOCKET".into(), sock_path.display().to_string()));
        let mut sensor = Sensor::start(&bed.sen, dir.path(), &env, &["br0"]).unwrap();
        sensor.guard.wait_for_line("response actions: connected", Duration::from_secs(20)).unwrap();
        // The supervisor pinned the collector's key at the registration.
        let pinned = dir.join("state/action-key");
        wait_until("the action key pinned", Duration::from_secs(10), || pinned.exists());
        let collector_key = Ed25519KeyPair::from_pkcs8(&std::fs::read(collector.data_dir.join("action-key.pk8")).unwrap()).unwrap();
        let other_key = Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap().as_ref()).unwrap();

        let mut server = bed.srv.spawn(&["python3", &script(), "server", SRV, "7000"], dir.join("server.log")).unwrap();
        server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
        let mut busy = bed.cli.spawn(&["python3", &script(), "busy", SRV, "7000", "busy"], dir.join("busy.log")).unwrap();
        busy.wait_for_line("echoed", Duration::from_secs(10)).unwrap();
        let resets = Tcpdump::start(&bed.sen, "br0", Some("tcp[tcpflags] & tcp-rst != 0"), dir.path()).unwrap();

        let uplink = sensor.child_pid("uplink").unwrap();
        let worker = sensor.child_pid("capture-worker for br0").unwrap();
        let (mut ch, _) = channel::uplink_end(&bed.sen, uplink, worker, None);
        let t = now_ns();
        let hour = 3600 * 1_000_000_000;
        let target = quarantine(900, CLI, t + hour);
        let unrelated = quarantine(901, "198.18.64.77", t + hour);
        let set = |version, issued_ns, actions| ActionSet { version, issued_ns, actions };
        // Signed by a key that is not the pinned one.
        ch.write_all(&frame(signed::sign(&other_key, &set(t, t, vec![target])))).unwrap();
        // The collector's set, its target changed, its signature kept.
        let mut retargeted = signed::sign(&collector_key, &set(t, t, vec![unrelated]));
        retargeted.payload = signed::encode(&set(t, t, vec![Action { id: 901, ..target }]));
        ch.write_all(&frame(retargeted)).unwrap();
        // A newer set of the collector's (harmless), then an older one that
        // would quarantine the client: a replay.
        ch.write_all(&frame(signed::sign(&collector_key, &set(t + 2, t, vec![unrelated])))).unwrap();
        ch.write_all(&frame(signed::sign(&collector_key, &set(t + 1, t, vec![target])))).unwrap();
        // Signed an hour ago, and an hour ahead.
        ch.write_all(&frame(signed::sign(&collector_key, &set(t + 3, t - hour, vec![quarantine(900, CLI, t + 2 * hour)])))).unwrap();
        ch.write_all(&frame(signed::sign(&collector_key, &set(t + 3, t + hour, vec![target])))).unwrap();
        // Its action over already (taken: it ends the unrelated one).
        ch.write_all(&frame(signed::sign(&collector_key, &set(t + 4, t, vec![quarantine(900, CLI, t - 1_000_000_000)])))).unwrap();
        // A garbage signature.
        ch.write_all(&frame(SignedSet { payload: signed::encode(&set(t + 5, t, vec![target])), signature: vec![0; 64] })).unwrap();
        drop(ch);

        let mut audit = Vec::new();
        let wanted = ["bad_signature", "older", "stale", "from_the_future"];
        wait_until("every refusal audited", Duration::from_secs(10), || {
            audit_events(&syslog, &mut audit);
            wanted.iter().all(|r| {
                audit.iter().any(|e| e.get("event").map(String::as_str) == Some("action_set_refused") && e.get("reason").map(String::as_str) == Some(r))
            })
        });
        std::thread::sleep(Duration::from_secs(1));
        assert!(ended(&busy).is_none(), "the connection was reset: {:?}\n{}", events(&busy), sensor.guard.log());
        let sent = resets.stop_and_read().unwrap();
        assert!(sent.is_empty(), "{} resets crossed the link", sent.len());
        assert!(
            !audit.iter().any(|e| e.get("event").map(String::as_str) == Some("action_applied") && e.get("id").map(String::as_str) == Some("900")),
            "{audit:?}"
        );

        // The operator's action, through the collector: the same connection dies.
        let id = action(&bed, &collector, &["quarantine", "--host", CLI, "--for", "5"]);
        wait_until("the operator's action applied", Duration::from_secs(5), || ended(&busy).is_some());
        assert_eq!(ended(&busy).unwrap()["how"], "ECONNRESET");
        println!("forged, re-targeted, replayed, stale, future, expired and unsigned sets refused; action {} reset the connection", id.trim());
        sensor.stop().unwrap();
        server.kill();
    }
}
