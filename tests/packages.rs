//! The packages, for real. The two .deb packages are installed in a Debian
//! bookworm container booted with systemd as PID 1, whose network is a
//! namespace this test made; the units are started, UDP from a peer
//! namespace crosses a veth into it, and the collector's files must hold
//! every datagram. The processes must run with the uids, capabilities and
//! sandbox that docs/architecture.md and docs/deployment.md describe. After
//! `apt-get purge`, nothing may be left: the file tree equals the one
//! before the install. The .rpm packages are checked for their files,
//! modes, config flags and scriptlets (no RPM system boots here).
//!
//! Needs what CI builds first (each missing piece fails, naming the step):
//! `scripts/build-static.sh`, `scripts/build-packages.sh` and
//! `scripts/build-systemd-test-image.sh`.

use ossensor_suite::podman::{podman, remove_container};
use ossensor_suite::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/ossensor-systemd-test:bookworm";
const IMAGE_LABEL: &str = "ossensor.image-script-sha256";
const KEY: &str = "package-test-key-0123456789";
const MARK: &[u8] = b"pkgudp-";
const DATAGRAMS: usize = 30;

// Capability numbers (linux/capability.h).
const CAP_CHOWN: u32 = 0;
const CAP_KILL: u32 = 5;
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;
const CAP_SETPCAP: u32 = 8;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

fn caps(list: &[u32]) -> u64 {
    list.iter().fold(0, |m, c| m | 1u64 << c)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn packages_dir() -> PathBuf {
    repo().join("target/packages")
}

/// The one package file `NAME_*` ending in `ext`, or a failure that says how
/// to make it.
fn package(name: &str, ext: &str) -> PathBuf {
    let dir = packages_dir();
    let found: Vec<PathBuf> = std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    let sep = if ext == ".deb" { '_' } else { '-' };
    let mut matching: Vec<PathBuf> = found
        .into_iter()
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy().into_owned();
            f.starts_with(&format!("{name}{sep}")) && f.ends_with(ext) && f[name.len() + 1..].starts_with(|c: char| c.is_ascii_digit())
        })
        .collect();
    assert!(
        matching.len() == 1,
        "expected one {name} {ext} package in {}, found {matching:?}: run scripts/build-static.sh, then scripts/build-packages.sh",
        dir.display()
    );
    matching.pop().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The test image must exist and be the one the current script makes.
fn check_image() {
    let want = {
        let out = run(command("sha256sum").arg(repo().join("scripts/build-systemd-test-image.sh"))).unwrap();
        text(&out).split_whitespace().next().unwrap().to_string()
    };
    let got =
        run_unchecked(podman().args(["image", "inspect", "--format", &format!("{{{{index .Labels \"{IMAGE_LABEL}\"}}}}"), IMAGE]), Duration::from_secs(30))
            .unwrap();
    assert!(
        got.status.success() && text(&got).trim() == want,
        "the image {IMAGE} is missing or made by an older script: run scripts/build-systemd-test-image.sh ({})",
        String::from_utf8_lossy(&got.stderr).trim()
    );
}

/// A container booted with systemd, removed (by name) on drop, also when
/// the test panics.
struct Container {
    name: String,
}

impl Container {
    /// Boots the image in the network namespace `ns` (podman's
    /// `--network=ns:`; `ip netns exec` would remount /sys and hide the
    /// cgroup mounts runc needs). CAP_SYS_ADMIN lets systemd build the
    /// units' mount namespaces; without it systemd silently skips
    /// ProtectSystem= and the like, and this test would not see the real
    /// sandbox. NET_RAW and NET_ADMIN are what the sensor's unit hands on;
    /// podman's default set lacks them.
    fn boot(name: &str, ns: &Netns) -> Container {
        let _ = run_unchecked(podman().args(["rm", "-f", "-t", "0", name]), Duration::from_secs(60));
        run(podman().args([
            "run",
            "-d",
            "--pull=never",
            "--name",
            name,
            &format!("--network=ns:/run/netns/{}", ns.name()),
            "--systemd=always",
            "--cap-add=SYS_ADMIN,NET_RAW,NET_ADMIN",
            IMAGE,
        ]))
        .unwrap();
        let c = Container { name: name.to_string() };
        let state = wait_until("systemd to finish booting", Duration::from_secs(60), || {
            let o = c.sh_unchecked("systemctl is-system-running");
            let s = text(&o).trim().to_string();
            (s == "running" || s == "degraded").then_some(s)
        })
        .unwrap();
        assert_eq!(state, "running", "failed units at boot:\n{}", c.sh("systemctl --failed --no-pager"));
        c
    }

