//! The `ossensor` command as users run it: bad values refused before
//! anything starts, env files with Docker's rules, the generated config file
//! and `-c`, the interface rules, and the privileges each child really holds
//! (read from /proc).

use ossensor_suite::sensor::{base_env, sensor_command, Collector, Sensor, KEY};
use ossensor_suite::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// Runs the supervisor to completion with `env` and expects a refusal.
fn refused(ns: &Netns, env: &[(String, String)], args: &[&str]) -> String {
    let out = run_unchecked(&mut sensor_command(ns, env, args), Duration::from_secs(20)).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "expected a refusal, got {}:\n{stderr}\n{stdout}", out.status);
    assert!(!stdout.contains("started capture-worker") && !stdout.contains("started uplink"), "a child started:\n{stdout}");
    assert!(!stderr.contains(KEY) && !stdout.contains(KEY), "the key leaked into the output");
    format!("{stderr}{stdout}")
}

fn env_with(base: &[(String, String)], set: &[(&str, &str)], unset: &[&str]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = base.iter().filter(|(k, _)| !unset.contains(&k.as_str())).cloned().collect();
    for (k, v) in set {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

#[test]
fn every_bad_value_stops_start_up_naming_variable_and_value() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "cli").unwrap();
    let dir = TestDir::new("cli");
    veth_pair(&ns, "v0", "198.18.20.1/24", &ns, "v1", "198.18.20.2/24").unwrap();
    let base: Vec<(String, String)> = [
        ("VSENSOR_HOSTNAME", "127.0.0.1"),
        ("VSENSOR_HMAC_KEY", KEY),
        ("OSSENSOR_CONFIG_PATH", dir.join("gen.cfg").to_str().unwrap()),
        ("OSSENSOR_RUNTIME_DIR", dir.join("run").to_str().unwrap()),
        ("OSSENSOR_STATE_DIR", dir.join("state").to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let missing = refused(&ns, &env_with(&base, &[], &["VSENSOR_HOSTNAME"]), &[]);
    assert!(missing.contains("VSENSOR_HOSTNAME"), "{missing}");
    let missing = refused(&ns, &env_with(&base, &[], &["VSENSOR_HMAC_KEY"]), &[]);
    assert!(missing.contains("VSENSOR_HMAC_KEY"), "{missing}");
    let colon = refused(&ns, &env_with(&base, &[("VSENSOR_HOSTNAME", "collector.example:443")], &[]), &[]);
    assert!(colon.contains("collector.example:443") && colon.contains("VSENSOR_PORT"), "{colon}");

    let cases: &[(&str, &str)] = &[
        ("VSENSOR_PORT", "0"),
        ("VSENSOR_PORT", "65536"),
        ("VSENSOR_PORT", "https"),
        ("OSSENSOR_DEBUG", "6"),
        ("OSSENSOR_DEBUG", "high"),
        ("ANTIGENA_ENABLED", "maybe"),
        ("ANTIGENA_TIME_PERIOD", "0"),
        ("ANTIGENA_TIME_PERIOD", "5s"),
        ("NETWORK_DEVICE_EXCLUDELIST", "v(0"),
        ("NETWORK_DEVICE_INCLUDELIST", "([a-z]"),
        ("NETWORK_DEVICE_WHITELIST", "x\\1"),
        ("NETWORK_DEVICE_BLACKLIST", "*v"),
        ("NETWORK_DEVICE_ANY", "2"),
        ("BPF", "tcp port eighty"),
        ("OSSENSOR_NETWORK_DEVICE", "nosuch0"),
        ("OSSENSOR_SPOOL_MB", "0"),
        ("OSSENSOR_COMPRESSION", "lz5"),
        ("OSSENSOR_CAPTURE_BUFFER_MB", "1"),
        ("OSSENSOR_USER", "no-such-user-here"),
    ];
    for (var, value) in cases {
        let text = refused(&ns, &env_with(&base, &[(var, value)], &[]), &[]);
        // The old list names are reported under the name the user set.
        assert!(text.contains(var), "{var}={value:?}: message does not name the variable:\n{text}");
        assert!(text.contains(value) || text.contains(&format!("{value:?}")), "{var}={value:?}: message does not show the value:\n{text}");
    }
    assert!(!dir.join("gen.cfg").exists(), "no config file is written for a refused configuration");
    let nothing = refused(&ns, &env_with(&base, &[("NETWORK_DEVICE_INCLUDELIST", "^zzz")], &[]), &[]);
    assert!(nothing.contains("include list"), "says which list removed what: {nothing}");
}

/// Runs the supervisor to completion with `env`; its exit code and what it
/// printed (stderr then stdout).
fn exit_code_and_output(ns: &Netns, env: &[(String, String)], args: &[&str]) -> (Option<i32>, String) {
    let out = run_unchecked(&mut sensor_command(ns, env, args), Duration::from_secs(20)).unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    assert!(!text.contains("started capture-worker") && !text.contains("started uplink"), "a child started:\n{text}");
    (out.status.code(), text)
}

/// What the interfaces present refuse is a configuration error like any
/// other: exit status 2 before anything starts, the message naming the
/// variable as the user set it (the old name too) and its value.
#[test]
fn interface_and_user_errors_exit_2_naming_the_variable_and_value() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "exit2").unwrap();
    let dir = TestDir::new("exit2");
    veth_pair(&ns, "v0", "198.18.22.1/24", &ns, "v1", "198.18.22.2/24").unwrap(); // no default route
    let base: Vec<(String, String)> = [
        ("VSENSOR_HOSTNAME", "127.0.0.1"),
        ("VSENSOR_HMAC_KEY", KEY),
        ("OSSENSOR_CONFIG_PATH", dir.join("gen.cfg").to_str().unwrap()),
        ("OSSENSOR_RUNTIME_DIR", dir.join("run").to_str().unwrap()),
        ("OSSENSOR_STATE_DIR", dir.join("state").to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // (variables set, what the message says)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (&[("OSSENSOR_NETWORK_DEVICE", "v0,nosuch9")], &["OSSENSOR_NETWORK_DEVICE=\"v0,nosuch9\": no such interface: nosuch9"]),
        (&[("OSSENSOR_NETWORK_DEVICE", "default")], &["OSSENSOR_NETWORK_DEVICE=\"default\": there is no default route"]),
        (
            &[("NETWORK_DEVICE_INCLUDELIST", "^zzz")],
            &["NETWORK_DEVICE_INCLUDELIST=\"^zzz\": no interface left", "include list (NETWORK_DEVICE_INCLUDELIST) kept none"],
        ),
        (&[("NETWORK_DEVICE_BLACKLIST", "^v")], &["NETWORK_DEVICE_BLACKLIST=\"^v\": no interface left", "exclude list (NETWORK_DEVICE_BLACKLIST) removed "]),
        (
            &[("NETWORK_DEVICE_WHITELIST", "0$"), ("NETWORK_DEVICE_EXCLUDELIST", "v")],
            &["NETWORK_DEVICE_EXCLUDELIST=\"v\"", "(NETWORK_DEVICE_WHITELIST) left out"],
        ),
        (&[("OSSENSOR_USER", "no-such-user-here")], &["OSSENSOR_USER=\"no-such-user-here\": no such user"]),
    ];
    for (set, want) in cases {
        let (code, text) = exit_code_and_output(&ns, &env_with(&base, set, &[]), &[]);
        assert_eq!(code, Some(2), "{set:?}: exit status\n{text}");
        for w in *want {
            assert!(text.contains(w), "{set:?}: no {w:?} in\n{text}");
        }
        assert!(!text.contains(KEY), "the key leaked");
    }
    assert!(!dir.join("gen.cfg").exists(), "no config file is written for a refused configuration");
}

#[test]
fn env_file_follows_docker_rules_and_the_generated_file_runs_with_dash_c() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "envf").unwrap();
    let dir = TestDir::new("envf");
    veth_pair(&ns, "v0", "198.18.21.1/24", &ns, "v1", "198.18.21.2/24").unwrap();
    let collector = Collector::start(&ns, dir.path()).unwrap();
    let gen = dir.join("gen.cfg");
    let env_file = dir.join("sensor.env");
    std::fs::write(
        &env_file,
        format!("# a comment\n\n  VSENSOR_HOSTNAME=127.0.0.1\nVSENSOR_PORT={}\nVSENSOR_HMAC_KEY={KEY}\nOSSENSOR_DEBUG=3\nBPF=udp or tcp\n", collector.port),
    )
    .unwrap();
    // The process environment wins over the file.
    let env: Vec<(String, String)> = [
        ("OSSENSOR_DEBUG", "2"),
        ("OSSENSOR_CONFIG_PATH", gen.to_str().unwrap()),
        ("OSSENSOR_RUNTIME_DIR", dir.join("run").to_str().unwrap()),
        ("OSSENSOR_STATE_DIR", dir.join("state").to_str().unwrap()),
        ("OSSENSOR_NETWORK_DEVICE", "v0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("envfile.log");
    let mut guard = spawn_logged(&mut sensor_command(&ns, &env, &["--env-file", env_file.to_str().unwrap()]), &log).unwrap();
    guard.wait_for_line("registered with the collector", Duration::from_secs(30)).unwrap();
    let first_summary = guard.log().lines().find(|l| l.contains("configuration: ")).unwrap().split("configuration: ").nth(1).unwrap().to_string();
    assert!(first_summary.contains("debug=2"), "environment wins over the env file: {first_summary}");
    assert!(!guard.log().contains(KEY), "the key is never logged");
    let st = guard.stop(SIGTERM).unwrap();
    assert!(st.success());

    let meta = std::fs::metadata(&gen).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "generated config file is 0600");
    let text = std::fs::read_to_string(&gen).unwrap();
    assert!(text.starts_with("[osSensor]"), "{text}");
    for line in ["Debug=2", &format!("vSensor=127.0.0.1:{}", collector.port), &format!("key={KEY}"), "device=v0", "useAntigena=true", "bpf=udp or tcp"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }

    // `ossensor -c FILE` runs from it alone (the environment holds nothing).
    let log = dir.join("dash-c.log");
    let only_path: Vec<(String, String)> = Vec::new();
    let mut guard = spawn_logged(&mut sensor_command(&ns, &only_path, &["-c", gen.to_str().unwrap()]), &log).unwrap();
    guard.wait_for_line("registered with the collector", Duration::from_secs(30)).unwrap();
    let summary = guard.log().lines().find(|l| l.contains("configuration: ")).unwrap().split("configuration: ").nth(1).unwrap().to_string();
    assert_eq!(summary, first_summary, "-c reproduces the configuration");
    assert!(guard.stop(SIGTERM).unwrap().success());
    assert_eq!(std::fs::read_to_string(&gen).unwrap(), text, "-c leaves its file untouched");
}

