//! gRPC-Web (grpc/grpc `doc/PROTOCOL-WEB.md`), pure: the content types, a request body cut into
//! its gRPC messages, the response body (data frames, then the trailers frame), trailers-only
//! error answers, and CORS for browsers on another origin.
//!
//! What this file does not hold: HTTP/1.1 itself (`protocol::http1` reads requests), the
//! protobuf messages and status codes (`protocol::grpc`, shared with h2), and what a call does
//! with its records (`server::session::grpc_web`).
//!
//! gRPC-Web is gRPC's framing in an ordinary HTTP body, for clients that cannot send HTTP/2
//! trailers (browsers):
//!
//! ```text
//! request body:  [0x00 | len u32 BE | message]          one message per unary call
//! response body: [0x00 | len u32 BE | message]           the reply
//!                [0x80 | len u32 BE | "grpc-status:0\r\ngrpc-message:\r\n"]   the trailers
//! ```
//!
//! In text mode (`application/grpc-web-text`) both bodies are base64. A client may flush its
//! base64 in several padded pieces, so a padded quantum (`..==`) may sit in the middle of a body:
//! [`decode_text`] decodes piece by piece. An error before any reply is "trailers-only": status
//! 200, `grpc-status` and `grpc-message` in the HTTP headers, and an empty body.
//!
//! Every length from the wire is checked before anything is allocated for it: the HTTP side
//! bounds the body (`--max-frame`), the message prefix is checked against the message limit by
//! [`grpc::decode_message`], and base64 decodes to less than its input.

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

use crate::protocol::grpc::{self, Code, Message, MessageError, Status};

/// The flag byte of the trailers frame: the most significant bit set, uncompressed.
pub const TRAILERS_FLAG: u8 = 0x80;

/// The request headers a gRPC-Web client may send that are not CORS-safelisted, so the preflight
/// must allow them: the four of PROTOCOL-WEB.md's clients and the token, then logmill's own
/// metadata (the app and instance, as on h2).
pub const ALLOW_HEADERS: &str = "content-type, x-grpc-web, x-user-agent, grpc-timeout, \
                                 authorization, logmill-app, logmill-instance";

/// The response headers a page may read: the status of a trailers-only answer.
pub const EXPOSE_HEADERS: &str = "grpc-status, grpc-message";

/// The methods a gRPC-Web path takes: the call, and the browser's preflight.
pub const ALLOW_METHODS: &str = "POST, OPTIONS";

/// How long a browser may cache a preflight answer: ten minutes, so a page that logs steadily
/// sends one preflight per ten minutes, not one per record.
pub const PREFLIGHT_MAX_AGE: &str = "600";

