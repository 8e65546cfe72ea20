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
            &[
                "setpriv",
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "/usr/bin/python3",
                "-c",
                probe,
            ],
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
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
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
        let meta = RequestMeta::with_nonce("GET", PATH_ACTIONS_WS, "garbage-sensor", 1, 0, ossensor_host::clock::now_ns(), ossensor_host::nonce(), b"");
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
                // SAFETY: setns on a descriptor this thread opened; it moves only this thread.
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

/// Slow clients after the TLS handshake (slowloris), from a python script:
/// `silent` connections finish the handshake and send nothing, `head` ones
/// send a request head one byte every 2 s, `body` ones send a whole,
/// well-formed head announcing 100 000 bytes and then one body byte every
/// 2 s. Prints `handshaken N`, then `closed MODE SECONDS STATUS` per
/// connection (seconds from the handshake to the collector's close), then
/// `done`.
const SLOW_CLIENTS: &str = r#"import os,socket,ssl,sys,threading,time
port=int(sys.argv[1]); per=int(sys.argv[2])
ctx=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname=False; ctx.verify_mode=ssl.CERT_NONE
ready=threading.Semaphore(0); lock=threading.Lock()
def slow(mode):
    s=ctx.wrap_socket(socket.create_connection(('127.0.0.1',port)),server_hostname='127.0.0.1')
    t0=time.time(); ready.release()
    head=('POST /v1/chunks HTTP/1.1\r\nhost: c\r\nx-vsensor-sensor: slow\r\nx-vsensor-epoch: 1\r\nx-vsensor-seq: 1\r\n'
          'x-vsensor-timestamp: %d\r\nx-vsensor-nonce: %s\r\nx-vsensor-signature: %s\r\ncontent-length: 100000\r\n\r\n'
          % (int(t0), os.urandom(16).hex(), os.urandom(32).hex())).encode()
    if mode=='body': s.sendall(head)
    s.settimeout(2); got=b''; i=0
    while time.time()-t0<120:
        try:
            d=s.recv(4096)
            if not d: break
            got+=d; continue
        except socket.timeout: pass
        except (OSError,ssl.SSLError): break
        try:
            if mode=='head': s.sendall(head[i:i+1]); i+=1
            elif mode=='body': s.sendall(b'x')
        except (OSError,ssl.SSLError): break
    status=got.split(b' ')[1].decode() if got.startswith(b'HTTP/1.1 ') else '-'
    with lock: print('closed',mode,'%.1f'%(time.time()-t0),status,flush=True)
ts=[threading.Thread(target=slow,args=(m,)) for m in ('silent','head','body') for _ in range(per)]
for t in ts: t.start()
for _ in ts: ready.acquire()
print('handshaken',len(ts),flush=True)
for t in ts: t.join()
print('done',flush=True)
"#;

