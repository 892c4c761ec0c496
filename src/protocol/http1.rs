//! HTTP/1.1 (and 1.0) requests, pure: bytes in, one request (and the bytes it took), "need more",
//! or an error that names its status. Responses out ([`write_response`]). No socket, no clock,
//! no routing: the server's session (`server::session::http`) keeps the connection's state
//! (keep-alive, the header timeout, `100 Continue` already sent) and decides what to answer.
//!
//! The head (request line and headers) is parsed by `httparse`. The body is framed here:
//!
//! - `Content-Length`: exactly that many bytes; a second, different length, or one together
//!   with `Transfer-Encoding`, is refused (the classic request-smuggling ambiguity).
//! - `Transfer-Encoding: chunked`: chunk sizes in hex (extensions after `;` tolerated and
//!   ignored), sizes summed with checked arithmetic, trailers after the last chunk read and
//!   dropped. The chunks are first only measured; the body is copied out once, when complete,
//!   so a body arriving in many reads is not copied once per read.
//! - Neither: no body (a request has none unless it says so).
//!
//! Limits, checked before anything is allocated for them: the head at most [`MAX_HEAD`] bytes
//! and [`MAX_HEADERS`] headers (`431`), the body at most `Limits::max_body` (`413`, told as
//! soon as the head or a chunk size says so), the chunked framing at most
//! [`MAX_CHUNK_FRAMING`] bytes (`413`). Everything else that does not parse is `400`. Every
//! error closes the connection: after a bad request the next request's start is unknown.
//!
//! Keep-alive: HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes it
//! unless `Connection: keep-alive`.

use std::borrow::Cow;
use std::fmt;

/// The most bytes of request line and headers: 16 KiB, what browsers' cookies and a token fit
/// in many times over, and what one slow client may make the server hold (the slowloris bound).
pub const MAX_HEAD: usize = 16 * 1024;

/// The most headers in one request (and in a chunked body's trailers).
pub const MAX_HEADERS: usize = 100;

/// The most bytes of chunked framing (size lines, extensions, CRLFs, trailers) in one body:
/// enough for thousands of chunks, and a bound on what framing alone can make the server hold.
pub const MAX_CHUNK_FRAMING: usize = 64 * 1024;

/// What a request may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest body (decoded) accepted: `--max-frame`.
    pub max_body: usize,
}

/// HTTP/1.0 or HTTP/1.1 (the request's version; the response says the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One complete request, borrowing from the bytes it was read from.
#[derive(Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// What follows `?`, if anything.
    pub query: Option<&'a str>,
    pub version: Version,
    /// In the order sent; names as sent (compare with [`Request::header`], which ignores case).
    pub headers: Vec<(&'a str, &'a [u8])>,
    /// Borrowed for a `Content-Length` body, copied out of a chunked one.
    pub body: Cow<'a, [u8]>,
    /// The connection stays open after the answer.
    pub keep_alive: bool,
}

impl<'a> Request<'a> {
    /// The first header named `name` (ASCII case ignored).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }

    /// Whether the comma-separated header `name` lists `token` (case ignored), e.g.
    /// `Connection: keep-alive, Upgrade`.
    pub fn header_has(&self, name: &str, token: &str) -> bool {
        header_has(&self.headers, name, token)
    }
}

/// What [`read_request`] found in the bytes so far.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// Not a whole request yet.
    Incomplete {
        /// The head is complete (only the body is missing).
        head_complete: bool,
        /// The head is complete and asks for `100 Continue` before the body is sent.
        expects_continue: bool,
        /// The whole request's length, when known (a `Content-Length` body).
        needed: Option<usize>,
    },
    /// A request, and the bytes it took (the next request starts there).
    Complete {
        request: Request<'a>,
        consumed: usize,
    },
}

/// Why a request was refused. Each maps to one status ([`Error::status`]) and a one-line reason
/// ([`fmt::Display`]); every one closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Request line and headers over [`MAX_HEAD`] bytes.
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] headers (or trailers).
    TooManyHeaders,
    /// A body (announced or so far) over the limit.
    BodyTooLarge { limit: usize },
    /// Chunked framing over [`MAX_CHUNK_FRAMING`] bytes.
    FramingTooLarge,
    /// Not HTTP/1.0 or HTTP/1.1 syntax; says where.
    Malformed(&'static str),
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding,
}

