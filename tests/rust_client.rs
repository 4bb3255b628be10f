//! The chat contract driven by a raw Rust Socket.IO client (tungstenite,
//! frame by frame) against the real binary with 2 shards.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::client::{Client, Connect, read_text};
use serde_json::{Value, json};
use tungstenite::Message;

const SEC: Duration = Duration::from_secs(5);

#[test]
fn join_send_and_receive_across_shards() {
    let server = TestServer::start();
    let lobby = server.create_channel("owner", "lobby", "public", &[]);
    let mut alice = Client::connect(&server, "alice");
    let join = alice.call("join_channel", json!({"channelId": lobby}));
    assert_eq!(
        (&join["ok"], &join["channel"]["id"], &join["lastSeq"]),
        (&json!(true), &json!(lobby), &json!(0)),
        "{join}"
    );
    assert_eq!(join["channel"]["type"], "public");

    // Six listeners: with two shards, some land on alice's shard and some
    // on the other (SO_REUSEPORT spreads them); every one must receive.
    let mut listeners: Vec<Client> = (0..6)
        .map(|i| Client::connect(&server, &format!("l{i}")))
        .collect();
    for l in &mut listeners {
        assert_eq!(
            l.call("join_channel", json!({"channelId": lobby}))["ok"],
            true
        );
    }
    let ack = alice.call(
        "send_message",
        json!({"channelId": lobby, "content": "hello", "replyTo": "42"}),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    let m = &ack["message"];
    assert!(
        m["id"].as_str().is_some_and(|id| id.parse::<u64>().is_ok()),
        "{m}"
    );
    assert_eq!(
        (m["seq"].clone(), m["userId"].clone()),
        (json!(1), json!("alice"))
    );
    assert_eq!(
        (m["type"].clone(), m["replyTo"].clone()),
        (json!("text"), json!("42"))
    );
    let created = m["createdAt"].as_str().unwrap();
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "{created}"
    );

    assert_eq!(
        alice.event("message", SEC),
        *m,
        "the sender gets the broadcast too"
    );
    for l in &mut listeners {
        assert_eq!(l.event("message", SEC), *m);
    }
    // A late joiner learns where the channel is.
    let mut late = Client::connect(&server, "late");
    assert_eq!(
        late.call("join_channel", json!({"channelId": lobby}))["lastSeq"],
        1
    );
}

#[test]
fn quick_sends_arrive_gapless_and_in_order() {
    let server = TestServer::start();
    let fast = server.create_channel("owner", "fast", "public", &[]);
    let mut a = Client::connect(&server, "a");
    let mut bs: Vec<Client> = (0..3)
        .map(|i| Client::connect(&server, &format!("b{i}")))
        .collect();
    for c in bs.iter_mut().chain(std::iter::once(&mut a)) {
        c.call("join_channel", json!({"channelId": fast}));
    }
    for i in 0..50 {
        a.emit(
            "send_message",
            json!({"channelId": fast, "content": format!("m{i}")}),
        );
    }
    for b in &mut bs {
        for i in 0..50 {
            let m = b.event("message", SEC);
            assert_eq!(
                (m["seq"].as_u64(), m["content"].as_str()),
                (Some(i + 1), Some(format!("m{i}").as_str()))
            );
        }
    }
}

#[test]
fn client_message_id_is_deduplicated() {
    let server = TestServer::start();
    let d = server.create_channel("owner", "d", "public", &[]);
    let mut a = Client::connect(&server, "a");
    let mut b = Client::connect(&server, "b");
    a.call("join_channel", json!({"channelId": d}));
    b.call("join_channel", json!({"channelId": d}));
    let first = a.call(
        "send_message",
        json!({"channelId": d, "content": "x", "clientMessageId": "c-1"}),
    );
    let again = a.call(
        "send_message",
        json!({"channelId": d, "content": "x", "clientMessageId": "c-1"}),
    );
    assert_eq!(first, again);
    // Another user may use the same clientMessageId.
    let other = b.call(
        "send_message",
        json!({"channelId": d, "content": "y", "clientMessageId": "c-1"}),
    );
    assert_eq!(other["message"]["seq"], 2);
    assert_eq!(b.event("message", SEC)["seq"], 1);
    assert_eq!(
        b.event("message", SEC)["seq"],
        2,
        "the retry was not broadcast"
    );
}

