//! `METRICS_LISTEN`: /metrics on an address of its own (e.g. a loopback or
//! management address that the public port's firewall rules do not open).
//!
//! A plain std thread with a tiny blocking HTTP/1.1 responder, not a
//! listener on a shard: scrapes come every few seconds, so a thread that
//! sleeps in accept costs nothing, keeps scrape work (rendering every
//! family) off the shards' loops, and still answers when a shard is stalled,
//! which is exactly when its mailbox depth is worth reading. One request
//! per connection (`Connection: close`), one connection at a time, each
//! bounded by a short timeout so a stuck client cannot hold it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{CONTENT_TYPE, Metrics};

/// Per-connection read and write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Binds `addr` and serves /metrics from a thread for the process's life.
/// Returns the bound address (port 0 picks one).
pub(crate) fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("gatrix-metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => answer(s, &metrics),
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok(local)
}

fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (status, content_type, body) = match req.parse(&head) {
        Ok(_) => {
            let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
            match (req.method.unwrap_or(""), path) {
                ("GET" | "HEAD", "/metrics") => ("200 OK", CONTENT_TYPE, metrics.render()),
                (_, "/metrics") => (
                    "405 Method Not Allowed",
                    "text/plain",
                    "GET /metrics\n".into(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".into()),
            }
        }
        Err(_) => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let head_only = req.method == Some("HEAD");
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(reply.as_bytes()).is_ok() && !head_only {
        let _ = stream.write_all(body.as_bytes());
    }
    let _ = stream.flush();
}
