//! Sends one log record to a logmill server and waits for its ack: the smallest native client,
//! on the crate's client library (`logmill::client`).
//!
//! ```text
//! cargo run --release --example send -- 127.0.0.1:4020 "disk almost full"
//! cargo run --release --example send -- --hex "hello"   # print the frames' bytes, send nothing
//! ```

use logmill::client::{Client, ClientOptions, framing};
use logmill::record::{Body, Level, Record};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (addr, text, hex_only) = match args.as_slice() {
        [flag, text] if flag == "--hex" => (String::new(), text.clone(), true),
        [addr, text] => (addr.clone(), text.clone(), false),
        _ => return Err("usage: send HOST:PORT MESSAGE | send --hex MESSAGE".into()),
    };
    let options = ClientOptions::new("example");
    let record = Record {
        level: Level::Warning,
        body: Body::Message(text.into()),
        ..Record::default()
    };
    if hex_only {
        // The bytes `Client` sends: the hello, then one frame per `send`.
        let (mut hello, mut frame) = (Vec::new(), Vec::new());
        options.encode_hello(&mut hello);
        framing::encode_batch(std::slice::from_ref(&record), &mut frame);
        println!("hello frame:  {}", hex(&hello));
        println!("record frame: {}", hex(&frame));
        return Ok(());
    }
    let mut client = Client::connect(addr.as_str(), &options)?;
    println!("{:?}", client.welcome());
    client.send(&record)?;
    let ack = client.wait_acked()?;
    println!("{ack:?}");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
