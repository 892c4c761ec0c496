//! The client side of the native protocol without a socket: what a client sends (the hello and
//! record frames) and what it makes of the server's bytes (welcome, acks, error frames).
//!
//! Pure and nonblocking: [`ClientOptions::encode_hello`] and [`encode_batch`] append frames to a
//! buffer, [`Inbox`] holds the bytes read so far and hands out whole [`Reply`]s. Whoever owns the
//! socket decides how to read and write: the blocking [`Client`](super::Client) here, `logmill
//! bench`'s mio loop (`src/bench/link.rs`), a transmitter with a spool later. The wire format
//! itself (Cap'n Proto, length prefixes) is `protocol::native` and `protocol::frame`; this file
//! only says which frames a client sends and reads, and maps the server's error frames to
//! [`Error::Refused`].

use std::time::Duration;

use super::error::Error;
use crate::protocol::frame::{self, Frame};
use crate::protocol::native::{self, Hello, ServerFrame};
use crate::record::Record;

/// The largest server frame accepted. Server frames are acks, welcomes and error messages, all
/// under 1 KiB; a longer prefix means the bytes are not logmill's, and whatever else answers on
/// the port cannot make a client buffer more.
pub const MAX_SERVER_FRAME: u32 = 64 * 1024;

/// How long [`Client`](super::Client) waits for any one step (connect, a write, a read) unless
/// told otherwise. A server acks a record once it is written and answers a hello from its event
/// loop: seconds mean something is wrong.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection says in its hello, and how long the blocking client waits.
///
/// Built with [`ClientOptions::new`] and the setters; the fields stay private so new ones (a
/// token, TLS) can be added without breaking callers.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    app: String,
    instance: String,
    token: String,
    want_acks: bool,
    timeout: Duration,
    /// TLS: the client configuration (the CA to trust) and the name the server's certificate
    /// must carry.
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
}

impl ClientOptions {
    /// A hello naming `app` (the files show it as `APP/INSTANCE`), asking for acks, with no
    /// instance and no token, and [`DEFAULT_TIMEOUT`].
    pub fn new(app: impl Into<String>) -> ClientOptions {
        ClientOptions {
            app: app.into(),
            instance: String::new(),
            token: String::new(),
            want_acks: true,
            timeout: DEFAULT_TIMEOUT,
            tls: None,
        }
    }

    /// Connect over TLS, trusting what `config` trusts (`client::tls::client_config` makes
    /// one from a CA file), the server's certificate checked against `server`: a host name or
    /// an IP address, or `HOST:PORT` (the port is ignored).
    #[must_use]
    pub fn tls(mut self, config: std::sync::Arc<rustls::ClientConfig>, server: &str) -> Self {
        self.tls = Some((config, server.to_owned()));
        self
    }

    /// The TLS configuration and server address given with [`tls`](Self::tls).
    pub fn tls_config(&self) -> Option<&(std::sync::Arc<rustls::ClientConfig>, String)> {
        self.tls.as_ref()
    }

    /// The instance of the app (a host, a pid, a worker number).
    #[must_use]
    pub fn instance(mut self, instance: impl Into<String>) -> ClientOptions {
        self.instance = instance.into();
        self
    }

    /// The application token (`logmill token issue --app NAME`): the server stores this
    /// connection's records in the token's app's files, or refuses the hello (`unauthorized`)
    /// if the token is invalid, expired or revoked.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> ClientOptions {
        self.token = token.into();
        self
    }

    /// Whether the server should ack written records. Without acks a client cannot know that a
    /// record is stored, only that it was handed to the socket.
    #[must_use]
    pub fn want_acks(mut self, want_acks: bool) -> ClientOptions {
        self.want_acks = want_acks;
        self
    }

    /// How long the blocking client waits for any one step; not used by the framing itself.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> ClientOptions {
        self.timeout = timeout;
        self
    }

    pub fn acks_wanted(&self) -> bool {
        self.want_acks
    }

    pub fn step_timeout(&self) -> Duration {
        self.timeout
    }

    /// Appends the hello frame, length prefix included, to `out`.
    pub fn encode_hello(&self, out: &mut Vec<u8>) {
        native::encode_hello(
            &Hello {
                app: self.app.clone(),
                instance: self.instance.clone(),
                token: self.token.clone(),
                want_acks: self.want_acks,
            },
            out,
        );
    }
}

