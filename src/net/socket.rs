//! Options every accepted TCP socket gets, whatever it speaks: the server's TCP connections and
//! its gRPC port both call [`tune_socket`] right after `accept`.

use std::io;
use std::time::Duration;

/// Keepalive so peers that vanish without a FIN (a crashed host, a dropped NAT entry) are noticed
/// within about two minutes and their slots freed; no Nagle delay on acks.
///
/// # Errors
/// The error from `setsockopt`.
pub fn tune_socket(stream: &mio::net::TcpStream) -> io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10))
        .with_retries(6);
    socket.set_tcp_keepalive(&keepalive)?;
    stream.set_nodelay(true)
}
