//! The cases of the official socket.io-protocol test suite, run against
//! `examples/socketio_conformance.rs` (the same code, started on a free
//! port) with a raw WebSocket client, frame by frame, and plain HTTP
//! requests for long-polling (`conformance/polling.rs`).

#[allow(dead_code)]
#[path = "../examples/socketio_conformance.rs"]
mod example;
/// The long-polling and upgrade cases.
#[path = "conformance/polling.rs"]
mod polling;
/// The handshake's writes, read as the official suite's client reads them.
#[path = "conformance/writes.rs"]
mod writes;

use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            example::serve("127.0.0.1:0".parse().unwrap(), move |a| tx.send(a).unwrap());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server started")
    })
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn open() -> (Ws, Value) {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server());
    let (mut ws, _) = tungstenite::connect(url).expect("websocket connect");
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    let open = text(&mut ws);
    assert!(open.starts_with('0'), "first packet is OPEN: {open}");
    (ws, serde_json::from_str(&open[1..]).unwrap())
}

/// The next text frame, answering pings on the way.
fn text(ws: &mut Ws) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) => return t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn send(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s)).unwrap();
}

/// Waits for the connection to end; returns the close code if a close
/// frame came.
fn closed(ws: &mut Ws, within: Duration) -> Option<u16> {
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < within,
            "connection still open after {within:?}"
        );
        match ws.read() {
            Ok(Message::Close(f)) => return f.map(|f| f.code.into()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn open_packet_announces_the_suite_settings() {
    let (_ws, open) = open();
    assert!(open["sid"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(open["upgrades"], serde_json::json!([]));
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 1_000_000);
}

#[test]
fn heartbeat_keeps_a_ponging_client_and_drops_a_silent_one() {
    let (mut ws, _) = open();
    send(&mut ws, "40");
    assert!(text(&mut ws).starts_with("40"));
    // text() answers pings: after 1 s (three intervals) we are still here.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        send(&mut ws, r#"42["message","x"]"#);
        assert!(text(&mut ws).starts_with("42"));
    }
    let (mut silent, _) = open();
    send(&mut silent, "40");
    let start = Instant::now();
    let code = loop {
        match silent.read() {
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {} // the ping, unanswered
            Err(_) => break None,
        }
    };
    let took = start.elapsed();
    assert_eq!(code, Some(4000), "ping timeout close code");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(2000),
        "{took:?}"
    );
}

#[test]
fn connect_timeout_closes_a_connection_without_connect() {
    let (mut ws, _) = open();
    let start = Instant::now();
    // Pings are answered by text(), so only the connect timeout can fire.
    let code = loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => send(&mut ws, "3"),
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => break None,
        }
    };
    assert_eq!(code, Some(4001));
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn connect_to_main_and_custom_namespace_emits_auth() {
    let (mut ws, _) = open();
    send(&mut ws, "40");
    let reply = text(&mut ws);
    let body: Value = serde_json::from_str(&reply[2..]).unwrap();
    assert!(body["sid"].is_string(), "{reply}");
    assert_eq!(text(&mut ws), r#"42["auth",{}]"#);

    send(&mut ws, r#"40/custom,{"token":"123"}"#);
    assert!(text(&mut ws).starts_with(r#"40/custom,{"sid":""#));
    assert_eq!(text(&mut ws), r#"42/custom,["auth",{"token":"123"}]"#);
}

#[test]
fn unknown_namespace_is_refused() {
    let (mut ws, _) = open();
    send(&mut ws, "40/random");
    assert_eq!(
        text(&mut ws),
        r#"44/random,{"message":"Invalid namespace"}"#
    );
}

#[test]
fn events_and_acks_echo() {
    let (mut ws, _) = open();
    send(&mut ws, "40");
    text(&mut ws);
    text(&mut ws);
    send(&mut ws, r#"42["message",1,"2",{"3":[true]}]"#);
    assert_eq!(text(&mut ws), r#"42["message-back",1,"2",{"3":[true]}]"#);
    send(&mut ws, r#"42456["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(text(&mut ws), r#"43456[1,"2",{"3":[false]}]"#);
    send(&mut ws, r#"40/custom,"#);
    text(&mut ws);
    text(&mut ws);
    send(&mut ws, r#"42/custom,["message","c"]"#);
    assert_eq!(text(&mut ws), r#"42/custom,["message-back","c"]"#);
}

#[test]
fn binary_events_and_acks_carry_attachments() {
    let (mut ws, _) = open();
    send(&mut ws, "40");
    text(&mut ws);
    text(&mut ws);
    send(&mut ws, r#"451-["message",{"_placeholder":true,"num":0}]"#);
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(
        text(&mut ws),
        r#"451-["message-back",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3]));

    send(
        &mut ws,
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    );
    ws.send(Message::binary(vec![4u8])).unwrap();
    ws.send(Message::binary(vec![5u8, 6])).unwrap();
    assert_eq!(
        text(&mut ws),
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(ws.read().unwrap(), Message::binary(vec![4u8]));
    assert_eq!(ws.read().unwrap(), Message::binary(vec![5u8, 6]));
}

#[test]
fn malformed_packets_close_the_connection() {
    for bad in [
        "4abc",
        "9",
        r#"42{"not":"an array"}"#,
        r#"42["connect"]"#,
        "0{}",
    ] {
        let (mut ws, _) = open();
        send(&mut ws, "40");
        text(&mut ws);
        text(&mut ws);
        send(&mut ws, bad);
        assert_eq!(
            closed(&mut ws, Duration::from_secs(3)),
            Some(1002),
            "after {bad:?}"
        );
    }
    // Invalid states, as the reference server: an event before CONNECT, a
    // second CONNECT to the same namespace.
    let (mut ws, _) = open();
    send(&mut ws, r#"42["message","x"]"#);
    assert_eq!(closed(&mut ws, Duration::from_secs(3)), Some(1002));
    let (mut ws, _) = open();
    send(&mut ws, "40");
    text(&mut ws);
    text(&mut ws);
    send(&mut ws, "40");
    assert_eq!(closed(&mut ws, Duration::from_secs(3)), Some(1002));
    // A binary frame that no packet announced.
    let (mut ws, _) = open();
    ws.send(Message::binary(vec![1u8])).unwrap();
    assert_eq!(closed(&mut ws, Duration::from_secs(3)), Some(1002));
}

#[test]
fn engine_close_packet_ends_the_session() {
    let (mut ws, _) = open();
    send(&mut ws, "1");
    closed(&mut ws, Duration::from_secs(3));
}
