//! A small blocking HTTP/1.1 client for the sinks: one `POST` per batch on a kept-alive
//! connection (`std::net::TcpStream`), the response head read with `httparse`, the body read by
//! `Content-Length` or chunked encoding, bounded.
//!
//! Blocking is right here: a forwarder is one thread that has nothing else to do while its
//! batch is in flight, and the event loops never call this.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a connect may take: a sink that does not answer in this is down, and the batch
/// is retried later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one read or write may block: an insert of a large batch into a busy ClickHouse
/// can take seconds, never this long.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a response's body kept: enough for any error message, small enough that a
/// hostile or confused server cannot make the forwarder hold much.
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// The longest response head read.
const MAX_HEAD: usize = 16 * 1024;

/// A response: its status and (up to [`MAX_RESPONSE_BODY`] bytes of) its body.
#[derive(Debug)]
pub struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body, as much of it as was kept.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// One server's connection, opened on demand and reopened after an error.
pub struct Client {
    host: String,
    port: u16,
    stream: Option<TcpStream>,
}

impl Client {
    pub fn new(host: &str, port: u16) -> Client {
        Client {
            host: host.to_string(),
            port,
            stream: None,
        }
    }

    /// Sends `POST path` with `headers` and `body`, and reads the response. Tries once more on a
    /// fresh connection when a kept-alive one turns out closed before any answer (the server
    /// closed it while idle), so a live server is never reported as an error for that.
    ///
    /// # Errors
    /// Connecting, writing or reading; a response that is not HTTP/1.x.
    pub fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let reused = self.stream.is_some();
        match self.try_post(path, headers, body) {
            Err(e) if reused && is_closed(&e) => {
                self.stream = None;
                self.try_post(path, headers, body)
            }
            other => other,
        }
    }

    fn try_post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let result = self.exchange(path, headers, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => self.stream.insert(connect(&self.host, self.port)?),
        };
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            crate::config::forward::authority(&self.host, self.port),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let (response, keep) = read_response(stream)?;
        if !keep {
            self.stream = None;
        }
        Ok(response)
    }
}

pub(super) fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_read_timeout(Some(IO_TIMEOUT))?;
                s.set_write_timeout(Some(IO_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_string())
}

/// Reads one response; also says whether the connection may be used again.
fn read_response(stream: &mut TcpStream) -> io::Result<(Response, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    let (status, head_len, length, chunked, keep) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before answering",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = response.code.ok_or_else(|| bad("no status"))?;
                let mut length = None;
                let mut chunked = false;
                let mut keep = response.version == Some(1);
                for h in response.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(
                            value
                                .parse::<usize>()
                                .map_err(|_| bad("bad Content-Length"))?,
                        );
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.eq_ignore_ascii_case("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        keep = !value.eq_ignore_ascii_case("close");
                    }
                }
                break (status, len, length, chunked, keep);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(bad("response head too long")),
            Err(e) => return Err(bad(&format!("not an HTTP response: {e}"))),
        }
    };
    let rest = buf.split_off(head_len);
    // Buffered: a chunked body's size lines are read a byte at a time.
    let mut reader = io::BufReader::new(Prefixed {
        rest,
        at: 0,
        stream,
    });
    let (body, complete) = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(length) = length {
        read_exactly(&mut reader, length)?
    } else {
        // No length: the body ends when the server closes.
        let (body, _) = read_exactly(&mut reader, usize::MAX)?;
        (body, false)
    };
    Ok((Response { status, body }, keep && complete))
}

/// The bytes read past the head first, then the socket.
struct Prefixed<'a> {
    rest: Vec<u8>,
    at: usize,
    stream: &'a mut TcpStream,
}

impl Read for Prefixed<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at < self.rest.len() {
            let n = out.len().min(self.rest.len() - self.at);
            out[..n].copy_from_slice(&self.rest[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.stream.read(out)
    }
}

/// Reads `length` bytes (or to the end), keeping the first [`MAX_RESPONSE_BODY`]; whether all
/// `length` bytes were read (so the connection is at the next response).
fn read_exactly(r: &mut impl Read, length: usize) -> io::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    let mut left = length;
    let mut chunk = [0u8; 8192];
    while left > 0 {
        let n = r.read(&mut chunk[..left.min(8192)])?;
        if n == 0 {
            return Ok((body, length == usize::MAX));
        }
        let keep = n.min(MAX_RESPONSE_BODY.saturating_sub(body.len()));
        body.extend_from_slice(&chunk[..keep]);
        left -= n;
    }
    Ok((body, true))
}

/// Reads a chunked body, keeping the first [`MAX_RESPONSE_BODY`] bytes.
fn read_chunked(r: &mut impl Read) -> io::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok((body, true));
        }
        let (part, complete) = read_exactly(r, size)?;
        if !complete {
            return Ok((body, false));
        }
        let keep = part.len().min(MAX_RESPONSE_BODY.saturating_sub(body.len()));
        body.extend_from_slice(&part[..keep]);
        read_line(r)?;
    }
}

/// One CRLF-terminated line (at most 1 KiB), without its end.
fn read_line(r: &mut impl Read) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the body ended early",
            ));
        }
        match byte[0] {
            b'\n' => break,
            b => line.push(b),
        }
        if line.len() > 1024 {
            return Err(bad("chunk line too long"));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("chunk line is not text"))
}
