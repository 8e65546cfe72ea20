//! Prometheus metrics (OSSENSOR_METRICS_ADDR, off by default): a plain-HTTP
//! `GET /metrics` served by the unprivileged uplink, from the counters it
//! already keeps. One thread, one request at a time, requests read with a
//! size and time limit.

use crate::sender::Sources;
use ossensor_host::log;
use ossensor_host::log::BASIC;
use ossensor_shared::metrics::CONTENT_TYPE;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

pub fn bind(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr).map_err(|e| format!("OSSENSOR_METRICS_ADDR={addr}: cannot listen: {e}"))
}

pub fn serve(listener: TcpListener, sources: Sources) {
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                if let Err(e) = answer(s, &sources) {
                    log!(ossensor_host::log::SENDS, "metrics request: {e}");
                }
            }
            Err(e) => {
                log!(BASIC, "metrics: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut s: TcpStream, sources: &Sources) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    // The request head, at most 8 KiB.
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, kind, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, page(sources)),
        ("GET", _) => ("404 Not Found", "text/plain", "only /metrics is served here\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics only\n".to_string()),
    };
    write!(s, "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())?;
    s.flush()
}

/// The metrics page: the uplink's snapshot (`telemetry`).
pub fn page(src: &Sources) -> String {
    src.snapshot().prometheus()
}
