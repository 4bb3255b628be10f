//! Logs against the real binary at RUST_LOG=trace: no token and no JWT
//! secret in any line, and events during a connection carry its span
//! (conn, shard, and the user once authenticated).

mod common;

use std::time::{Duration, Instant};

use common::client::{Client, Connect};
use common::{TestServer, http_request};

#[test]
fn trace_logs_hold_no_token_or_secret_and_carry_the_connection_span() {
    let server = TestServer::start_with(&[("RUST_LOG", "trace")]);
    let good = server.token("alice");
    // A well-formed token signed with another secret.
    let bad = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": "mallory", "exp": common::now_secs() + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-server-secret-0123456789"),
    )
    .unwrap();

    let mut alice = Client::connect(&server, "alice");
    let lobby = server.create_channel("alice", "lobby", "public", &[]);
    assert_eq!(
        alice.call("join_channel", serde_json::json!({"channelId": lobby}))["ok"],
        true
    );
    match Client::try_connect(&server, &bad) {
        Connect::Refused(_) => {}
        Connect::Ok(_) => panic!("a token signed with another secret was accepted"),
    }
    // The token in the query string and in REST headers too.
    let ws = Client::open(&server, &format!("&token={good}"));
    drop(ws);
    let r = http_request(server.port(), "GET", "/api/v1/channels", Some(&bad), None).unwrap();
    assert_eq!(r.status, 401);
    let r = http_request(server.port(), "GET", "/api/v1/channels", Some(&good), None).unwrap();
    assert_eq!(r.status, 200);
    drop(alice);

    // Wait until alice's connection has closed and said so.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = server.log();
        if log.contains("connection closed") && log.contains("alice") {
            break log;
        }
        assert!(Instant::now() < deadline, "no close logged:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(log.contains("TRACE"), "trace logging is not on:\n{log}");
    for (what, secret) in [
        ("the valid token", good.as_str()),
        ("the refused token", bad.as_str()),
        ("the JWT secret", server.secret()),
    ] {
        // Also the token's signature alone, and its hex form (how frame
        // payloads are dumped).
        let signature = secret.rsplit('.').next().unwrap();
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for needle in [secret, signature, &hex[..hex.len().min(64)]] {
            assert!(!log.contains(needle), "{what} is in the log");
        }
    }
    // Events logged during a connection carry its span.
    let closed = log
        .lines()
        .find(|l| l.contains("connection closed") && l.contains("alice"))
        .unwrap();
    assert!(
        closed.contains("conn{conn=")
            && closed.contains("shard=")
            && closed.contains("user=\"alice\"}"),
        "{closed}"
    );
    // Before the CONNECT authenticates, the span has no user yet.
    let refused = log
        .lines()
        .find(|l| l.contains("connect refused"))
        .expect("the refused CONNECT is logged at debug");
    assert!(
        refused.contains("conn{conn=") && !refused.contains("user="),
        "{refused}"
    );
}
