//! WebSocket (RFC 6455), the server's side, pure: frames decoded from bytes into messages,
//! frames encoded into bytes, and the opening handshake's checks and accept key. No socket and no
//! HTTP here: the HTTP/1.1 reader hands over the request's headers, the connection hands over
//! the bytes that follow the `101`, and `server::session::websocket` turns messages into records.
//!
//! What the decoder enforces (each refusal is an [`Error`] with its close code):
//! - client frames are masked (RFC 6455 5.1), reserved bits are clear, the opcode is known,
//!   lengths use the fewest bytes and the 64-bit length's top bit is clear (5.2): else 1002;
//! - control frames (close, ping, pong) carry at most 125 bytes and are never fragmented (5.5);
//! - fragments follow each other (a continuation only inside a message, no new message inside
//!   one), control frames may come between them (5.4);
//! - a message, all its fragments together, is at most the limit the caller passes (the server's
//!   `--max-frame`), checked at each frame's header, before its payload is waited for: else
//!   1009;
//! - text is UTF-8, checked once the message is whole: else 1007;
//! - a close frame's payload is empty or a valid code and a UTF-8 reason (5.5.1, 7.4).
//!
//! A frame is decoded only once all of it is in the buffer (full recognition before
//! processing): the caller keeps the unfinished tail, as it does for native frames. Payloads are
//! unmasked into the decoder's own buffer, which also holds the fragments of an unfinished
//! message; [`Decoder::release`] frees it between messages.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest reason in a close frame: the control limit less the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// The key every server appends to the client's before hashing (RFC 6455 1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The close codes the server sends (RFC 6455 7.4.1; 1013 from the IANA registry).
pub mod code {
    /// The close handshake, or the client's own close echoed without a code.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame broke the protocol (unmasked, reserved bits, bad opcode or length, ...).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message was not what its type says: text not UTF-8, a binary message not a native frame.
    pub const INVALID_DATA: u16 = 1007;
    /// A rule of this server, not of the protocol: the idle timeout.
    pub const POLICY: u16 = 1008;
    /// A message over the limit (`--max-frame`).
    pub const TOO_BIG: u16 = 1009;
    /// The server is overloaded (its input memory, `--max-input`, is full): come back later.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// A frame's opcode (RFC 6455 5.2); other values are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One message, or one control frame, as the client sent it (unmasked). Borrows the decoder
/// until its next call.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A whole text message, checked UTF-8.
    Text(&'a str),
    /// A whole binary message.
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// The client starts (or answers) the close handshake; `None` when it gave no code.
    Close(Option<Close<'a>>),
}

/// A close frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    pub code: u16,
    pub reason: &'a str,
}

/// What [`Decoder::decode`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// One frame of `consumed` bytes was taken. `message` is `None` for a fragment that does
    /// not finish its message (the decoder holds it).
    Frame {
        consumed: usize,
        message: Option<Message<'a>>,
    },
    /// Not enough bytes for the frame at the front; `needed` is its total size once its header
    /// is known (`None` while the header itself is unfinished).
    Incomplete { needed: Option<usize> },
}

/// Why the stream cannot go on. Each maps to the code of the close frame the server sends
/// ([`Error::close_code`]); its `Display` is the reason, short enough for a close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A client frame without its mask bit (RFC 6455 5.1).
    Unmasked,
    /// RSV1-3 set, with no extension negotiated.
    ReservedBits(u8),
    UnknownOpcode(u8),
    /// A close, ping or pong with more than 125 bytes.
    ControlTooLong {
        opcode: Opcode,
        len: u64,
    },
    /// A close, ping or pong without FIN.
    ControlFragmented(Opcode),
    /// A 16- or 64-bit length that would have fit in fewer bytes.
    LengthNotMinimal(u64),
    /// A 64-bit length with its top bit set.
    LengthTopBit,
    /// A continuation frame with no message to continue.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is unfinished.
    MessageInsideMessage,
    /// The message (its fragments so far plus this frame) is over the limit.
    TooBig {
        len: u64,
        max: usize,
    },
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A close payload of one byte: half a code.
    CloseTooShort,
    /// A close code a peer may not send (below 1000, 1004-1006, 1015, unassigned, 5000 and up).
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8.
    InvalidCloseReason,
}

