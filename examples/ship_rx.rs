//! A minimal logship receiver, for `scripts/ship-bench.sh` only, until `logmill serve`'s own
//! receiver (`--ship-port`) is merged: one thread per connection, the name line through
//! `protocol::ship::validate_name`, the answer, then 1 MiB reads appended to the file. No limits
//! beyond the name's, no refusal of a second connection for the same name: not for production.
//!
//! ```text
//! cargo run --release --example ship_rx -- 127.0.0.1:0 /tmp/ship-out
//! cargo run --release --example ship_rx -- 127.0.0.1:0 -    # discard: the transmitter's ceiling
//! ```
//!
//! With `-` for the directory nothing is stored: the offsets it answers are the bytes received
//! so far for each name (in memory), so `ship tx --once` still ends when everything arrived, and
//! the figure is the transmitter and loopback alone, without a receiver's disk writes.
//!
//! Prints `listening <port>` once bound.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use logmill::protocol::ship::{MAX_NAME, error_line, offset_line, validate_name};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:7447".into());
    let dir = args.next().unwrap_or_else(|| "ship-out".into());
    let sink = match dir.as_str() {
        "-" => Sink::Discard(Arc::new(Mutex::new(HashMap::new()))),
        dir => {
            std::fs::create_dir_all(dir)?;
            Sink::Dir(PathBuf::from(dir))
        }
    };
    let listener = TcpListener::bind(&bind)?;
    println!("listening {}", listener.local_addr()?.port());
    io::stdout().flush()?;
    for conn in listener.incoming() {
        let conn = conn?;
        let sink = sink.clone();
        thread::spawn(move || {
            if let Err(e) = serve(conn, &sink) {
                eprintln!("ship_rx: {e}");
            }
        });
    }
    Ok(())
}

/// Where the bytes go: files in a directory, or nowhere (counted by name).
#[derive(Clone)]
enum Sink {
    Dir(PathBuf),
    Discard(Arc<Mutex<HashMap<String, u64>>>),
}

fn serve(mut conn: TcpStream, sink: &Sink) -> io::Result<()> {
    // The name line, a byte at a time: nothing after the newline may be taken from the stream.
    let mut name = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if conn.read(&mut byte)? == 0 {
            return Ok(());
        }
        if byte[0] == b'\n' {
            break;
        }
        if name.len() > MAX_NAME {
            return conn.write_all(error_line("name too long").as_bytes());
        }
        name.push(byte[0]);
    }
    let name = match validate_name(&name) {
        Ok(name) => name,
        Err(e) => return conn.write_all(error_line(&e.to_string()).as_bytes()),
    };
    let mut buf = vec![0u8; 1 << 20];
    match sink {
        Sink::Dir(dir) => {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))?;
            conn.write_all(offset_line(file.metadata()?.len()).as_bytes())?;
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                file.write_all(&buf[..n])?;
            }
        }
        Sink::Discard(counts) => {
            let count = |add: u64| {
                let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
                let n = counts.entry(name.to_owned()).or_insert(0);
                *n += add;
                *n
            };
            conn.write_all(offset_line(count(0)).as_bytes())?;
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                count(n as u64);
            }
        }
    }
}