/// Appends one frame holding `records` to `out`: a `record` frame for one, a `batch` otherwise.
/// One frame per call is what makes sending cheap: the server decodes, formats and acks a batch
/// as a unit.
///
/// # Panics
/// If `records` holds more than `u32::MAX` records.
pub fn encode_batch(records: &[Record<'_>], out: &mut Vec<u8>) {
    native::encode_records(records, out);
}

/// The server's answer to a hello: who it is and the largest frame it accepts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Welcome {
    server: String,
    version: String,
    max_frame: u32,
}

impl Welcome {
    /// The server's name (`LogServer` for logmill).
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// The largest frame payload the server accepts (its `--max-frame`): a batch frame over it
    /// is refused and the connection closed.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }
}

/// An ack: the server has written `count` records of this connection in all (acks are
/// cumulative), the last of them under sequence number `last_seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    count: u64,
    last_seq: u64,
}

impl Ack {
    pub fn new(count: u64, last_seq: u64) -> Ack {
        Ack { count, last_seq }
    }

    /// Records of this connection written so far, counted from its first.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sequence number the last of them got in the files.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

/// A server frame other than an error (errors come out of [`Inbox::next_reply`] as
/// [`Error::Refused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Welcome(Welcome),
    Ack(Ack),
}

/// The bytes read from a server and not yet taken as replies. A connection owns one, appends
/// what each read returns with [`Inbox::extend`], and takes replies with [`Inbox::next_reply`]
/// until it says `None` (need more bytes).
#[derive(Debug, Default)]
pub struct Inbox {
    bytes: Vec<u8>,
    /// Bytes at the front already taken as replies; dropped at the next `extend`, so a read
    /// that brings a hundred acks moves the remainder once, not a hundred times.
    taken: usize,
}