// ---------------------------------------------------------------------------------------------
// Content types
// ---------------------------------------------------------------------------------------------

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/grpc-web` (`+proto`): the frames as they are.
    Binary,
    /// `application/grpc-web-text` (`+proto`): the frames in base64.
    Text,
}

impl Mode {
    /// The request's mode from its `Content-Type`: the four gRPC-Web types with protobuf
    /// messages, parameters after `;` and the case of the type ignored. `None` for anything else
    /// (`application/grpc-web+json` included: this server speaks protobuf only).
    pub fn of_content_type(value: &[u8]) -> Option<Mode> {
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        let essence = essence.trim_ascii();
        let is = |name: &str| essence.eq_ignore_ascii_case(name.as_bytes());
        if is("application/grpc-web") || is("application/grpc-web+proto") {
            Some(Mode::Binary)
        } else if is("application/grpc-web-text") || is("application/grpc-web-text+proto") {
            Some(Mode::Text)
        } else {
            None
        }
    }

    /// The answer's mode: text when the request was, or when its `Accept` asks for text
    /// (PROTOCOL-WEB.md, "Text-encoded (response) streams").
    pub fn of_response(self, accept: Option<&[u8]>) -> Mode {
        let wants_text = accept.is_some_and(|accept| {
            accept
                .split(|&b| b == b',')
                .filter_map(|item| item.split(|&b| b == b';').next())
                .any(|t| Mode::of_content_type(t) == Some(Mode::Text))
        });
        if self == Mode::Text || wants_text {
            Mode::Text
        } else {
            Mode::Binary
        }
    }

    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Mode::Binary => "application/grpc-web+proto",
            Mode::Text => "application/grpc-web-text+proto",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

/// Why a request body is not one good gRPC-Web message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Text mode: the base64 piece starting at byte `at` of the body does not decode.
    Base64 {
        at: usize,
        error: base64::DecodeError,
    },
    /// A message prefix announces more than the limit, or has a flag that is not 0 or 1 (a
    /// trailers frame, `0x80`, included: clients send none).
    Frame(MessageError),
    /// A message with the compressed flag: gRPC-Web has no per-message compression
    /// (PROTOCOL-WEB.md, "Compression"), only `Content-Encoding` on the whole body.
    Compressed,
    /// The body ends inside a message, `have` bytes of it received.
    Truncated { have: usize },
    /// A unary call's body holds `count` messages, not one.
    NotOne { count: usize },
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Base64 { at, error } => write!(
                f,
                "grpc-web-text body is not base64 (the piece at byte {at}: {error})"
            ),
            BodyError::Frame(e) => write!(f, "{e}"),
            BodyError::Compressed => f.write_str(
                "message has the compressed flag; gRPC-Web messages must not be compressed \
                 (compress the whole body with Content-Encoding instead)",
            ),
            BodyError::Truncated { have } => write!(
                f,
                "request body ended inside a message ({have} bytes of it received)"
            ),
            BodyError::NotOne { count: 0 } => f.write_str("unary call without a request message"),
            BodyError::NotOne { count } => write!(
                f,
                "unary call with {count} request messages; it takes exactly one"
            ),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyError {
    /// The status a client is told, as h2 calls are for the same faults: the limit is
    /// `RESOURCE_EXHAUSTED`, compression `UNIMPLEMENTED`, broken framing `INTERNAL`.
    pub fn status(&self) -> Status {
        let code = match self {
            BodyError::Frame(MessageError::TooLarge { .. }) => Code::ResourceExhausted,
            BodyError::Compressed => Code::Unimplemented,
            BodyError::Base64 { .. }
            | BodyError::Frame(MessageError::BadFlag(_))
            | BodyError::Truncated { .. }
            | BodyError::NotOne { .. } => Code::Internal,
        };
        let message = match self {
            BodyError::Frame(MessageError::TooLarge { .. }) => {
                format!("{self} (the server's limit)")
            }
            _ => self.to_string(),
        };
        Status::new(code, message)
    }
}

/// Decodes the base64 of a `grpc-web-text` body into `out` (appended): piece by piece, a piece
/// ending after its padding (`=`), since a client may pad each flush (PROTOCOL-WEB.md). The last
/// piece may be unpadded. `out` grows by at most three quarters of `text`.
///
/// # Errors
/// [`BodyError::Base64`] for the first piece that is not base64.
pub fn decode_text(text: &[u8], out: &mut Vec<u8>) -> Result<(), BodyError> {
    /// Standard alphabet; padding as sent or left out, never required.
    const PIECE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    out.reserve(text.len() / 4 * 3 + 3);
    let mut start = 0;
    while start < text.len() {
        // The piece runs to the end of its padding, or to the end of the body.
        let end = match text[start..].iter().position(|&b| b == b'=') {
            Some(first_pad) => {
                let pads = text[start + first_pad..]
                    .iter()
                    .take_while(|&&b| b == b'=')
                    .count();
                start + first_pad + pads
            }
            None => text.len(),
        };
        PIECE
            .decode_vec(&text[start..end], out)
            .map_err(|error| BodyError::Base64 { at: start, error })?;
        start = end;
    }
    Ok(())
}

/// Cuts a whole request body into its messages' payloads, each checked against `max` at its
/// prefix. Binary payloads borrow `body`; text ones borrow `decoded` (cleared first), which
/// holds the body's decoded bytes.
///
/// # Errors
/// [`BodyError`]: bad base64, a bad or oversized prefix, a compressed message, a body that ends
/// inside a message.
pub fn request_messages<'a>(
    body: &'a [u8],
    mode: Mode,
    max: usize,
    decoded: &'a mut Vec<u8>,
) -> Result<Vec<&'a [u8]>, BodyError> {
    let mut rest: &'a [u8] = match mode {
        Mode::Binary => body,
        Mode::Text => {
            decoded.clear();
            decode_text(body, decoded)?;
            let decoded: &'a Vec<u8> = decoded;
            decoded
        }
    };
    let mut messages = Vec::new();
    while !rest.is_empty() {
        match grpc::decode_message(rest, max).map_err(BodyError::Frame)? {
            Message::Complete {
                compressed: true, ..
            } => return Err(BodyError::Compressed),
            Message::Complete {
                payload, consumed, ..
            } => {
                messages.push(payload);
                rest = &rest[consumed..];
            }
            Message::Incomplete { .. } => {
                return Err(BodyError::Truncated { have: rest.len() });
            }
        }
    }
    Ok(messages)
}

/// The one message of a unary call's body (see [`request_messages`]).
///
/// # Errors
/// As [`request_messages`], and [`BodyError::NotOne`] for a body with none or several.
pub fn unary_message<'a>(
    body: &'a [u8],
    mode: Mode,
    max: usize,
    decoded: &'a mut Vec<u8>,
) -> Result<&'a [u8], BodyError> {
    match request_messages(body, mode, max, decoded)?.as_slice() {
        [one] => Ok(one),
        many => Err(BodyError::NotOne { count: many.len() }),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// One HTTP answer, whatever carries it: status line, headers beyond `Content-Length` and
/// `Connection` (the HTTP side writes those), and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header named `name` (ASCII case ignored).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The trailers block of `status`, as PROTOCOL-WEB.md has it: HTTP/1 header lines with
/// lower-case names, without the blank line; the message percent-encoded as on h2.
pub fn trailers(status: &Status) -> String {
    format!(
        "grpc-status:{}\r\ngrpc-message:{}\r\n",
        status.code.as_str(),
        grpc::percent_encode(&status.message)
    )
}

/// A response body: `message` as a data frame (if any), then the trailers frame; in text mode
/// all of it in base64, one padded piece.
///
/// # Panics
/// If `message` is 4 GiB or more, which no reply is (a `PushResponse` is a few bytes).
pub fn encode_body(mode: Mode, message: Option<&[u8]>, status: &Status) -> Vec<u8> {
    let trailers = trailers(status);
    let mut frames =
        Vec::with_capacity(2 * grpc::PREFIX_LEN + message.map_or(0, <[u8]>::len) + trailers.len());
    if let Some(message) = message {
        grpc::encode_message(message, &mut frames);
    }
    frames.push(TRAILERS_FLAG);
    let len = u32::try_from(trailers.len()).expect("trailers under 4 GiB");
    frames.extend_from_slice(&len.to_be_bytes());
    frames.extend_from_slice(trailers.as_bytes());
    match mode {
        Mode::Binary => frames,
        Mode::Text => STANDARD.encode(&frames).into_bytes(),
    }
}

/// The answer to a call that got its reply: 200, the reply message and status OK in the body.
pub fn reply(mode: Mode, message: &[u8]) -> Reply {
    Reply {
        status: 200,
        reason: "OK",
        headers: vec![("Content-Type", mode.content_type().into())],
        body: encode_body(mode, Some(message), &Status::new(Code::Ok, "")),
    }
}

/// The answer to a call that failed before its reply: trailers-only, `grpc-status` and
/// `grpc-message` in the headers of a 200 with an empty body (PROTOCOL-WEB.md, "Trailers-only
/// responses").
pub fn trailers_only(mode: Mode, status: &Status) -> Reply {
    let mut headers = vec![
        ("Content-Type", mode.content_type().to_string()),
        ("grpc-status", status.code.as_str().to_string()),
    ];
    if !status.message.is_empty() {
        headers.push(("grpc-message", grpc::percent_encode(&status.message)));
    }
    Reply {
        status: 200,
        reason: "OK",
        headers,
        body: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

/// Which origins' pages may call the server (`--cors-origin`): none by default, a list of
/// origins, or any (`*`, given explicitly).
///
/// CORS is the browser's rule about what a page may read; it is not access control: a client
/// that is not a browser sends no `Origin` and ignores the answer. Calls are judged by their
/// token (`--auth`), whatever their origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    any: bool,
    /// Lower-case `scheme://host[:port]`, as browsers send them.
    origins: Vec<String>,
}

