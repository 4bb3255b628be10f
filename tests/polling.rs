//! Engine.IO long-polling against the real binary with two shards: chat
//! between polling and WebSocket clients, the upgrade to WebSocket from a
//! connection that may land on either shard, CORS, and hostile polling
//! clients (abandoned sessions, oversized POSTs, a flood of sessions
//! against the connection limits and the server's memory).
//!
//! Every request of `common::polling` opens its own TCP connection, so
//! the kernel (SO_REUSEPORT) spreads a session's requests over both
//! shards and the hand-over to the session's shard carries each one that
//! lands on the other.

mod common;

use std::time::{Duration, Instant};

use common::polling::{EXPIRY_WAIT, Poller, request};
use common::{TestServer, raw};
use serde_json::{Value, json};
use tungstenite::Message;

const MIB: u64 = 1 << 20;

fn send(content: &str, channel: &str) -> Value {
    json!({ "channelId": channel, "content": content })
}

#[test]
fn polling_and_websocket_clients_chat_across_two_shards() {
    let server = TestServer::start();
    let channel = server.create_channel("alice", "polling", "public", &[]);
    let mut alice = Poller::open(&server);
    assert_eq!(alice.open["upgrades"], json!(["websocket"]));
    alice.connect(&server.token("alice"));
    let ack = alice.call(1, "join_channel", json!({ "channelId": channel }));
    assert_eq!(ack["ok"], true, "{ack}");
    let mut bob = raw::connect(&server, "bob");
    raw::join(&mut bob, &channel);

    for i in 0..5 {
        let content = format!("from polling {i}");
        let ack = alice.call(10 + i, "send_message", send(&content, &channel));
        assert_eq!(ack["ok"], true, "{ack}");
        let (m, _) = common::chat::next_message(&mut bob, &channel);
        assert_eq!(
            (m["content"].as_str(), m["userId"].as_str()),
            (Some(&*content), Some("alice"))
        );
    }
    for i in 0..5 {
        let content = format!("from websocket {i}");
        let ack = raw::call(&mut bob, 10 + i, "send_message", send(&content, &channel));
        assert_eq!(ack["ok"], true, "{ack}");
        let m = alice.next_message(&channel);
        assert_eq!(m["content"], content.as_str());
    }
    // The session ends with an Engine.IO close; its sid is unknown after.
    assert_eq!(alice.post(&["1"]).status, 200);
    let deadline = Instant::now() + EXPIRY_WAIT;
    while alice.get().status != 400 {
        assert!(Instant::now() < deadline, "session still open");
    }
}

#[test]
fn upgrades_carry_sessions_over_whichever_shard_takes_the_websocket() {
    let server = TestServer::start();
    let channel = server.create_channel("owner", "upgrades", "public", &[]);
    let mut watcher = raw::connect(&server, "watcher");
    raw::join(&mut watcher, &channel);
    // Eight sessions: the WebSocket of some lands on the other shard.
    for i in 0..8u64 {
        let user = format!("user{i}");
        let mut p = Poller::open(&server);
        p.connect(&server.token(&user));
        let ack = p.call(1, "join_channel", json!({ "channelId": channel }));
        assert_eq!(ack["ok"], true, "{ack}");
        let url = format!("{}&sid={}", server.ws_url(), p.sid);
        let tcp = std::net::TcpStream::connect(server.addr()).unwrap();
        tcp.set_read_timeout(Some(raw::WAIT)).unwrap();
        let (mut ws, _) = tungstenite::client::client(url, tcp).expect("upgrade");
        ws.send(Message::text("2probe")).unwrap();
        assert_eq!(raw::recv_text(&mut ws), "3probe");
        ws.send(Message::text("5")).unwrap();
        // The same session on WebSocket: its namespace, its channel.
        let content = format!("after the upgrade {i}");
        ws.send(Message::text(format!(
            "422{}",
            json!(["send_message", send(&content, &channel)])
        )))
        .unwrap();
        loop {
            let t = raw::recv_text(&mut ws);
            if let Some(ack) = t.strip_prefix("432") {
                let ack: Value = serde_json::from_str(ack).unwrap();
                assert_eq!(ack[0]["ok"], true, "{ack}");
                break;
            }
        }
        let (m, _) = common::chat::next_message(&mut watcher, &channel);
        assert_eq!(
            (m["content"].as_str(), m["userId"].as_str()),
            (Some(&*content), Some(&*user))
        );
        assert_eq!(
            p.get().status,
            400,
            "polling is over for an upgraded session"
        );
    }
}

/// Browsers reuse a kept-alive connection for whatever goes to the same
/// origin: polling requests after REST calls on one connection are served
/// (and handed to the session's shard when it is the other one).
#[test]
fn polling_after_rest_on_one_kept_alive_connection() {
    use std::io::Write;
    let server = TestServer::start();
    let token = server.token("browser");
    for _ in 0..6 {
        let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(raw::WAIT)).unwrap();
        let mut send = |req: String| {
            s.write_all(req.as_bytes()).unwrap();
            common::polling::read_response(&mut s)
        };
        let health = send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".into());
        assert_eq!(health.status, 200, "{health:?}");
        let open =
            send("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n".into());
        assert_eq!(open.status, 200, "{open:?}");
        let open: Value = serde_json::from_str(&open.body[1..]).unwrap();
        let q = format!(
            "EIO=4&transport=polling&sid={}",
            open["sid"].as_str().unwrap()
        );
        let connect = format!("40{}", json!({ "token": token }));
        let post = send(format!(
            "POST /socket.io/?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{connect}",
            connect.len()
        ));
        assert_eq!((post.status, post.body.as_str()), (200, "ok"));
        let get = send(format!("GET /socket.io/?{q} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(get.body.starts_with("40{\"sid\""), "{get:?}");
        // And REST again on the same connection.
        let health = send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".into());
        assert_eq!(health.status, 200, "{health:?}");
    }
}

