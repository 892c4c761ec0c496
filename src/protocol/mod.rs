//! Wire formats, one file each. Every decoder here is pure: it takes bytes and returns a value and
//! the number of bytes it consumed, `Incomplete` when it needs more, or an error. None of them
//! touches a socket, so each can be unit-tested at every split point and fuzzed.
//!
//! - [`detect`]: the first bytes of a TCP connection decide which protocol it speaks.
//! - [`frame`]: the 4-byte big-endian length prefix shared by native frames.
//! - [`native`]: Cap'n Proto `ClientFrame` decoding and `ServerFrame` encoding (`schema/logmill.capnp`).

pub mod detect;
pub mod frame;
pub mod native;