/// The generated file records the interfaces as the reference's entrypoint
/// does: `device=` the ones selected at start (sorted, `,any` appended),
/// `blacklist_device=` the ones the exclude list matched; the rules
/// themselves go to this sensor's keys, so `-c` on the file runs the same
/// sensor: the same interfaces now, and the same rules for those that
/// appear later.
#[test]
fn the_generated_file_records_the_interfaces_at_start_and_dash_c_keeps_the_rules() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "rec").unwrap();
    let peer = Netns::new(&prefix, "recp").unwrap();
    let dir = TestDir::new("rec");
    for n in [&ns, &peer] {
        n.disable_ipv6().unwrap();
    }
    veth_pair(&ns, "wan0", "198.18.50.1/24", &peer, "x0", "198.18.50.2/24").unwrap();
    for (i, name) in ["pod7", "pod2", "pod1"].iter().enumerate() {
        veth_pair(&ns, name, &format!("198.18.{}.1/24", 51 + i), &peer, &format!("x{}", i + 1), &format!("198.18.{}.2/24", 51 + i)).unwrap();
    }
    let collector = Collector::start(&ns, dir.path()).unwrap();
    let gen = dir.join("ossensor.cfg");
    let env = env_with(
        &base_env(&collector, dir.path()),
        &[("NETWORK_DEVICE_INCLUDELIST", "^pod"), ("NETWORK_DEVICE_EXCLUDELIST", "2$"), ("NETWORK_DEVICE_ANY", "1")],
        &[],
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut guard = spawn_logged(&mut sensor_command(&ns, &env, &[]), dir.join("env.log")).unwrap();
    guard.wait_for_line("registered with the collector", Duration::from_secs(30)).unwrap();
    let summary = |log: &str| log.lines().find(|l| l.contains("configuration: ")).unwrap().split("configuration: ").nth(1).unwrap().to_string();
    let interfaces = |log: &str| log.lines().find(|l| l.contains("interfaces: ")).unwrap().split("interfaces: ").nth(1).unwrap().to_string();
    let (first_summary, first_interfaces) = (summary(&guard.log()), interfaces(&guard.log()));
    assert!(guard.stop(SIGTERM).unwrap().success());
    let text = std::fs::read_to_string(&gen).unwrap();
    for line in ["device=pod1,pod7,any", "blacklist_device=pod2", "networkDevice=", "whitelist_device=^pod", "blacklist_pattern=2$"] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }

    // -c FILE: the same interfaces and configuration; an interface that
    // appears later is judged by the file's patterns.
    let mut guard = spawn_logged(&mut sensor_command(&ns, &[], &["-c", gen.to_str().unwrap()]), dir.join("dash-c.log")).unwrap();
    guard.wait_for_line("registered with the collector", Duration::from_secs(30)).unwrap();
    assert_eq!(summary(&guard.log()), first_summary, "-c reproduces the configuration");
    assert_eq!(interfaces(&guard.log()), first_interfaces, "-c captures the same interfaces");
    veth_pair(&ns, "pod9", "198.18.55.1/24", &peer, "x9", "198.18.55.2/24").unwrap();
    ossensor_suite::sensor::wait_for_worker_ready(&mut guard, "pod9").unwrap();
    veth_pair(&ns, "pod12", "198.18.56.1/24", &peer, "x12", "198.18.56.2/24").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!guard.log().contains("capture-worker for pod12"), "pod12 matches the exclude pattern 2$:\n{}", guard.log());
    assert!(guard.stop(SIGTERM).unwrap().success());
    assert_eq!(std::fs::read_to_string(&gen).unwrap(), text, "-c leaves its file untouched");
}