impl Error {
    /// The status line's code and reason phrase.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Error::HeadTooLarge | Error::TooManyHeaders => (431, "Request Header Fields Too Large"),
            Error::BodyTooLarge { .. } | Error::FramingTooLarge => (413, "Content Too Large"),
            Error::Malformed(_) => (400, "Bad Request"),
            Error::UnsupportedEncoding => (501, "Not Implemented"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::HeadTooLarge => write!(
                f,
                "request line and headers over {MAX_HEAD} bytes (the most this server reads)"
            ),
            Error::TooManyHeaders => write!(f, "more than {MAX_HEADERS} headers"),
            Error::BodyTooLarge { limit } => {
                write!(f, "request body over {limit} bytes (--max-frame)")
            }
            Error::FramingTooLarge => write!(
                f,
                "chunked framing (sizes, extensions, trailers) over {MAX_CHUNK_FRAMING} bytes"
            ),
            Error::Malformed(what) => write!(f, "malformed request: {what}"),
            Error::UnsupportedEncoding => {
                f.write_str("transfer-encoding not supported (only chunked is)")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Reads one request from the front of `buf`.
///
/// # Errors
/// The first limit or syntax rule the bytes break (see [`Error`]).
pub fn read_request<'a>(buf: &'a [u8], limits: &Limits) -> Result<Parsed<'a>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    // Only the first `MAX_HEAD` bytes are ever looked at for the head, so the answer does not
    // depend on how the bytes arrived: a bad byte past the limit is never seen (the head is too
    // large whatever follows), read whole or a read at a time (found by the `http1` target).
    let head_window = &buf[..buf.len().min(MAX_HEAD)];
    let head_len = match parsed.parse(head_window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD {
                return Err(Error::HeadTooLarge);
            }
            return Ok(Parsed::Incomplete {
                head_complete: false,
                expects_continue: false,
                needed: None,
            });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooManyHeaders),
        Err(e) => return Err(Error::Malformed(parse_error(e))),
    };
    if head_len > MAX_HEAD {
        return Err(Error::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Error::Malformed("incomplete request line"));
    };
    let version = match version {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(Error::Malformed("unknown HTTP version")),
    };
    let headers: Vec<(&'a str, &'a [u8])> =
        parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let (path, query) = split_target(target)?;
    let keep_alive = match version {
        Version::Http11 => !header_has(&headers, "connection", "close"),
        Version::Http10 => header_has(&headers, "connection", "keep-alive"),
    };
    let framing = body_framing(&headers, version)?;
    let expects_continue =
        version == Version::Http11 && header_has(&headers, "expect", "100-continue");
    let rest = &buf[head_len..];
    let request = |body, consumed| {
        Ok(Parsed::Complete {
            request: Request {
                method,
                path,
                query,
                version,
                headers,
                body,
                keep_alive,
            },
            consumed,
        })
    };
    match framing {
        Framing::None => request(Cow::Borrowed(&[][..]), head_len),
        Framing::Length(len) => {
            if len > limits.max_body {
                return Err(Error::BodyTooLarge {
                    limit: limits.max_body,
                });
            }
            // `len` is at most `max_body`, a `u32`: no overflow.
            let total = head_len + len;
            if buf.len() < total {
                return Ok(Parsed::Incomplete {
                    head_complete: true,
                    expects_continue,
                    needed: Some(total),
                });
            }
            request(Cow::Borrowed(&rest[..len]), total)
        }
        Framing::Chunked => match measure_chunks(rest, limits)? {
            None => Ok(Parsed::Incomplete {
                head_complete: true,
                expects_continue,
                needed: None,
            }),
            Some((used, size)) => {
                let body = copy_chunks(&rest[..used], size);
                request(Cow::Owned(body), head_len + used)
            }
        },
    }
}

/// How a request's body is delimited.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn body_framing(headers: &[(&str, &[u8])], version: Version) -> Result<Framing, Error> {
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for &(name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            let parsed = parse_length(value)?;
            if length.is_some_and(|l| l != parsed) {
                return Err(Error::Malformed("two different Content-Length headers"));
            }
            length = Some(parsed);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if version == Version::Http10 {
                return Err(Error::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
            }
            let value = trim(value);
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Error::UnsupportedEncoding);
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(Error::Malformed(
            "both Content-Length and Transfer-Encoding",
        )),
        (Some(len), false) => Ok(Framing::Length(len)),
        (None, true) => Ok(Framing::Chunked),
        (None, false) => Ok(Framing::None),
    }
}