impl Error {
    /// The close code the server answers this error with.
    pub fn close_code(&self) -> u16 {
        match self {
            Error::TooBig { .. } => code::TOO_BIG,
            Error::InvalidUtf8 | Error::InvalidCloseReason => code::INVALID_DATA,
            _ => code::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unmasked => f.write_str("client frames must be masked"),
            Error::ReservedBits(bits) => {
                write!(f, "reserved bits {bits:#x} set (no extension was agreed)")
            }
            Error::UnknownOpcode(op) => write!(f, "unknown opcode {op:#x}"),
            Error::ControlTooLong { opcode, len } => write!(
                f,
                "{opcode:?} frame of {len} bytes (control frames carry at most 125)"
            ),
            Error::ControlFragmented(opcode) => {
                write!(
                    f,
                    "{opcode:?} frame without FIN (control frames are never fragmented)"
                )
            }
            Error::LengthNotMinimal(len) => {
                write!(f, "length {len} not in its shortest encoding")
            }
            Error::LengthTopBit => f.write_str("64-bit length with its top bit set"),
            Error::UnexpectedContinuation => {
                f.write_str("continuation frame with no message to continue")
            }
            Error::MessageInsideMessage => {
                f.write_str("new message before the fragmented one was finished")
            }
            Error::TooBig { len, max } => {
                write!(f, "message of {len} bytes is over the limit of {max}")
            }
            Error::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            Error::CloseTooShort => f.write_str("close frame of 1 byte (a code takes 2)"),
            Error::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            Error::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for Error {}

/// A frame's header, checked on its own (the rules that need no other frame).
#[derive(Debug)]
struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    /// Header bytes, mask included.
    len: usize,
    payload_len: u64,
}

/// Reads the header at the front of `buf`; `Ok(None)` while it is unfinished. The first two
/// bytes are checked as soon as they are there, so a bad frame is refused without waiting.
fn header(buf: &[u8]) -> Result<Option<Header>, Error> {
    let Some(&[b0, b1]) = buf.first_chunk::<2>() else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let reserved = b0 & 0x70;
    if reserved != 0 {
        return Err(Error::ReservedBits(reserved >> 4));
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(Error::UnknownOpcode(b0 & 0x0F))?;
    if b1 & 0x80 == 0 {
        return Err(Error::Unmasked);
    }
    let len7 = b1 & 0x7F;
    if opcode.is_control() {
        if !fin {
            return Err(Error::ControlFragmented(opcode));
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            // 126 or 127: the real length is larger still.
            return Err(Error::ControlTooLong {
                opcode,
                len: u64::from(len7),
            });
        }
    }
    let (extended, payload_len) = match len7 {
        126 => {
            let Some(&bytes) = buf[2..].first_chunk::<2>() else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes(bytes));
            if len < 126 {
                return Err(Error::LengthNotMinimal(len));
            }
            (2, len)
        }
        127 => {
            let Some(&bytes) = buf[2..].first_chunk::<8>() else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(Error::LengthTopBit);
            }
            if len <= u64::from(u16::MAX) {
                return Err(Error::LengthNotMinimal(len));
            }
            (8, len)
        }
        short => (0, u64::from(short)),
    };
    let mask_at = 2 + extended;
    let Some(&mask) = buf[mask_at..].first_chunk::<4>() else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: mask_at + 4,
        payload_len,
    }))
}

