//! A small blocking gRPC client for the OTLP sink: one unary call per batch on a kept-alive
//! HTTP/2 connection, with `h2`'s client driven by hand on the sending thread, no runtime.
//!
//! It is `bench::grpc`'s approach on one connection: the socket is registered with a private
//! mio `Poll` and handed to `h2` in [`H2Io`] (`WouldBlock` is `Pending`); [`Io::block_on`] polls
//! the `h2` connection and the call's future until the call is done, sleeping in `Poll::poll`
//! (the socket's readiness is the wake-up) unless `h2` woke a task itself ([`FlagWaker`]).
//! Nothing else runs on the thread, so blocking it is what a forwarder wants, as with
//! [`super::http`].

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::{Connection, SendRequest};
use http::{HeaderMap, Method, Request};

use crate::net::h2_io::H2Io;
use crate::net::waker::{FlagWaker, waker_for};

/// How long a call (or the connection's handshake) may take, as [`super::http`]'s I/O timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a reply's body kept: an `ExportLogsServiceResponse` is a few bytes.
const MAX_REPLY: usize = 64 * 1024;

/// How a call ended, as the server said.
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status (200 for every gRPC answer, whatever its `grpc-status`).
    http: u16,
    /// `grpc-status` (trailers, or headers for a trailers-only answer); `None` when absent.
    code: Option<u32>,
    /// `grpc-message`, percent-decoded where it can be.
    message: String,
    /// The reply's messages, gRPC-framed, up to [`MAX_REPLY`] bytes.
    body: Vec<u8>,
}

impl Reply {
    pub fn http(&self) -> u16 {
        self.http
    }

    pub fn code(&self) -> Option<u32> {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// One server's connection, opened on demand and opened again after an error.
pub struct Client {
    host: String,
    port: u16,
    /// Boxed: `h2`'s connection state is over a kilobyte.
    conn: Option<Box<Conn>>,
}

/// The thread's own readiness: a `Poll` with the one socket, and the waker `h2` is given.
struct Io {
    poll: mio::Poll,
    events: mio::Events,
    woken: Arc<FlagWaker>,
    waker: Waker,
}

struct Conn {
    io: Io,
    send: SendRequest<Bytes>,
    h2: Connection<H2Io, Bytes>,
}

impl Client {
    pub fn new(host: &str, port: u16) -> Client {
        Client {
            host: host.to_string(),
            port,
            conn: None,
        }
    }

    /// One unary call of `path` with `headers` (besides `content-type` and `te`) and `message`,
    /// one gRPC-framed message. A connection that fails is dropped; when a kept-alive one fails
    /// (the server closed it while idle), the call is made once more on a new one, so a live
    /// server is not reported as an error for that (a batch sent twice is a duplicate, which
    /// at least once allows).
    ///
    /// # Errors
    /// Connecting, HTTP/2 errors, no answer within [`CALL_TIMEOUT`].
    pub fn call(
        &mut self,
        path: &str,
        headers: HeaderMap,
        message: Bytes,
    ) -> Result<Reply, String> {
        let reused = self.conn.is_some();
        let mut result = self.try_call(path, headers.clone(), message.clone());
        if result.is_err() {
            self.conn = None;
            if reused {
                result = self.try_call(path, headers, message);
                if result.is_err() {
                    self.conn = None;
                }
            }
        }
        result
    }

    fn try_call(
        &mut self,
        path: &str,
        headers: HeaderMap,
        message: Bytes,
    ) -> Result<Reply, String> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self
                .conn
                .insert(Box::new(Conn::open(&self.host, self.port, deadline)?)),
        };
        let authority = crate::config::forward::authority(&self.host, self.port);
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{authority}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        request.headers_mut().extend(headers);
        let mut call = Box::pin(unary(conn.send.clone(), request, message));
        let h2 = &mut conn.h2;
        conn.io.block_on(deadline, |cx| {
            if let Poll::Ready(result) = Pin::new(&mut *h2).poll(cx) {
                return Poll::Ready(Err(match result {
                    Ok(()) => "the server closed the connection".to_string(),
                    Err(e) => e.to_string(),
                }));
            }
            call.as_mut().poll(cx).map_err(|e| e.to_string())
        })?
    }
}

impl Conn {
    /// Connects (blocking, with [`super::http`]'s timeout) and does the HTTP/2 handshake.
    fn open(host: &str, port: u16, deadline: Instant) -> Result<Conn, String> {
        let setup = |e: io::Error| e.to_string();
        let stream = super::http::connect(host, port).map_err(setup)?;
        stream.set_nonblocking(true).map_err(setup)?;
        let mut stream = mio::net::TcpStream::from_std(stream);
        let poll = mio::Poll::new().map_err(setup)?;
        poll.registry()
            .register(
                &mut stream,
                mio::Token(0),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .map_err(setup)?;
        let woken = Arc::new(FlagWaker::default());
        let mut io = Io {
            poll,
            events: mio::Events::with_capacity(8),
            waker: waker_for(woken.clone(), None),
            woken,
        };
        let mut handshake =
            Box::pin(h2::client::Builder::new().handshake(H2Io::new(stream, Vec::new())));
        let (send, h2) = io
            .block_on(deadline, |cx| handshake.as_mut().poll(cx))?
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        Ok(Conn { io, send, h2 })
    }
}

impl Io {
    /// Polls `step` until it is ready: again at once when `h2` woke a task while it ran, else
    /// once the socket is ready.
    fn block_on<T>(
        &mut self,
        deadline: Instant,
        mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Result<T, String> {
        let waker = self.waker.clone();
        let mut cx = Context::from_waker(&waker);
        loop {
            self.woken.clear();
            if let Poll::Ready(t) = step(&mut cx) {
                return Ok(t);
            }
            if self.woken.is_set() {
                continue;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("no answer in {}s", CALL_TIMEOUT.as_secs()))?;
            match self.poll.poll(&mut self.events, Some(left)) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e.to_string()),
                _ => {}
            }
        }
    }
}

/// The call: the request with its one message (as flow control allows), then the reply's
/// head, body and trailers.
async fn unary(
    send: SendRequest<Bytes>,
    request: Request<()>,
    mut message: Bytes,
) -> Result<Reply, h2::Error> {
    let mut send = send.ready().await?;
    let (response, mut stream) = send.send_request(request, false)?;
    stream.reserve_capacity(message.len());
    while !message.is_empty() {
        match poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(Ok(0)) => {}
            Some(Ok(n)) => {
                let chunk = message.split_to(n.min(message.len()));
                stream.send_data(chunk, message.is_empty())?;
            }
            Some(Err(e)) => return Err(e),
            // The stream is gone; its reply (a reset) says why.
            None => break,
        }
    }
    let response = response.await?;
    let http = response.status().as_u16();
    let (head, mut body) = response.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        // Nothing is kept past MAX_REPLY, but the window is given back for all of it.
        let _ = body.flow_control().release_capacity(chunk.len());
        let keep = chunk.len().min(MAX_REPLY.saturating_sub(data.len()));
        data.extend_from_slice(&chunk[..keep]);
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    let status = |name: &str| {
        trailers
            .get(name)
            .or_else(|| head.headers.get(name))
            .and_then(|v| v.to_str().ok())
    };
    Ok(Reply {
        http,
        code: status("grpc-status").and_then(|c| c.parse().ok()),
        // `grpc-message` is percent-encoded.
        message: status("grpc-message")
            .map(crate::protocol::grpc::percent_decode)
            .unwrap_or_default(),
        body: data,
    })
}