    fn exec_output(&self, script: &str) -> Result<Output> {
        run_unchecked(podman().args(["exec", &self.name, "sh", "-c", script]), Duration::from_secs(120))
    }

    /// Runs a shell script inside; fails on a non-zero status.
    fn sh(&self, script: &str) -> String {
        let o = self.exec_output(script).unwrap();
        assert!(o.status.success(), "in the container: `{script}` failed ({}):\n{}\n{}", o.status, String::from_utf8_lossy(&o.stderr), text(&o));
        text(&o)
    }

    fn sh_unchecked(&self, script: &str) -> Output {
        self.exec_output(script).unwrap()
    }

    fn copy_in(&self, from: &Path, to: &str) {
        run(podman().args(["cp", &from.display().to_string(), &format!("{}:{to}", self.name)])).unwrap();
    }

    fn copy_out(&self, from: &str, to: &Path) {
        run(podman().args(["cp", &format!("{}:{from}", self.name), &to.display().to_string()])).unwrap();
    }

    fn journal(&self, unit: &str) -> String {
        self.sh(&format!("journalctl --no-pager -o cat -u {unit}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove_container(&self.name);
    }
}

/// Every file, directory and link of the container's own file system with
/// its type, mode, owner and (for files) size and SHA-256 where it matters,
/// leaving out what changes by itself: API file systems, /tmp, logs and
/// caches, dpkg's and apt's own databases (checked with dpkg-query instead),
/// and systemd's random seed and timer stamps.
fn tree(c: &Container) -> BTreeSet<String> {
    let listing = c.sh("find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp \
         -o -path /var/log -o -path /var/cache -o -path /var/lib/apt -o -path /var/lib/dpkg -o -path /root \
         -o -path /var/lib/systemd/random-seed -o -path /var/lib/systemd/timers \\) -prune \
         -o -printf '%p %y %m %u:%g\\n'");
    let mut set: BTreeSet<String> = listing.lines().map(str::to_string).collect();
    // The account databases must come back byte for byte, not just exist.
    for line in c.sh("sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow").lines() {
        set.insert(format!("sha256 {line}"));
    }
    set
}

fn status_field(status: &str, key: &str) -> String {
    status.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in:\n{status}")).trim().to_string()
}

fn status_caps(status: &str, key: &str) -> u64 {
    u64::from_str_radix(&status_field(status, key), 16).unwrap()
}

/// /proc/PID/status of every process inside whose name is `comm`.
fn statuses(c: &Container, comm: &str) -> Vec<String> {
    let out = c.sh(&format!("for d in /proc/[0-9]*; do [ \"$(cat $d/comm 2>/dev/null)\" = '{comm}' ] && cat $d/status && echo ---; done; true"));
    out.split("---\n").filter(|s| !s.trim().is_empty()).map(str::to_string).collect()
}

fn uid_of(c: &Container, user: &str) -> u32 {
    c.sh(&format!("id -u {user}")).trim().parse().unwrap()
}

/// All four uids of a process are `uid`.
fn assert_uid(status: &str, uid: u32, who: &str) {
    let u = status_field(status, "Uid");
    assert_eq!(u.split_whitespace().map(|x| x.parse::<u32>().unwrap()).collect::<Vec<_>>(), vec![uid; 4], "{who}: Uid {u}");
}

/// The frames stored so far under /var/lib/vsensor, read from a copy.
fn stored_frames(c: &Container, dir: &Path) -> (Vec<Frame>, Vec<PathBuf>) {
    let copy = dir.join("data");
    let _ = std::fs::remove_dir_all(&copy);
    c.copy_out("/var/lib/vsensor/sensors", &copy);
    let mut files = Vec::new();
    for sensor in std::fs::read_dir(&copy).unwrap() {
        for f in std::fs::read_dir(sensor.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "pcapng") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut frames = Vec::new();
    for f in &files {
        frames.extend(read_pcapng(f).unwrap());
    }
    (frames, files)
}

#[test]
fn deb_packages_run_under_systemd_and_purge_cleanly() {
    let sensor_deb = package("ossensor", ".deb");
    let collector_deb = package("vsensor", ".deb");
    check_image();
    let dir = TestDir::new("packages");
    for (deb, bins) in [(&sensor_deb, &["ossensor", "ossensor-capture-worker", "ossensor-uplink"][..]), (&collector_deb, &["vsensor"][..])] {
        let x = dir.join(deb.file_stem().unwrap());
        run(command("dpkg-deb").arg("-x").arg(deb).arg(&x)).unwrap();
        binaries_are_the_static_build(&x, bins, deb, dir.path());
    }

    // The container's network is `host`; `peer` sends over the veth h1-p1.
    let (host, peer) = host_and_peer("198.18.72").unwrap();
    let t0 = Instant::now();
    let c = Container::boot(&format!("ossensor-pkg-{}", host.prefix()), &host);
    println!("booted in {:?}", t0.elapsed());

    let before = tree(&c);
    c.copy_in(&sensor_deb, "/root/ossensor.deb");
    c.copy_in(&collector_deb, "/root/vsensor.deb");
    c.sh("dpkg -i /root/ossensor.deb /root/vsensor.deb");
    println!("installed at {:?}", t0.elapsed());

    // Installed: users, files and modes, units known but neither enabled nor started.
    let (sensor_uid, collector_uid) = (uid_of(&c, "ossensor"), uid_of(&c, "vsensor"));
    for (user, uid) in [("ossensor", sensor_uid), ("vsensor", collector_uid)] {
        assert!(uid > 0 && uid < 1000, "{user} is a system user: uid {uid}");
        assert_eq!(c.sh(&format!("getent passwd {user} | cut -d: -f6-")).trim(), "/nonexistent:/usr/sbin/nologin");
    }
    assert_eq!(
        c.sh("stat -c '%n %a %U:%G' /etc/ossensor/ossensor.env /etc/vsensor/vsensor.env /usr/bin/ossensor /usr/bin/ossensor-capture-worker /usr/bin/ossensor-uplink /usr/bin/vsensor /lib/systemd/system/ossensor.service /lib/systemd/system/vsensor.service"),
        "/etc/ossensor/ossensor.env 600 root:root\n/etc/vsensor/vsensor.env 600 root:root\n\
         /usr/bin/ossensor 755 root:root\n/usr/bin/ossensor-capture-worker 755 root:root\n/usr/bin/ossensor-uplink 755 root:root\n\
         /usr/bin/vsensor 755 root:root\n/lib/systemd/system/ossensor.service 644 root:root\n/lib/systemd/system/vsensor.service 644 root:root\n"
    );
    assert_eq!(
        c.sh("dpkg-query -W -f '${Conffiles}\\n' ossensor vsensor").split_whitespace().filter(|w| w.starts_with('/')).collect::<Vec<_>>(),
        vec!["/etc/ossensor/ossensor.env", "/etc/vsensor/vsensor.env"],
        "the env files are conffiles"
    );
    for unit in ["ossensor", "vsensor"] {
        assert_eq!(text(&c.sh_unchecked(&format!("systemctl is-enabled {unit}"))).trim(), "disabled");
        assert_eq!(text(&c.sh_unchecked(&format!("systemctl is-active {unit}"))).trim(), "inactive");
        // verify exits 0 even on errors: its stderr must be empty.
        let o = c.sh_unchecked(&format!("systemd-analyze verify {unit}.service"));
        assert!(
            o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
            "systemd-analyze verify {unit}.service:\n{}{}",
            text(&o),
            String::from_utf8_lossy(&o.stderr)
        );
        let score = c.sh(&format!("systemd-analyze security --no-pager {unit}.service | tail -n 1"));
        println!("{unit}.service: {}", score.trim());
    }

    // Configure and start, as docs/deployment.md says. `>` keeps the mode.
    c.sh(&format!("printf 'VSENSOR_HMAC_KEY={KEY}\\nVSENSOR_DEBUG=1\\n' > /etc/vsensor/vsensor.env"));
    c.sh(&format!("printf 'VSENSOR_HOSTNAME=127.0.0.1\\nVSENSOR_HMAC_KEY={KEY}\\nOSSENSOR_DEBUG=1\\n' > /etc/ossensor/ossensor.env"));
    c.sh("systemctl enable --now vsensor.service");
    wait_until("the collector to listen", Duration::from_secs(30), || c.journal("vsensor").contains("vsensor: listening on 0.0.0.0:443").then_some(()))
        .unwrap();
    c.sh("systemctl enable --now ossensor.service");
    wait_until("the sensor to register and attach its filter on h1", Duration::from_secs(60), || {
        let j = c.journal("ossensor");
        (j.contains("registered with the collector") && j.lines().any(|l| l.contains("capture-worker[h1]") && l.contains("filter attached"))).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", c.journal("ossensor")));

    // Real traffic from the peer, over the veth into the container's
    // namespace, to a listener there (a closed port would answer with ICMP
    // errors that quote the datagram, a second copy of each mark).
    let mut listener = UdpListener::start(&host, "198.18.72.1", 9999, dir.path()).unwrap();
    for i in 0..DATAGRAMS {
        udp_send(&peer, "198.18.72.1", 9999, format!("pkgudp-{i:05}").as_bytes(), None).unwrap();
    }
    listener.wait_for(format!("pkgudp-{:05}", DATAGRAMS - 1).as_bytes(), Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    wait_until("every datagram in the collector's files", Duration::from_secs(30), || {
        let (frames, _) = stored_frames(&c, dir.path());
        count_marks(&frames, MARK, 5, DATAGRAMS).iter().all(|n| *n >= 1).then_some(())
    })
    .unwrap();
    println!("all {DATAGRAMS} datagrams stored {:?} after the last was sent", started.elapsed());

    // The processes: uids, capabilities, no_new_privs, seccomp.
    let supervisor = statuses(&c, "ossensor");
    assert_eq!(supervisor.len(), 1, "one supervisor");
    let s = &supervisor[0];
    assert_uid(s, 0, "supervisor");
    assert_eq!(
        status_caps(s, "CapBnd"),
        caps(&[CAP_NET_RAW, CAP_SETUID, CAP_SETGID, CAP_SETPCAP, CAP_CHOWN, CAP_KILL, CAP_NET_ADMIN]),
        "supervisor's bounding set"
    );
    assert_eq!(status_caps(s, "CapEff"), status_caps(s, "CapBnd"), "supervisor: effective = bounding");
    assert_eq!(status_caps(s, "CapAmb"), 0);
    assert_eq!(status_field(s, "NoNewPrivs"), "1");
    assert_eq!(status_field(s, "Seccomp"), "2", "supervisor runs under the system call filter");
    let workers = statuses(&c, "ossensor-captur");
    assert_eq!(workers.len(), 1, "one worker, for h1 (loopback is never captured)");
    for w in &workers {
        assert_uid(w, sensor_uid, "capture-worker");
        for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
            assert_eq!(status_caps(w, set), caps(&[CAP_NET_RAW]), "capture-worker {set}");
        }
        assert_eq!(status_field(w, "NoNewPrivs"), "1");
        assert_eq!(status_field(w, "Seccomp"), "2");
    }
    let uplinks = statuses(&c, "ossensor-uplink");
    assert_eq!(uplinks.len(), 1, "one uplink");
    assert_uid(&uplinks[0], sensor_uid, "uplink");
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb", "CapBnd"] {
        assert_eq!(status_caps(&uplinks[0], set), 0, "uplink {set}");
    }
    let collectors = statuses(&c, "vsensor");
    assert_eq!(collectors.len(), 1, "one collector");
    let v = &collectors[0];
    assert_uid(v, collector_uid, "collector");
    for set in ["CapEff", "CapPrm", "CapAmb", "CapBnd"] {
        assert_eq!(status_caps(v, set), caps(&[CAP_NET_BIND_SERVICE]), "collector {set}");
    }
    assert_eq!(status_field(v, "NoNewPrivs"), "1");
    assert_eq!(status_field(v, "Seccomp"), "2");

    // Where they write: the generated config file (0600, it holds the key)
    // and the runtime directory (the children's, 0700); the rest is
    // read-only for them.
    assert_eq!(
        c.sh("stat -c '%n %a %U' /etc/darktrace/ossensor.cfg /run/ossensor /var/lib/vsensor /var/lib/ossensor /var/lib/ossensor/action-key"),
        "/etc/darktrace/ossensor.cfg 600 root\n/run/ossensor 700 ossensor\n/var/lib/vsensor 700 vsensor\n/var/lib/ossensor 700 root\n/var/lib/ossensor/action-key 600 root\n"
    );
    assert!(c.sh("cat /etc/darktrace/ossensor.cfg").contains("vSensor=127.0.0.1:443"));
    let pid = c.sh("systemctl show -p MainPID --value ossensor").trim().to_string();
    let mounts = c.sh(&format!("cat /proc/{pid}/mountinfo"));
    let opts = |point: &str| {
        mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some(point))
            .map(|l| l.split_whitespace().nth(5).unwrap().to_string())
            .unwrap_or_else(|| panic!("no mount at {point} for the supervisor:\n{mounts}"))
    };
    assert!(opts("/").starts_with("ro"), "ProtectSystem=strict: / is read-only for the sensor");
    assert!(opts("/etc/darktrace").starts_with("rw"), "the generated config file's folder is writable");
    assert!(opts("/run/ossensor").starts_with("rw"), "the runtime directory is writable");
    // Audit events reach syslog (/dev/log, the journal's) from inside the
    // sandbox, not only the log on standard output.
    wait_until("the start audit event in the journal", Duration::from_secs(10), || {
        c.sh("journalctl --no-pager -o cat _TRANSPORT=syslog").lines().any(|l| l.contains("ossensor-audit") && l.contains("event=start")).then_some(())
    })
    .unwrap();

    // Stop: the supervisor stops its children in order and exits 0.
    let t = Instant::now();
    c.sh("systemctl stop ossensor.service");
    let took = t.elapsed();
    c.sh("systemctl stop vsensor.service");
    assert!(took < Duration::from_secs(15), "ossensor stopped in {took:?}");
    println!("ossensor stopped in {took:?}, at {:?}", t0.elapsed());
    for unit in ["ossensor", "vsensor"] {
        assert_eq!(c.sh(&format!("systemctl show -p Result --value {unit}")).trim(), "success", "{unit}:\n{}", c.journal(unit));
        assert_eq!(c.sh(&format!("systemctl show -p ExecMainStatus --value {unit}")).trim(), "0", "{unit}:\n{}", c.journal(unit));
    }
    assert!(c.journal("ossensor").contains("dropped (spool full 0, refused 0, at exit 0)"), "{}", c.journal("ossensor"));
    let (frames, files) = stored_frames(&c, dir.path());
    let counts = count_marks(&frames, MARK, 5, DATAGRAMS);
    assert!(counts.iter().all(|n| *n == 1), "each datagram stored once: {counts:?}");
    assert!(!files.is_empty());
    for f in &files {
        assert!(tshark_count(f) > 0, "tshark reads {}", f.display());
    }
    assert_eq!(files.iter().map(tshark_count).sum::<usize>(), frames.len(), "tshark and the reader agree");

    // Purge: everything goes, users included.
    c.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y ossensor vsensor");
    println!("purged at {:?}", t0.elapsed());
    for user in ["ossensor", "vsensor"] {
        assert!(!c.sh_unchecked(&format!("getent passwd {user}")).status.success(), "user {user} removed");
        assert!(!c.sh_unchecked(&format!("getent group {user}")).status.success(), "group {user} removed");
    }
    let gone = c.sh("for p in /etc/ossensor /etc/vsensor /etc/darktrace /var/lib/vsensor /var/lib/ossensor /run/ossensor /usr/bin/ossensor /usr/bin/vsensor /usr/share/doc/ossensor /usr/share/doc/vsensor; do [ -e $p ] && echo $p; done; true");
    assert_eq!(gone, "", "left behind after purge");
    assert!(!c.sh_unchecked("dpkg-query -W ossensor vsensor").status.success(), "dpkg knows neither package");
    let after = tree(&c);
    // shadow-utils keeps its own backups of the account files (passwd- and
    // so on); they are not the packages' and are allowed, nothing else.
    let backups = ["/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-"];
    let added: Vec<&String> = after.difference(&before).filter(|l| !backups.iter().any(|b| l.starts_with(&format!("{b} ")))).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    assert!(added.is_empty() && removed.is_empty(), "the file tree differs after purge:\nadded {added:#?}\nremoved {removed:#?}");
}

/// rpm's view of a package: every file with its mode, owner and flags.
fn rpm_files(rpm: &Path) -> String {
    let out = run(command("rpm").args(["-qp", "--qf", "[%{FILENAMES} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags}\\n]"]).arg(rpm))
        .unwrap();
    text(&out)
}

fn rpm_scripts(rpm: &Path) -> String {
    text(&run(command("rpm").args(["-qp", "--scripts"]).arg(rpm)).unwrap())
}

/// The binaries in an unpacked package are the static build of
/// scripts/build-static.sh, without its debug information.
fn binaries_are_the_static_build(unpacked: &Path, bins: &[&str], what: &Path, dir: &Path) {
    for b in bins {
        let packed = std::fs::read(unpacked.join("usr/bin").join(b)).unwrap();
        let stripped = dir.join(format!("{b}.stripped"));
        let built = repo().join("target/static/x86_64-unknown-linux-gnu/release").join(b);
        run(command("strip").arg("--strip-debug").arg("-o").arg(&stripped).arg(&built)).unwrap();
        assert!(
            packed == std::fs::read(&stripped).unwrap(),
            "{b} in {} is not {} without debug information: run scripts/build-packages.sh again",
            what.display(),
            built.display()
        );
    }
}

/// An .rpm's payload unpacked (rpm2archive comes with rpm; no cpio needed).
fn unpack_rpm(rpm: &Path, dir: &Path) -> PathBuf {
    let x = dir.join(rpm.file_stem().unwrap());
    std::fs::create_dir_all(&x).unwrap();
    let copy = x.join("p.rpm");
    std::fs::copy(rpm, &copy).unwrap();
    run(command("rpm2archive").arg(&copy)).unwrap();
    run(command("tar").arg("-xzf").arg(x.join("p.rpm.tgz")).arg("-C").arg(&x)).unwrap();
    x
}

#[test]
fn rpm_packages_hold_the_files_modes_and_user_scriptlets() {
    let dir = TestDir::new("rpm");
    let sensor = package("ossensor", ".rpm");
    let files = rpm_files(&sensor);
    for want in [
        "/usr/bin/ossensor -rwxr-xr-x root:root \n",
        "/usr/bin/ossensor-capture-worker -rwxr-xr-x root:root \n",
        "/usr/bin/ossensor-uplink -rwxr-xr-x root:root \n",
        "/usr/lib/systemd/system/ossensor.service -rw-r--r-- root:root \n",
        "/etc/ossensor/ossensor.env -rw------- root:root cn\n",
        "/usr/share/doc/ossensor/deployment.md -rw-r--r-- root:root d\n",
    ] {
        assert!(files.contains(want), "{} lacks {want:?}:\n{files}", sensor.display());
    }
    let scripts = rpm_scripts(&sensor);
    let pre = scripts.split("postinstall scriptlet").next().unwrap();
    assert!(pre.contains("preinstall scriptlet") && pre.contains("useradd --system --gid ossensor") && pre.contains("groupadd --system ossensor"), "{scripts}");
    assert!(scripts.contains("preuninstall scriptlet") && scripts.contains("disable --now ossensor.service"), "{scripts}");
    assert!(scripts.contains("postuninstall scriptlet") && scripts.contains("try-restart ossensor.service"), "{scripts}");
    assert!(scripts.contains("rm -f /etc/darktrace/ossensor.cfg"), "the generated config file (the key) goes on erase:\n{scripts}");
    assert!(!scripts.contains("userdel"), "by the RPM convention the user stays:\n{scripts}");
    let x = unpack_rpm(&sensor, dir.path());
    binaries_are_the_static_build(&x, &["ossensor", "ossensor-capture-worker", "ossensor-uplink"], &sensor, dir.path());

    let collector = package("vsensor", ".rpm");
    let files = rpm_files(&collector);
    for want in [
        "/usr/bin/vsensor -rwxr-xr-x root:root \n",
        "/usr/lib/systemd/system/vsensor.service -rw-r--r-- root:root \n",
        "/etc/vsensor/vsensor.env -rw------- root:root cn\n",
    ] {
        assert!(files.contains(want), "{} lacks {want:?}:\n{files}", collector.display());
    }
    let scripts = rpm_scripts(&collector);
    assert!(scripts.contains("useradd --system --gid vsensor") && scripts.contains("disable --now vsensor.service"), "{scripts}");
    assert!(!scripts.contains("userdel") && !scripts.contains("rm -rf"), "erase keeps the user and the captures:\n{scripts}");
    let x = unpack_rpm(&collector, dir.path());
    binaries_are_the_static_build(&x, &["vsensor"], &collector, dir.path());
}
