//! A burst of interfaces: 200 veths at once under NETWORK_DEVICE_ANY=1.
//! 200 capture-workers starting take both CPUs for a while, so it is in
//! the `alone` test binary (tests/alone.rs).

use ossensor_suite::sensor::audit_events;
use ossensor_suite::sensor::{base_env, Collector};
use ossensor_suite::*;
use std::time::{Duration, Instant};

/// 200 veths created at once under NETWORK_DEVICE_ANY=1, then deleted at
/// once: every one gets a capture-worker whose rings come out of the
/// capture budget (never below 2 MiB each), the supervisor stays up, and
/// every worker is retired when its veth goes.
#[test]
fn a_burst_of_200_veths_shares_the_ring_budget() {
    let _slot = exclusive_slot();
    const N: usize = 200;
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "burst").unwrap();
    let peer = Netns::new(&prefix, "bpeer").unwrap();
    for n in [&ns, &peer] {
        n.disable_ipv6().unwrap();
    }
    let dir = TestDir::new("burst");
    let collector = Collector::start(&ns, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("NETWORK_DEVICE_ANY".into(), "1".into()));
    env.push(("NETWORK_DEVICE_INCLUDELIST".into(), "^bv[0-9]+$".into()));
    env.push(("OSSENSOR_CAPTURE_BUDGET_MB".into(), "256".into()));
    env.push(("OSSENSOR_DEBUG".into(), "0".into()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut guard = spawn_logged(&mut ossensor_suite::sensor::sensor_command(&ns, &env, &[]), dir.join("burst.log")).unwrap();
    guard.wait_for_line("waiting for one that matches", Duration::from_secs(20)).unwrap();

    let batch = |ns: &Netns, name: &str, lines: String| {
        let path = dir.join(name);
        std::fs::write(&path, lines).unwrap();
        ns.run(&["ip", "-batch", path.to_str().unwrap()]).unwrap();
    };
    let created = Instant::now();
    batch(&ns, "add.batch", (0..N).map(|i| format!("link add bv{i} type veth peer name pv{i} netns {}\n", peer.name())).collect());
    batch(&peer, "up-peer.batch", (0..N).map(|i| format!("link set pv{i} up\n")).collect());
    batch(&ns, "up.batch", (0..N).map(|i| format!("link set bv{i} up\n")).collect());
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = |log: &str| log.lines().filter(|l| l.contains("capture-worker[bv") && l.contains("filter attached")).count();
    while ready(&guard.log()) < N {
        assert!(Instant::now() < deadline, "{} of {N} workers ready after 120 s", ready(&guard.log()));
        std::thread::sleep(Duration::from_millis(500));
    }
    println!("{N} veths: every capture-worker ready {:.1} s after the burst", created.elapsed().as_secs_f64());
    // Each worker's rings, as its start was audited (`ring_kib`: each of two).
    let log = guard.log();
    let rings: Vec<u64> = audit_events(&log)
        .iter()
        .filter(|e| e["event"] == "child_started" && e.get("child").is_some_and(|c| c.starts_with("capture-worker for bv")))
        .filter_map(|e| e.get("ring_kib")?.parse::<u64>().ok())
        .collect();
    assert_eq!(rings.len(), N);
    let total_mib = rings.iter().map(|k| 2 * k).sum::<u64>() / 1024;
    assert!(rings.iter().all(|k| *k >= 1024), "at least 2 MiB per interface");
    // Shares come out of the budget; beyond it each new interface still
    // gets the 2 MiB floor: at most budget + 2 MiB per interface.
    assert!(total_mib <= 256 + 2 * N as u64, "rings within the budget plus the floor: {total_mib} MiB");
    println!(
        "{N} veths: {total_mib} MiB of rings in all (budget 256 MiB, floor 2 MiB each; largest {} KiB, smallest {} KiB)",
        2 * rings.iter().max().unwrap(),
        2 * rings.iter().min().unwrap()
    );
    assert!(guard.is_running());

    batch(&ns, "del.batch", (0..N).map(|i| format!("link del bv{i}\n")).collect());
    let deadline = Instant::now() + Duration::from_secs(60);
    while guard.log().matches("disappeared").count() < N {
        assert!(Instant::now() < deadline, "every worker retired");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(guard.is_running(), "the supervisor survives the burst");
    assert!(guard.stop(SIGTERM).unwrap().success());
}