/// Slowloris: 300 clients that finish the TLS handshake and then send
/// nothing, a request head one byte every 2 s, or a body one byte every
/// 2 s. A real sensor registers and delivers meanwhile; the collector
/// closes every slow connection after its documented timeout (request
/// head 30 s from the handshake, body 30 s from the head, answered 408)
/// and stays up.
#[test]
fn slow_clients_after_the_handshake_are_cut_off_and_a_sensor_still_delivers() {
    const PER_MODE: usize = 100;
    let (host, peer) = host_and_peer("198.18.91").unwrap();
    let dir = TestDir::new("slowloris");
    let mut collector = Collector::start(&host, dir.path()).unwrap();
    let mut slow = host.spawn(&["python3", "-u", "-c", SLOW_CLIENTS, &collector.port.to_string(), &PER_MODE.to_string()], dir.join("slow.log")).unwrap();
    slow.wait_for_line(&format!("handshaken {}", 3 * PER_MODE), Duration::from_secs(60)).unwrap();
    let mut env = base_env(&collector, dir.path());
    env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
    let started = Instant::now();
    let mut sensor = ossensor_suite::sensor::Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
    let registered = started.elapsed();
    let mut udp = UdpListener::start(&host, "198.18.91.1", 7000, dir.path()).unwrap();
    udp_send(&peer, "198.18.91.1", 7000, b"past-the-slow-clients", None).unwrap();
    udp.wait_for(b"past-the-slow-clients", Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !collector.frames().unwrap().iter().any(|f| f.data.windows(21).any(|w| w == b"past-the-slow-clients")) {
        assert!(Instant::now() < deadline, "the datagram reached the collector despite the slow clients");
        std::thread::sleep(Duration::from_millis(200));
    }
    let stored = started.elapsed();
    slow.wait_for_line("done", Duration::from_secs(150)).unwrap();
    let log = slow.log();
    let mut closed: std::collections::BTreeMap<&str, Vec<(f64, String)>> = Default::default();
    for l in log.lines().filter(|l| l.starts_with("closed ")) {
        let f: Vec<&str> = l.split(' ').collect();
        closed.entry(f[1]).or_default().push((f[2].parse().unwrap(), f[3].to_string()));
    }
    let range = |v: &[(f64, String)]| {
        let t: Vec<f64> = v.iter().map(|x| x.0).collect();
        (t.iter().cloned().fold(f64::MAX, f64::min), t.iter().cloned().fold(0.0, f64::max))
    };
    println!(
        "{} slow clients: sensor registered {} ms after start and its datagram stored {} ms after start; closed by the collector after \
         (s, min-max): silent {:?}, head byte by byte {:?}, body byte by byte {:?} (answered {:?})",
        3 * PER_MODE,
        registered.as_millis(),
        stored.as_millis(),
        range(&closed["silent"]),
        range(&closed["head"]),
        range(&closed["body"]),
        closed["body"].iter().map(|x| x.1.as_str()).collect::<std::collections::BTreeSet<_>>()
    );
    for mode in ["silent", "head", "body"] {
        let v = &closed[mode];
        assert_eq!(v.len(), PER_MODE, "every {mode} connection ended:\n{log}");
        let (lo, hi) = range(v);
        // Head: 30 s from the handshake; body: 30 s from the head (sent at once).
        assert!(lo >= 29.0 && hi <= 40.0, "{mode} connections closed after {lo}-{hi} s, not after the 30 s timeout");
    }
    assert!(closed["body"].iter().all(|x| x.1 == "408"), "a body that does not arrive is answered 408: {:?}", closed["body"]);
    sensor.stop().unwrap();
    assert!(collector.guard.is_running(), "the collector stayed up");
}

mod worker_channel {
    use super::*;
    use ossensor_shared::bpf::BpfInsn;
    use ossensor_shared::ipc::{encode_frame, UplinkMsg};
    use ossensor_suite::channel;
    use serde_json::Value;
    use std::io::Write;

    fn frame(msg: &UplinkMsg) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(msg, &mut out).unwrap();
        out
    }

    /// Garbage on a running capture-worker's connection to the uplink,
    /// written on the uplink's own end of it: random bytes, an oversized
    /// length, filters the worker must not attach. It refuses them all,
    /// stays the same process and keeps capturing: a numbered datagram sent
    /// after each abuse is stored. And garbage written on the worker's end
    /// (a worker gone bad): the uplink closes that connection only, and the
    /// worker gets a new one from the supervisor. (Forged response actions
    /// on this channel: tests/actions.rs.)
    #[test]
    fn garbage_on_the_workers_command_channel_is_refused_and_capture_goes_on() {
        let (host, peer) = host_and_peer("198.18.92").unwrap();
        let dir = TestDir::new("workerchan");
        let collector = Collector::start(&host, dir.path()).unwrap();
        let mut udp = UdpListener::start(&host, "198.18.92.1", 7000, dir.path()).unwrap();
        let mut env = base_env(&collector, dir.path());
        env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
        let mut sensor = ossensor_suite::sensor::Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
        let uplink = sensor.child_pid("uplink").unwrap();
        let worker = sensor.child_pid("capture-worker for h1").unwrap();
        let mut marks = 0;
        let mut captured_again = |label: &str| {
            let mark = format!("after-{label}-{marks}");
            marks += 1;
            udp_send(&peer, "198.18.92.1", 7000, mark.as_bytes(), None).unwrap();
            udp.wait_for(mark.as_bytes(), Duration::from_secs(5)).unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            while !collector.frames().unwrap().iter().any(|f| f.data.windows(mark.len()).any(|w| w == mark.as_bytes())) {
                assert!(Instant::now() < deadline, "{mark} not stored:\n{}", sensor.guard.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let refusals = |log: &str| log.matches(&format!("capture-worker[h1][{worker}] L0: refused a malformed frame")).count();

        // 1. Bytes that are no message (a plausible length, then 0xff).
        let (mut ch, inode) = channel::uplink_end(&host, uplink, worker, None);
        let mut junk = 200u32.to_le_bytes().to_vec();
        junk.extend([0xff; 200]);
        ch.write_all(&junk).unwrap();
        drop(ch);
        wait_until("the first refusal", Duration::from_secs(10), || (refusals(&sensor.guard.log()) >= 1).then_some(())).unwrap();
        captured_again("junk");

        // 2. An oversized frame: a 4 GiB length prefix (the limit is 8 MiB).
        let (mut ch, inode) = channel::uplink_end(&host, uplink, worker, Some(inode));
        let mut big = 0xffff_fff0u32.to_le_bytes().to_vec();
        big.extend([0; 4096]);
        // The worker may close before the last byte: its refusal, not an error.
        let _ = ch.write_all(&big);
        drop(ch);
        wait_until("the second refusal", Duration::from_secs(10), || (refusals(&sensor.guard.log()) >= 2).then_some(())).unwrap();
        captured_again("oversized");

        // 3. Well-formed commands the worker must not obey: filters that
        // are too long, jump out of the program, or do not end in a return.
        let (mut ch, _) = channel::uplink_end(&host, uplink, worker, Some(inode));
        let ret = BpfInsn { code: 0x06, jt: 0, jf: 0, k: 0 };
        let too_long = vec![BpfInsn { code: 0x06, jt: 0, jf: 0, k: 0xffff }; 5000];
        let wild_jump = vec![BpfInsn { code: 0x15, jt: 200, jf: 0, k: 0 }, ret];
        let no_return = vec![BpfInsn { code: 0x28, jt: 0, jf: 0, k: 12 }];
        for program in [too_long, wild_jump, no_return, Vec::new()] {
            ch.write_all(&frame(&UplinkMsg::SetFilter { program })).unwrap();
        }
        wait_until("the bad filters refused", Duration::from_secs(10), || {
            (sensor.guard.log().matches(&format!("capture-worker[h1][{worker}] L0: refused a filter from the uplink")).count() >= 4).then_some(())
        })
        .unwrap();
        drop(ch);
        captured_again("filters");

        // 4. A worker gone bad: garbage on its own end. The uplink closes
        // that connection; the worker asks the supervisor for a new one.
        let (mut own, _) = channel::worker_end(&host, worker, None);
        let closed_before = sensor.guard.log().matches("connection of the worker for h1 closed").count();
        own.write_all(&junk).unwrap();
        drop(own);
        wait_until("the uplink closing that connection", Duration::from_secs(10), || {
            (sensor.guard.log().matches("connection of the worker for h1 closed").count() > closed_before).then_some(())
        })
        .unwrap();
        captured_again("bad-worker");

        let log = sensor.guard.log();
        assert_eq!(sensor.child_pid("capture-worker for h1"), Some(worker), "the worker was never restarted:\n{log}");
        assert_eq!(sensor.child_pid("uplink"), Some(uplink), "nor the uplink");
        assert!(!log.contains("event=child_restart"), "no child restarted:\n{log}");
        println!(
            "worker {worker}: 2 malformed frames refused (a new connection each time), 4 bad filters refused; \
             a bad worker's garbage closed only its connection; {marks} datagrams stored, one after each abuse; no restart"
        );
        sensor.stop().unwrap();
    }

    /// A process of the children's uid (what the workers and the uplink
    /// run as) tries to take the uplink's place: it listens where the
    /// uplink's socket used to be, and the uplink is killed so the workers
    /// must connect again. They never reach it: the supervisor hands them
    /// their connections, and nothing has a name to connect to. Nor can it
    /// take a connection out of the uplink or a worker (both refuse
    /// ptrace-level access: not dumpable).
    #[test]
    fn a_process_of_the_childrens_uid_cannot_take_the_uplinks_place() {
        let (host, peer) = host_and_peer("198.18.93").unwrap();
        let dir = TestDir::new("impostor");
        let collector = Collector::start(&host, dir.path()).unwrap();
        let mut udp = UdpListener::start(&host, "198.18.93.1", 7000, dir.path()).unwrap();
        let mut env = base_env(&collector, dir.path());
        env.push(("OSSENSOR_NETWORK_DEVICE".into(), "h1".into()));
        let mut sensor = ossensor_suite::sensor::Sensor::start(&host, dir.path(), &env, &["h1"]).unwrap();
        let uplink = sensor.child_pid("uplink").unwrap();
        let worker = sensor.child_pid("capture-worker for h1").unwrap();
        let uid = std::fs::read_to_string(format!("/proc/{uplink}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Uid:").map(|r| r.split_whitespace().next().unwrap().to_string()))
            .unwrap();
        assert_ne!(uid, "0", "the children do not run as root");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/impostor.py");
        let as_children = |args: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = ["setpriv", "--reuid", &uid, "--regid", &uid, "--clear-groups", "/usr/bin/python3", script.to_str().unwrap()]
                .iter()
                .map(|s| s.to_string())
                .collect();
            v.extend(args.iter().map(|s| s.to_string()));
            v
        };
        let socket = sensor.runtime_dir.join("uplink.sock");
        let listen = as_children(&["listen", socket.to_str().unwrap()]);
        let mut impostor = host.spawn(&listen.iter().map(String::as_str).collect::<Vec<_>>(), dir.join("impostor.log")).unwrap();
        impostor.wait_for_line("listening", Duration::from_secs(10)).unwrap();

        // The uplink dies; the supervisor starts another after 0.5 s.
        let starts = |log: &str| log.matches("started uplink (pid").count();
        let before = starts(&sensor.guard.log());
        // SAFETY: a signal to the test's own sensor's child.
        assert_eq!(unsafe { libc::kill(uplink, libc::SIGKILL) }, 0);
        wait_until("the uplink restarted", Duration::from_secs(10), || (starts(&sensor.guard.log()) > before).then_some(())).unwrap();
        udp_send(&peer, "198.18.93.1", 7000, b"after-the-uplink-restarted", None).unwrap();
        udp.wait_for(b"after-the-uplink-restarted", Duration::from_secs(5)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !collector.frames().unwrap().iter().any(|f| f.data.windows(26).any(|w| w == b"after-the-uplink-restarted")) {
            assert!(Instant::now() < deadline, "nothing stored after the restart:\n{}", sensor.guard.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        let events: Vec<Value> = impostor.log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let taken = events.iter().filter(|e| e["event"] == "connection").count();
        assert_eq!(taken, 0, "a worker connected to the impostor: {events:?}\n{}", sensor.guard.log());

        // Nor can it duplicate a descriptor out of the uplink or a worker.
        let new_uplink = sensor.child_pid("uplink").unwrap();
        for (who, pid) in [("uplink", new_uplink), ("worker", worker)] {
            let grab = as_children(&["grab", &pid.to_string()]);
            let out = host.run(&grab.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
            let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
            assert_eq!(answer["errno"], "EPERM", "the children's uid took a descriptor out of the {who}: {answer}");
        }
        impostor.kill();
        sensor.stop().unwrap();
    }
}