/// Starts the supervisor, returns the interfaces it says it captures, stops it.
fn chosen_interfaces(ns: &Netns, dir: &TestDir, collector: &Collector, set: &[(&str, &str)]) -> Vec<String> {
    let env = env_with(&base_env(collector, dir.path()), set, &[]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut guard = spawn_logged(&mut sensor_command(ns, &env, &[]), dir.join(format!("rules-{}.log", unique_prefix()))).unwrap();
    let line = guard.wait_for_line("interfaces: ", Duration::from_secs(20)).unwrap();
    assert!(guard.stop(SIGTERM).unwrap().success());
    let mut v: Vec<String> = line.split("interfaces: ").nth(1).unwrap().split(", ").map(|s| s.trim().to_string()).collect();
    v.sort();
    v
}

#[test]
fn interface_rules_include_exclude_lists_and_default_route() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "rules").unwrap();
    let peer = Netns::new(&prefix, "peer").unwrap();
    let dir = TestDir::new("rules");
    veth_pair(&ns, "wan0", "198.18.30.1/24", &peer, "x0", "198.18.30.2/24").unwrap();
    for (i, name) in ["pod1", "pod2", "pod7"].iter().enumerate() {
        veth_pair(&ns, name, &format!("198.18.{}.1/24", 31 + i), &peer, &format!("x{}", i + 1), &format!("198.18.{}.2/24", 31 + i)).unwrap();
    }
    ns.ip(&["route", "add", "default", "via", "198.18.30.2", "dev", "wan0"]).unwrap();
    let collector = Collector::start(&ns, dir.path()).unwrap();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    assert_eq!(chosen_interfaces(&ns, &dir, &collector, &[]), s(&["pod1", "pod2", "pod7", "wan0"]), "all but loopback");
    assert_eq!(chosen_interfaces(&ns, &dir, &collector, &[("NETWORK_DEVICE_INCLUDELIST", "^pod")]), s(&["pod1", "pod2", "pod7"]));
    assert_eq!(chosen_interfaces(&ns, &dir, &collector, &[("NETWORK_DEVICE_EXCLUDELIST", "pod7")]), s(&["pod1", "pod2", "wan0"]));
    assert_eq!(
        chosen_interfaces(&ns, &dir, &collector, &[("NETWORK_DEVICE_INCLUDELIST", "^pod wan"), ("NETWORK_DEVICE_EXCLUDELIST", "7$ ^wan")]),
        s(&["pod1", "pod2"]),
        "exclude wins over include"
    );
    assert_eq!(
        chosen_interfaces(&ns, &dir, &collector, &[("NETWORK_DEVICE_WHITELIST", "^pod"), ("NETWORK_DEVICE_BLACKLIST", "pod2")]),
        s(&["pod1", "pod7"]),
        "old names"
    );
    assert_eq!(chosen_interfaces(&ns, &dir, &collector, &[("OSSENSOR_NETWORK_DEVICE", "pod1,wan0")]), s(&["pod1", "wan0"]));
    assert_eq!(chosen_interfaces(&ns, &dir, &collector, &[("OSSENSOR_NETWORK_DEVICE", "pod2 pod7")]), s(&["pod2", "pod7"]));
    assert_eq!(chosen_interfaces(&ns, &dir, &collector, &[("OSSENSOR_NETWORK_DEVICE", "default")]), s(&["wan0"]), "default route");
}

