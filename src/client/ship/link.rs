//! One transmitter connection to the receiver, plain or TLS (`--tls --ca`): the name line out,
//! the offset line in, the file's bytes out, the close. Plain connections send the file with
//! `sendfile` (`worker.rs`); TLS must encrypt, so its bytes are read from the file and go
//! through rustls, used sans-IO over the blocking socket as in `client::tls`.
//!
//! Bytes count as sent once rustls took them (it encrypts at once and holds the records until
//! the socket takes them): a connection that fails later loses them, and the next connection
//! resumes from the receiver's offset all the same.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The read size of a TLS connection's file bytes, and of the workers' read-and-write fallback
/// where `sendfile` is not supported (some file systems, e.g. older FUSE or procfs-like ones).
pub(super) const COPY_BUFFER: usize = 1 << 20;

/// What `--tls` gives every worker: the client configuration and the name the receiver's
/// certificate must carry.
#[derive(Debug, Clone)]
pub struct TlsTarget {
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

impl TlsTarget {
    /// `--ca FILE`, the name to check (`--server-name`, else `--host`), and `--cert FILE
    /// --key FILE` for a receiver that asks for a client certificate.
    ///
    /// # Errors
    /// A file cannot be used, or the name is neither a DNS name nor an IP address.
    pub fn new(
        ca: &Path,
        name: &str,
        identity: Option<(&Path, &Path)>,
    ) -> Result<TlsTarget, String> {
        let config = match identity {
            None => crate::client::tls::client_config(ca)
                .map_err(|e| format!("--ca {}: {e}", ca.display()))?,
            Some((cert, key)) => crate::client::tls::client_config_with_cert(ca, cert, key)?,
        };
        let name = rustls::pki_types::ServerName::try_from(name.to_owned())
            .map_err(|e| format!("server name {name:?}: {e}"))?;
        Ok(TlsTarget { config, name })
    }
}

/// A connected socket, with TLS once its handshake is done.
pub struct Link {
    tcp: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Link {
    /// `tcp` as it is, or TLS over it with the handshake done (bounded by `timeout` per wait).
    ///
    /// # Errors
    /// The socket's errors; the handshake failed (the receiver's certificate is not trusted or
    /// names another host, or it does not speak TLS).
    pub fn new(tcp: TcpStream, tls: Option<&TlsTarget>, timeout: Duration) -> io::Result<Link> {
        let Some(target) = tls else {
            return Ok(Link { tcp, tls: None });
        };
        let mut conn = rustls::ClientConnection::new(target.config.clone(), target.name.clone())
            .map_err(io::Error::other)?;
        let mut tcp = tcp;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock => io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake: no answer from the receiver in time",
                ),
                _ => io::Error::new(e.kind(), format!("TLS handshake: {e}")),
            })?;
        }
        Ok(Link {
            tcp,
            tls: Some(Box::new(conn)),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Writes all of `buf` (the name line), waiting as the socket's timeouts say.
    ///
    /// # Errors
    /// The socket's errors.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            None => self.tcp.write_all(buf),
            Some(tls) => {
                tls.writer().write_all(buf)?;
                while tls.wants_write() {
                    tls.write_tls(&mut self.tcp)?;
                }
                Ok(())
            }
        }
    }

    /// Reads what arrives (plaintext, for TLS); `Ok(0)` at the end of the stream.
    ///
    /// # Errors
    /// The socket's errors (a timeout is `WouldBlock` or `TimedOut`); rustls refused what
    /// arrived (an alert from the receiver, such as a refused client certificate).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The receiver closed TCP without `close_notify`: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            if let Err(e) = tls.process_new_packets() {
                let _alert_sent = tls.write_tls(&mut self.tcp).is_ok();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("TLS: {e}"),
                ));
            }
            while tls.wants_write() {
                tls.write_tls(&mut self.tcp)?;
            }
        }
    }

    /// Sends `file[pos..end]` through TLS, advancing `pos` as rustls takes bytes; a full socket
    /// (a slow receiver) only waits, looking at `stop` between waits. A plain link is the
    /// caller's (`sendfile`).
    ///
    /// # Errors
    /// The file's and the socket's errors.
    pub fn send_tls(
        &mut self,
        file: &File,
        pos: &mut u64,
        end: u64,
        buf: &mut Vec<u8>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Err(io::Error::other("send_tls on a plain connection"));
        };
        buf.resize(COPY_BUFFER, 0);
        while *pos < end {
            let want = usize::try_from(end - *pos)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = file.read_at(&mut buf[..want], *pos)?;
            if n == 0 {
                // The file shrank under us; the caller's next look sees it.
                return Ok(());
            }
            let mut done = 0;
            while done < n {
                let taken = tls.writer().write(&buf[done..n])?;
                done += taken;
                *pos += taken as u64;
                if !drain(tls, &mut self.tcp, stop)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Closes the sending side: for TLS a `close_notify` first.
    ///
    /// # Errors
    /// The socket's errors.
    pub fn shutdown_write(&mut self, stop: &AtomicBool) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            drain(tls, &mut self.tcp, stop)?;
        }
        self.tcp.shutdown(Shutdown::Write)
    }
}

/// Moves what rustls holds to the socket; a timeout waits on unless `stop` is set (false then).
fn drain(
    tls: &mut rustls::ClientConnection,
    tcp: &mut TcpStream,
    stop: &AtomicBool,
) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(tcp) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