/// Which message the fragments in the decoder's buffer belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// The server's side of a WebSocket stream: decodes the client's frames one at a time and
/// reassembles fragmented messages. One per connection.
#[derive(Debug)]
pub struct Decoder {
    /// Unmasked data: the fragments of the unfinished message, or the message last returned.
    message: Vec<u8>,
    /// The unfinished message's type; `None` between messages.
    fragmented: Option<Kind>,
    /// The last control frame's payload, unmasked: in place, so a ping costs no allocation.
    control: [u8; MAX_CONTROL_PAYLOAD],
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            message: Vec::new(),
            fragmented: None,
            control: [0; MAX_CONTROL_PAYLOAD],
        }
    }

    /// Decodes the frame at the front of `buf`. Messages (all fragments together) over
    /// `max_message` bytes are refused at the header of the frame that would pass it.
    ///
    /// The decoder must not be called again after an error: the stream is out of step, and the
    /// caller closes it with [`Error::close_code`].
    ///
    /// # Errors
    /// Every rule in the module documentation, as an [`Error`].
    pub fn decode(&mut self, buf: &[u8], max_message: usize) -> Result<Decoded<'_>, Error> {
        if self.fragmented.is_none() {
            // The message returned last time is done with.
            self.message.clear();
        }
        let Some(header) = header(buf)? else {
            return Ok(Decoded::Incomplete { needed: None });
        };
        match (header.opcode, self.fragmented) {
            (Opcode::Continuation, None) => return Err(Error::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(Error::MessageInsideMessage),
            _ => {}
        }
        let limit = if header.opcode.is_control() {
            MAX_CONTROL_PAYLOAD
        } else {
            let total = (self.message.len() as u64).saturating_add(header.payload_len);
            if total > max_message as u64 {
                return Err(Error::TooBig {
                    len: total,
                    max: max_message,
                });
            }
            max_message
        };
        // The payload is at most `limit` (checked above, or by `header` for control frames), so
        // it fits a usize; the sum is checked all the same.
        let payload_len = usize::try_from(header.payload_len)
            .ok()
            .filter(|&len| len <= limit)
            .ok_or(Error::TooBig {
                len: header.payload_len,
                max: limit,
            })?;
        let consumed = header.len.checked_add(payload_len).ok_or(Error::TooBig {
            len: header.payload_len,
            max: limit,
        })?;
        let Some(payload) = buf.get(header.len..consumed) else {
            return Ok(Decoded::Incomplete {
                needed: Some(consumed),
            });
        };
        let message = match header.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                // `payload_len` <= 125 here, as checked by `header`.
                let control = &mut self.control[..payload_len];
                control.copy_from_slice(payload);
                unmask(control, header.mask);
                Some(match header.opcode {
                    Opcode::Ping => Message::Ping(control),
                    Opcode::Pong => Message::Pong(control),
                    _ => Message::Close(close_payload(control)?),
                })
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                let start = self.message.len();
                self.message.extend_from_slice(payload);
                unmask(&mut self.message[start..], header.mask);
                let kind = match (header.opcode, self.fragmented) {
                    (Opcode::Text, _) => Kind::Text,
                    (Opcode::Binary, _) => Kind::Binary,
                    (_, Some(kind)) => kind,
                    // Refused above: a continuation with no message.
                    (_, None) => return Err(Error::UnexpectedContinuation),
                };
                if header.fin {
                    self.fragmented = None;
                    Some(match kind {
                        Kind::Text => Message::Text(
                            simdutf8::basic::from_utf8(&self.message)
                                .map_err(|_| Error::InvalidUtf8)?,
                        ),
                        Kind::Binary => Message::Binary(&self.message),
                    })
                } else {
                    self.fragmented = Some(kind);
                    None
                }
            }
        };
        Ok(Decoded::Frame { consumed, message })
    }

    /// Bytes of an unfinished fragmented message held (what is lost if the stream ends now).
    pub fn held(&self) -> usize {
        if self.fragmented.is_some() {
            self.message.len()
        } else {
            0
        }
    }

    /// Frees the message buffer if no fragmented message is unfinished: called once the
    /// messages of a read are handled, so an idle connection holds no buffer.
    pub fn release(&mut self) {
        if self.fragmented.is_none() && self.message.capacity() > 0 {
            self.message = Vec::new();
        }
    }
}

/// XORs `data` with the mask, the mask's first byte on `data`'s first (each frame's payload
/// starts afresh at the mask's first byte). Eight bytes at a time: this runs over every byte a
/// client sends.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let (words, tail) = data.as_chunks_mut::<8>();
    for word in words {
        *word = (u64::from_ne_bytes(*word) ^ wide).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, hence of 4: the mask starts over at its first byte.
    for (byte, m) in tail.iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

/// A close frame's payload: nothing, or a code a peer may send and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<Close<'_>>, Error> {
    let Some((&code, reason)) = payload.split_first_chunk::<2>() else {
        return match payload.len() {
            0 => Ok(None),
            _ => Err(Error::CloseTooShort),
        };
    };
    let code = u16::from_be_bytes(code);
    if !may_send(code) {
        return Err(Error::InvalidCloseCode(code));
    }
    let reason = std::str::from_utf8(reason).map_err(|_| Error::InvalidCloseReason)?;
    Ok(Some(Close { code, reason }))
}

/// The close codes a peer may put in a close frame: RFC 6455 7.4.1's (less 1004, reserved, and
/// 1005-1006, which only an API reports), 1012-1014 registered with IANA since, and the ranges
/// for libraries (3000-3999) and applications (4000-4999).
fn may_send(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends one unmasked, unfragmented server frame.
fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode as u8);
    push_length(payload.len() as u64, 0, out);
    out.extend_from_slice(payload);
}

/// The length field, in its shortest form, with the mask bit `mask_bit` (0 or 0x80).
fn push_length(len: u64, mask_bit: u8, out: &mut Vec<u8>) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends a text message in one frame.
pub fn encode_text(text: &str, out: &mut Vec<u8>) {
    encode_frame(Opcode::Text, text.as_bytes(), out);
}

/// Appends the pong that answers a ping with `payload` (at most 125 bytes, as the decoder
/// guarantees; a longer one is cut there).
pub fn encode_pong(payload: &[u8], out: &mut Vec<u8>) {
    encode_frame(
        Opcode::Pong,
        &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
        out,
    );
}

