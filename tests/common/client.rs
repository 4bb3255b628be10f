//! A Socket.IO client for chat tests that keeps events arriving while it
//! waits for an ack, so tests can ask for "the next `typing`" in any order.

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
}

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
        if reply.starts_with("40") {
            Connect::Ok(Box::new(Client {
                ws,
                next_ack: 1,
                events: VecDeque::new(),
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
        let id = self.next_ack;
        self.next_ack += 1;
        self.ws
            .send(Message::text(format!("42{id}{}", json!([event, payload]))))
            .unwrap();
        let prefix = format!("43{id}[");
        loop {
            let t = read_text(&mut self.ws);
            if let Some(rest) = t.strip_prefix(&prefix) {
                let arr: Value = serde_json::from_str(&format!("[{rest}")).unwrap();
                return arr[0].clone();
            }
            self.stash(&t);
        }
    }

    pub fn stash(&mut self, t: &str) {
        if let Some(body) = t.strip_prefix("42") {
            let v: Value = serde_json::from_str(body).unwrap();
            self.events
                .push_back((v[0].as_str().unwrap().to_owned(), v[1].clone()));
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
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.events.iter().position(|(n, v)| n == name && pred(v)) {
                return self.events.remove(i).map(|(_, v)| v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let MaybeTlsStream::Plain(s) = self.ws.get_mut() {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                s.set_read_timeout(Some(left)).unwrap();
            }
            match self.ws.read() {
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    self.ws.send(Message::text("3")).unwrap()
                }
                Ok(Message::Text(t)) => self.stash(t.as_str()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read failed while waiting for {name:?}: {e}"),
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

pub fn read_text(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) => return t.to_string(),
            _ => {}
        }
    }
}
