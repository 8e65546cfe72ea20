//! The images as users run them (docs/deployment.md): `podman run
//! --network=host --env-file FILE` of the sensor image next to the collector
//! image, inside a test namespace whose network is the containers' "host"
//! network, real traffic from a peer namespace over a veth, and the packets
//! read back from the collector's pcapng files with tshark. Also: `-e` over
//! the env file, the refusal without VSENSOR_HOSTNAME or VSENSOR_HMAC_KEY,
//! which capabilities the sensor needs (each one taken away), its measured
//! resource use against the Kubernetes limits, and the DaemonSet's pod
//! template run by `podman kube play`.
//!
//! Needs the images: `scripts/build-images.sh` (the tests fail, never skip,
//! without them), podman with runc, catatonit (the pod's infra container),
//! tshark, PyYAML. Podman runs with `nsenter --net=/run/netns/NS`: `ip netns
//! exec` also remounts /sys, which hides the cgroup mounts runc needs, while
//! nsenter changes the network namespace alone.
//!
//!   netns host: h1 198.19.60.1/24, collector container on 127.0.0.1:8443,
//!               sensor container (--network=host); HTTP, UDP servers
//!   netns peer: p1 198.19.60.2/24, the clients

use ossensor_suite::podman::{podman, podman_in, remove_container};
use ossensor_suite::sensor::{last_uplink_accounting, uplink_snapshots};
use ossensor_suite::*;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const KEY: &str = "container-test-key-0123456789";
const PORT: u16 = 8443;
/// The capabilities docs/deployment.md tells users to add.
const CAPS: &[&str] = &["NET_RAW", "SETUID", "SETGID", "CHOWN", "KILL", "SETPCAP", "NET_ADMIN"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn version() -> &'static str {
    ossensor_shared::VERSION
}

fn sensor_image() -> String {
    format!("localhost/ossensor:{}", version())
}

fn collector_image() -> String {
    format!("localhost/vsensor:{}", version())
}

