//! Real clients and servers run inside namespaces. Every client has its own
//! timeout, so a broken topology fails the test instead of hanging it.

use crate::netns::Netns;
use crate::process::ProcessGuard;
use crate::{run_timeout, Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

const START: Duration = Duration::from_secs(10);

/// `python3 -u -m http.server PORT --bind ADDR --directory DIR` inside `ns`.
pub struct HttpServer {
    pub guard: ProcessGuard,
    pub url: String,
}

impl HttpServer {
    /// Serves `dir`; waits until it prints "Serving HTTP". The log goes to
    /// `<log_dir>/<ns>-http.log`.
    pub fn start(ns: &Netns, addr: &str, port: u16, dir: &Path, log_dir: &Path) -> Result<HttpServer> {
        let p = port.to_string();
        let d = dir.to_string_lossy().into_owned();
        let log = log_dir.join(format!("{}-http-{port}.log", ns.name()));
        let mut guard = ns.spawn(&["python3", "-u", "-m", "http.server", &p, "--bind", addr, "--directory", &d], &log)?;
        guard.wait_for_line("Serving HTTP", START)?;
        Ok(HttpServer { guard, url: format!("http://{addr}:{port}") })
    }
}

/// `curl` GET of `url` from inside `ns` (no proxy, 10 s max); returns the body.
pub fn curl_http(ns: &Netns, url: &str) -> Result<Vec<u8>> {
    let out = run_timeout(ns.exec("curl").args(["-sS", "--fail", "--noproxy", "*", "--max-time", "10", url]), Duration::from_secs(20))?;
    Ok(out.stdout)
}

/// `dnsmasq` answering `NAME → ADDR` records on `listen_addr:53` inside `ns`.
pub struct Dnsmasq {
    pub guard: ProcessGuard,
    pub pid_file: PathBuf,
}

impl Dnsmasq {
    /// `records` are (domain, IPv4) pairs, e.g. ("example.test", "198.18.0.9");
    /// every name under the domain resolves to the address. Files go to `dir`.
    pub fn start(ns: &Netns, listen_addr: &str, records: &[(&str, &str)], dir: &Path) -> Result<Dnsmasq> {
        let pid_file = dir.join(format!("{}-dnsmasq.pid", ns.name()));
        let log = dir.join(format!("{}-dnsmasq.log", ns.name()));
        let mut args: Vec<String> = [
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--group=root",
            "--log-queries",
            "--log-facility=-",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--listen-address={listen_addr}"));
        args.push(format!("--pid-file={}", pid_file.display()));
        for (name, addr) in records {
            args.push(format!("--address=/{name}/{addr}"));
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut guard = ns.spawn(&a, &log)?;
        guard.wait_for_line("started, version", START)?;
        Ok(Dnsmasq { guard, pid_file })
    }
}

/// `dig @server name A +short` from inside `ns` (2 s per try, 2 tries);
/// returns the answer lines.
pub fn dig(ns: &Netns, server: &str, name: &str) -> Result<Vec<String>> {
    let at = format!("@{server}");
    let out = run_timeout(ns.exec("dig").args([at.as_str(), name, "A", "+short", "+time=2", "+tries=2"]), Duration::from_secs(15))?;
    let s = String::from_utf8_lossy(&out.stdout);
    if s.contains("connection timed out") || s.contains("no servers could be reached") {
        return Err(Error(format!("dig {at} {name}: {s}")));
    }
    Ok(s.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

/// `iperf3 -s -1 -B ADDR -p PORT` inside `ns`: serves one test, then exits.
pub struct Iperf3Server {
    pub guard: ProcessGuard,
}

impl Iperf3Server {
    pub fn start(ns: &Netns, addr: &str, port: u16, log_dir: &Path) -> Result<Iperf3Server> {
        let p = port.to_string();
        let log = log_dir.join(format!("{}-iperf3-{port}.log", ns.name()));
        let mut guard = ns.spawn(&["iperf3", "-s", "-1", "--forceflush", "-B", addr, "-p", &p], &log)?;
        guard.wait_for_line("Server listening", START)?;
        Ok(Iperf3Server { guard })
    }

    /// Waits for the one-off server to finish after its test.
    pub fn finish(mut self) -> Result<()> {
        let st = self.guard.wait_timeout(Duration::from_secs(15))?;
        if !st.success() {
            return Err(Error(format!("iperf3 server exited with {st}:\n{}", self.guard.log())));
        }
        Ok(())
    }
}

/// Bulk TCP: `iperf3 -c SERVER -p PORT -n BYTES` from inside `ns` (bytes
/// like "5M"); returns iperf3's report.
pub fn iperf3_client(ns: &Netns, server: &str, port: u16, bytes: &str) -> Result<String> {
    let p = port.to_string();
    let out = run_timeout(ns.exec("iperf3").args(["-c", server, "-p", &p, "-n", bytes, "--connect-timeout", "5000"]), Duration::from_secs(60))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends one UDP datagram from inside `ns` with python3; `src` binds the
/// source (address, port) when given.
pub fn udp_send(ns: &Netns, dst: &str, port: u16, payload: &[u8], src: Option<(&str, u16)>) -> Result<()> {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    let (sa, sp) = src.unwrap_or(("0.0.0.0", 0));
    let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.bind((sys.argv[4],int(sys.argv[5])))\n\
s.sendto(bytes.fromhex(sys.argv[3]),(sys.argv[1],int(sys.argv[2])))\n";
    run_timeout(ns.exec("python3").args(["-c", script, dst, &port.to_string(), &hex, sa, &sp.to_string()]), Duration::from_secs(15))?;
    Ok(())
}

/// A UDP receiver inside `ns` (python3) that logs `got <hex>` per datagram.
pub struct UdpListener {
    pub guard: ProcessGuard,
}

impl UdpListener {
    pub fn start(ns: &Netns, addr: &str, port: u16, log_dir: &Path) -> Result<UdpListener> {
        let log = log_dir.join(format!("{}-udp-{port}.log", ns.name()));
        let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.bind((sys.argv[1],int(sys.argv[2])))\n\
print('udp listening',flush=True)\n\
while True:\n    d,a=s.recvfrom(65535)\n    print('got '+d.hex(),flush=True)\n";
        let p = port.to_string();
        let mut guard = ns.spawn(&["python3", "-u", "-c", script, addr, &p], &log)?;
        guard.wait_for_line("udp listening", START)?;
        Ok(UdpListener { guard })
    }

    /// Waits until the datagram `payload` has been received.
    pub fn wait_for(&mut self, payload: &[u8], timeout: Duration) -> Result<()> {
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        self.guard.wait_for_line(&format!("got {hex}"), timeout).map(|_| ())
    }
}
