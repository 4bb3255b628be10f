//! Hostile and broken clients, with a raw WebSocket: malformed packets,
//! oversized frames, the unsupported polling transport, and a subscriber
//! that stops reading. Each test runs its own server (two shards) and
//! creates the channels it uses through the REST API first.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};
use socket2::{Domain, Protocol, Socket, Type};
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use common::raw::{
    Ended, WAIT, Ws, as_event, as_event_args, call, connect, is_timeout, join, open, open_on,
    recv_ack, recv_text, send_text, sio_connect, sio_connect_with, until_closed,
};
use common::{TestServer, http_get};

/// The server survived: it answers `/health` and a new client can join.
fn assert_healthy(server: &TestServer) {
    let health = http_get(server.port(), "/health").expect("GET /health");
    assert_eq!(health.status, 200, "server unhealthy after bad input");
    let channel = server.create_channel("owner", "still-works", "public", &[]);
    let mut ws = connect(server, "after-bad-input");
    join(&mut ws, &channel);
}

#[test]
fn malformed_packets_close_the_connection() {
    let server = TestServer::start();
    let channel = server.create_channel("owner", "malformed", "public", &[]);
    let cases: &[(&str, Message)] = &[
        ("unknown Socket.IO packet type", Message::text("49")),
        ("empty Socket.IO packet", Message::text("4")),
        (
            "event payload not an array",
            Message::text(r#"42{"channelId":"c"}"#),
        ),
        ("event without a name", Message::text("42[]")),
        ("event name an object", Message::text(r#"42[{"a":1},{}]"#)),
        (
            "truncated JSON",
            Message::text(r#"42["send_message",{"channelId":"#),
        ),
        (
            "garbage for an ack id",
            Message::text(r#"42abc["join_channel",{}]"#),
        ),
        ("unknown Engine.IO packet type", Message::text("9hello")),
        (
            "binary frame outside a binary packet",
            Message::binary(vec![1, 2, 3]),
        ),
    ];
    for (what, packet) in cases {
        let mut ws = connect(&server, "mallory");
        join(&mut ws, &channel);
        ws.send(packet.clone()).expect("send malformed packet");
        let (ended, _) = until_closed(&mut ws);
        println!("{what}: {ended:?}");
    }

    assert_healthy(&server);
}

/// Packets that are well-formed but out of order close the connection, as
/// in the reference server (its `Client.ondecoded` "invalid state" branch).
#[test]
fn out_of_state_packets_close_the_connection() {
    let server = TestServer::start();

    let channel = server.create_channel("owner", "c", "public", &[]);
    let (mut ws, _) = open(&server);
    send_text(
        &mut ws,
        format!("42{}", json!(["join_channel", { "channelId": channel }])),
    );
    let (ended, _) = until_closed(&mut ws);
    println!("event before CONNECT: {ended:?}");

    let token = server.token("twice");
    let mut ws = connect(&server, "twice");
    send_text(&mut ws, format!("40{}", json!({ "token": token })));
    let (ended, _) = until_closed(&mut ws);
    println!("second CONNECT to /: {ended:?}");

    assert_healthy(&server);
}

#[test]
fn message_over_max_payload_closes_with_1009() {
    let server = TestServer::start_with(&[("MAX_PAYLOAD", "4096"), ("MAX_MESSAGE_LENGTH", "1000")]);
    let (_, handshake) = open(&server);
    assert_eq!(handshake["maxPayload"], 4096, "OPEN packet: {handshake}");

    // Just under the limit is fine.
    let big = server.create_channel("owner", "big", "public", &[]);
    let mut ws = connect(&server, "big");
    join(&mut ws, &big);
    let content = "x".repeat(1000);
    let ack = call(
        &mut ws,
        2,
        "send_message",
        json!({ "channelId": big, "content": content }),
    );
    assert_eq!(ack["ok"], true, "send under MAX_PAYLOAD: {ack}");

    let oversized = format!(
        "42{}",
        json!(["send_message", { "channelId": big, "content": "x".repeat(8192) }])
    );
    let fragment = |data: &str, opcode, is_final| {
        Message::Frame(Frame::message(data.as_bytes().to_vec(), opcode, is_final))
    };
    let cases: Vec<(&str, Vec<Message>)> = vec![
        ("text frame", vec![Message::text(oversized.clone())]),
        ("binary frame", vec![Message::binary(vec![b'x'; 8192])]),
        (
            // Each fragment is under the limit; the message is not.
            "fragmented text message",
            vec![
                fragment(&oversized[..3000], OpCode::Data(Data::Text), false),
                fragment(&oversized[3000..6000], OpCode::Data(Data::Continue), false),
                fragment(&oversized[6000..], OpCode::Data(Data::Continue), true),
            ],
        ),
    ];
    for (what, frames) in cases {
        let mut ws = connect(&server, "big");
        join(&mut ws, &big);
        for frame in frames {
            // The server may close before the last fragment is written.
            if ws.send(frame).is_err() {
                break;
            }
        }
        match until_closed(&mut ws).0 {
            Ended::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Size, "{what}: {frame:?}");
            }
            ended => panic!("{what}: expected close code 1009, got {ended:?}"),
        }
    }

    assert_healthy(&server);
}

#[test]
fn polling_transport_is_refused_with_400() {
    let server = TestServer::start();
    for path in [
        "/socket.io/?EIO=4&transport=polling",
        "/socket.io/?EIO=4&transport=polling&t=Nx3kq2a",
    ] {
        let response = http_get(server.port(), path).expect("GET polling");
        assert_eq!(response.status, 400, "{path}: {response:?}");
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{path}: content-type {content_type:?}"
        );
        let body: Value = serde_json::from_str(&response.body).expect("JSON body");
        assert_eq!(body, json!({ "code": 0, "message": "Transport unknown" }));
    }
}

/// Content of each flood message, a frame of about 4 KB.
const FLOOD_CONTENT_BYTES: usize = 4000;
/// Frames the slow client's queue may hold (OUTBOUND_QUEUE_MESSAGES).
const SLOW_QUEUE_FRAMES: u64 = 64;

/// How many messages to flood, and at which count of the fast subscriber
/// the slow client starts reading again.
///
/// A client that stops reading still absorbs a lot: the server's socket
/// send buffer autotunes up to tcp_wmem's maximum (4 MiB here) even when
/// the client advertises a tiny window. The slow client wakes well after
/// that plus its queue and the writer's buffers were full (so the queue has
/// overflowed), and soon enough that the server is still trying to write
/// the close frame behind the data the kernel holds. With 4 MiB that is
/// 2000 messages, waking at 1400.
fn flood_plan() -> (u64, u64) {
    let send_buffer_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|wmem| wmem.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(4 << 20);
    let frame = FLOOD_CONTENT_BYTES as u64 + 60;
    let absorbed = send_buffer_max + SLOW_QUEUE_FRAMES * frame + (1 << 20);
    let wake_at = (absorbed / frame).max(1400);
    (wake_at + 600, wake_at)
}

/// A TCP connection whose receive buffer is tiny, so that little of what
/// the server sends is absorbed on the client's side.
fn connect_with_tiny_rcvbuf(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("TCP connect");
    socket.into()
}

/// Reads `count` `message` events of `channel` and returns their seqs,
/// calling `progress` with the count after each.
fn receive_seqs(ws: &mut Ws, channel: &str, count: u64, progress: impl Fn(u64)) -> Vec<u64> {
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < count {
        if let Some((name, data)) = as_event(&recv_text(ws))
            && name == "message"
            && data["channelId"] == channel
        {
            seqs.push(data["seq"].as_u64().expect("numeric seq"));
            progress(seqs.len() as u64);
        }
    }
    seqs
}

#[test]
fn slow_consumer_is_disconnected_with_4008() {
    let server = TestServer::start_with(&[
        ("OUTBOUND_QUEUE_MESSAGES", &SLOW_QUEUE_FRAMES.to_string()),
        ("MAX_MESSAGE_LENGTH", &FLOOD_CONTENT_BYTES.to_string()),
        ("RATE_LIMIT_PER_SEC", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
    ]);
    let channel = server.create_channel("owner", "flood", "public", &[]);
    let (flood, slow_wakes_at) = flood_plan();

    let (mut slow, _) = open_on(connect_with_tiny_rcvbuf(server.addr()), &server);
    sio_connect(&mut slow, &server.token("slow"));
    join(&mut slow, &channel);
    let (wake_slow, slow_woken) = std::sync::mpsc::channel();
    let slow = thread::spawn(move || {
        // Stops reading until the flood is well past what it can buffer.
        slow_woken.recv().expect("wake-up from the fast subscriber");
        until_closed(&mut slow)
    });

    let mut fast = connect(&server, "fast");
    join(&mut fast, &channel);
    let fast_channel = channel.clone();
    let fast = thread::spawn(move || {
        receive_seqs(&mut fast, &fast_channel, flood, |received| {
            if received == slow_wakes_at {
                let _ = wake_slow.send(());
            }
        })
    });

    // The sender keeps up to WINDOW sends in flight and reads its own
    // broadcasts as it goes, so that it is never a slow consumer itself.
    const WINDOW: u64 = 32;
    let mut sender = connect(&server, "sender");
    join(&mut sender, &channel);
    let content = "y".repeat(FLOOD_CONTENT_BYTES);
    let mut sent = 0;
    while sent < flood {
        let batch = WINDOW.min(flood - sent);
        for id in sent..sent + batch {
            let event = json!(["send_message", { "channelId": channel, "content": content }]);
            send_text(&mut sender, format!("42{id}{event}"));
        }
        for _ in 0..batch {
            let (_, ack) = recv_ack(&mut sender);
            assert_eq!(ack["ok"], true, "send_message: {ack}");
        }
        sent += batch;
    }

    let seqs = fast.join().expect("fast subscriber");
    let expected: Vec<u64> = (1..=flood).collect();
    assert!(
        seqs == expected,
        "the fast subscriber missed or reordered messages"
    );

    match slow.join().expect("slow client") {
        (Ended::Close(Some(frame)), received) => {
            println!("slow client: {received} frames, then {frame:?}");
            assert_eq!(frame.code, CloseCode::Library(4008), "{frame:?}");
            assert_eq!(frame.reason.as_str(), "slow consumer");
            assert!(
                (received as u64) < flood,
                "the slow client got all {received} messages"
            );
        }
        (ended, received) => {
            panic!("expected close 4008 after {received} frames, got {ended:?}")
        }
    }

    assert_healthy(&server);
}

/// Sends `count` `send_message` events at once, with ack ids from `first_id`.
fn send_burst(ws: &mut Ws, channel: &str, first_id: u64, count: u64) {
    for id in first_id..first_id + count {
        let event = json!(["send_message", { "channelId": channel, "content": format!("m{id}") }]);
        send_text(ws, format!("42{id}{event}"));
    }
}

#[test]
fn rate_limit_rejects_then_disconnects() {
    const BURST: u64 = 5;
    const DISCONNECT_AFTER: u64 = 10;
    let server = TestServer::start_with(&[
        ("RATE_LIMIT_PER_SEC", "2"),
        ("RATE_LIMIT_BURST", "5"),
        ("RATE_LIMIT_DISCONNECT_AFTER", "10"),
    ]);

    // A client over its burst is told RATE_LIMITED and recovers after a pause.
    let limits = server.create_channel("owner", "limits", "public", &[]);
    let mut polite = connect(&server, "polite");
    join(&mut polite, &limits);
    send_burst(&mut polite, &limits, 100, BURST);
    let codes: Vec<String> = (0..BURST)
        .map(|_| {
            let (_, ack) = recv_ack(&mut polite);
            match ack["ok"].as_bool() {
                Some(true) => "ok".to_owned(),
                _ => ack["error"]["code"].as_str().unwrap_or("?").to_owned(),
            }
        })
        .collect();
    assert!(
        codes.iter().any(|code| code == "RATE_LIMITED"),
        "no RATE_LIMITED among {codes:?} (the join and {BURST} sends exceed a burst of {BURST})"
    );
    assert!(
        codes
            .iter()
            .all(|code| code == "ok" || code == "RATE_LIMITED"),
        "{codes:?}"
    );
    thread::sleep(Duration::from_millis(1500));
    send_burst(&mut polite, &limits, 200, 1);
    let (id, ack) = recv_ack(&mut polite);
    assert_eq!(
        (id, &ack["ok"]),
        (200, &json!(true)),
        "after a pause: {ack}"
    );

    // A client that keeps sending regardless is disconnected.
    let mut flooder = connect(&server, "flooder");
    join(&mut flooder, &limits);
    let sent = BURST + DISCONNECT_AFTER + 20;
    send_burst(&mut flooder, &limits, 1000, sent);
    let mut rejected = 0;
    loop {
        match flooder.read() {
            Ok(Message::Text(text)) if text.as_str().starts_with("43") => {
                if text.as_str().contains("RATE_LIMITED") {
                    rejected += 1;
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                panic!("still connected after {rejected} RATE_LIMITED acks and {WAIT:?}")
            }
            Err(_) => break,
        }
    }
    assert!(
        (1..=DISCONNECT_AFTER).contains(&rejected),
        "disconnected after {rejected} RATE_LIMITED acks (limit {DISCONNECT_AFTER})"
    );

    assert_healthy(&server);
}

/// Recovery claims that are malformed, unknown, or another user's are not
/// honoured: the connection is accepted as a fresh session (new pid, no
/// channels, nothing replayed), as the reference server does.
#[test]
fn foreign_and_malformed_recovery_claims_get_a_fresh_session() {
    let server = TestServer::start();
    let channel = server.create_channel("owner", "claims", "public", &[]);

    // Alice's session: joined, one message received, then the transport
    // drops (no `41`), so the server keeps the session.
    let (mut alice, _) = open(&server);
    let connected = sio_connect_with(&mut alice, &json!({ "token": server.token("alice") }));
    let pid = connected["pid"]
        .as_str()
        .unwrap_or_else(|| panic!("CONNECT reply without a pid: {connected}"))
        .to_owned();
    join(&mut alice, &channel);
    let mut bob = connect(&server, "bob");
    join(&mut bob, &channel);
    let ack = call(
        &mut bob,
        2,
        "send_message",
        json!({ "channelId": channel, "content": "for members" }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    let offset = loop {
        if let Some((name, args)) = as_event_args(&recv_text(&mut alice))
            && name == "message"
        {
            break args[1].clone();
        }
    };
    assert!(offset.is_string(), "message offset: {offset}");
    drop(alice);
    thread::sleep(Duration::from_millis(100));

    let claims = [
        ("mallory", json!({ "pid": pid, "offset": "0" })),
        ("mallory", json!({ "pid": pid, "offset": offset })),
        ("alice", json!({ "pid": 42, "offset": offset })),
        (
            "alice",
            json!({ "pid": pid.clone() + "x", "offset": offset }),
        ),
        ("alice", json!({ "pid": "", "offset": "" })),
        ("alice", json!({ "pid": [pid], "offset": {"x": 1} })),
        (
            "alice",
            json!({ "pid": "x".repeat(100_000), "offset": "-1" }),
        ),
    ];
    for (sub, claim) in claims {
        let mut auth = claim.clone();
        auth["token"] = json!(server.token(sub));
        let (mut ws, _) = open(&server);
        let reply = sio_connect_with(&mut ws, &auth);
        assert!(reply["pid"].is_string(), "{sub} {claim}: {reply}");
        assert_ne!(
            reply["pid"],
            json!(pid),
            "{sub} {claim}: got alice's session"
        );
        let ack = call(
            &mut ws,
            3,
            "send_message",
            json!({ "channelId": channel, "content": "am I in?" }),
        );
        assert_eq!(
            ack["error"]["code"], "FORBIDDEN",
            "{sub} {claim}: channels restored: {ack}"
        );
        // Nothing was replayed: the only frames so far were the reply and
        // the ack, and a new message of the channel does not arrive.
        let ack = call(
            &mut bob,
            4,
            "send_message",
            json!({ "channelId": channel, "content": "still for members" }),
        );
        assert_eq!(ack["ok"], true, "{ack}");
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => assert!(
                    !t.as_str().starts_with(r#"42["message""#),
                    "{sub} {claim}: received {t}"
                ),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => break,
                Err(e) => panic!("{sub} {claim}: {e}"),
            }
        }
    }

    assert_healthy(&server);
}
