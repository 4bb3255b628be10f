//! A Socket.IO client for chat tests that keeps events arriving while it
//! waits for an ack, so tests can ask for "the next `typing`" in any order.
//! It keeps its session's `pid` and the last `message` offset it read, so
//! that a test can move it to another instance with connection state
//! recovery ([`Client::reconnect`]), as socket.io-client does by itself.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

use super::TestServer;

/// A minimal Socket.IO client: answers pings, keeps events that arrive
/// while it waits for an ack.
pub struct Client {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_ack: u64,
    events: VecDeque<(String, Value)>,
    /// The session's pid, from the CONNECT reply.
    pid: Option<String>,
    /// The recovery offset of the last `message` read off the socket
    /// (stashed or not: what socket.io-client would claim).
    offset: Option<String>,
}

/// How long [`Client::try_call`] waits for its ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a fallible read or write of a [`Client`] failed.
pub type Failure = tungstenite::Error;

pub enum Connect {
    Ok(Box<Client>),
    Refused(String),
}

impl Client {
    pub fn open(server: &TestServer, query: &str) -> WebSocket<MaybeTlsStream<TcpStream>> {
        let url = format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket{query}",
            server.port()
        );
        let (mut ws, _) = tungstenite::connect(url).expect("websocket connect");
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        ws
    }

    pub fn try_connect(server: &TestServer, token: &str) -> Connect {
        let mut ws = Self::open(server, "");
        let open = read_text(&mut ws);
        assert!(open.starts_with("0{"), "{open}");
        ws.send(Message::text(format!("40{}", json!({ "token": token }))))
            .unwrap();
        let reply = read_text(&mut ws);
        if let Some(body) = reply.strip_prefix("40") {
            Connect::Ok(Box::new(Client {
                ws,
                next_ack: 1,
                events: VecDeque::new(),
                pid: pid_of(body),
                offset: None,
            }))
        } else {
            Connect::Refused(reply)
        }
    }

    pub fn connect(server: &TestServer, user: &str) -> Client {
        match Self::try_connect(server, &server.token(user)) {
            Connect::Ok(c) => *c,
            Connect::Refused(r) => panic!("refused: {r}"),
        }
    }

    pub fn emit(&mut self, event: &str, payload: Value) {
        self.ws
            .send(Message::text(format!("42{}", json!([event, payload]))))
            .unwrap();
    }

    /// Emits with an ack id and returns the ack's object.
    pub fn call(&mut self, event: &str, payload: Value) -> Value {
        self.try_call(event, &payload)
            .unwrap_or_else(|e| panic!("{event}: no ack ({e})"))
    }

    /// Emits with an ack id without waiting for the ack: the id, for
    /// [`Client::await_ack`]. Err when the connection is gone.
    pub fn send_call(&mut self, event: &str, payload: &Value) -> Result<u64, Failure> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.ws
            .send(Message::text(format!("42{id}{}", json!([event, payload]))))?;
        Ok(id)
    }

    /// The ack of call `id`'s object, events read meanwhile kept; Err when
    /// the connection broke (or no ack within [`ACK_TIMEOUT`]).
    pub fn await_ack(&mut self, id: u64) -> Result<Value, Failure> {
        let prefix = format!("43{id}[");
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let Some(t) = self.read_until(deadline)? else {
                return Err(Failure::Io(std::io::ErrorKind::TimedOut.into()));
            };
            if let Some(rest) = t.strip_prefix(&prefix) {
                let arr: Value = serde_json::from_str(&format!("[{rest}")).expect("an ack");
                return Ok(arr[0].clone());
            }
            self.stash(&t);
        }
    }

    /// [`Client::call`] that says when the connection is gone.
    pub fn try_call(&mut self, event: &str, payload: &Value) -> Result<Value, Failure> {
        let id = self.send_call(event, payload)?;
        self.await_ack(id)
    }

    /// Connects again, to the server on `port`, claiming this session
    /// (`pid` and the last offset read) with `token`, as socket.io-client
    /// does after a drop; the events read before are kept. Ok(true) when
    /// the session was recovered (the reply names the same pid), Ok(false)
    /// for a fresh one; Err when the server cannot be reached.
    pub fn reconnect(&mut self, port: u16, token: &str) -> Result<bool, Failure> {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tungstenite::connect(url)?;
        if let MaybeTlsStream::Plain(s) = ws.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
        }
        let mut auth = json!({ "token": token });
        if let Some(pid) = &self.pid {
            auth["pid"] = json!(pid);
        }
        if let Some(offset) = &self.offset {
            auth["offset"] = json!(offset);
        }
        self.ws = ws;
        let deadline = Instant::now() + ACK_TIMEOUT;
        let open = self.read_until(deadline)?.unwrap_or_default();
        assert!(open.starts_with("0{"), "{open}");
        self.ws.send(Message::text(format!("40{auth}")))?;
        let reply = self.read_until(deadline)?.unwrap_or_default();
        let body = reply
            .strip_prefix("40")
            .unwrap_or_else(|| panic!("CONNECT refused on port {port}: {reply}"));
        let pid = pid_of(body);
        let recovered = pid.is_some() && pid == self.pid;
        self.pid = pid;
        Ok(recovered)
    }

    /// The next text packet (pings answered) before `deadline`: None at
    /// the deadline, Err when the connection broke.
    fn read_until(&mut self, deadline: Instant) -> Result<Option<String>, Failure> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
                s.set_read_timeout(Some(left))?;
            }
            match self.ws.read() {
                Ok(Message::Text(t)) if t.as_str() == "2" => self.ws.send(Message::text("3"))?,
                Ok(Message::Text(t)) => return Ok(Some(t.to_string())),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    pub fn stash(&mut self, t: &str) {
        if let Some(body) = t.strip_prefix("42") {
            let v: Value = serde_json::from_str(body).unwrap();
            let name = v[0].as_str().unwrap().to_owned();
            if name == "message"
                && let Some(offset) = v[2].as_str()
            {
                self.offset = Some(offset.to_owned());
            }
            self.events.push_back((name, v[1].clone()));
        }
    }

    /// The next event named `name` (others are kept), within `within`.
    pub fn event(&mut self, name: &str, within: Duration) -> Value {
        self.try_event(name, within)
            .unwrap_or_else(|| panic!("no {name:?} within {within:?}"))
    }

    pub fn try_event(&mut self, name: &str, within: Duration) -> Option<Value> {
        self.try_event_where(name, within, |_| true)
    }

    /// The next event named `name` whose payload satisfies `pred`.
    pub fn event_where(
        &mut self,
        name: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.try_event_where(name, within, pred)
            .unwrap_or_else(|| panic!("no matching {name:?} within {within:?}"))
    }

    pub fn try_event_where(
        &mut self,
        name: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        self.next_event_where(name, within, pred)
            .unwrap_or_else(|e| panic!("read failed while waiting for {name:?}: {e}"))
    }

    /// [`Client::try_event_where`] that says when the connection broke
    /// (Err) rather than panicking.
    pub fn next_event_where(
        &mut self,
        name: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Option<Value>, Failure> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.events.iter().position(|(n, v)| n == name && pred(v)) {
                return Ok(self.events.remove(i).map(|(_, v)| v));
            }
            match self.read_until(deadline)? {
                Some(t) => self.stash(&t),
                None => return Ok(None),
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub fn close_code(&mut self, within: Duration) -> Option<u16> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(f)) => return f.map(|f| f.code.into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
        panic!("still open after {within:?}");
    }
}

/// The `pid` of a CONNECT reply's body (`{"sid":…,"pid":…}`).
fn pid_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["pid"].as_str().map(str::to_owned)
}

pub fn read_text(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) => return t.to_string(),
            _ => {}
        }
    }
}
