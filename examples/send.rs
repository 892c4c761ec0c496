//! Sends one log record to a logmill server and waits for its ack: the smallest native client.
//!
//! ```text
//! cargo run --release --example send -- 127.0.0.1:4020 "disk almost full"
//! cargo run --release --example send -- --hex "hello"   # print the frames' bytes, send nothing
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;

use logmill::protocol::frame::{self, Frame};
use logmill::protocol::native::{self, Hello, ServerFrame};
use logmill::record::{Body, Level, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, text, hex_only) = match args.as_slice() {
        [flag, text] if flag == "--hex" => (String::new(), text.clone(), true),
        [addr, text] => (addr.clone(), text.clone(), false),
        _ => return Err("usage: send HOST:PORT MESSAGE | send --hex MESSAGE".into()),
    };
    let mut bytes = Vec::new();
    native::encode_hello(
        &Hello {
            app: "example".into(),
            want_acks: true,
            ..Hello::default()
        },
        &mut bytes,
    );
    let hello_len = bytes.len();
    native::encode_records(
        &[Record {
            level: Level::Warning,
            body: Body::Message(text.into()),
            ..Record::default()
        }],
        &mut bytes,
    );
    if hex_only {
        println!("hello frame:  {}", hex(&bytes[..hello_len]));
        println!("record frame: {}", hex(&bytes[hello_len..]));
        return Ok(());
    }
    let mut stream = TcpStream::connect(&addr)?;
    stream.write_all(&bytes)?;
    let mut buf = Vec::new();
    loop {
        while let Frame::Complete { payload, consumed } = frame::decode(&buf, u32::MAX)? {
            let reply = native::decode_server_frame(payload)?;
            buf.drain(..consumed);
            println!("{reply:?}");
            if let ServerFrame::Ack { count: 1, .. } | ServerFrame::Error { .. } = reply {
                return Ok(());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err("server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
