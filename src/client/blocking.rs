//! [`Client`]: one native-protocol connection over a blocking std socket, for programs that send
//! records and want to know they are stored. Also [`ask_health`], the one-line `health` request.
//!
//! Each step (connect, a write, a read) waits at most the options' timeout. The frames come from
//! [`framing`](super::framing); this file only moves them through the socket. A program that
//! drives many connections from one thread uses the framing with its own event loop instead, as
//! `logmill bench` does.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use super::tls::Socket;
use std::time::Duration;

use super::error::Error;
use super::framing::{self, Ack, ClientOptions, Inbox, MAX_SERVER_FRAME, Reply, Welcome};
use crate::record::Record;

/// Bytes read per `read` call: acks are about 40 bytes, so one read takes many.
const READ_CHUNK: usize = 4096;

/// A connection that has said hello and been welcomed.
#[derive(Debug)]
pub struct Client {
    stream: Socket,
    peer: SocketAddr,
    welcome: Welcome,
    want_acks: bool,
    inbox: Inbox,
    /// Frames are encoded here, then written whole: reused, so a steady sender allocates once.
    out: Vec<u8>,
    /// Records handed to the socket on this connection, and the latest ack.
    sent: u64,
    acked: Ack,
}

impl Client {
    /// Connects to the first of `addr`'s addresses that accepts, sends the hello `options`
    /// describe, and waits for the server's welcome.
    ///
    /// # Errors
    /// [`Error::Address`] when `addr` resolves to nothing, [`Error::Connect`] when no address
    /// accepts (the last one's error), and for the hello: [`Error::Io`], [`Error::Closed`],
    /// [`Error::Refused`] or, when something other than logmill answers,
    /// [`Error::FrameTooLarge`], [`Error::Undecodable`] or [`Error::Unexpected`].
    pub fn connect(addr: impl ToSocketAddrs, options: &ClientOptions) -> Result<Client, Error> {
        let timeout = options.step_timeout();
        let mut last = None;
        for peer in addr.to_socket_addrs().map_err(Error::Address)? {
            match TcpStream::connect_timeout(&peer, timeout) {
                Ok(stream) => return Client::hello(stream, peer, options),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => Error::Connect(e),
            None => Error::Address(io::Error::new(
                io::ErrorKind::InvalidInput,
                "resolves to no address",
            )),
        })
    }

    fn hello(
        stream: TcpStream,
        peer: SocketAddr,
        options: &ClientOptions,
    ) -> Result<Client, Error> {
        let timeout = Some(options.step_timeout());
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(timeout))
            .and_then(|()| stream.set_write_timeout(timeout))
            .map_err(Error::Io)?;
        let stream = match options.tls_config() {
            Some((config, server)) => Socket::tls(stream, config, server).map_err(Error::Io)?,
            None => Socket::plain(stream),
        };
        let mut client = Client {
            stream,
            peer,
            welcome: Welcome::default(),
            want_acks: options.acks_wanted(),
            inbox: Inbox::new(),
            out: Vec::new(),
            sent: 0,
            acked: Ack::new(0, 0),
        };
        options.encode_hello(&mut client.out);
        client.write_out()?;
        match client.next_reply()? {
            Reply::Welcome(welcome) => client.welcome = welcome,
            Reply::Ack(ack) => {
                return Err(Error::Unexpected(format!(
                    "an ack ({} records) before the welcome",
                    ack.count()
                )));
            }
        }
        Ok(client)
    }

    /// What the server said about itself, its largest frame among it.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The address connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The welcomed socket, for a caller that drives it itself (the [`Logger`](super::Logger)'s
    /// transmitter). Only before any record is sent: then no byte after the welcome is pending.
    pub fn into_stream(self) -> Socket {
        self.stream
    }

    /// Sends one record in a frame of its own. A program with many records sends them with
    /// [`send_batch`](Client::send_batch): one frame, one write, one ack.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails or times out.
    pub fn send(&mut self, record: &Record<'_>) -> Result<(), Error> {
        self.send_batch(std::slice::from_ref(record))
    }

    /// Sends `records` as one batch frame (nothing for none). It must fit the server's
    /// [`max_frame`](Welcome::max_frame), or the server refuses it and closes.
    ///
    /// # Errors
    /// [`Error::Io`] when the write fails or times out.
    pub fn send_batch(&mut self, records: &[Record<'_>]) -> Result<(), Error> {
        if records.is_empty() {
            return Ok(());
        }
        framing::encode_batch(records, &mut self.out);
        self.write_out()?;
        self.sent += records.len() as u64;
        Ok(())
    }

    /// Records sent on this connection that no ack has covered yet.
    pub fn unacked(&self) -> u64 {
        self.sent - self.acked.count()
    }

    /// Waits for the next ack. The server acks once per write it makes, so an ack may cover
    /// several batches, or part of one spread over two writes.
    ///
    /// # Errors
    /// [`Error::NothingToAck`] when no record is waiting for an ack (or the hello asked for
    /// none); [`Error::Refused`] when the server sent an error frame; [`Error::Closed`],
    /// [`Error::Io`] (a timeout too), or [`Error::Unexpected`] for an ack of more records than
    /// were sent.
    pub fn read_ack(&mut self) -> Result<Ack, Error> {
        if !self.want_acks || self.unacked() == 0 {
            return Err(Error::NothingToAck);
        }
        match self.next_reply()? {
            Reply::Ack(ack) if ack.count() >= self.acked.count() && ack.count() <= self.sent => {
                self.acked = ack;
                Ok(ack)
            }
            Reply::Ack(ack) => Err(Error::Unexpected(format!(
                "an ack for {} records after {} acked of {} sent",
                ack.count(),
                self.acked.count(),
                self.sent
            ))),
            Reply::Welcome(_) => Err(Error::Unexpected("a second welcome".into())),
        }
    }

    /// Reads acks until every record sent is acked, and returns the last: from then on all of
    /// them are in the files, the last under [`Ack::last_seq`]. Returns at once when nothing
    /// waits.
    ///
    /// # Errors
    /// As [`read_ack`](Client::read_ack), except that nothing to ack is not an error.
    pub fn wait_acked(&mut self) -> Result<Ack, Error> {
        while self.want_acks && self.unacked() > 0 {
            self.read_ack()?;
        }
        Ok(self.acked)
    }

    /// Writes the encoded frames and empties the buffer.
    fn write_out(&mut self) -> Result<(), Error> {
        let written = self.stream.write_all(&self.out);
        self.out.clear();
        written.map_err(Error::Io)
    }

    /// The next reply, reading as needed.
    fn next_reply(&mut self) -> Result<Reply, Error> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            if let Some(reply) = self.inbox.next_reply()? {
                return Ok(reply);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Error::Closed),
                Ok(n) => self.inbox.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }
}

/// Asks the server at `addr` for its health line (`OK name=... records_written=...`, or
/// `DEGRADED ...`) on a connection of its own, each step bounded by `timeout`. The answer is
/// returned as read (newline included); whether it is a health line is the caller's to judge.
///
/// # Errors
/// The connect, write or read error; `UnexpectedEof` when the server closed without answering.
pub fn ask_health(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"health\n")?;
    stream.set_read_timeout(Some(timeout))?;
    let mut answer = Vec::new();
    // Whatever else listens on the port cannot make us buffer more than a frame's worth.
    stream
        .take(u64::from(MAX_SERVER_FRAME))
        .read_to_end(&mut answer)?;
    if answer.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}