/// Appends a close frame with `code` and `reason`, the reason cut at a character boundary to
/// the 123 bytes a close frame has room for.
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut payload = [0; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    let reason = cut(reason, MAX_CLOSE_REASON);
    payload[2..2 + reason.len()].copy_from_slice(reason.as_bytes());
    encode_frame(Opcode::Close, &payload[..2 + reason.len()], out);
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Appends one masked frame, as a client sends it: for tests, the fuzz seeds and load tools.
/// `fin` false starts or continues a fragmented message.
pub fn encode_client_frame(
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.push(if fin { 0x80 } else { 0 } | opcode as u8);
    push_length(payload.len() as u64, 0x80, out);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
}

/// The `Sec-WebSocket-Accept` value that answers the client's `Sec-WebSocket-Key`
/// (RFC 6455 4.2.2): base64 of the SHA-1 of the key (as sent, trimmed) and a fixed GUID.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.trim_ascii());
    sha1.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha1.finalize())
}

/// Appends the `101 Switching Protocols` head that completes the handshake for `key` (the
/// value [`check_upgrade`] returned). No subprotocol or extension is agreed.
pub fn switching_protocols(key: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Why a request is not a WebSocket upgrade this server takes. `Display` is the one-line body
/// of the HTTP answer; [`status`](Self::status) its status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// No `Upgrade` header, or none naming `websocket`.
    NotWebSocket,
    /// No `Connection` header with the `upgrade` token.
    NoConnectionUpgrade,
    /// No `Sec-WebSocket-Version`.
    NoVersion,
    /// A version other than 13 (the only one RFC 6455 defines).
    UnsupportedVersion(String),
    NoKey,
    /// `Sec-WebSocket-Key` given more than once.
    DuplicateKey,
    /// A key that is not the base64 of 16 bytes.
    BadKey(String),
}

impl UpgradeError {
    /// 426 for a missing or unsupported version, which the HTTP side answers with the header
    /// `Sec-WebSocket-Version: 13` (RFC 6455 4.4); 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::NoVersion | UpgradeError::UnsupportedVersion(_) => 426,
            _ => 400,
        }
    }
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::NotWebSocket => f.write_str(
                "this path takes WebSocket only: an `Upgrade: websocket` header is needed",
            ),
            UpgradeError::NoConnectionUpgrade => {
                f.write_str("a WebSocket upgrade needs `Connection: Upgrade`")
            }
            UpgradeError::NoVersion => {
                f.write_str("a WebSocket upgrade needs `Sec-WebSocket-Version: 13`")
            }
            UpgradeError::UnsupportedVersion(v) => write!(
                f,
                "WebSocket version {v:?} is not supported; this server speaks 13 (RFC 6455)"
            ),
            UpgradeError::NoKey => f.write_str("a WebSocket upgrade needs `Sec-WebSocket-Key`"),
            UpgradeError::DuplicateKey => f.write_str("`Sec-WebSocket-Key` given more than once"),
            UpgradeError::BadKey(key) => write!(
                f,
                "`Sec-WebSocket-Key` {key:?} is not the base64 of 16 bytes"
            ),
        }
    }
}

impl std::error::Error for UpgradeError {}

