//! HTTP/1.1 on the gRPC port, raw: the server started with that port on an ephemeral port, and
//! a keep-alive connection that writes requests as given and reads answers one at a time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use super::{DEADLINE, Server};

/// Starts the server with its gRPC (and HTTP) port on an ephemeral port; `args` after
/// `serve --port 0 --grpc-port 0 --dir DIR`.
pub fn start(dir: &Path, args: &[&str]) -> (Server, SocketAddr) {
    let mut command = super::logmill();
    command
        .args(["serve", "--port", "0", "--grpc-port", "0", "--dir"])
        .arg(dir)
        .args(args);
    let server = Server::spawn(command, dir);
    let http = server.listening["grpc"].as_str().unwrap().parse().unwrap();
    (server, http)
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to `addr` with the tests' read deadline, buffered for [`read_answer`].
pub fn open(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    BufReader::new(stream)
}

/// Reads one answer: status line, headers, a `Content-Length` body (none for `101`).
pub fn read_answer(reader: &mut BufReader<TcpStream>) -> Answer {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("no status line: {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, l)| l.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

/// A keep-alive HTTP connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        Conn { reader: open(addr) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    /// A `POST` of `body` to `path` with `headers` (each `Name: value`), `Content-Length` set.
    pub fn post(&mut self, path: &str, headers: &[&str], body: &[u8]) {
        let mut request = format!("POST {path} HTTP/1.1\r\nHost: x\r\n");
        for header in headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.send(&bytes);
    }

    /// The next answer.
    pub fn answer(&mut self) -> Answer {
        read_answer(&mut self.reader)
    }

    /// True once the server closed the connection (nothing more to read).
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
    }
}
