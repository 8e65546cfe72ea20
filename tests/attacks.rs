//! Attacks on the sensor's path to the collector, with real programs.
//!
//! A man in the middle: a TLS-terminating proxy (socat with its own
//! certificate) between the sensor and the collector, relaying every byte.
//! The collector's proof covers the certificate *it* serves, the sensor
//! checks it against the one *it* saw: they differ, so the sensor never
//! registers and never sends a packet, and says why at level 0 and in the
//! audit trail.

use ossensor_suite::sensor::{base_env, Collector};
use ossensor_suite::*;
use std::time::{Duration, Instant};

#[test]
fn a_tls_terminating_man_in_the_middle_gets_no_packet() {
    let (sen, col) = host_and_peer("198.18.71").unwrap();
    let dir = TestDir::new("mitm");
    let collector = Collector::start_on(&col, dir.path(), "198.18.71.2").unwrap();

    // The proxy's own certificate, and the proxy: 127.0.0.1:9443 in the
    // sensor's namespace → the collector.
    let pem = dir.join("mitm.pem");
    let key = dir.join("mitm.key");
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listen = format!("openssl-listen:9443,bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0", pem.display(), key.display());
    let upstream = format!("openssl:198.18.71.2:{},verify=0", collector.port);
    let mut proxy = sen.spawn(&["socat", &listen, &upstream], dir.join("socat.log")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(proxy.is_running(), "socat: {}", proxy.log());

    let mut env = base_env(&collector, dir.path());
    env.retain(|(k, _)| k != "VSENSOR_PORT");
    env.push(("VSENSOR_PORT".into(), "9443".into()));
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut sensor = spawn_logged(&mut ossensor_suite::sensor::sensor_command(&sen, &env, &[]), dir.join("ossensor.log")).unwrap();

    // The proxy relays the registration; the sensor refuses the answer.
    sensor.wait_for_line("man in the middle; not sending packets", Duration::from_secs(30)).unwrap();
    // Traffic on the captured interface while the sensor keeps retrying.
    for i in 0..20 {
        udp_send(&col, "198.18.71.1", 7000, format!("secret-{i}").as_bytes(), None).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(collector.files().is_empty(), "a chunk reached the collector through the man in the middle");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = sensor.log();
    assert!(log.contains("ossensor-audit event=collector_not_trusted process=uplink"), "audited:\n{log}");
    assert!(!log.contains("registered with the collector"), "{log}");
    assert!(log.matches("man in the middle").count() <= 2, "said once (not at every retry):\n{log}");
    assert!(sensor.stop(SIGTERM).unwrap().success());
    proxy.kill();
}

/// The uplink's identity (the children's uid, no capability) cannot open a
/// packet socket, so a compromised uplink can neither capture nor send on
/// an interface. Shown with setpriv dropping to exactly that identity.
#[test]
fn the_uplinks_identity_cannot_open_a_packet_socket() {
    let (host, _peer) = host_and_peer("198.18.76").unwrap();
    let probe = "import socket\ntry:\n    socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n    print('OPENED')\nexcept PermissionError as e:\n    print('REFUSED', e.errno)\n";
    let out = host
        .run_unchecked(
            &["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "/usr/bin/python3", "-c", probe],
            Duration::from_secs(20),
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("REFUSED 1"), "EPERM expected: {text} {}", String::from_utf8_lossy(&out.stderr));
    // The same probe as root opens it: the refusal is the identity's.
    let root = host.run_unchecked(&["/usr/bin/python3", "-c", probe], Duration::from_secs(20)).unwrap();
    assert!(String::from_utf8_lossy(&root.stdout).contains("OPENED"));
}

/// The key is in no process's command line or environment, and another
/// user cannot read the processes' environment or memory.
#[test]
fn the_key_is_not_in_any_process_view() {
    let (host, _peer) = host_and_peer("198.18.77").unwrap();
    let dir = TestDir::new("keyview");
    let collector = Collector::start(&host, dir.path()).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    let mut sensor = ossensor_suite::sensor::Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    let supervisor = sensor.guard.pid() as i32;
    let pids = [Some(supervisor), sensor.child_pid("uplink"), sensor.child_pid("capture-worker for h1")];
    for pid in pids.iter().map(|p| p.expect("a running process")) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(ossensor_suite::sensor::KEY), "key in the command line of {pid}");
        if pid != supervisor {
            // The children's environment is empty but for two markers (the
            // supervisor's is the user's own, with the key they set).
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
            assert!(!String::from_utf8_lossy(&environ).contains(ossensor_suite::sensor::KEY), "key in the environment of {pid}");
        }
        // Another user (not root, not the children's uid) sees neither.
        for what in ["environ", "mem"] {
            let out = std::process::Command::new("setpriv")
                .args(["--reuid", "12345", "--regid", "12345", "--clear-groups", "cat"])
                .arg(format!("/proc/{pid}/{what}"))
                .output()
                .unwrap();
            assert!(!out.status.success(), "uid 12345 read /proc/{pid}/{what}");
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ossensor.cfg")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated config file (it holds the key)");
    sensor.stop().unwrap();
}

/// Three thousand idle connections held open to the collector (no TLS
/// handshake, like a slow client or a flood): a sensor still registers and
/// delivers, and the collector closes the idle ones after its handshake
/// timeout (10 s).
#[test]
fn thousands_of_idle_connections_do_not_keep_a_sensor_out() {
    let (host, peer) = host_and_peer("198.18.78").unwrap();
    let dir = TestDir::new("flood");
    let mut collector = Collector::start(&host, dir.path()).unwrap();
    let hold = format!(
        "import socket,sys,time\nsocks=[]\nfor i in range(3000):\n    s=socket.create_connection(('127.0.0.1',{}))\n    socks.append(s)\n\
         print('holding',len(socks),flush=True)\ntime.sleep(20)\n",
        collector.port
    );
    let mut flood = host.spawn(&["python3", "-c", &hold], dir.join("flood.log")).unwrap();
    flood.wait_for_line("holding 3000", Duration::from_secs(30)).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    let started = Instant::now();
    let mut sensor = ossensor_suite::sensor::Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    println!("registered {} ms after start, with 3000 idle connections held", started.elapsed().as_millis());
    let mut udp = UdpListener::start(&host, "198.18.78.1", 7000, dir.path()).unwrap();
    udp_send(&peer, "198.18.78.1", 7000, b"through-the-flood", None).unwrap();
    udp.wait_for(b"through-the-flood", Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !collector.frames().unwrap().iter().any(|f| f.data.windows(17).any(|w| w == b"through-the-flood")) {
        assert!(Instant::now() < deadline, "the datagram reached the collector despite the flood");
        std::thread::sleep(Duration::from_millis(200));
    }
    sensor.stop().unwrap();
    flood.kill();
    assert!(collector.guard.is_running(), "the collector stayed up");
}

mod garbage_websocket {
    use super::*;
    use ossensor_shared::auth::RequestMeta;
    use ossensor_shared::control::PATH_ACTIONS_WS;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
    use std::net::TcpStream;
    use std::sync::Arc;
    use tungstenite::client::IntoClientRequest;
    use tungstenite::http::HeaderValue;
    use tungstenite::Message;

    type Socket = tungstenite::WebSocket<StreamOwned<ClientConnection, TcpStream>>;
    type Abuse = Box<dyn FnOnce(&mut Socket) + Send>;

    /// The test plays a sensor that holds the key: any certificate will do.
    #[derive(Debug)]
    struct AnyCert;
    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
        }
    }

    fn tls(port: u16) -> StreamOwned<ClientConnection, TcpStream> {
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        StreamOwned::new(ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap()).unwrap(), tcp)
    }

    /// A signed upgrade, then `abuse`; returns whether the collector closed
    /// the socket (an error or a Close on the next read).
    fn session(port: u16, abuse: impl FnOnce(&mut Socket)) -> bool {
        let mut req = format!("wss://127.0.0.1:{port}{PATH_ACTIONS_WS}").into_client_request().unwrap();
        let meta = RequestMeta::new("GET", PATH_ACTIONS_WS, "garbage-sensor", 1, 0, ossensor_shared::timefmt::now_ns(), b"");
        for (k, v) in meta.signed_headers(ossensor_suite::sensor::KEY.as_bytes()) {
            req.headers_mut().insert(k, HeaderValue::from_str(&v).unwrap());
        }
        let (mut ws, resp) = tungstenite::client::client(req, tls(port)).expect("a signed upgrade is accepted");
        assert_eq!(resp.status(), 101);
        let first = ws.read().unwrap();
        assert!(first.to_text().unwrap().contains("\"type\":\"actions\""), "the set in force comes first: {first:?}");
        abuse(&mut ws);
        loop {
            match ws.read() {
                Ok(Message::Close(_)) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }

    /// Garbage from an authenticated sensor on its WebSocket: bad JSON,
    /// unknown types and binary messages are ignored, an oversized message
    /// closes that socket; the collector stays up and a real sensor still
    /// works.
    #[test]
    fn garbage_on_the_action_channel_closes_only_that_channel() {
        let (host, _peer) = host_and_peer("198.18.79").unwrap();
        let dir = TestDir::new("wsgarbage");
        let mut collector = Collector::start(&host, dir.path()).unwrap();
        let port = collector.port;
        let run = |f: Abuse| {
            // The collector listens in the namespace: talk to it from there.
            let path = format!("/run/netns/{}", host.name());
            std::thread::spawn(move || {
                let ns = std::fs::File::open(path).unwrap();
                assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) }, 0);
                session(port, f)
            })
            .join()
            .unwrap()
        };
        // Text that is not an action report: ignored, the socket stays; we close it.
        let closed_by_us = run(Box::new(|ws| {
            ws.send(Message::text("{not json")).unwrap();
            ws.send(Message::text(r#"{"type":"exec","cmd":"rm -rf /"}"#)).unwrap();
            ws.send(Message::binary(vec![0xff; 4096])).unwrap();
            ws.close(None).unwrap();
        }));
        assert!(closed_by_us);
        // A message over the 1 MiB limit: the collector closes the socket.
        assert!(run(Box::new(|ws| {
            let _ = ws.send(Message::text("x".repeat(2 << 20)));
        })));
        let log = collector.guard.log();
        assert_eq!(log.matches("ignored a malformed message on the action channel").count(), 1, "logged once per connection:\n{log}");
        // A real sensor still registers and gets its action channel.
        let mut env = base_env(&collector, dir.path());
        env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
        let mut sensor = ossensor_suite::sensor::Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
        sensor.guard.wait_for_line("response actions: connected", Duration::from_secs(20)).unwrap();
        sensor.stop().unwrap();
        assert!(collector.guard.is_running(), "the collector stayed up");
    }
}