#[test]
fn errors_have_codes_with_and_without_ack() {
    let server = TestServer::start_with(&[
        ("MAX_MESSAGE_LENGTH", "10"),
        ("MAX_CHANNELS_PER_CONNECTION", "2"),
    ]);
    let x = server.create_channel("owner", "x", "public", &[]);
    let y = server.create_channel("owner", "y", "public", &[]);
    let z = server.create_channel("owner", "z", "public", &[]);
    let mut a = Client::connect(&server, "a");
    let code = |v: Value| v["error"]["code"].as_str().unwrap().to_owned();
    assert_eq!(
        code(a.call("send_message", json!({"channelId": x, "content": "hi"}))),
        "FORBIDDEN"
    );
    a.call("join_channel", json!({"channelId": x}));
    assert_eq!(
        code(a.call(
            "send_message",
            json!({"channelId": x, "content": "01234567890"})
        )),
        "PAYLOAD_TOO_LARGE"
    );
    assert_eq!(
        code(a.call("send_message", json!({"channelId": x}))),
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        code(a.call("join_channel", json!({"channelId": 1.5}))),
        "INVALID_PAYLOAD"
    );
    assert_eq!(code(a.call("no_such_event", json!({}))), "NOT_FOUND");
    a.call("join_channel", json!({"channelId": y}));
    assert_eq!(
        code(a.call("join_channel", json!({"channelId": z}))),
        "FORBIDDEN"
    );
    a.emit(
        "send_message",
        json!({"channelId": "nope", "content": "hi"}),
    );
    assert_eq!(a.event("error", SEC)["code"], "FORBIDDEN");
}