impl Inbox {
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// Appends bytes read from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.taken > 0 {
            self.bytes.drain(..self.taken);
            self.taken = 0;
        }
        self.bytes.extend_from_slice(bytes);
    }

    /// Bytes held that are not a whole frame yet: at the server's close, a non-zero count means
    /// it closed inside a frame.
    pub fn pending(&self) -> usize {
        self.bytes.len() - self.taken
    }

    /// The next whole reply, or `None` until more bytes arrive.
    ///
    /// # Errors
    /// [`Error::Refused`] for a server error frame (the server closes after it);
    /// [`Error::FrameTooLarge`] or [`Error::Undecodable`] for bytes that are not server frames,
    /// after which nothing more can be read from the stream.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, Error> {
        let Frame::Complete { payload, consumed } =
            frame::decode(&self.bytes[self.taken..], MAX_SERVER_FRAME)
                .map_err(|e| Error::FrameTooLarge { len: e.len })?
        else {
            return Ok(None);
        };
        let decoded = native::decode_server_frame(payload);
        self.taken += consumed;
        match decoded.map_err(|e| Error::Undecodable(e.to_string()))? {
            ServerFrame::Ack { count, last_seq } => Ok(Some(Reply::Ack(Ack { count, last_seq }))),
            ServerFrame::Welcome {
                server,
                version,
                max_frame,
            } => Ok(Some(Reply::Welcome(Welcome {
                server,
                version,
                max_frame,
            }))),
            ServerFrame::Error { kind, message } => Err(Error::Refused { kind, message }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::native::ErrorKind;

    fn server_bytes(frames: &[ServerFrame]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            native::encode_server_frame(f, &mut out);
        }
        out
    }

    fn welcome() -> ServerFrame {
        ServerFrame::Welcome {
            server: "LogServer".into(),
            version: "0.1.0".into(),
            max_frame: 1 << 20,
        }
    }

    /// Everything the inbox hands out for `bytes` fed in pieces cut at `cuts`.
    fn replies(bytes: &[u8], cuts: &[usize]) -> Vec<Result<Reply, String>> {
        let mut inbox = Inbox::new();
        let mut out = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&bytes.len()]) {
            inbox.extend(&bytes[from..to]);
            from = to;
            loop {
                match inbox.next_reply() {
                    Ok(Some(reply)) => out.push(Ok(reply)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e.to_string()));
                        return out;
                    }
                }
            }
        }
        assert_eq!(inbox.pending(), 0, "bytes left over");
        out
    }

    #[test]
    fn replies_come_out_whole_at_every_split() {
        let bytes = server_bytes(&[
            welcome(),
            ServerFrame::Ack {
                count: 256,
                last_seq: 300,
            },
            ServerFrame::Ack {
                count: 512,
                last_seq: 556,
            },
        ]);
        let expected = vec![
            Ok(Reply::Welcome(Welcome {
                server: "LogServer".into(),
                version: "0.1.0".into(),
                max_frame: 1 << 20,
            })),
            Ok(Reply::Ack(Ack::new(256, 300))),
            Ok(Reply::Ack(Ack::new(512, 556))),
        ];
        assert_eq!(replies(&bytes, &[]), expected, "all at once");
        for cut in 0..=bytes.len() {
            assert_eq!(replies(&bytes, &[cut]), expected, "split at {cut}");
        }
        let every_byte: Vec<usize> = (1..bytes.len()).collect();
        assert_eq!(replies(&bytes, &every_byte), expected, "byte by byte");
    }

    #[test]
    fn an_error_frame_is_refused_with_its_kind_and_message() {
        let bytes = server_bytes(&[
            welcome(),
            ServerFrame::Error {
                kind: Some(ErrorKind::FrameTooLarge),
                message: "frame of 9 bytes".into(),
            },
        ]);
        for cut in 0..=bytes.len() {
            let mut inbox = Inbox::new();
            inbox.extend(&bytes[..cut]);
            let mut seen = Vec::new();
            let mut refused = None;
            for piece in [&bytes[cut..], &[][..]] {
                loop {
                    match inbox.next_reply() {
                        Ok(Some(reply)) => seen.push(reply),
                        Ok(None) => break,
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
                inbox.extend(piece);
            }
            assert!(matches!(seen.as_slice(), [Reply::Welcome(_)]), "{seen:?}");
            match refused {
                Some(Error::Refused {
                    kind: Some(ErrorKind::FrameTooLarge),
                    message,
                }) => assert_eq!(message, "frame of 9 bytes"),
                other => panic!("split at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_buffering() {
        let mut inbox = Inbox::new();
        inbox.extend(&(MAX_SERVER_FRAME + 1).to_be_bytes());
        assert!(matches!(
            inbox.next_reply(),
            Err(Error::FrameTooLarge { len }) if len == MAX_SERVER_FRAME + 1
        ));
    }

    #[test]
    fn bytes_that_are_not_a_server_frame_are_undecodable() {
        let mut bytes = Vec::new();
        frame::encode(b"not capnp", &mut bytes);
        let mut inbox = Inbox::new();
        inbox.extend(&bytes);
        assert!(matches!(inbox.next_reply(), Err(Error::Undecodable(_))));
    }

    #[test]
    fn a_partial_frame_is_pending() {
        let bytes = server_bytes(&[ServerFrame::Ack {
            count: 1,
            last_seq: 1,
        }]);
        let mut inbox = Inbox::new();
        inbox.extend(&bytes[..bytes.len() - 1]);
        assert_eq!(inbox.next_reply().unwrap(), None);
        assert_eq!(inbox.pending(), bytes.len() - 1);
    }

    #[test]
    fn hello_and_batches_decode_with_the_servers_decoder() {
        let mut out = Vec::new();
        ClientOptions::new("shop")
            .instance("web-1")
            .want_acks(false)
            .encode_hello(&mut out);
        let hello_len = out.len();
        let records = [
            crate::record::Record {
                body: crate::record::Body::Message("a".into()),
                ..Default::default()
            },
            crate::record::Record {
                body: crate::record::Body::Message("b".into()),
                ..Default::default()
            },
        ];
        encode_batch(&records, &mut out);
        let Ok(Frame::Complete { payload, consumed }) = frame::decode(&out, u32::MAX) else {
            panic!("no hello frame")
        };
        assert_eq!(consumed, hello_len);
        match native::decode_client_frame(payload, |_| panic!("a record in the hello")) {
            Ok(native::ClientFrame::Hello(hello)) => {
                assert_eq!(
                    (hello.app.as_str(), hello.instance.as_str(), hello.want_acks),
                    ("shop", "web-1", false)
                );
            }
            other => panic!("{other:?}"),
        }
        let Ok(Frame::Complete { payload, .. }) = frame::decode(&out[hello_len..], u32::MAX) else {
            panic!("no batch frame")
        };
        let mut messages = Vec::new();
        native::decode_client_frame(payload, |r| messages.push(format!("{:?}", r.body))).unwrap();
        assert_eq!(messages.len(), 2);
    }
}