fn require_images() {
    for image in [sensor_image(), collector_image()] {
        let ok = podman().args(["image", "exists", &image]).status().is_ok_and(|s| s.success());
        assert!(ok, "image {image} is missing: run scripts/build-images.sh first (static binaries, then the images)");
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A container removed (by name) on drop, also during a panic. Declare it
/// after its namespace: the namespace's drop kills what is left inside.
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d --pull=never --name NAME --network=host ARGS... IMAGE` in `ns`.
    fn run(ns: &Netns, role: &str, args: &[&str], image: &str) -> Container {
        let name = format!("ossensor-test-{}-{role}", unique_prefix());
        let mut c = podman_in(ns);
        c.args(["run", "-d", "--pull=never", "--name", &name, "--network=host"]).args(args).arg(image);
        // Named first, so a failed start is removed too.
        let container = Container { name };
        run(&mut c).unwrap_or_else(|e| panic!("{e}"));
        container
    }

    fn logs(&self) -> String {
        run_unchecked(podman().args(["logs", &self.name]), Duration::from_secs(30)).map(|o| text(&o)).unwrap_or_default()
    }

    fn inspect(&self, format: &str) -> String {
        let o = run(podman().args(["inspect", "--format", format, &self.name])).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// Waits until every needle is in the log; fails early if the container ended.
    fn wait_log(&self, needles: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.logs();
            if needles.iter().all(|n| log.contains(n)) {
                return;
            }
            if !self.running() {
                panic!("{} exited ({}) before logging {needles:?}:\n{log}", self.name, self.inspect("{{.State.ExitCode}}"));
            }
            if Instant::now() > deadline {
                panic!("{} did not log {needles:?} within {timeout:?}:\n{log}", self.name);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the container to end by itself; its exit code.
    fn wait_exit(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        while self.running() {
            assert!(Instant::now() < deadline, "{} still running after {timeout:?}:\n{}", self.name, self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        self.inspect("{{.State.ExitCode}}").parse().expect("exit code")
    }

    /// `podman stop -t 30` (SIGTERM, what docker stop and Kubernetes send):
    /// how long it took and the exit code.
    fn stop(&self) -> (Duration, i32) {
        let t = Instant::now();
        run_timeout(podman().args(["stop", "-t", "30", &self.name]), Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
        (t.elapsed(), self.inspect("{{.State.ExitCode}}").parse().expect("exit code"))
    }

    /// The host pid of the container's first process (the supervisor).
    fn pid(&self) -> i32 {
        self.inspect("{{.State.Pid}}").parse().expect("pid")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove_container(&self.name);
    }
}

/// The collector image as vsensor.yaml runs it: uid 65534, read-only root,
/// no capability, the data directory a volume (here a folder of the test).
fn start_collector(ns: &Netns, dir: &Path) -> (Container, PathBuf) {
    let data = dir.join("collector-data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let volume = format!("{}:/var/lib/vsensor", data.display());
    let env = dir.join("vsensor.env");
    std::fs::write(&env, format!("VSENSOR_HMAC_KEY={KEY}\nVSENSOR_LISTEN=127.0.0.1:{PORT}\n")).unwrap();
    let env = env.display().to_string();
    let args = [
        "--user",
        "65534:65534",
        "--read-only",
        "--cap-drop=all",
        "--security-opt",
        "no-new-privileges",
        "--env-file",
        &env,
        "-e",
        "VSENSOR_DEBUG=2",
        "-v",
        &volume,
    ];
    let c = Container::run(ns, "collector", &args, &collector_image());
    c.wait_log(&[&format!("vsensor: listening on 127.0.0.1:{PORT}")], Duration::from_secs(20));
    (c, data)
}

/// An env file as users write them (Docker's rules), plus `extra` lines.
fn env_file(dir: &Path, name: &str, lines: &[&str]) -> String {
    let path = dir.join(name);
    let mut s = String::from("# the collector, on this host's loopback\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    std::fs::write(&path, s).unwrap();
    path.display().to_string()
}

fn base_lines() -> Vec<String> {
    vec!["VSENSOR_HOSTNAME=127.0.0.1".into(), format!("VSENSOR_PORT={PORT}"), format!("VSENSOR_HMAC_KEY={KEY}"), "OSSENSOR_DEBUG=2".into()]
}

fn cap_args(caps: &[&str]) -> Vec<String> {
    let mut v = vec!["--cap-drop=all".to_string()];
    v.extend(caps.iter().map(|c| format!("--cap-add={c}")));
    v
}

/// The sensor image: `--env-file FILE --cap-drop=all --cap-add ...` + `extra`.
fn start_sensor(ns: &Netns, env_file: &str, caps: &[&str], extra: &[&str]) -> Container {
    let mut args: Vec<String> = vec!["--env-file".into(), env_file.into()];
    args.extend(cap_args(caps));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Container::run(ns, "sensor", &args, &sensor_image())
}

const READY: &[&str] = &["registered with the collector", "capture-worker[h1]", "filter attached"];

fn pcapng_files(data: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for sensor in std::fs::read_dir(data.join("sensors")).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(sensor.path()).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|e| e == "pcapng") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    files
}

/// `tshark -r F -Y FILTER -T fields -e FIELD` over every file (each must read).
fn tshark_fields(files: &[PathBuf], filter: &str, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let o = run_timeout(command("tshark").args(["-n", "-r"]).arg(f).args(["-Y", filter, "-T", "fields", "-e", field]), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}"));
        out.extend(String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a process holds, from /proc (pages resident now and at peak, and
/// CPU time in seconds).
#[derive(Debug, Default, Clone, Copy)]
struct Use {
    rss_kib: u64,
    hwm_kib: u64,
    anon_kib: u64,
    cpu_s: f64,
}

fn proc_use(pid: i32) -> Use {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |k: &str| status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis; utime and stime are 14 and 15.
    let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let t = |i: usize| rest.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64 / ticks;
    Use { rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:"), anon_kib: kib("RssAnon:"), cpu_s: t(14) + t(15) }
}

/// The supervisor and its children, summed.
fn sensor_use(supervisor: i32) -> Use {
    let children = std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).unwrap_or_default();
    let mut total = proc_use(supervisor);
    for pid in children.split_whitespace().filter_map(|p| p.parse().ok()) {
        let u = proc_use(pid);
        total.rss_kib += u.rss_kib;
        total.hwm_kib += u.hwm_kib;
        total.anon_kib += u.anon_kib;
        total.cpu_s += u.cpu_s;
    }
    total
}

/// What the memory cgroup of `pid` is charged (what a memory limit counts):
/// cgroup v2 memory.current or v1 memory.usage_in_bytes, in KiB.
fn cgroup_memory_kib(pid: i32) -> u64 {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let file = match ctrl {
            c if c.split(',').any(|x| x == "memory") => format!("/sys/fs/cgroup/memory{path}/memory.usage_in_bytes"),
            "" => format!("/sys/fs/cgroup/unified{path}/memory.current"),
            _ => continue,
        };
        if let Ok(v) = std::fs::read_to_string(&file) {
            return v.trim().parse::<u64>().unwrap_or(0) / 1024;
        }
    }
    0
}

/// The DaemonSet's image and resources (PyYAML).
fn daemonset_resources() -> serde_json::Value {
    let o = run(command("python3")
        .args([
            "-c",
            "import json,sys,yaml\n\
         d=[x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x['kind']=='DaemonSet'][0]\n\
         c=d['spec']['template']['spec']['containers'][0]\n\
         print(json.dumps({'image':c['image'],'resources':c['resources'],'caps':c['securityContext']['capabilities']}))",
        ])
        .arg(repo().join("packaging/kubernetes/ossensor-daemonset.yaml")))
    .unwrap_or_else(|e| panic!("{e}"));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// "64Mi" → KiB.
fn kib_of(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("quantity {q}"));
    match unit {
        "Mi" => n * 1024,
        "Gi" => n * 1024 * 1024,
        _ => panic!("quantity {q}: use Mi or Gi"),
    }
}

#[test]
fn the_sensor_image_captures_a_peer_with_only_the_documented_capabilities() {
    require_images();
    let (host, peer) = host_and_peer("198.19.60").unwrap();
    let dir = TestDir::new("container");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("from-the-container-test.html"), "hello\n".repeat(300)).unwrap();
    let _http = HttpServer::start(&host, "198.19.60.1", 8080, &www, dir.path()).unwrap();
    let mut udp = UdpListener::start(&host, "198.19.60.1", 9999, dir.path()).unwrap();
    let (collector, data) = start_collector(&host, dir.path());
    let lines = base_lines();
    let env = env_file(dir.path(), "sensor.env", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let sensor = start_sensor(&host, &env, CAPS, &[]);
    sensor.wait_log(READY, Duration::from_secs(30));
    let log = sensor.logs();
    assert!(log.contains("children run as uid 65534 gid 65534"), "no passwd entry needed:\n{log}");
    assert!(log.contains("generated config file written to /etc/darktrace/ossensor.cfg"), "{log}");
    let sup = sensor.pid();
    let idle0 = (sensor_use(sup), Instant::now());

    // Real traffic from the peer: HTTP and numbered UDP datagrams.
    for _ in 0..3 {
        let body = curl_http(&peer, "http://198.19.60.1:8080/from-the-container-test.html").unwrap();
        assert_eq!(body.len(), 1800);
    }
    for i in 0..50u32 {
        udp_send(&peer, "198.19.60.1", 9999, format!("ctr-{i:05}").as_bytes(), None).unwrap();
    }
    udp.wait_for(b"ctr-00049", Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let idle1 = (sensor_use(sup), Instant::now());

    // Load, for the resource figures: 200 MB over TCP through the veth at
    // 1 Gbit/s (at full speed two cores shared with the other tests drop in
    // the kernel, counted; that is measured in docs/performance.md).
    let iperf = Iperf3Server::start(&host, "198.19.60.1", 5201, dir.path()).unwrap();
    let t0 = Instant::now();
    run_timeout(peer.exec("iperf3").args(["-c", "198.19.60.1", "-p", "5201", "-n", "200M", "-b", "1G", "--connect-timeout", "5000"]), Duration::from_secs(60))
        .unwrap();
    iperf.finish().unwrap();
    let busy_wall = t0.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let busy = sensor_use(sup);

    let (took, code) = sensor.stop();
    let log = sensor.logs();
    assert_eq!(code, 0, "SIGTERM ends the sensor cleanly:\n{log}");
    assert!(took < Duration::from_secs(20), "stopped in {took:?}, within the grace");
    assert!(log.contains("dropped (spool full 0, refused 0, at exit 0)"), "nothing lost:\n{log}");

    let files = pcapng_files(&data);
    assert!(!files.is_empty(), "the collector stored files:\n{}", collector.logs());
    for f in &files {
        assert!(tshark_count(f) > 0, "{} reads in tshark", f.display());
    }
    let uris = tshark_fields(&files, "http.request", "http.request.uri");
    assert_eq!(uris.iter().filter(|u| *u == "/from-the-container-test.html").count(), 3, "{uris:?}");
    let payloads = tshark_fields(&files, "udp.dstport == 9999", "udp.payload");
    for i in 0..50u32 {
        let want = hex(format!("ctr-{i:05}").as_bytes());
        assert_eq!(payloads.iter().filter(|p| **p == want).count(), 1, "datagram {i} stored once");
    }
    // Exact accounting: the collector holds every frame the uplink delivered.
    let last = last_uplink_accounting(&log);
    assert_eq!(files.iter().map(tshark_count).sum::<usize>() as u64, last.delivered, "{last:?}");
    let h1 = uplink_snapshots(&log).last().and_then(|s| s.interfaces.get("h1").copied()).expect("h1's counters in the uplink's snapshot");
    let kernel_drops = format!("h1: received {} dropped by kernel {}", h1.received, h1.dropped_kernel);
    let big = tshark_fields(&files, "tcp.dstport == 5201 && tcp.len > 0", "tcp.len");
    let bytes: u64 = big.iter().map(|l| l.parse::<u64>().unwrap_or(0)).sum();
    println!("iperf3: {bytes} payload bytes stored; {kernel_drops}");
    if h1.dropped_kernel == 0 {
        assert!(bytes >= 200_000_000, "no kernel drop, so the whole iperf3 payload is stored: {bytes} bytes");
    }

    // Measured use against the DaemonSet's requests and limits.
    let idle_cpu = (idle1.0.cpu_s - idle0.0.cpu_s) / (idle1.1 - idle0.1).as_secs_f64();
    let busy_cpu = (busy.cpu_s - idle1.0.cpu_s) / busy_wall.as_secs_f64();
    println!(
        "measured sensor (supervisor + uplink + 1 worker, release static build): \
         idle RSS {} KiB (anon {} KiB), CPU {:.1}% of a core over {:.1} s with light traffic; \
         200 MB iperf3 in {:.2} s: CPU {:.0}% of a core; after it RSS {} KiB (anon {} KiB), peak (sum of VmHWM) {} KiB",
        idle1.0.rss_kib,
        idle1.0.anon_kib,
        idle_cpu * 100.0,
        (idle1.1 - idle0.1).as_secs_f64(),
        busy_wall.as_secs_f64(),
        busy_cpu * 100.0,
        busy.rss_kib,
        busy.anon_kib,
        busy.hwm_kib
    );
    let ds = daemonset_resources();
    assert_eq!(ds["image"], sensor_image(), "the DaemonSet runs the image scripts/build-images.sh tags");
    let added: Vec<&str> = ds["caps"]["add"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(added, CAPS, "the DaemonSet adds exactly what this test gives");
    let limit = kib_of(ds["resources"]["limits"]["memory"].as_str().unwrap());
    let request = kib_of(ds["resources"]["requests"]["memory"].as_str().unwrap());
    assert!(busy.hwm_kib < limit, "peak {} KiB under the limit {limit} KiB", busy.hwm_kib);
    assert!(idle1.0.rss_kib < request, "idle RSS {} KiB (rings included) under the request {request} KiB", idle1.0.rss_kib);
}

#[test]
fn an_e_variable_overrides_the_env_file() {
    require_images();
    let (host, peer) = host_and_peer("198.19.61").unwrap();
    let dir = TestDir::new("container-e");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("x"), "x").unwrap();
    let _http = HttpServer::start(&host, "198.19.61.1", 8080, &www, dir.path()).unwrap();
    let mut udp = UdpListener::start(&host, "198.19.61.1", 9999, dir.path()).unwrap();
    let (_collector, data) = start_collector(&host, dir.path());
    let mut lines = base_lines();
    lines.push("BPF=tcp port 8080".into());
    let env = env_file(dir.path(), "sensor.env", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    // Docker's rule: -e wins over the file.
    let sensor = start_sensor(&host, &env, CAPS, &["-e", "BPF=udp port 9999"]);
    sensor.wait_log(READY, Duration::from_secs(30));
    let log = sensor.logs();
    assert!(log.contains("BPF: \"udp port 9999\""), "the -e value is the one in force:\n{log}");
    assert!(log.contains(") and (udp port 9999)\""), "effective filter:\n{log}");
    for _ in 0..3 {
        curl_http(&peer, "http://198.19.61.1:8080/x").unwrap();
    }
    for i in 0..10u32 {
        udp_send(&peer, "198.19.61.1", 9999, format!("ovr-{i:05}").as_bytes(), None).unwrap();
    }
    udp.wait_for(b"ovr-00009", Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (_, code) = sensor.stop();
    assert_eq!(code, 0);
    let files = pcapng_files(&data);
    let all = tshark_fields(&files, "frame", "frame.protocols");
    let udp_frames = tshark_fields(&files, "udp.dstport == 9999", "udp.payload");
    assert_eq!(udp_frames.len(), 10, "the 10 datagrams, once each: {all:?}");
    assert_eq!(all.len(), 10, "nothing but them (no HTTP: the file's BPF is not used): {all:?}");
}

#[test]
fn the_sensor_refuses_to_start_without_the_collector_or_the_key() {
    require_images();
    let (host, _peer) = host_and_peer("198.19.62").unwrap();
    let dir = TestDir::new("container-req");
    for (var, message) in [
        ("VSENSOR_HOSTNAME", "ossensor: VSENSOR_HOSTNAME: is required: the collector's host name or IP address"),
        ("VSENSOR_HMAC_KEY", "ossensor: VSENSOR_HMAC_KEY: is required: the secret shared with the collector"),
    ] {
        let lines: Vec<String> = base_lines().into_iter().filter(|l| !l.starts_with(&format!("{var}="))).collect();
        let env = env_file(dir.path(), &format!("no-{var}.env"), &lines.iter().map(String::as_str).collect::<Vec<_>>());
        let sensor = start_sensor(&host, &env, CAPS, &[]);
        let code = sensor.wait_exit(Duration::from_secs(20));
        let log = sensor.logs();
        assert_eq!(code, 2, "a bad configuration exits 2:\n{log}");
        assert!(log.lines().any(|l| l == message), "without {var}: {message:?} expected in:\n{log}");
        assert!(!log.contains("started capture-worker"), "nothing captured:\n{log}");
    }
}

#[test]
fn each_capability_is_needed_or_its_loss_is_said() {
    require_images();
    let (host, peer) = host_and_peer("198.19.63").unwrap();
    let dir = TestDir::new("container-caps");
    let (_collector, data) = start_collector(&host, dir.path());
    let lines = base_lines();
    let env = env_file(dir.path(), "sensor.env", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let without = |cap: &str| -> Vec<&str> { CAPS.iter().copied().filter(|c| *c != cap).collect() };

    // Required: the sensor names what is missing and stops (exit 1).
    for cap in ["NET_RAW", "SETUID", "SETGID", "CHOWN", "KILL"] {
        let sensor = start_sensor(&host, &env, &without(cap), &[]);
        let code = sensor.wait_exit(Duration::from_secs(20));
        let log = sensor.logs();
        assert_eq!(code, 1, "without {cap}:\n{log}");
        assert!(log.contains(&format!("missing capability: CAP_{cap} (")), "without {cap}:\n{log}");
        assert!(!log.contains("started capture-worker"), "without {cap} nothing starts:\n{log}");
    }

    // SETPCAP: the children's bounding set stays as the container's.
    let sensor = start_sensor(&host, &env, &without("SETPCAP"), &[]);
    sensor.wait_log(READY, Duration::from_secs(30));
    let log = sensor.logs();
    let worker = log.lines().find(|l| l.contains("event=privileges process=capture-worker[h1]")).expect("worker's privileges");
    assert!(worker.contains("effective=cap_net_raw permitted=cap_net_raw") && worker.contains("no_new_privs=1"), "{worker}");
    assert!(!worker.contains("bounding=cap_net_raw "), "the bounding set is not reduced without SETPCAP: {worker}");
    ping(&peer, "198.19.63.1");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sensor.stop().1, 0);
    drop(sensor);
    // With it, reduced to the role's.
    let sensor = start_sensor(&host, &env, CAPS, &[]);
    sensor.wait_log(READY, Duration::from_secs(30));
    let log = sensor.logs();
    let worker = log.lines().find(|l| l.contains("event=privileges process=capture-worker[h1]")).expect("worker's privileges");
    assert!(worker.contains("bounding=cap_net_raw "), "{worker}");
    assert_eq!(sensor.stop().1, 0);
    drop(sensor);

    // NET_ADMIN: capture is unaffected (it only destroys local sockets for
    // response actions: a_local_socket_is_destroyed_only_with_net_admin).
    let sensor = start_sensor(&host, &env, &without("NET_ADMIN"), &[]);
    sensor.wait_log(READY, Duration::from_secs(30));
    let before = tshark_fields(&pcapng_files(&data), "icmp.type == 8", "frame.number").len();
    ping(&peer, "198.19.63.1");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sensor.stop().1, 0);
    let after = tshark_fields(&pcapng_files(&data), "icmp.type == 8", "frame.number").len();
    assert!(after >= before + 3, "echo requests stored without NET_ADMIN: {before} → {after}");
}

fn ping(ns: &Netns, to: &str) {
    ns.run(&["ping", "-c", "3", "-i", "0.2", "-W", "2", to]).unwrap();
}

/// A podman pod, secret, removed by name on drop.
struct PodmanObject {
    kind: &'static str,
    name: String,
}

impl Drop for PodmanObject {
    fn drop(&mut self) {
        let args: Vec<&str> = match self.kind {
            "pod" => vec!["pod", "rm", "-f", "-t", "0", &self.name],
            _ => vec!["secret", "rm", &self.name],
        };
        let _ = run_unchecked(podman().args(&args), Duration::from_secs(60));
    }
}

#[test]
fn the_daemonset_pod_template_captures_under_podman_kube_play() {
    require_images();
    let (host, peer) = host_and_peer("198.19.64").unwrap();
    let dir = TestDir::new("container-kube");
    let (_collector, data) = start_collector(&host, dir.path());
    let name = format!("ossensor-test-{}-ds", unique_prefix());

    // The key as a podman secret (podman 4.3 reads secretKeyRef from a JSON
    // map of base64 values); the manifest's pod template as a Pod.
    let b64 = run(command("base64").args(["-w0", "--"]).arg({
        let p = dir.join("key");
        std::fs::write(&p, KEY).unwrap();
        p
    }))
    .unwrap();
    let secret_file = dir.join("secret.json");
    std::fs::write(&secret_file, format!("{{\"hmac-key\":\"{}\"}}", String::from_utf8_lossy(&b64.stdout).trim())).unwrap();
    let secret = PodmanObject { kind: "secret", name: format!("{name}-key") };
    run(podman().args(["secret", "create", &secret.name]).arg(&secret_file)).unwrap();
    let out = run(command("python3")
        .arg(repo().join("tests/support/daemonset_to_pod.py"))
        .arg(repo().join("packaging/kubernetes/ossensor-daemonset.yaml"))
        .arg(dir.path())
        .args(["--name", &name, "--secret", &secret.name])
        .args(["--set", "VSENSOR_HOSTNAME=127.0.0.1", "--set", &format!("VSENSOR_PORT={PORT}")]))
    .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["image"], sensor_image());

    let pod = PodmanObject { kind: "pod", name: name.clone() };
    run_timeout(podman_in(&host).args(["kube", "play", "--configmap"]).arg(dir.join("configmap.yaml")).arg(dir.join("pod.yaml")), Duration::from_secs(60))
        .unwrap();
    let sensor = Container { name: format!("{name}-ossensor") };
    sensor.wait_log(&["registered with the collector", "filter attached"], Duration::from_secs(30));
    assert_eq!(sensor.inspect("{{.HostConfig.NetworkMode}}"), "host", "hostNetwork: true");
    assert_eq!(sensor.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let limit = kib_of(info["resources"]["limits"]["memory"].as_str().unwrap()) * 1024;
    assert_eq!(sensor.inspect("{{.HostConfig.Memory}}"), limit.to_string(), "the memory limit applies");
    let log = sensor.logs();
    assert!(log.contains(" any=1 "), "NETWORK_DEVICE_ANY=1 from the ConfigMap:\n{log}");
    assert!(log.contains("no_new_privs=1"), "allowPrivilegeEscalation: false:\n{log}");

    // A new interface after the start (a pod's veth) is captured too.
    veth_pair(&host, "h9", "198.19.65.1/24", &peer, "p9", "198.19.65.2/24").unwrap();
    sensor.wait_log(&["capture-worker[h9]"], Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    ping(&peer, "198.19.64.1");
    ping(&peer, "198.19.65.1");
    std::thread::sleep(Duration::from_millis(1500));
    println!("the pod's sensor container: its cgroup charges {} KiB (limit {} KiB)", cgroup_memory_kib(sensor.pid()), limit / 1024);
    let (_, code) = sensor.stop();
    assert_eq!(code, 0, "{}", sensor.logs());
    let files = pcapng_files(&data);
    let echoes = tshark_fields(&files, "icmp.type == 8", "ip.dst");
    assert!(echoes.iter().filter(|d| *d == "198.19.64.1").count() >= 3, "{echoes:?}");
    assert!(echoes.iter().filter(|d| *d == "198.19.65.1").count() >= 3, "{echoes:?}");
    drop(sensor);
    drop(pod);
}

fn tcpends() -> String {
    repo().join("tests/support/tcpends.py").display().to_string()
}

fn tcp_events(p: &ProcessGuard) -> Vec<serde_json::Value> {
    p.log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// How the server saw the connection from `port` end, if it did.
fn server_end(server: &ProcessGuard, port: u64) -> Option<String> {
    tcp_events(server).into_iter().find(|e| e["event"] == "server_ended" && e["peer_port"] == port).map(|e| e["how"].as_str().unwrap_or_default().to_string())
}

/// A quarantine of the peer (response action) while it talks to a server on
/// the sensor's own host: with NET_ADMIN the supervisor destroys the local
/// socket (the server reads ECONNABORTED), without it the log says why not
/// and only the wire sees the resets (the remote end is still reset).
#[test]
fn a_local_socket_is_destroyed_only_with_net_admin() {
    require_images();
    let (host, peer) = host_and_peer("198.19.66").unwrap();
    let dir = TestDir::new("container-netadmin");
    let (_collector, data) = start_collector(&host, dir.path());
    let mut lines = base_lines();
    lines.push("OSSENSOR_DEBUG=3".into());
    let env = env_file(dir.path(), "sensor.env", &lines.iter().map(String::as_str).collect::<Vec<_>>());
    let mut server = host.spawn(&["python3", &tcpends(), "server", "198.19.66.1", "7002"], dir.join("server.log")).unwrap();
    server.wait_for_line("listening", Duration::from_secs(10)).unwrap();
    for (round, with_net_admin) in [(0, true), (1, false)] {
        let caps: Vec<&str> = CAPS.iter().copied().filter(|c| with_net_admin || *c != "NET_ADMIN").collect();
        let sensor = start_sensor(&host, &env, &caps, &[]);
        sensor.wait_log(&["response actions: connected", "capture-worker[h1]", "filter attached"], Duration::from_secs(30));
        let mut busy = peer.spawn(&["python3", &tcpends(), "busy", "198.19.66.1", "7002", "busy"], dir.join(format!("busy-{round}.log"))).unwrap();
        busy.wait_for_line("echoed", Duration::from_secs(10)).unwrap();
        let out = run(host
            .exec(bin("vsensor").to_str().unwrap())
            .args(["action", "quarantine", "--host", "198.19.66.2", "--for", "3"])
            .env_clear()
            .env("VSENSOR_DATA_DIR", &data))
        .unwrap();
        assert!(!out.stdout.is_empty(), "an action id");
        let deadline = Instant::now() + Duration::from_secs(5);
        let ended = loop {
            if let Some(e) = tcp_events(&busy).into_iter().find(|e| e["event"] == "ended") {
                break e;
            }
            assert!(Instant::now() < deadline, "the peer's connection was not reset:\n{}", sensor.logs());
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(ended["how"], "ECONNRESET", "the remote end is reset on the wire either way");
        let port = tcp_events(&busy).iter().find(|e| e["event"] == "connected").and_then(|e| e["local_port"].as_u64()).unwrap();
        let expect = format!("local socket 198.19.66.1:7002 <-> 198.19.66.2:{port}: ");
        sensor.wait_log(&[&expect], Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(500));
        let log = sensor.logs();
        if with_net_admin {
            assert!(log.contains(&format!("{expect}destroyed")), "{log}");
            assert_eq!(server_end(&server, port).as_deref(), Some("ECONNABORTED"), "destroyed by the kernel");
        } else {
            assert!(log.contains(&format!("{expect}not destroyed: Operation not permitted")), "{log}");
            assert_ne!(server_end(&server, port).as_deref(), Some("ECONNABORTED"), "not destroyed without NET_ADMIN");
        }
        assert_eq!(sensor.stop().1, 0);
        // The quarantine ends before the next round.
        std::thread::sleep(Duration::from_secs(3));
        busy.kill();
    }
    server.kill();
}
