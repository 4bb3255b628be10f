//! A blocking Engine.IO long-polling client: every request on a fresh TCP
//! connection (`Connection: close`), so that with two shards a session's
//! requests land on either one (the kernel spreads connections) and the
//! hand-over to the session's shard is exercised. A [`Dial`] makes the
//! connections: plain TCP by default, or TLS (`common::tls::dial`).

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::TestServer;
use super::raw::WAIT;

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// (lower-cased name, value).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A connection to the server: plain TCP, or TLS over it.
pub trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// Opens a new connection to the server's port.
pub type Dial = Arc<dyn Fn(u16) -> Box<dyn Conn> + Send + Sync>;

/// Plain TCP connections, reads timing out after `WAIT`.
pub fn plain() -> Dial {
    Arc::new(|port| {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        Box::new(s)
    })
}

/// One request to `/socket.io/?{query}` on its own connection. `headers`
/// are whole lines (`"Origin: …\r\n"`); a Content-Length is added unless
/// they hold one.
pub fn request(port: u16, method: &str, query: &str, headers: &str, body: &str) -> Reply {
    request_via(&plain(), port, method, query, headers, body)
}

/// [`request`] on a connection made by `dial`.
pub fn request_via(
    dial: &Dial,
    port: u16,
    method: &str,
    query: &str,
    headers: &str,
    body: &str,
) -> Reply {
    let mut s = dial(port);
    let length = if headers.contains("Content-Length") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "{method} /socket.io/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}{length}Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("write request head");
    // The server may answer (413) before the body: a failed write is fine.
    let _ = s.write_all(body.as_bytes());
    let _ = s.flush();
    let mut out = Vec::new();
    // Over TLS, a close without close_notify ends the read with an error;
    // what arrived before it is the answer.
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {out:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("")[9..12].parse().expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A polling session.
pub struct Poller {
    pub port: u16,
    dial: Dial,
    pub sid: String,
    pub open: Value,
    /// Packets received and not yet returned by [`Poller::recv`].
    queue: VecDeque<String>,
}

impl Poller {
    /// The handshake; panics unless it succeeds.
    pub fn open(server: &TestServer) -> Self {
        Self::try_open(server.port(), "").unwrap_or_else(|r| panic!("handshake: {r:?}"))
    }

    /// The handshake with extra query parameters (`&token=…`), or the
    /// refusal.
    pub fn try_open(port: u16, extra_query: &str) -> Result<Self, Reply> {
        Self::try_open_via(plain(), port, extra_query)
    }

    /// [`Poller::try_open`] with every request on a connection made by
    /// `dial`.
    pub fn try_open_via(dial: Dial, port: u16, extra_query: &str) -> Result<Self, Reply> {
        let r = request_via(
            &dial,
            port,
            "GET",
            &format!("EIO=4&transport=polling{extra_query}"),
            "",
            "",
        );
        if r.status != 200 {
            return Err(r);
        }
        let open: Value = serde_json::from_str(r.body.strip_prefix('0').expect("OPEN packet"))
            .expect("OPEN JSON");
        Ok(Self {
            port,
            dial,
            sid: open["sid"].as_str().expect("sid").to_owned(),
            open,
            queue: VecDeque::new(),
        })
    }

    fn query(&self) -> String {
        format!("EIO=4&transport=polling&sid={}", self.sid)
    }

    /// One GET: its status and packets.
    pub fn get(&self) -> Reply {
        request_via(&self.dial, self.port, "GET", &self.query(), "", "")
    }

    /// POSTs `packets` as one payload; the status.
    pub fn post(&self, packets: &[&str]) -> Reply {
        request_via(
            &self.dial,
            self.port,
            "POST",
            &self.query(),
            "Content-Type: text/plain;charset=UTF-8\r\n",
            &packets.join("\x1e"),
        )
    }

    /// The next packet that is not a ping (pings are answered).
    pub fn recv(&mut self) -> String {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return p;
            }
            let r = self.get();
            assert_eq!(r.status, 200, "GET: {r:?}");
            for p in r.body.split('\x1e') {
                if p == "2" {
                    assert_eq!(self.post(&["3"]).status, 200);
                } else {
                    self.queue.push_back(p.to_owned());
                }
            }
        }
    }

    /// Connects to `/` with `{"token"}`; the CONNECT reply's JSON.
    pub fn connect(&mut self, token: &str) -> Value {
        let r = self.post(&[&format!("40{}", json!({ "token": token }))]);
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let reply = self.recv();
        serde_json::from_str(reply.strip_prefix("40").expect("CONNECT reply")).expect("JSON")
    }

    /// Emits `name` with ack id `id`; the ack's payload, skipping events.
    pub fn call(&mut self, id: u64, name: &str, data: Value) -> Value {
        let r = self.post(&[&format!("42{id}{}", json!([name, data]))]);
        assert_eq!(r.status, 200, "POST: {r:?}");
        loop {
            let p = self.recv();
            if let Some(rest) = p.strip_prefix(&format!("43{id}")) {
                let args: Value = serde_json::from_str(rest).expect("ack JSON");
                return args[0].clone();
            }
        }
    }

    /// The next `message` event of `channel` (other packets skipped).
    pub fn next_message(&mut self, channel: &str) -> Value {
        loop {
            let p = self.recv();
            if let Some(rest) = p.strip_prefix("42") {
                let args: Value = serde_json::from_str(rest).expect("event JSON");
                if args[0] == "message" && args[1]["channelId"] == channel {
                    return args[1].clone();
                }
            }
        }
    }
}

/// How long a test waits for a session to be closed by the server.
pub const EXPIRY_WAIT: Duration = Duration::from_secs(15);

/// Reads one response (head and `Content-Length` body) from a kept-alive
/// connection.
pub fn read_response(s: &mut impl Read) -> Reply {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read a response head");
        assert_eq!(n, 1, "connection closed in a response head: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("UTF-8 head");
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("")[9..12].parse().expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.trim().parse().expect("Content-Length"))
        .expect("a Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read a response body");
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}
