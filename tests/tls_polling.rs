//! Engine.IO long-polling over native TLS with two shards: a request that
//! the kernel gives to the shard not holding its session is handed over
//! with its TLS session (no new handshake), so polling sessions, their
//! upgrade to WebSocket and a kept-alive connection carrying requests for
//! sessions of both shards all work.
//!
//! Every request of `common::polling` opens its own TLS connection, so
//! the kernel (SO_REUSEPORT) spreads a session's requests over both
//! shards.

mod common;

use std::io::Write;
use std::sync::Arc;

use common::polling::{Poller, read_response};
use common::tls::{Ca, Tls, dial, start_tls, tls_connect};
use common::{TestServer, raw};
use rustls::ClientConfig;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// A server with TLS on its port (two shards, the harness's default) and
/// a client configuration trusting its certificate.
fn tls_server() -> (TestServer, Arc<ClientConfig>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let config = ca.client_config();
    ca.leaf(dir.path(), "gatrix test", 1);
    let server = start_tls(dir.path(), &config);
    (server, config, dir)
}

/// A polling session over TLS, connected to `/` as `user`.
fn open(server: &TestServer, config: &Arc<ClientConfig>, user: &str) -> Poller {
    let mut p = Poller::try_open_via(dial(config.clone()), server.port(), "")
        .unwrap_or_else(|r| panic!("handshake: {r:?}"));
    let reply = p.connect(&server.token(user));
    assert!(reply["sid"].is_string(), "{reply}");
    p
}

/// The shard holding a polling session: its sid ends with `.<shard>`.
fn shard_of(sid: &str) -> &str {
    sid.rsplit_once('.').expect("a sid with its shard").1
}

/// The ack of a join to a channel that does not exist: a round trip
/// through the chat handler.
fn assert_not_found(ack: &Value) {
    assert_eq!(ack["ok"], false, "{ack}");
    assert!(ack.to_string().contains("NOT_FOUND"), "{ack}");
}

/// The next text frame that is not an Engine.IO ping (pings are answered).
fn next_text(ws: &mut WebSocket<Tls>) -> String {
    loop {
        match ws.read().expect("read a frame") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) => return t.to_string(),
            _ => {}
        }
    }
}

#[test]
fn tls_polling_sessions_are_served_whichever_shard_takes_each_request() {
    let (server, config, _dir) = tls_server();
    for i in 0..8u64 {
        let mut p = open(&server, &config, &format!("user{i}"));
        for id in 1..=3 {
            let ack = p.call(
                id,
                "join_channel",
                json!({ "channelId": "no-such-channel" }),
            );
            assert_not_found(&ack);
        }
        // The Engine.IO close ends the session.
        assert_eq!(p.post(&["1"]).status, 200);
    }
}

#[test]
fn tls_upgrades_from_polling_land_on_either_shard() {
    let (server, config, _dir) = tls_server();
    // Eight sessions: the WebSocket of some lands on the other shard.
    for i in 0..8u64 {
        let mut p = open(&server, &config, &format!("user{i}"));
        assert_not_found(&p.call(1, "join_channel", json!({ "channelId": "none" })));
        let tls = tls_connect(server.port(), &config).unwrap();
        tls.sock.set_read_timeout(Some(raw::WAIT)).unwrap();
        let url = format!(
            "wss://localhost:{}/socket.io/?EIO=4&transport=websocket&sid={}",
            server.port(),
            p.sid
        );
        let (mut ws, _) = tungstenite::client::client(url, tls).expect("upgrade");
        ws.send(Message::text("2probe")).unwrap();
        assert_eq!(next_text(&mut ws), "3probe");
        ws.send(Message::text("5")).unwrap();
        // The same session on WebSocket: its namespace answers.
        ws.send(Message::text(format!(
            "422{}",
            json!(["join_channel", { "channelId": "none" }])
        )))
        .unwrap();
        loop {
            let t = next_text(&mut ws);
            if let Some(ack) = t.strip_prefix("432") {
                let ack: Value = serde_json::from_str(ack).unwrap();
                assert_not_found(&ack[0]);
                break;
            }
        }
        assert_eq!(
            p.get().status,
            400,
            "polling is over for an upgraded session"
        );
    }
}

/// A browser keeps one connection per origin: over TLS, requests for
/// sessions of both shards on it in turn are handed back and forth, the
/// TLS session going with the socket each time.
#[test]
fn one_kept_alive_tls_connection_serves_sessions_of_both_shards() {
    let (server, config, _dir) = tls_server();
    // A session on each shard (the handshake's connection picks it).
    let mut sessions: Vec<Poller> = Vec::new();
    for i in 0..64 {
        let p = open(&server, &config, &format!("user{i}"));
        if sessions
            .iter()
            .all(|s| shard_of(&s.sid) != shard_of(&p.sid))
        {
            sessions.push(p);
        }
        if sessions.len() == 2 {
            break;
        }
    }
    assert_eq!(sessions.len(), 2, "64 sessions all on one shard");

    let mut tls = tls_connect(server.port(), &config).unwrap();
    tls.sock.set_read_timeout(Some(raw::WAIT)).unwrap();
    for round in 0..4u64 {
        for p in &sessions {
            let q = format!("EIO=4&transport=polling&sid={}", p.sid);
            let id = 10 + round;
            let call = format!("42{id}{}", json!(["join_channel", { "channelId": "none" }]));
            write!(
                tls,
                "POST /socket.io/?{q} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{call}",
                call.len()
            )
            .unwrap();
            let post = read_response(&mut tls);
            assert_eq!((post.status, post.body.as_str()), (200, "ok"), "{post:?}");
            write!(
                tls,
                "GET /socket.io/?{q} HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            .unwrap();
            let get = read_response(&mut tls);
            assert_eq!(get.status, 200, "{get:?}");
            let ack = get
                .body
                .split('\x1e')
                .find_map(|p| p.strip_prefix(&format!("43{id}")))
                .unwrap_or_else(|| panic!("no ack {id} in {get:?}"));
            let ack: Value = serde_json::from_str(ack).unwrap();
            assert_not_found(&ack[0]);
        }
    }
}