/// A `Content-Length`: decimal digits only, checked against overflow.
fn parse_length(value: &[u8]) -> Result<usize, Error> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed("Content-Length is not a number"));
    }
    value.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(Error::Malformed("Content-Length too large"))
    })
}

/// Walks a chunked body without copying it: `Some((bytes used, decoded size))` once the last
/// chunk and the trailers are in, `None` while more is needed.
fn measure_chunks(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, Error> {
    let mut pos = 0usize;
    let mut size = 0usize;
    let mut framing = 0usize;
    loop {
        let (line_len, chunk) = match httparse::parse_chunk_size(&buf[pos..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => {
                if buf.len() - pos > MAX_CHUNK_FRAMING.saturating_sub(framing) {
                    return Err(Error::FramingTooLarge);
                }
                return Ok(None);
            }
            Err(_) => return Err(Error::Malformed("bad chunk size line")),
        };
        framing = framing.saturating_add(line_len + 2);
        if framing > MAX_CHUNK_FRAMING {
            return Err(Error::FramingTooLarge);
        }
        pos += line_len;
        if chunk == 0 {
            return Ok(measure_trailers(&buf[pos..], framing)?.map(|used| (pos + used, size)));
        }
        let chunk = usize::try_from(chunk)
            .ok()
            .filter(|&c| c <= limits.max_body)
            .ok_or(Error::BodyTooLarge {
                limit: limits.max_body,
            })?;
        size = size
            .checked_add(chunk)
            .filter(|&s| s <= limits.max_body)
            .ok_or(Error::BodyTooLarge {
                limit: limits.max_body,
            })?;
        // `chunk` is at most `max_body`; `pos` at most `buf.len()`: no overflow.
        let end = pos + chunk;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(Error::Malformed("chunk data not followed by CRLF"));
        }
        pos = end + 2;
    }
}

/// The trailers after the last chunk, up to the empty line: `Some(bytes used)` when complete.
fn measure_trailers(buf: &[u8], framing: usize) -> Result<Option<usize>, Error> {
    if buf.starts_with(b"\r\n") {
        return Ok(Some(2));
    }
    let mut trailers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(buf, &mut trailers) {
        Ok(httparse::Status::Complete((used, _))) => {
            if framing.saturating_add(used) > MAX_CHUNK_FRAMING {
                return Err(Error::FramingTooLarge);
            }
            Ok(Some(used))
        }
        Ok(httparse::Status::Partial) => {
            if framing.saturating_add(buf.len()) > MAX_CHUNK_FRAMING {
                return Err(Error::FramingTooLarge);
            }
            Ok(None)
        }
        Err(httparse::Error::TooManyHeaders) => Err(Error::TooManyHeaders),
        Err(_) => Err(Error::Malformed("bad trailer")),
    }
}

/// Copies the data of a chunked body already checked by [`measure_chunks`].
fn copy_chunks(mut buf: &[u8], size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(size);
    while let Ok(httparse::Status::Complete((line_len, chunk))) = httparse::parse_chunk_size(buf) {
        // Measured already: every size fits and every chunk is followed by its CRLF.
        let chunk = usize::try_from(chunk).unwrap_or(0);
        if chunk == 0 {
            break;
        }
        let data = &buf[line_len..];
        let Some(data) = data.get(..chunk) else {
            break;
        };
        body.extend_from_slice(data);
        buf = buf.get(line_len + chunk + 2..).unwrap_or_default();
    }
    body
}

/// `origin-form` (`/path?query`), or `absolute-form` (`http://host/path`, what proxies send),
/// reduced to its path and query.
fn split_target(target: &str) -> Result<(&str, Option<&str>), Error> {
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => target,
    };
    if !target.starts_with('/') && target != "*" {
        return Err(Error::Malformed("request target is not a path"));
    }
    Ok(match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    })
}

fn header_has(headers: &[(&str, &[u8])], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1",
    }
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One response. `headers` are extra headers (`Content-Type`, `Allow`, ...); `Content-Length`
/// and `Connection` are written here, from `body` and `keep_alive`.
pub struct Response<'a> {
    pub status: u16,
    pub reason: &'static str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub keep_alive: bool,
}