#[test]
fn polling_cors_follows_allowed_origins() {
    let server = TestServer::start_with(&[("ALLOWED_ORIGINS", "https://app.example")]);
    let q = "EIO=4&transport=polling";
    let r = request(
        server.port(),
        "GET",
        q,
        "Origin: https://app.example\r\n",
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let preflight = "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n";
    let r = request(server.port(), "OPTIONS", q, preflight, "");
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    // The REST API's policy: CORS_MAX_AGE_SECS, no credentials.
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // An error answer carries them too, so the page can read why.
    let r = request(
        server.port(),
        "GET",
        &format!("{q}&sid=AAAAAAAAAAAAAAAAAAAA.0"),
        "Origin: https://app.example\r\n",
        "",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("Session ID unknown"), "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let r = request(
        server.port(),
        "GET",
        q,
        "Origin: https://evil.example\r\n",
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = request(
        server.port(),
        "OPTIONS",
        q,
        "Origin: https://evil.example\r\n",
        "",
    );
    assert_eq!(r.status, 403, "{r:?}");
}

#[test]
fn oversized_posts_get_413_and_close_the_session() {
    let server = TestServer::start_with(&[("MAX_PAYLOAD", "65536")]);
    // Before CONNECT the smaller limit (MAX_PAYLOAD_BEFORE_CONNECT, 16 KiB).
    let p = Poller::open(&server);
    let r = p.post(&[&"4".repeat(20_000)]);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(p.get().status, 400);
    // Connected: MAX_PAYLOAD.
    let mut p = Poller::open(&server);
    p.connect(&server.token("big"));
    let big = format!("42{}", json!(["big", "x".repeat(20_000)]));
    assert_eq!(p.post(&[&big]).status, 200);
    // The whole body sent: the answer still arrives (the server reads and
    // drops the rest rather than resetting the connection under it).
    let r = p.post(&[&format!("42{}", json!(["big", "x".repeat(70_000)]))]);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(p.get().status, 400);
}

#[test]
fn a_session_that_pongs_without_polling_is_closed() {
    let server = TestServer::start_with(&[("PING_INTERVAL_MS", "300"), ("PING_TIMEOUT_MS", "300")]);
    let mut p = Poller::open(&server);
    p.connect(&server.token("pongs"));
    // Pongs, blindly, and never a GET: gone after a ping cycle.
    let deadline = Instant::now() + EXPIRY_WAIT;
    loop {
        let r = p.post(&["3"]);
        if r.status == 400 {
            break;
        }
        assert!(Instant::now() < deadline, "session still open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn polling_sessions_count_in_the_connection_limits() {
    let server = TestServer::start_with(&[("WS_MAX_CONNECTIONS_PER_IP", "4")]);
    let mut open = Vec::new();
    let mut refused = None;
    for _ in 0..10 {
        match Poller::try_open(server.port(), "") {
            Ok(p) => open.push(p),
            Err(r) => {
                refused = Some(r);
                break;
            }
        }
    }
    let r = refused.expect("a handshake refused at WS_MAX_CONNECTIONS_PER_IP");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(open.len() <= 4, "{} sessions open", open.len());
}

/// A flood of sessions that connect and never poll again: the server's
/// memory stays bounded while they live, and every one expires.
#[test]
fn abandoned_sessions_expire_and_memory_stays_bounded() {
    const SESSIONS: usize = 1000;
    let server = TestServer::start_with(&[
        ("PING_INTERVAL_MS", "1000"),
        ("PING_TIMEOUT_MS", "1000"),
        ("WS_CONNECTION_RATE_PER_IP", "100000"),
        ("WS_CONNECTION_BURST_PER_IP", "100000"),
        // 1000 sessions and the HTTP connection of the next request are
        // more than the default 1000 places of one address.
        ("WS_MAX_CONNECTIONS_PER_IP", "100000"),
    ]);
    let channel = server.create_channel("owner", "flood", "public", &[]);
    let token = server.token("flooder");
    let before = server.rss_kib();
    let mut sids = Vec::new();
    for _ in 0..SESSIONS {
        let p = Poller::open(&server);
        let join = format!("421{}", json!(["join_channel", { "channelId": channel }]));
        let connect = format!("40{}", json!({ "token": token }));
        assert_eq!(p.post(&[&connect, &join]).status, 200);
        sids.push(p);
    }
    let peak = server.rss_kib();
    let grown = peak.saturating_sub(before);
    println!("RSS {before} KiB -> {peak} KiB with {SESSIONS} idle polling sessions");
    assert!(grown < 64 * MIB / 1024, "RSS grew {grown} KiB");
    let deadline = Instant::now() + EXPIRY_WAIT;
    while server.gauge("chat_connections_active") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "abandoned sessions still counted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(sids[0].get().status, 400);
    assert_eq!(sids[SESSIONS - 1].get().status, 400);
}