#[test]
fn interfaces_appearing_later_are_captured_only_with_network_device_any() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "late").unwrap();
    let peer = Netns::new(&prefix, "peer").unwrap();
    let dir = TestDir::new("late");
    for n in [&ns, &peer] {
        n.disable_ipv6().unwrap();
    }
    let collector = Collector::start(&ns, dir.path()).unwrap();

    // Without NETWORK_DEVICE_ANY, nothing matching at start is an error...
    let env = env_with(&base_env(&collector, dir.path()), &[("NETWORK_DEVICE_INCLUDELIST", "^late")], &[]);
    let text = refused(&ns, &env, &[]);
    assert!(text.contains("no interface left"), "{text}");

    // ...with it, the sensor waits, and captures the veth within a second.
    let env = env_with(&base_env(&collector, dir.path()), &[("NETWORK_DEVICE_INCLUDELIST", "^late"), ("NETWORK_DEVICE_ANY", "1")], &[]);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut guard = spawn_logged(&mut sensor_command(&ns, &env, &[]), dir.join("any.log")).unwrap();
    guard.wait_for_line("waiting for one that matches", Duration::from_secs(20)).unwrap();
    veth_pair(&ns, "late1", "198.18.40.1/24", &peer, "y1", "198.18.40.2/24").unwrap();
    let created = std::time::Instant::now();
    ossensor_suite::sensor::wait_for_worker_ready(&mut guard, "late1").unwrap();
    let started_after = created.elapsed();
    // (The timing itself is a benchmark figure, not asserted here.)
    eprintln!("capture-worker for late1 ready {started_after:?} after the veth was created");
    peer.run(&["ping", "-c", "3", "-i", "0.2", "198.18.40.1"]).unwrap();
    // A veth that does not pass the lists is ignored.
    veth_pair(&ns, "other1", "198.18.41.1/24", &peer, "y2", "198.18.41.2/24").unwrap();
    // The captured interface vanishes: its worker is retired without error.
    delete_link(&ns, "late1").unwrap();
    guard.wait_for_line("interface late1 disappeared", Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(guard.is_running(), "the supervisor survives a vanished interface");
    assert!(!guard.log().contains("capture-worker for other1"), "other1 does not pass the include list");
    assert!(guard.stop(SIGTERM).unwrap().success());
    let frames = collector.frames().unwrap();
    let icmp = frames.iter().filter(|f| f.interface == "late1" && f.data.len() > 34 && f.data[23] == 1).count();
    assert!(icmp >= 6, "the pings on late1 were stored ({icmp} ICMP frames)");

    // Without NETWORK_DEVICE_ANY a veth created after start is not captured.
    veth_pair(&ns, "late2", "198.18.42.1/24", &peer, "y3", "198.18.42.2/24").unwrap();
    let env = env_with(&base_env(&collector, dir.path()), &[("NETWORK_DEVICE_INCLUDELIST", "^late")], &[]);
    let mut guard = spawn_logged(&mut sensor_command(&ns, &env, &[]), dir.join("noany.log")).unwrap();
    guard.wait_for_line("interfaces: late2", Duration::from_secs(20)).unwrap();
    veth_pair(&ns, "late3", "198.18.43.1/24", &peer, "y4", "198.18.43.2/24").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!guard.log().contains("capture-worker for late3"), "late3 is not captured without NETWORK_DEVICE_ANY");
    assert!(guard.stop(SIGTERM).unwrap().success());
}