/// Appends `response` to `out`, in the request's `version`.
pub fn write_response(out: &mut Vec<u8>, version: Version, response: &Response<'_>) {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{} {} {}\r\n",
        version.as_str(),
        response.status,
        response.reason
    );
    for (name, value) in response.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n", response.body.len());
    match (response.keep_alive, version) {
        (false, _) => out.extend_from_slice(b"Connection: close\r\n"),
        (true, Version::Http10) => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        (true, Version::Http11) => {}
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(response.body);
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_body: 64 };

    fn complete(buf: &[u8]) -> (Request<'_>, usize) {
        match read_request(buf, &LIMITS) {
            Ok(Parsed::Complete { request, consumed }) => (request, consumed),
            other => panic!("not complete: {other:?}"),
        }
    }

    fn incomplete(buf: &[u8]) -> bool {
        matches!(read_request(buf, &LIMITS), Ok(Parsed::Incomplete { .. }))
    }

    /// Every request below, cut at every point, is incomplete before its end and the same
    /// request at it.
    #[test]
    fn incomplete_at_every_split_point() {
        let requests: [&[u8]; 4] = [
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /p?q=1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-T: 1\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ];
        for request in requests {
            for cut in 0..request.len() {
                assert!(incomplete(&request[..cut]), "{request:?} cut at {cut}");
            }
            let (parsed, consumed) = complete(request);
            assert_eq!(consumed, request.len());
            assert!(parsed.body.is_empty() || &*parsed.body == b"hello");
        }
    }

    #[test]
    fn pipelined_requests_are_read_one_at_a_time() {
        let two = b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nokGET /c";
        let (first, used) = complete(two);
        assert_eq!((first.method, first.path), ("GET", "/a"));
        let (second, used2) = complete(&two[used..]);
        assert_eq!((second.path, &*second.body), ("/b", &b"ok"[..]));
        assert!(incomplete(&two[used + used2..]));
    }

    #[test]
    fn keep_alive_by_version_and_connection_header() {
        let cases: [(&[u8], bool); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        ];
        for (request, keep) in cases {
            assert_eq!(complete(request).0.keep_alive, keep, "{request:?}");
        }
    }

    #[test]
    fn expect_continue_is_reported_once_the_head_is_in() {
        let head = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
        match read_request(head, &LIMITS) {
            Ok(Parsed::Incomplete {
                head_complete: true,
                expects_continue: true,
                needed: Some(n),
            }) => assert_eq!(n, head.len() + 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_each_have_their_error() {
        let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        let cases: [(&[u8], Error); 9] = [
            (big_head.as_bytes(), Error::HeadTooLarge),
            (&big_head.as_bytes()[..MAX_HEAD + 1], Error::HeadTooLarge),
            (many.as_bytes(), Error::TooManyHeaders),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n",
                Error::BodyTooLarge { limit: 64 },
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n",
                Error::BodyTooLarge { limit: 64 },
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Error::Malformed("Content-Length is not a number"),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                Error::Malformed("both Content-Length and Transfer-Encoding"),
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                Error::UnsupportedEncoding,
            ),
            (
                b"\x00\x01garbage\r\n\r\n",
                Error::Malformed("invalid method or token"),
            ),
        ];
        for (request, error) in cases {
            assert_eq!(read_request(request, &LIMITS).unwrap_err(), error);
        }
        // Two chunks that each fit but together do not.
        let two = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n";
        let mut body = two.to_vec();
        body.extend_from_slice(&[b'a'; 32]);
        body.extend_from_slice(b"\r\n21\r\n");
        assert_eq!(
            read_request(&body, &LIMITS).unwrap_err(),
            Error::BodyTooLarge { limit: 64 }
        );
    }

    #[test]
    fn chunk_sizes_that_overflow_are_refused() {
        let request =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n";
        assert!(read_request(request, &LIMITS).is_err());
    }

    #[test]
    fn absolute_form_and_query() {
        let (request, _) = complete(b"GET http://h:1/v1/ws?token=a HTTP/1.1\r\n\r\n");
        assert_eq!((request.path, request.query), ("/v1/ws", Some("token=a")));
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            Version::Http10,
            &Response {
                status: 405,
                reason: "Method Not Allowed",
                headers: &[("Allow", "GET")],
                body: b"no\n",
                keep_alive: true,
            },
        );
        assert_eq!(
            out,
            b"HTTP/1.0 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 3\r\n\
              Connection: keep-alive\r\n\r\nno\n"
        );
    }
}
