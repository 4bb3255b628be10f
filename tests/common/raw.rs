//! A raw Engine.IO / Socket.IO client: a blocking tungstenite WebSocket
//! and the few packet helpers tests need to send exact (or broken) frames
//! and to see exactly what the server answers.
//!
//! Frames: the server opens with `0{"sid",…}`; `40{"token"}` connects to
//! `/` (answered `40{"sid"}`); `42<id>["event",data]` emits with an ack,
//! answered `43<id>[payload]`; server pings are `2`, answered `3`.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::TestServer;

/// How long any expected frame may take to arrive.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocket<TcpStream>;

/// Opens a WebSocket to the Engine.IO endpoint; returns it with the OPEN
/// packet's JSON.
pub fn open(server: &TestServer) -> (Ws, Value) {
    open_on(
        TcpStream::connect(server.addr()).expect("TCP connect"),
        server,
    )
}

/// [`open`] over a TCP stream the caller set up (e.g. with socket options).
pub fn open_on(stream: TcpStream, server: &TestServer) -> (Ws, Value) {
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set read timeout");
    let (mut ws, _response) =
        tungstenite::client::client(server.ws_url(), stream).expect("WebSocket handshake");
    let open = recv_text(&mut ws);
    let handshake = open
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("expected an Engine.IO OPEN packet, got {open:?}"));
    (
        ws,
        serde_json::from_str(handshake).expect("OPEN packet JSON"),
    )
}

/// Opens a WebSocket and connects to the `/` namespace as `sub`.
pub fn connect(server: &TestServer, sub: &str) -> Ws {
    let (mut ws, _) = open(server);
    sio_connect(&mut ws, &server.token(sub));
    ws
}

/// Connects to the `/` namespace with `{"token"}` and asserts it is accepted.
pub fn sio_connect(ws: &mut Ws, token: &str) {
    sio_connect_with(ws, &json!({ "token": token }));
}

/// Sends one text frame (one Engine.IO packet).
pub fn send_text(ws: &mut Ws, text: impl Into<String>) {
    ws.send(Message::text(text.into())).expect("send frame");
}

/// The next text frame that is not an Engine.IO ping (pings are answered).
pub fn recv_text(ws: &mut Ws) -> String {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) if text.as_str() == "2" => send_text(ws, "3"),
            Ok(Message::Text(text)) => return text.as_str().to_owned(),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("expected a text frame, got {other:?}"),
            Err(e) => panic!("expected a text frame, got {e}"),
        }
    }
}

/// A server event `42["name",data]`, or None for any other packet.
pub fn as_event(packet: &str) -> Option<(String, Value)> {
    let array: Value = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    Some((array[0].as_str()?.to_owned(), array[1].clone()))
}

/// Emits `name` with ack id `id` and returns the ack's payload object,
/// skipping any event that arrives in between.
pub fn call(ws: &mut Ws, id: u64, name: &str, data: Value) -> Value {
    send_text(ws, format!("42{id}{}", json!([name, data])));
    loop {
        let (acked, payload) = recv_ack(ws);
        if acked == id {
            return payload;
        }
    }
}

/// Joins `channel` (ack id 1) and asserts the ack says ok.
pub fn join(ws: &mut Ws, channel: &str) {
    let ack = call(ws, 1, "join_channel", json!({ "channelId": channel }));
    assert_eq!(ack["ok"], true, "join_channel: {ack}");
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The server sent a WebSocket close frame (with this code, if any).
    Close(Option<CloseFrame>),
    /// The TCP connection ended without a close frame (the read error).
    Dropped(String),
}

/// A read that ran into the socket's read timeout (`WAIT`).
pub fn is_timeout(error: &tungstenite::Error) -> bool {
    matches!(error, tungstenite::Error::Io(e)
        if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Reads (discarding other frames) until the server ends the connection;
/// panics if it is still open after `WAIT`. Returns how it ended and how
/// many text frames came before.
pub fn until_closed(ws: &mut Ws) -> (Ended, usize) {
    let deadline = Instant::now() + WAIT;
    let mut frames = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "connection still open after {WAIT:?} ({frames} frames read)"
        );
        match ws.read() {
            Ok(Message::Close(frame)) => return (Ended::Close(frame), frames),
            Ok(Message::Text(_) | Message::Binary(_)) => frames += 1,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                panic!("connection still open after {WAIT:?} ({frames} frames read, then none)")
            }
            Err(e) => return (Ended::Dropped(e.to_string()), frames),
        }
    }
}

/// The next ACK packet `43<id>[payload]`, skipping events.
pub fn recv_ack(ws: &mut Ws) -> (u64, Value) {
    loop {
        let packet = recv_text(ws);
        let Some(rest) = packet.strip_prefix("43") else {
            continue;
        };
        let digits = rest
            .find('[')
            .unwrap_or_else(|| panic!("bad ACK {packet:?}"));
        let id = rest[..digits].parse().expect("ACK id");
        let args: Value = serde_json::from_str(&rest[digits..]).expect("ACK JSON");
        return (id, args[0].clone());
    }
}

/// Connects to the `/` namespace with `auth` as the CONNECT payload (e.g.
/// `{"token", "pid", "offset"}` for a recovery) and returns the CONNECT
/// reply's JSON (`{"sid", "pid"}`); panics on anything else.
pub fn sio_connect_with(ws: &mut Ws, auth: &Value) -> Value {
    send_text(ws, format!("40{auth}"));
    let reply = recv_text(ws);
    let body = reply
        .strip_prefix("40")
        .unwrap_or_else(|| panic!("expected CONNECT, got {reply:?}"));
    let body: Value = serde_json::from_str(body).expect("CONNECT JSON");
    assert!(body["sid"].is_string(), "CONNECT without sid: {reply}");
    body
}

/// A server event `42["name",arg,…]` with all its arguments (for
/// `message`: the message and then the recovery offset), or None for any
/// other packet.
pub fn as_event_args(packet: &str) -> Option<(String, Vec<Value>)> {
    let array: Value = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    let mut items = array.as_array()?.clone().into_iter();
    let name = items.next()?.as_str()?.to_owned();
    Some((name, items.collect()))
}

/// Joins `channel` with ack id `id` and returns the whole ack
/// (`{"ok":true,"channel":{…},"lastSeq":n}`), asserting it says ok.
pub fn join_ack(ws: &mut Ws, id: u64, channel: &str) -> Value {
    let ack = call(ws, id, "join_channel", json!({ "channelId": channel }));
    assert_eq!(ack["ok"], true, "join_channel {channel}: {ack}");
    assert_eq!(ack["channel"]["id"], channel, "join ack channel: {ack}");
    ack
}

/// The server survived: it answers `/health` and a new client can join.
pub fn assert_healthy(server: &TestServer) {
    let health = crate::common::http_get(server.port(), "/health").expect("GET /health");
    assert_eq!(health.status, 200, "server unhealthy after bad input");
    let channel = server.create_channel("owner", "still-works", "public", &[]);
    let mut ws = connect(server, "after-bad-input");
    join(&mut ws, &channel);
}
