//! Length-prefixed frames: a 4-byte unsigned length in network byte order, then that many bytes.
//!
//! The length is checked against the limit before anything is buffered for it, so a hostile
//! prefix can neither make the server allocate nor make it wait for gigabytes (rustls'
//! `read_opaque_message_header` does the same).

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// What [`decode`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole frame: its payload, and how many bytes of the buffer it took (header included).
    Complete { payload: &'a [u8], consumed: usize },
    /// Not enough bytes yet; `needed` is the total the frame will take once its header is known
    /// (`None` while even the header is incomplete).
    Incomplete { needed: Option<usize> },
}

/// The length prefix announces more than the limit: the stream cannot be resynchronised.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge {
    pub len: u32,
    pub max: u32,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frame of {} bytes is over the limit of {}",
            self.len, self.max
        )
    }
}

impl std::error::Error for TooLarge {}

/// Decodes the frame at the start of `buf`, refusing payloads over `max_payload` bytes.
///
/// # Errors
/// [`TooLarge`] when the prefix is over `max_payload`; nothing after it can be trusted.
pub fn decode(buf: &[u8], max_payload: u32) -> Result<Frame<'_>, TooLarge> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Frame::Incomplete { needed: None });
    };
    let len = u32::from_be_bytes(*header);
    if len > max_payload {
        return Err(TooLarge {
            len,
            max: max_payload,
        });
    }
    // `len` is at most u32::MAX, so this cannot overflow a 64-bit usize; checked all the same.
    let total = (len as usize).checked_add(HEADER_LEN).ok_or(TooLarge {
        len,
        max: max_payload,
    })?;
    match buf.get(HEADER_LEN..total) {
        Some(payload) => Ok(Frame::Complete {
            payload,
            consumed: total,
        }),
        None => Ok(Frame::Incomplete {
            needed: Some(total),
        }),
    }
}

/// Appends one frame (prefix and payload) to `out`.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes, which no caller in logmill produces.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frame payload over 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_frame_and_rest() {
        let mut buf = Vec::new();
        encode(b"hello", &mut buf);
        encode(b"x", &mut buf);
        let Frame::Complete { payload, consumed } = decode(&buf, 100).unwrap() else {
            panic!("expected a frame")
        };
        assert_eq!(payload, b"hello");
        assert_eq!(consumed, 9);
        let Frame::Complete { payload, .. } = decode(&buf[consumed..], 100).unwrap() else {
            panic!("expected a frame")
        };
        assert_eq!(payload, b"x");
    }

    #[test]
    fn incomplete_at_every_split_point() {
        let mut buf = Vec::new();
        encode(b"0123456789", &mut buf);
        for cut in 0..buf.len() {
            let expected = if cut < HEADER_LEN {
                None
            } else {
                Some(buf.len())
            };
            assert_eq!(
                decode(&buf[..cut], 100).unwrap(),
                Frame::Incomplete { needed: expected },
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_prefix_is_refused_before_buffering() {
        let buf = u32::MAX.to_be_bytes();
        assert_eq!(
            decode(&buf, 1024),
            Err(TooLarge {
                len: u32::MAX,
                max: 1024
            })
        );
    }

    #[test]
    fn empty_payload_is_a_frame() {
        assert_eq!(
            decode(&[0, 0, 0, 0], 10).unwrap(),
            Frame::Complete {
                payload: &[],
                consumed: 4
            }
        );
    }
}