/// A `--cors-origin` value that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsError(String);

impl fmt::Display for CorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CorsError {}

impl Cors {
    /// From the `--cors-origin` values, each one origin or a comma-separated list of them:
    /// `*`, or `http://host[:port]` / `https://host[:port]` with nothing after the host.
    ///
    /// # Errors
    /// [`CorsError`] naming the first value that is not an origin, and why.
    pub fn parse<'s>(values: impl IntoIterator<Item = &'s str>) -> Result<Cors, CorsError> {
        let mut cors = Cors::default();
        for item in values.into_iter().flat_map(|v| v.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            if item == "*" {
                cors.any = true;
                continue;
            }
            let origin = item.to_ascii_lowercase();
            let Some((scheme, host)) = origin.split_once("://") else {
                return Err(CorsError(format!(
                    "--cors-origin {item:?} is not an origin: expected * or \
                     http(s)://host[:port], e.g. http://localhost:8080"
                )));
            };
            if scheme != "http" && scheme != "https" {
                return Err(CorsError(format!(
                    "--cors-origin {item:?}: the scheme must be http or https"
                )));
            }
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            {
                return Err(CorsError(format!(
                    "--cors-origin {item:?}: an origin is a scheme and a host (and a port), with \
                     no path, query or trailing slash, as the browser's Origin header says"
                )));
            }
            if !cors.origins.contains(&origin) {
                cors.origins.push(origin);
            }
        }
        Ok(cors)
    }

    /// No page on another origin may call.
    pub fn is_none(&self) -> bool {
        !self.any && self.origins.is_empty()
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, when that origin is
    /// allowed: `*` under `*`, else the origin itself.
    pub fn allow_origin(&self, origin: Option<&[u8]>) -> Option<String> {
        let origin = origin?;
        if self.any {
            return Some("*".into());
        }
        self.origins
            .iter()
            .find(|o| o.as_bytes().eq_ignore_ascii_case(origin))
            .cloned()
    }

    /// The headers for the answer to a call (not a preflight) with this `Origin`: allowed, the
    /// page may read the answer and its `grpc-status` and `grpc-message`. `Vary: Origin` always
    /// when origins are configured, since the answer depends on it for caches.
    pub fn response_headers(&self, origin: Option<&[u8]>) -> Vec<(&'static str, String)> {
        let mut headers = Vec::new();
        if let Some(allowed) = self.allow_origin(origin) {
            headers.push(("Access-Control-Allow-Origin", allowed));
            headers.push(("Access-Control-Expose-Headers", EXPOSE_HEADERS.into()));
        }
        if !self.is_none() {
            headers.push(("Vary", "Origin".into()));
        }
        headers
    }

    /// The answer to `OPTIONS` on a gRPC-Web path, given the request's `Origin`. An allowed
    /// origin gets `204` with what the browser checks before it sends the call (methods, headers,
    /// how long to cache this); another gets `403` and a line saying which flag allows it; an
    /// `OPTIONS` without `Origin` (not a browser's preflight) gets `204` with `Allow`.
    pub fn preflight(&self, origin: Option<&[u8]>) -> Reply {
        let vary = ("Vary", "Origin".to_string());
        let Some(sent) = origin else {
            return Reply {
                status: 204,
                reason: "No Content",
                headers: vec![("Allow", ALLOW_METHODS.into())],
                body: Vec::new(),
            };
        };
        match self.allow_origin(Some(sent)) {
            Some(allowed) => Reply {
                status: 204,
                reason: "No Content",
                headers: vec![
                    ("Access-Control-Allow-Origin", allowed),
                    ("Access-Control-Allow-Methods", ALLOW_METHODS.into()),
                    ("Access-Control-Allow-Headers", ALLOW_HEADERS.into()),
                    ("Access-Control-Expose-Headers", EXPOSE_HEADERS.into()),
                    ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE.into()),
                    vary,
                ],
                body: Vec::new(),
            },
            None => Reply {
                status: 403,
                reason: "Forbidden",
                headers: vec![("Content-Type", "text/plain; charset=utf-8".into()), vary],
                body: format!(
                    "origin {:?} may not call this server from a page; start it with \
                     --cors-origin ORIGIN to allow it\n",
                    String::from_utf8_lossy(sent)
                )
                .into_bytes(),
            },
        }
    }
}