/// (uid line, CapEff, CapPrm, CapBnd, CapAmb, NoNewPrivs) from /proc/PID/status.
fn proc_status(pid: i32) -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

#[test]
fn children_hold_exactly_their_privileges() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "priv").unwrap();
    let peer = Netns::new(&prefix, "peer").unwrap();
    let dir = TestDir::new("priv");
    veth_pair(&ns, "v0", "198.18.50.1/24", &peer, "v1", "198.18.50.2/24").unwrap();
    let collector = Collector::start(&ns, dir.path()).unwrap();
    let env = base_env(&collector, dir.path());
    let mut sensor = Sensor::start(&ns, dir.path(), &env, &["v0"]).unwrap();
    let worker = sensor.child_pid("capture-worker for v0").unwrap();
    let uplink = sensor.child_pid("uplink").unwrap();

    const NET_RAW: &str = "0000000000002000";
    let w = proc_status(worker);
    assert_eq!(w["Uid"].split_whitespace().collect::<Vec<_>>(), vec!["65534"; 4], "worker uids");
    assert_eq!(w["Gid"].split_whitespace().collect::<Vec<_>>(), vec!["65534"; 4], "worker gids");
    assert_eq!(w["Groups"], "", "no supplementary groups");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        assert_eq!(w[set], NET_RAW, "worker {set}");
    }
    assert_eq!(w["CapInh"], NET_RAW);
    assert_eq!(w["NoNewPrivs"], "1");

    let u = proc_status(uplink);
    assert_eq!(u["Uid"].split_whitespace().collect::<Vec<_>>(), vec!["65534"; 4], "uplink uids");
    for set in ["CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"] {
        assert_eq!(u[set], "0000000000000000", "uplink {set}");
    }
    assert_eq!(u["NoNewPrivs"], "1");

    // The key is in no command line and no environment.
    for pid in [worker, uplink, sensor.guard.pid() as i32] {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(KEY), "key in the command line of {pid}");
    }
    for pid in [worker, uplink] {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(!String::from_utf8_lossy(&environ).contains(KEY), "key in the environment of {pid}");
    }
    sensor.stop().unwrap();
}

