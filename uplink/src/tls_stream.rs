//! The TLS stream under ureq, writing in large pieces.
//!
//! ureq copies a request body to its stream 8 KiB at a time, and rustls'
//! own stream sends each piece at once: one TLS record and one syscall per
//! 8 KiB, and on loopback the kernel's TCP work (both ends) for each. Here
//! records are queued in rustls (up to [`WRITE_COALESCE`]) and written with
//! one vectored write when the queue is full, on flush, or before reading
//! the answer. The handshake and the certificate check are rustls' as
//! before (the configuration carries the pinning verifier).

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use ureq::ReadWrite;

/// TLS bytes queued before a write: a megabyte chunk leaves in four writes.
pub const WRITE_COALESCE: usize = 256 * 1024;

pub struct CoalescingTls(pub Arc<ClientConfig>);

impl ureq::TlsConnector for CoalescingTls {
    fn connect(&self, dns_name: &str, mut io: Box<dyn ReadWrite>) -> Result<Box<dyn ReadWrite>, ureq::Error> {
        // rustls takes IPv6 literals without their URL brackets.
        let name = dns_name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(dns_name);
        let server = ServerName::try_from(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("server name {name:?}: {e}")))?.to_owned();
        let mut conn = ClientConnection::new(self.0.clone(), server).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(WRITE_COALESCE));
        conn.complete_io(&mut io)?;
        Ok(Box::new(Coalescing(StreamOwned::new(conn, io))))
    }
}

struct Coalescing(StreamOwned<ClientConnection, Box<dyn ReadWrite>>);

impl Coalescing {
    /// Writes every queued TLS record.
    fn send_queued(&mut self) -> io::Result<()> {
        let s = &mut self.0;
        while s.conn.wants_write() {
            s.conn.write_tls(&mut s.sock)?;
        }
        Ok(())
    }
}

impl Write for Coalescing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0.conn.is_handshaking() {
            self.0.conn.complete_io(&mut self.0.sock)?;
        }
        // rustls encrypts into its queue and takes nothing once the queue
        // holds WRITE_COALESCE bytes: then is the time to write.
        let n = self.0.conn.writer().write(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        self.send_queued()?;
        self.0.conn.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_queued()?;
        self.0.sock.flush()
    }
}

impl Read for Coalescing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The answer comes only after the whole request has left.
        self.send_queued()?;
        self.0.read(buf)
    }
}

impl ReadWrite for Coalescing {
    fn socket(&self) -> Option<&TcpStream> {
        self.0.sock.socket()
    }
}

impl fmt::Debug for Coalescing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CoalescingTls")
    }
}