#[test]
fn typing_is_relayed_and_expires() {
    let server = TestServer::start_with(&[("TYPING_TIMEOUT_MS", "600")]);
    let t = server.create_channel("owner", "t", "public", &[]);
    let mut a = Client::connect(&server, "a");
    let mut b = Client::connect(&server, "b");
    a.call("join_channel", json!({"channelId": t}));
    b.call("join_channel", json!({"channelId": t}));
    assert_eq!(
        a.call("typing_start", json!({"channelId": t})),
        json!({"ok": true})
    );
    assert_eq!(
        b.event("typing", SEC),
        json!({"channelId": t, "userId": "a", "isTyping": true})
    );
    a.call("typing_stop", json!({"channelId": t}));
    assert_eq!(b.event("typing", SEC)["isTyping"], false);
    a.call("typing_start", json!({"channelId": t}));
    assert_eq!(b.event("typing", SEC)["isTyping"], true);
    let start = Instant::now();
    assert_eq!(
        b.event("typing", SEC)["isTyping"],
        false,
        "expires without typing_stop"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert!(
        a.try_event("typing", Duration::from_millis(200)).is_none(),
        "the typer is not told"
    );
}

#[test]
fn joins_leaves_and_presence() {
    let server = TestServer::start();
    let p = server.create_channel("owner", "p", "public", &[]);
    let mut a = Client::connect(&server, "a");
    let own = a.event("presence_update", SEC);
    assert_eq!(
        (own["userId"].as_str(), own["status"].as_str()),
        (Some("a"), Some("online")),
        "a user's own connections hear it"
    );
    a.call("join_channel", json!({"channelId": p}));
    let mut b = Client::connect(&server, "b");
    b.call("join_channel", json!({"channelId": p}));
    assert_eq!(
        a.event("user_joined", SEC),
        json!({"channelId": p, "userId": "b"})
    );
    // A second connection of b: no second user_joined.
    let mut b2 = Client::connect(&server, "b");
    b2.call("join_channel", json!({"channelId": p}));
    drop(b2);
    assert!(
        a.try_event("user_joined", Duration::from_millis(300))
            .is_none()
    );
    assert!(
        a.try_event("user_left", Duration::from_millis(300))
            .is_none()
    );
    // b's last connection goes: user_left and offline.
    drop(b);
    assert_eq!(
        a.event("user_left", SEC),
        json!({"channelId": p, "userId": "b"})
    );
    let is_b = |v: &Value| v["userId"] == "b";
    let off = a.event_where("presence_update", SEC, is_b);
    assert_eq!(
        (off["userId"].as_str(), off["status"].as_str()),
        (Some("b"), Some("offline"))
    );
    assert!(off["lastSeen"].as_str().is_some_and(|s| s.ends_with('Z')));
    // b comes back without joining: its channels hear it is online.
    let _b3 = Client::connect(&server, "b");
    let on = a.event_where("presence_update", SEC, is_b);
    assert_eq!(
        (on["userId"].as_str(), on["status"].as_str()),
        (Some("b"), Some("online"))
    );
}

#[test]
fn bad_tokens_and_namespaces_are_refused() {
    let server = TestServer::start();
    let refused = |reason: &str| {
        format!(
            r#"44{{"message":"unauthorized","data":{{"code":"UNAUTHORIZED","reason":"{reason}"}}}}"#
        )
    };
    let forged = {
        let t = server.token("mallory");
        let (head, sig) = t.rsplit_once('.').unwrap();
        format!("{head}.{}", sig.chars().rev().collect::<String>())
    };
    let expired = server.token_with("old", None, common::now_secs() - 3600);
    let none = {
        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let exp = common::now_secs() + 3600;
        format!(
            "{}.{}.",
            b64(json!({"alg": "none", "typ": "JWT"})),
            b64(json!({"sub": "eve", "exp": exp}))
        )
    };
    for (what, token, reason) in [
        ("forged", forged, "TOKEN_INVALID"),
        ("expired", expired, "TOKEN_EXPIRED"),
        ("alg none", none, "TOKEN_WRONG_ALGORITHM"),
        ("garbage", "x".into(), "TOKEN_INVALID"),
    ] {
        match Client::try_connect(&server, &token) {
            Connect::Refused(r) => assert_eq!(r, refused(reason), "{what}"),
            Connect::Ok(_) => panic!("{what} token accepted"),
        }
    }
    // Token in the query string instead of the auth payload.
    let mut ws = Client::open(&server, &format!("&token={}", server.token("q")));
    read_text(&mut ws);
    ws.send(Message::text("40")).unwrap();
    assert!(read_text(&mut ws).starts_with("40{\"sid\""));
    ws.send(Message::text("40/admin,")).unwrap();
    // The connection's own presence_update may come first.
    let refusal = loop {
        let t = read_text(&mut ws);
        if t.starts_with("44") {
            break t;
        }
    };
    assert_eq!(refusal, r#"44/admin,{"message":"Invalid namespace"}"#);
}

#[test]
fn sustained_flood_is_rate_limited_then_disconnected() {
    let server = TestServer::start_with(&[
        ("RATE_LIMIT_PER_SEC", "5"),
        ("RATE_LIMIT_BURST", "5"),
        ("RATE_LIMIT_DISCONNECT_AFTER", "20"),
    ]);
    let x = server.create_channel("owner", "x", "public", &[]);
    let mut a = Client::connect(&server, "a");
    for _ in 0..5 {
        assert_eq!(
            a.call("typing_stop", json!({"channelId": x}))["error"]["code"],
            "FORBIDDEN"
        );
    }
    assert_eq!(
        a.call("typing_stop", json!({"channelId": x}))["error"]["code"],
        "RATE_LIMITED"
    );
    for _ in 0..40 {
        a.emit("typing_stop", json!({"channelId": x}));
    }
    assert_eq!(a.close_code(SEC), Some(4029));
    // Others are unaffected.
    let mut b = Client::connect(&server, "b");
    assert_eq!(b.call("join_channel", json!({"channelId": x}))["ok"], true);
}

#[test]
fn connection_limits_answer_503() {
    let server = TestServer::start_with(&[("WS_MAX_CONNECTIONS_PER_IP", "2")]);
    let _a = Client::connect(&server, "a");
    let _b = Client::connect(&server, "b");
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
        server.port()
    );
    match tungstenite::connect(url) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("third connection from one IP: {:?}", other.map(|_| ())),
    }
}

#[test]
fn graceful_shutdown_closes_with_1001_and_exits_0() {
    let server = TestServer::start();
    let mut clients: Vec<Client> = (0..4)
        .map(|i| Client::connect(&server, &format!("u{i}")))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let codes: Vec<Option<u16>> = clients
            .iter_mut()
            .map(|c| c.close_code(Duration::from_secs(10)))
            .collect();
        tx.send(codes).unwrap();
    });
    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
    waiter.join().unwrap();
    assert_eq!(rx.recv().unwrap(), vec![Some(1001); 4]);
}