#[test]
fn security_events_reach_a_real_syslog_daemon_from_every_process() {
    let prefix = unique_prefix();
    let ns = Netns::new(&prefix, "audit").unwrap();
    let peer = Netns::new(&prefix, "peer").unwrap();
    let dir = TestDir::new("audit");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    veth_pair(&ns, "v0", "198.18.51.1/24", &peer, "v1", "198.18.51.2/24").unwrap();
    let collector = Collector::start(&ns, dir.path()).unwrap();
    // rsyslogd of our own, listening on a socket of our own (not /dev/log),
    // writing authpriv.* with facility and severity spelled out, as a
    // hardened host's rule for the audit trail would.
    let sock_path = dir.join("syslog.sock");
    let audit_file = dir.join("authpriv.log");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            "global(workDirectory=\"{work}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{sock}\")\n\
             template(name=\"audit\" type=\"string\" string=\"%syslogfacility-text%.%syslogseverity-text% %syslogtag% %msg%\\n\")\n\
             authpriv.* action(type=\"omfile\" file=\"{out}\" template=\"audit\")\n",
            work = dir.path().display(),
            sock = sock_path.display(),
            out = audit_file.display()
        ),
    )
    .unwrap();
    let pidfile = dir.join("rsyslogd.pid");
    let mut rsyslogd = spawn_logged(command("rsyslogd").args(["-n", "-f"]).arg(&conf).arg("-i").arg(&pidfile), dir.join("rsyslogd.log")).unwrap();
    wait_until("rsyslogd's socket", Duration::from_secs(10), || sock_path.exists().then_some(())).unwrap();

    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_SYSLOG_SOCKET".into(), sock_path.display().to_string()));
    env.push(("OSSENSOR_LOGFILE_PATH".into(), dir.join("sensor-file.log").display().to_string()));
    let mut guard = spawn_logged(&mut sensor_command(&ns, &env, &[]), dir.join("audit.log")).unwrap();
    let file_log = dir.join("sensor-file.log");
    wait_until("registration in the log file", Duration::from_secs(30), || {
        std::fs::read_to_string(&file_log).ok().filter(|t| t.contains("registered with the collector"))
    })
    .unwrap();
    assert!(guard.stop(SIGTERM).unwrap().success());
    let all = wait_until("the stop event in rsyslogd's file", Duration::from_secs(10), || {
        std::fs::read_to_string(&audit_file).ok().filter(|t| t.contains("event=stop"))
    })
    .unwrap();
    rsyslogd.stop(SIGTERM).unwrap();

    for event in [
        "authpriv.notice ossensor",
        "event=start process=supervisor",
        "event=child_started",
        "capabilities=cap_net_raw",
        "event=collector_registered process=uplink",
        "event=stop",
    ] {
        assert!(all.contains(event), "no {event:?} in syslog:\n{all}");
    }
    // Each process audits what the kernel says it holds, once it is final.
    let privileges = |process: &str| {
        all.lines()
            .find(|l| l.contains(&format!("event=privileges process={process} ")))
            .unwrap_or_else(|| panic!("no privileges event from {process}:\n{all}"))
            .to_string()
    };
    let worker = privileges("capture-worker[v0]");
    assert!(worker.contains("uid=65534") && worker.contains("effective=cap_net_raw ") && worker.contains("bounding=cap_net_raw "), "{worker}");
    assert!(worker.contains("no_new_privs=1"), "{worker}");
    let uplink = privileges("uplink");
    assert!(uplink.contains("uid=65534") && uplink.contains("effective=none") && uplink.contains("bounding=none"), "{uplink}");
    assert!(privileges("supervisor").contains("uid=0"));
    assert!(!all.contains(KEY), "the key reached syslog");
    // With a log file, standard output stays quiet and the file has it all.
    let text = std::fs::read_to_string(&file_log).unwrap();
    assert!(text.contains("ossensor-audit event=start") && text.contains("capture-worker[v0]"), "{text}");
    assert!(!text.contains(KEY));
}