/// Base64 of `bytes`, as a `grpc-web-text` client sends it (tests, fuzzing, the bench).
pub fn encode_text(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        grpc::encode_message(payload, &mut out);
        out
    }

    fn messages(body: &[u8], mode: Mode, max: usize) -> Result<Vec<Vec<u8>>, BodyError> {
        let mut decoded = Vec::new();
        request_messages(body, mode, max, &mut decoded)
            .map(|m| m.into_iter().map(<[u8]>::to_vec).collect())
    }

    #[test]
    fn content_types() {
        for (value, mode) in [
            (&b"application/grpc-web"[..], Some(Mode::Binary)),
            (b"application/grpc-web+proto", Some(Mode::Binary)),
            (
                b"Application/GRPC-Web+Proto; charset=utf-8",
                Some(Mode::Binary),
            ),
            (b"application/grpc-web-text", Some(Mode::Text)),
            (b"application/grpc-web-text+proto", Some(Mode::Text)),
            (b" application/grpc-web-text ;x=y", Some(Mode::Text)),
            (b"application/grpc-web+json", None),
            (b"application/grpc", None),
            (b"application/grpc-webx", None),
            (b"text/plain", None),
            (b"", None),
        ] {
            assert_eq!(
                Mode::of_content_type(value),
                mode,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(Mode::Binary.of_response(None), Mode::Binary);
        assert_eq!(
            Mode::Text.of_response(None),
            Mode::Binary.of_response(Some(b"application/grpc-web-text"))
        );
        assert_eq!(
            Mode::Binary.of_response(Some(b"*/*, application/grpc-web-text+proto;q=1")),
            Mode::Text
        );
        assert_eq!(
            Mode::Binary.of_response(Some(b"application/grpc-web")),
            Mode::Binary
        );
    }

    #[test]
    fn binary_body_at_every_cut_is_truncated_until_whole() {
        let body = framed(b"hello");
        for cut in 1..body.len() {
            assert_eq!(
                messages(&body[..cut], Mode::Binary, 100),
                Err(BodyError::Truncated { have: cut }),
                "cut {cut}"
            );
        }
        assert_eq!(
            messages(&body, Mode::Binary, 100),
            Ok(vec![b"hello".to_vec()])
        );
        assert_eq!(messages(b"", Mode::Binary, 100), Ok(vec![]));
    }

    #[test]
    fn unary_takes_exactly_one_message() {
        let one = framed(b"x");
        let mut d = Vec::new();
        assert_eq!(unary_message(&one, Mode::Binary, 10, &mut d), Ok(&b"x"[..]));
        let empty_message = framed(b"");
        assert_eq!(
            unary_message(&empty_message, Mode::Binary, 10, &mut d),
            Ok(&b""[..])
        );
        assert_eq!(
            unary_message(b"", Mode::Binary, 10, &mut d),
            Err(BodyError::NotOne { count: 0 })
        );
        let two = [one.clone(), one].concat();
        let error = unary_message(&two, Mode::Binary, 10, &mut d).unwrap_err();
        assert_eq!(error, BodyError::NotOne { count: 2 });
        assert_eq!(error.status().code, Code::Internal);
    }

    #[test]
    fn limits_flags_and_compression_are_refused_at_the_prefix() {
        // Announces 2^32 - 1 bytes: refused before any payload, whatever follows.
        let error = messages(&[0, 0xff, 0xff, 0xff, 0xff, 1], Mode::Binary, 1 << 20).unwrap_err();
        assert_eq!(
            error,
            BodyError::Frame(MessageError::TooLarge {
                len: u32::MAX,
                max: 1 << 20
            })
        );
        assert_eq!(error.status().code, Code::ResourceExhausted);
        assert!(error.status().message.contains("the server's limit"));
        let mut compressed = framed(b"abc");
        compressed[0] = 1;
        let error = messages(&compressed, Mode::Binary, 10).unwrap_err();
        assert_eq!(error, BodyError::Compressed);
        assert_eq!(error.status().code, Code::Unimplemented);
        let mut trailers = framed(b"grpc-status:0\r\n");
        trailers[0] = TRAILERS_FLAG;
        assert_eq!(
            messages(&trailers, Mode::Binary, 100),
            Err(BodyError::Frame(MessageError::BadFlag(0x80)))
        );
    }

    #[test]
    fn text_body_decodes_to_the_same_messages() {
        let body = [framed(b"first"), framed(b""), framed(&[0xff; 40])].concat();
        let text = encode_text(&body);
        assert_eq!(
            messages(text.as_bytes(), Mode::Text, 100).unwrap(),
            messages(&body, Mode::Binary, 100).unwrap()
        );
    }

    /// A client may pad each flush: the body is then several padded base64 pieces, cut
    /// anywhere, not one base64 text.
    #[test]
    fn text_padded_mid_stream_at_every_cut() {
        let body = [framed(b"one message"), framed(b"and another")].concat();
        for cut in 0..=body.len() {
            let text = [encode_text(&body[..cut]), encode_text(&body[cut..])].concat();
            let mut decoded = Vec::new();
            decode_text(text.as_bytes(), &mut decoded).unwrap();
            assert_eq!(decoded, body, "cut {cut}: {text}");
            assert_eq!(
                messages(text.as_bytes(), Mode::Text, 100).unwrap(),
                vec![b"one message".to_vec(), b"and another".to_vec()],
                "cut {cut}"
            );
        }
        // Three pieces, each one or two bytes: every padding shape in the middle.
        let text = [encode_text(b"a"), encode_text(b"bc"), encode_text(b"def")].concat();
        assert_eq!(text, "YQ==YmM=ZGVm");
        let mut decoded = Vec::new();
        decode_text(text.as_bytes(), &mut decoded).unwrap();
        assert_eq!(decoded, b"abcdef");
        // The last piece may come without its padding.
        decoded.clear();
        decode_text(b"YQ==YmM", &mut decoded).unwrap();
        assert_eq!(decoded, b"abc");
    }

    #[test]
    fn bad_base64_names_its_piece() {
        let mut decoded = Vec::new();
        for (text, at) in [
            (&b"YQ==Y!M="[..], 4),
            (b"Y", 0),
            (b"YQ==Y", 4),
            (b"YQ==\r\nYQ==", 4),
            (b"=", 0),
        ] {
            match decode_text(text, &mut decoded) {
                Err(BodyError::Base64 { at: got, .. }) => {
                    assert_eq!(got, at, "{}", String::from_utf8_lossy(text));
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(text)),
            }
        }
        let error = messages(b"!!!!", Mode::Text, 10).unwrap_err();
        assert_eq!(error.status().code, Code::Internal);
        assert!(error.to_string().contains("not base64"), "{error}");
    }

    /// Splits a response body into (flag, payload) frames.
    fn frames(mut body: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !body.is_empty() {
            let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
            out.push((body[0], body[5..5 + len].to_vec()));
            body = &body[5 + len..];
        }
        out
    }

    #[test]
    fn response_is_data_then_trailers() {
        let answer = reply(Mode::Binary, b"\x08\x01");
        assert_eq!((answer.status, answer.reason), (200, "OK"));
        assert_eq!(
            answer.headers,
            [("Content-Type", "application/grpc-web+proto".to_string())]
        );
        assert_eq!(
            frames(&answer.body),
            [
                (0, b"\x08\x01".to_vec()),
                (0x80, b"grpc-status:0\r\ngrpc-message:\r\n".to_vec())
            ]
        );
        let text = reply(Mode::Text, b"\x08\x01");
        assert_eq!(text.headers[0].1, "application/grpc-web-text+proto");
        let mut decoded = Vec::new();
        decode_text(&text.body, &mut decoded).unwrap();
        assert_eq!(decoded, answer.body);
        // A status in the body frame is percent-encoded as on h2.
        let body = encode_body(
            Mode::Binary,
            None,
            &Status::new(Code::Internal, "100% é\r\n"),
        );
        assert_eq!(
            frames(&body),
            [(
                0x80,
                b"grpc-status:13\r\ngrpc-message:100%25 %C3%A9%0D%0A\r\n".to_vec()
            )]
        );
    }

    #[test]
    fn errors_are_trailers_only() {
        let answer = trailers_only(
            Mode::Text,
            &Status::new(Code::Unauthenticated, "token expired"),
        );
        assert_eq!(answer.status, 200);
        assert!(answer.body.is_empty());
        assert_eq!(
            answer.headers,
            [
                (
                    "Content-Type",
                    "application/grpc-web-text+proto".to_string()
                ),
                ("grpc-status", "16".to_string()),
                ("grpc-message", "token expired".to_string()),
            ]
        );
        let quiet = trailers_only(Mode::Binary, &Status::new(Code::Unimplemented, ""));
        assert_eq!(quiet.headers.len(), 2, "no empty grpc-message");
    }

    #[test]
    fn cors_origins_parse() {
        let cors = Cors::parse(["http://localhost:8080, HTTPS://App.Example.com", "*"]).unwrap();
        assert!(cors.any);
        assert_eq!(
            cors.origins,
            ["http://localhost:8080", "https://app.example.com"]
        );
        assert!(Cors::parse(Vec::<&str>::new()).unwrap().is_none());
        assert!(Cors::parse([" , "]).unwrap().is_none());
        assert_eq!(
            Cors::parse(["http://a", "http://a"]).unwrap().origins,
            ["http://a"]
        );
        assert!(Cors::parse(["http://[::1]:8080"]).is_ok());
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http://x/",
            "http://x/path",
            "http://x?q",
            "null",
        ] {
            let error = Cors::parse([bad]).unwrap_err();
            assert!(error.to_string().contains(bad), "{bad}: {error}");
        }
    }

    #[test]
    fn cors_headers_for_calls() {
        let none = Cors::default();
        assert!(none.response_headers(Some(b"http://x")).is_empty());
        let cors = Cors::parse(["http://page.test:8080"]).unwrap();
        assert_eq!(
            cors.response_headers(Some(b"http://PAGE.test:8080")),
            [
                (
                    "Access-Control-Allow-Origin",
                    "http://page.test:8080".to_string()
                ),
                (
                    "Access-Control-Expose-Headers",
                    "grpc-status, grpc-message".to_string()
                ),
                ("Vary", "Origin".to_string()),
            ]
        );
        assert_eq!(
            cors.response_headers(Some(b"http://other.test")),
            [("Vary", "Origin".to_string())]
        );
        assert_eq!(
            cors.response_headers(None),
            [("Vary", "Origin".to_string())]
        );
        let any = Cors::parse(["*"]).unwrap();
        assert_eq!(any.allow_origin(Some(b"http://anything")), Some("*".into()));
        assert_eq!(any.allow_origin(None), None);
    }

    #[test]
    fn cors_preflight() {
        let cors = Cors::parse(["http://page.test"]).unwrap();
        let ok = cors.preflight(Some(b"http://page.test"));
        assert_eq!((ok.status, ok.body.len()), (204, 0));
        let header = |name: &str| {
            ok.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header("Access-Control-Allow-Origin"),
            Some("http://page.test")
        );
        assert_eq!(
            header("Access-Control-Allow-Methods"),
            Some("POST, OPTIONS")
        );
        let allowed = header("Access-Control-Allow-Headers").unwrap();
        for name in [
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "authorization",
        ] {
            assert!(allowed.split(", ").any(|h| h == name), "{name}");
        }
        assert_eq!(
            header("Access-Control-Expose-Headers"),
            Some("grpc-status, grpc-message")
        );
        assert_eq!(header("Vary"), Some("Origin"));

        let refused = cors.preflight(Some(b"http://evil.test"));
        assert_eq!(refused.status, 403);
        assert!(
            refused
                .headers
                .iter()
                .all(|(n, _)| !n.starts_with("Access-Control"))
        );
        let line = String::from_utf8(refused.body).unwrap();
        assert!(
            line.contains("--cors-origin") && line.ends_with('\n'),
            "{line}"
        );
        assert_eq!(line.matches('\n').count(), 1, "one line");

        let plain = cors.preflight(None);
        assert_eq!(plain.status, 204);
        assert_eq!(plain.headers, [("Allow", "POST, OPTIONS".to_string())]);
        assert_eq!(
            Cors::default().preflight(Some(b"http://page.test")).status,
            403
        );
    }
}
