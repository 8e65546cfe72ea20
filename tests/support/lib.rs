//! Test support for the integration tests: network namespaces and veth
//! pairs, supervised processes with log files, packet captures and their
//! readers, and real traffic generators (curl, dig, iperf3, UDP).
//!
//! Binding conventions (see `../shared/design.md`, "Test conventions"):
//! - Everything a test builds lives in namespaces it made ([`Netns`]), with
//!   addresses from 198.18.0.0/15 only ([`veth_pair`] refuses others), or on
//!   loopback. Nothing here touches the machine's own interfaces.
//! - Names carry a per-test unique prefix ([`unique_prefix`]) so tests run in
//!   parallel, in one process or many.
//! - Every guard cleans up on drop, also while a test panics.
//! - Nothing skips: a helper that cannot build its topology returns an
//!   [`Error`] (or panics) saying what failed, with the command's stderr.
//!
//! # Names and their lengths
//! Linux interface names are at most 15 bytes (IFNAMSIZ - 1). A prefix from
//! [`unique_prefix`] is at most 8 bytes (`t` + pid in base 36, at most 5
//! digits for pid_max 4194304, + a per-process counter in base 36, 1-2
//! digits). A namespace is named `<prefix>-<name>`. Interfaces created by
//! [`veth_pair`] are created directly inside their namespaces, so their names
//! only need to be unique within that namespace; [`Netns::ifname`] still
//! gives prefixed names (`<prefix><suffix>`, suffix at most 7 bytes) for tests
//! whose interface names appear in shared output such as logs.

pub mod capture;
pub mod channel;
pub mod netns;
pub mod podman;
pub mod process;
pub mod sensor;
pub mod traffic;

pub use capture::{
    assert_same_frames, count_marks, mark_number, read_pcap, read_pcap_as, read_pcapng, tcpdump_read_ok, try_tcpdump_read, try_tshark_count, tshark_count,
    Frame, Tcpdump,
};
pub use netns::{delete_link, host_and_peer, pin_neighbours, set_link_up, veth_pair, Netns, Veth};
pub use process::{spawn_logged, ProcessGuard};
pub use traffic::{curl_http, dig, iperf3_client, udp_send, Dnsmasq, HttpServer, Iperf3Server, UdpListener};

/// Signal numbers for [`ProcessGuard::stop`].
pub use libc::{SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1};

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What went wrong, in words: the step, the command and its stderr.
/// `Debug` prints the message verbatim so `.unwrap()` stays readable.
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A slot for the tests that must not run beside one another: those of
/// `tests/alone.rs`, which take the whole machine (200 veths at once, a
/// flood under a CPU cap). Each holds this guard for its whole run.
pub fn exclusive_slot() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding it leaves nothing to repair.
    SLOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

/// The part of every prefix that identifies this process: `t` + pid in base 36.
pub fn process_tag() -> String {
    format!("t{}", base36(std::process::id() as u64))
}

/// A short name prefix unique among all live processes and all calls in this
/// one: `t<pid base 36><counter base 36>`, at most 8 bytes (for up to 1296
/// calls per process, which is checked). Since the pid is in it, a name left
/// over by a dead process can only clash with a later process of the same
/// pid, and [`Netns::new`] removes such leftovers.
pub fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    assert!(n < 36 * 36, "unique_prefix: more than 1296 prefixes in one process");
    let p = format!("{}{}", process_tag(), base36(n as u64));
    debug_assert!(p.len() <= 8, "{p}");
    p
}

/// Environment variables removed from every command the harness runs, so no
/// test traffic is ever sent to a proxy.
pub const PROXY_VARS: &[&str] = &["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"];

/// A `Command` for `program` with the proxy variables removed.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for v in PROXY_VARS {
        c.env_remove(v);
    }
    c
}

/// Describes a command for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion (60 s at most) and requires exit status 0.
pub fn run(cmd: &mut Command) -> Result<Output> {
    run_timeout(cmd, Duration::from_secs(60))
}

/// Runs `cmd` (stdin closed, output captured); kills it after `timeout`.
/// Fails unless it exits 0; the error holds the command, status and output.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let out = run_unchecked(cmd, timeout)?;
    if !out.status.success() {
        return Err(Error(format!(
            "`{}` failed ({}):\nstderr: {}\nstdout: {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end(),
            tail(&String::from_utf8_lossy(&out.stdout), 2000)
        )));
    }
    Ok(out)
}

/// Runs `cmd` with a timeout and returns its output whatever its status.
/// A timeout is an error (the process is killed by its pid and reaped).
pub fn run_unchecked(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error(format!("cannot start `{desc}`: {e} (is it installed? run scripts/deps.sh)")))?;
    // Read both pipes in threads so a chatty child never blocks.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut so, &mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = std::io::Read::read_to_end(&mut se, &mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            // The child is not reaped yet, so its pid is still ours.
            // SAFETY: kill(2) touches no memory of ours.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
            let stderr = t_err.join().unwrap_or_default();
            return Err(Error(format!("`{desc}` timed out after {timeout:?} and was killed; stderr: {}", String::from_utf8_lossy(&stderr).trim_end())));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}

pub(crate) fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// A free TCP port on 127.0.0.1: binds port 0, reads the port, closes.
///
/// Racy by nature: another process may take the port between this call and
/// the test's own bind. Inside a namespace the test made, no such race
/// exists (nothing else listens there): use fixed ports there instead.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Path to a binary of the workspace, e.g. `bin("ossensor")`.
///
/// Looks in the profile directory of the running test executable first
/// (`<target>/<profile>/deps/<test>` → `<target>/<profile>/NAME`), which
/// follows `CARGO_TARGET_DIR`, `--release` and `--target`; then in
/// `$CARGO_TARGET_DIR` (or `<workspace>/target`) `/debug` and `/release`.
/// Panics when missing, saying to build the binaries first.
pub fn bin(name: &str) -> PathBuf {
    match try_bin(name) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// [`bin`] without the panic.
pub fn try_bin(name: &str) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(|deps| deps.parent()) {
            candidates.push(profile_dir.join(name));
        }
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => manifest.join(t),
        None => manifest.join("target"),
    };
    candidates.push(target.join("debug").join(name));
    candidates.push(target.join("release").join(name));
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    Err(Error(format!(
        "binary `{name}` not found (looked at {}): run `cargo build --workspace --bins` first",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout`
/// with `what` in the message.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(Error(format!("timed out after {timeout:?} waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub use tempfile;

/// A temporary directory for a test's files and logs, removed on drop,
/// unless `OSSENSOR_KEEP_TEST_FILES=1` is set (then its path is printed and
/// it is kept, for debugging).
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        let dir = tempfile::Builder::new().prefix(&format!("ossensor-{label}-")).tempdir().expect("cannot create a temporary directory");
        let path = dir.path().to_path_buf();
        TestDir { dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("OSSENSOR_KEEP_TEST_FILES").is_some_and(|v| v == "1") {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping test files in {}", d.keep().display());
            }
        }
    }
}