/// Checks the headers of a WebSocket upgrade request (RFC 6455 4.2.1), given as name/value
/// pairs (names case-insensitive, values as sent; a header may come more than once), and
/// returns the `Sec-WebSocket-Key` to hand to [`switching_protocols`]. The method (`GET`) and
/// the HTTP version (1.1 or later) are the HTTP side's to check; `Origin` is not checked (a
/// token is required instead).
///
/// # Errors
/// The first missing or wrong header, as an [`UpgradeError`].
pub fn check_upgrade<'a, I>(headers: I) -> Result<&'a [u8], UpgradeError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let (mut websocket, mut connection_upgrade) = (false, false);
    let mut version: Option<&[u8]> = None;
    let mut key: Option<&[u8]> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            // A list of products, `websocket` perhaps with a `/version`.
            websocket |= tokens(value).any(|product| {
                let name = product.split(|&b| b == b'/').next().unwrap_or(product);
                name.eq_ignore_ascii_case(b"websocket")
            });
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            // A second version header that differs is a version this server does not speak.
            match version {
                Some(v) if v != value.trim_ascii() => {
                    return Err(UpgradeError::UnsupportedVersion(lossy(value)));
                }
                _ => version = Some(value.trim_ascii()),
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-key")
            && key.replace(value.trim_ascii()).is_some()
        {
            return Err(UpgradeError::DuplicateKey);
        }
    }
    if !websocket {
        return Err(UpgradeError::NotWebSocket);
    }
    if !connection_upgrade {
        return Err(UpgradeError::NoConnectionUpgrade);
    }
    match version {
        None => return Err(UpgradeError::NoVersion),
        Some(b"13") => {}
        Some(other) => return Err(UpgradeError::UnsupportedVersion(lossy(other))),
    }
    let key = key.ok_or(UpgradeError::NoKey)?;
    // 16 bytes are 24 characters of base64, padding included; the length is checked first so a
    // long value is not decoded.
    let decodes_to_16 =
        key.len() == 24 && STANDARD.decode(key).is_ok_and(|bytes| bytes.len() == 16);
    if !decodes_to_16 {
        return Err(UpgradeError::BadKey(lossy(&key[..key.len().min(64)])));
    }
    Ok(key)
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 1024;

    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_client_frame(fin, opcode, MASK, payload, &mut out);
        out
    }

    /// A message as an owned value, to compare across calls.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
    }

    fn owned(message: Message<'_>) -> Owned {
        match message {
            Message::Text(t) => Owned::Text(t.into()),
            Message::Binary(b) => Owned::Binary(b.into()),
            Message::Ping(p) => Owned::Ping(p.into()),
            Message::Pong(p) => Owned::Pong(p.into()),
            Message::Close(c) => Owned::Close(c.map(|c| (c.code, c.reason.into()))),
        }
    }

    /// Feeds `stream` in `chunks` as a connection would (keeping the unconsumed tail), and
    /// returns the messages and the error that stopped it, if any.
    fn feed(stream: &[u8], cuts: &[usize], max: usize) -> (Vec<Owned>, Option<Error>) {
        let mut decoder = Decoder::new();
        let (mut messages, mut held) = (Vec::new(), Vec::new());
        let mut from = 0;
        for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
            held.extend_from_slice(&stream[from..to]);
            from = to;
            let mut used = 0;
            loop {
                match decoder.decode(&held[used..], max) {
                    Ok(Decoded::Frame { consumed, message }) => {
                        used += consumed;
                        messages.extend(message.map(owned));
                    }
                    Ok(Decoded::Incomplete { needed }) => {
                        if let Some(needed) = needed {
                            assert!(needed > held.len() - used, "needed counts all");
                        }
                        break;
                    }
                    Err(e) => return (messages, Some(e)),
                }
            }
            held.drain(..used);
            decoder.release();
        }
        (messages, None)
    }

    fn whole(stream: &[u8]) -> (Vec<Owned>, Option<Error>) {
        feed(stream, &[], MAX)
    }

    fn error_of(stream: &[u8]) -> Error {
        whole(stream).1.expect("an error")
    }

    #[test]
    fn one_text_message() {
        let (messages, error) = whole(&frame(true, Opcode::Text, b"{\"msg\":\"hi\"}"));
        assert_eq!(messages, [Owned::Text("{\"msg\":\"hi\"}".into())]);
        assert_eq!(error, None);
    }

    /// A stream with every kind of frame, cut at every byte and fed a byte at a time, decodes
    /// to the same messages as in one piece.
    #[test]
    fn split_at_every_byte_boundary() {
        let mut stream = Vec::new();
        stream.extend(frame(false, Opcode::Text, "{\"msg\":\"h".as_bytes()));
        stream.extend(frame(true, Opcode::Ping, b"are you there"));
        stream.extend(frame(
            false,
            Opcode::Continuation,
            "é".as_bytes()[..1].as_ref(),
        ));
        stream.extend(frame(true, Opcode::Continuation, &"é\"}".as_bytes()[1..]));
        stream.extend(frame(true, Opcode::Binary, &[0u8; 300]));
        stream.extend(frame(true, Opcode::Pong, b""));
        stream.extend(frame(true, Opcode::Text, &[b'x'; 70_000]));
        stream.extend(frame(true, Opcode::Close, b"\x03\xe8bye"));
        let max = 100_000;
        let (expected, error) = feed(&stream, &[], max);
        assert_eq!(error, None);
        assert_eq!(
            expected,
            [
                Owned::Ping(b"are you there".to_vec()),
                Owned::Text("{\"msg\":\"hé\"}".into()),
                Owned::Binary(vec![0; 300]),
                Owned::Pong(vec![]),
                Owned::Text("x".repeat(70_000)),
                Owned::Close(Some((1000, "bye".into()))),
            ]
        );
        // Every cut into two pieces (the 70,000-byte frame's middle is skipped: same code path).
        for cut in (0..stream.len()).filter(|&c| c < 400 || c > stream.len() - 400) {
            assert_eq!(
                feed(&stream, &[cut], max),
                (expected.clone(), None),
                "cut {cut}"
            );
        }
        let every: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(
            feed(&stream, &every, max),
            (expected, None),
            "byte at a time"
        );
    }

    /// An error is found at the same frame however the bytes arrive.
    #[test]
    fn errors_do_not_depend_on_the_split() {
        let mut stream = frame(true, Opcode::Text, b"ok");
        stream.extend(frame(true, Opcode::Text, b"\xff"));
        let expected = whole(&stream);
        assert_eq!(
            expected,
            (vec![Owned::Text("ok".into())], Some(Error::InvalidUtf8))
        );
        for cut in 0..stream.len() {
            assert_eq!(feed(&stream, &[cut], MAX), expected, "cut {cut}");
        }
    }

    #[test]
    fn unmasked_frames_are_refused_at_the_second_byte() {
        assert_eq!(
            Decoder::new().decode(&[0x81, 0x05], MAX),
            Err(Error::Unmasked)
        );
        assert_eq!(Error::Unmasked.close_code(), 1002);
    }

    #[test]
    fn reserved_bits_and_unknown_opcodes_are_refused() {
        for (b0, error) in [
            (0xC1, Error::ReservedBits(4)),
            (0xA1, Error::ReservedBits(2)),
            (0x91, Error::ReservedBits(1)),
            (0x83, Error::UnknownOpcode(3)),
            (0x87, Error::UnknownOpcode(7)),
            (0x8B, Error::UnknownOpcode(0xB)),
            (0x8F, Error::UnknownOpcode(0xF)),
        ] {
            assert_eq!(Decoder::new().decode(&[b0, 0x80], MAX), Err(error));
            assert_eq!(error.close_code(), 1002);
        }
    }

    #[test]
    fn control_frames_are_short_and_whole() {
        let long = frame(true, Opcode::Ping, &[0; 126]);
        assert_eq!(
            error_of(&long),
            Error::ControlTooLong {
                opcode: Opcode::Ping,
                len: 126
            }
        );
        // Refused at the header, before the payload arrived.
        assert_eq!(
            Decoder::new().decode(&long[..2], MAX).unwrap_err(),
            Error::ControlTooLong {
                opcode: Opcode::Ping,
                len: 126
            }
        );
        assert_eq!(
            whole(&frame(true, Opcode::Ping, &[7; 125])).0,
            [Owned::Ping(vec![7; 125])]
        );
        for opcode in [Opcode::Close, Opcode::Ping, Opcode::Pong] {
            assert_eq!(
                error_of(&frame(false, opcode, b"")),
                Error::ControlFragmented(opcode)
            );
        }
    }

    #[test]
    fn fragments_are_reassembled_with_controls_between() {
        let mut stream = frame(false, Opcode::Binary, b"ab");
        stream.extend(frame(true, Opcode::Pong, b"p"));
        stream.extend(frame(false, Opcode::Continuation, b""));
        stream.extend(frame(true, Opcode::Continuation, b"cd"));
        assert_eq!(
            whole(&stream),
            (
                vec![Owned::Pong(b"p".to_vec()), Owned::Binary(b"abcd".to_vec())],
                None
            )
        );
    }

    #[test]
    fn fragments_out_of_order_are_refused() {
        assert_eq!(
            error_of(&frame(true, Opcode::Continuation, b"x")),
            Error::UnexpectedContinuation
        );
        for opcode in [Opcode::Text, Opcode::Binary] {
            let mut stream = frame(false, Opcode::Text, b"a");
            stream.extend(frame(true, opcode, b"b"));
            assert_eq!(error_of(&stream), Error::MessageInsideMessage);
        }
        // After a finished message, a continuation has nothing to continue.
        let mut stream = frame(true, Opcode::Text, b"a");
        stream.extend(frame(true, Opcode::Continuation, b"b"));
        assert_eq!(error_of(&stream), Error::UnexpectedContinuation);
    }

    #[test]
    fn messages_are_capped_across_fragments_at_the_header() {
        // One frame over the limit: refused from its header alone.
        let big = frame(true, Opcode::Binary, &[0; MAX + 1]);
        let error = Decoder::new().decode(&big[..8], MAX).unwrap_err();
        assert_eq!(
            error,
            Error::TooBig {
                len: MAX as u64 + 1,
                max: MAX
            }
        );
        assert_eq!(error.close_code(), 1009);
        // At the limit: taken.
        assert_eq!(
            whole(&frame(true, Opcode::Binary, &[0; MAX])).0,
            [Owned::Binary(vec![0; MAX])]
        );
        // Fragments that add up to one byte more.
        let mut stream = frame(false, Opcode::Text, &[b'a'; MAX - 10]);
        stream.extend(frame(true, Opcode::Continuation, &[b'b'; 11]));
        assert_eq!(
            error_of(&stream),
            Error::TooBig {
                len: MAX as u64 + 1,
                max: MAX
            }
        );
    }

    #[test]
    fn lengths_use_their_shortest_form_and_64_bits_are_checked() {
        // 16-bit length 125: fits in 7 bits.
        let short16 = [0x82, 0xFE, 0, 125, 1, 2, 3, 4];
        assert_eq!(error_of(&short16), Error::LengthNotMinimal(125));
        // 64-bit length 65535: fits in 16.
        let mut short64 = vec![0x82, 0xFF];
        short64.extend(65_535u64.to_be_bytes());
        short64.extend(MASK);
        assert_eq!(error_of(&short64), Error::LengthNotMinimal(65_535));
        // Top bit set.
        let mut top = vec![0x82, 0xFF];
        top.extend((1u64 << 63).to_be_bytes());
        assert_eq!(error_of(&top), Error::LengthTopBit);
        // The largest 64-bit length: over the limit, refused once the header (mask included)
        // is there, without waiting for the payload.
        let mut huge = vec![0x82, 0xFF];
        huge.extend((u64::MAX >> 1).to_be_bytes());
        assert_eq!(
            feed(&huge, &[], MAX),
            (vec![], None),
            "the mask is not there yet"
        );
        huge.extend(MASK);
        assert_eq!(
            error_of(&huge),
            Error::TooBig {
                len: u64::MAX >> 1,
                max: MAX
            }
        );
        // With no limit at all, the length still cannot make the decoder overflow or allocate:
        // it waits for the bytes.
        assert_eq!(
            Decoder::new().decode(&huge, usize::MAX),
            Ok(Decoded::Incomplete {
                needed: Some(14 + (u64::MAX >> 1) as usize)
            })
        );
    }

    #[test]
    fn incomplete_reports_the_frame_size_once_the_header_is_known() {
        let f = frame(true, Opcode::Binary, &[1; 200]);
        assert_eq!(f.len(), 2 + 2 + 4 + 200);
        for end in 0..8 {
            assert_eq!(
                Decoder::new().decode(&f[..end], MAX),
                Ok(Decoded::Incomplete { needed: None }),
                "{end}"
            );
        }
        assert_eq!(
            Decoder::new().decode(&f[..8], MAX),
            Ok(Decoded::Incomplete { needed: Some(208) })
        );
    }

    #[test]
    fn text_must_be_utf8_once_whole() {
        assert_eq!(
            error_of(&frame(true, Opcode::Text, b"\xc3")),
            Error::InvalidUtf8
        );
        assert_eq!(Error::InvalidUtf8.close_code(), 1007);
        // A character split across fragments is fine.
        let mut stream = frame(false, Opcode::Text, b"\xc3");
        stream.extend(frame(true, Opcode::Continuation, b"\xa9"));
        assert_eq!(whole(&stream).0, [Owned::Text("é".into())]);
        // Binary is not checked.
        assert_eq!(
            whole(&frame(true, Opcode::Binary, b"\xff")).0,
            [Owned::Binary(vec![0xff])]
        );
    }

    #[test]
    fn close_payloads_are_checked() {
        let close = |payload: &[u8]| whole(&frame(true, Opcode::Close, payload));
        assert_eq!(close(b"").0, [Owned::Close(None)]);
        assert_eq!(close(b"\x03").1, Some(Error::CloseTooShort));
        for ok in [
            1000u16, 1001, 1002, 1003, 1007, 1011, 1013, 1014, 3000, 4999,
        ] {
            let payload = [&ok.to_be_bytes()[..], b"why"].concat();
            assert_eq!(close(&payload).0, [Owned::Close(Some((ok, "why".into())))]);
        }
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
        ] {
            let error = close(&bad.to_be_bytes()).1.unwrap();
            assert_eq!(error, Error::InvalidCloseCode(bad));
            assert_eq!(error.close_code(), 1002);
        }
        let error = close(b"\x03\xe8\xff").1.unwrap();
        assert_eq!(
            (error, error.close_code()),
            (Error::InvalidCloseReason, 1007)
        );
    }

    #[test]
    fn unmasking_covers_every_length_and_phase() {
        for len in 0..40 {
            let payload: Vec<u8> = (0..len as u8).collect();
            let (messages, _) = whole(&frame(true, Opcode::Binary, &payload));
            assert_eq!(messages, [Owned::Binary(payload)]);
        }
    }

    #[test]
    fn release_frees_the_buffer_between_messages_only() {
        let mut decoder = Decoder::new();
        let first = frame(false, Opcode::Binary, &[1; 100]);
        assert!(matches!(
            decoder.decode(&first, MAX),
            Ok(Decoded::Frame { message: None, .. })
        ));
        decoder.release();
        assert_eq!(decoder.held(), 100, "an unfinished message is kept");
        let last = frame(true, Opcode::Continuation, &[2; 10]);
        let Ok(Decoded::Frame {
            message: Some(Message::Binary(data)),
            ..
        }) = decoder.decode(&last, MAX)
        else {
            panic!("a message")
        };
        assert_eq!(data.len(), 110);
        decoder.release();
        assert_eq!((decoder.held(), decoder.message.capacity()), (0, 0));
    }

    #[test]
    fn server_frames_are_unmasked_and_shortest() {
        let mut out = Vec::new();
        encode_text("hi", &mut out);
        assert_eq!(out, b"\x81\x02hi");
        out.clear();
        encode_text(&"a".repeat(126), &mut out);
        assert_eq!(&out[..4], &[0x81, 126, 0, 126]);
        out.clear();
        encode_text(&"a".repeat(70_000), &mut out);
        assert_eq!(&out[..2], &[0x81, 127]);
        assert_eq!(&out[2..10], &70_000u64.to_be_bytes());
        out.clear();
        encode_pong(b"ping!", &mut out);
        assert_eq!(out, b"\x8a\x05ping!");
        out.clear();
        encode_close(1009, "too big", &mut out);
        assert_eq!(out, b"\x88\x09\x03\xf1too big");
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        let reason = "é".repeat(100); // 200 bytes
        encode_close(1001, &reason, &mut out);
        assert_eq!(
            out[1] as usize,
            2 + 122,
            "61 characters of 2 bytes fit in 123"
        );
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }

    /// RFC 6455 1.3's example.
    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let mut out = Vec::new();
        switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==", &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
    }

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade(headers: &[(&'static str, &'static [u8])]) -> Result<&'static [u8], UpgradeError> {
        check_upgrade(headers.iter().copied())
    }

    #[test]
    fn a_browser_upgrade_is_taken() {
        let headers: &[(&str, &[u8])] = &[
            ("Host", b"localhost:4021"),
            ("Connection", b"keep-alive, Upgrade"),
            ("Upgrade", b"WebSocket"),
            ("Sec-WebSocket-Version", b"13"),
            ("sec-websocket-key", b" dGhlIHNhbXBsZSBub25jZQ== "),
            ("Sec-WebSocket-Extensions", b"permessage-deflate"),
        ];
        assert_eq!(upgrade(headers), Ok(KEY));
    }

    #[test]
    fn each_missing_or_wrong_header_has_its_error() {
        let good: [(&str, &[u8]); 4] = [
            ("Upgrade", b"websocket"),
            ("Connection", b"Upgrade"),
            ("Sec-WebSocket-Version", b"13"),
            ("Sec-WebSocket-Key", KEY),
        ];
        let without = |i: usize| {
            let mut h = good.to_vec();
            h.remove(i);
            check_upgrade(h)
        };
        let with = |i: usize, value: &'static [u8]| {
            let mut h = good.to_vec();
            h[i].1 = value;
            check_upgrade(h)
        };
        assert_eq!(without(0), Err(UpgradeError::NotWebSocket));
        assert_eq!(with(0, b"h2c"), Err(UpgradeError::NotWebSocket));
        assert_eq!(without(1), Err(UpgradeError::NoConnectionUpgrade));
        assert_eq!(
            with(1, b"keep-alive"),
            Err(UpgradeError::NoConnectionUpgrade)
        );
        assert_eq!(without(2), Err(UpgradeError::NoVersion));
        assert_eq!(
            with(2, b"8"),
            Err(UpgradeError::UnsupportedVersion("8".into()))
        );
        assert_eq!(without(3), Err(UpgradeError::NoKey));
        for bad in [
            &b"short"[..],
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"!!!!!!!!!!!!!!!!!!!!!!==",
            b"dGhlIHNhbXBsZSBub25jZSE=",
        ] {
            assert!(
                matches!(with(3, bad), Err(UpgradeError::BadKey(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut twice = good.to_vec();
        twice.push(("sec-websocket-key", KEY));
        assert_eq!(check_upgrade(twice), Err(UpgradeError::DuplicateKey));
        let mut versions = good.to_vec();
        versions.push(("Sec-WebSocket-Version", b"8"));
        assert_eq!(
            check_upgrade(versions),
            Err(UpgradeError::UnsupportedVersion("8".into()))
        );
        assert_eq!(UpgradeError::NoVersion.status(), 426);
        assert_eq!(UpgradeError::NotWebSocket.status(), 400);
        assert!(
            UpgradeError::NoKey
                .to_string()
                .contains("Sec-WebSocket-Key")
        );
    }
}
