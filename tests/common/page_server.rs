//! A static file server for the browser tests: a page must come from another origin than the
//! logmill server's, so that CORS is exercised. One request per connection, each connection on
//! a thread of its own (a browser may open one and leave it idle); the accepting thread lives as
//! long as the test process. Only what `route` names is answered; anything else is a 404.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What `route` answers for a request path (query removed): the file and its content type.
pub type Route = dyn Fn(&str) -> Option<(PathBuf, &'static str)> + Send + Sync;

/// Serves on 127.0.0.1 (its own port, so its own origin); returns the port.
pub fn serve(route: Arc<Route>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the page server");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let route = Arc::clone(&route);
            std::thread::spawn(move || {
                if let Err(e) = answer(stream, &*route) {
                    eprintln!("page server: {e}");
                }
            });
        }
    });
    port
}

/// Reads one request head (bounded) and answers the file `route` names, or 404.
fn answer(stream: TcpStream, route: &Route) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // At most 64 KiB of head is read; a longer one ends early and is answered 404.
    let mut reader = BufReader::new(stream.try_clone()?.take(64 * 1024));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let found = route(path).and_then(|(file, kind)| std::fs::read(file).ok().map(|b| (b, kind)));
    let mut stream = stream;
    match found {
        Some((body, content_type)) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)
        }
        None => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}
