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

/// A flood of refused upgrades (an origin not in ALLOWED_ORIGINS) from
/// four threads: each refusal is counted, but the log gets at most one
/// line per reason per second on each shard, and the lines account for
/// every refusal (each line is one, plus the `suppressed=` it reports).
#[test]
fn a_flood_of_refusals_is_logged_at_most_once_per_second_per_shard() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    const THREADS: usize = 4;
    const EACH: usize = 500;
    let server = TestServer::start_with(&[
        ("ALLOWED_ORIGINS", "https://ok.example"),
        // Only the origin refuses: not the per-address connection rate.
        ("WS_CONNECTION_RATE_PER_IP", "1000000"),
        ("WS_CONNECTION_BURST_PER_IP", "1000000"),
    ]);
    let port = server.port();
    let request = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
                   Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\nOrigin: https://evil.example\r\n\r\n";
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    s.write_all(request.as_bytes()).expect("write");
                    let mut answer = Vec::new();
                    let _ = s.read_to_end(&mut answer);
                    assert!(answer.starts_with(b"HTTP/1.1 403"), "{answer:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("flood thread");
    }
    let total = THREADS * EACH;

    // Lines of reason `origin`: (reported refusals, line) once the ticker
    // has written the counts left over from the flood's last second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (lines, reported) = loop {
        let log = server.log();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("refused:") && l.contains("reason=origin"))
            .map(str::to_owned)
            .collect();
        let reported: usize = lines
            .iter()
            .map(|l| {
                let suppressed: usize = l
                    .split("suppressed=")
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no suppressed= in {l}"));
                // A refusal's own line is one more than it reports.
                if l.contains("peer=") {
                    suppressed + 1
                } else {
                    suppressed
                }
            })
            .sum();
        if reported >= total || Instant::now() > deadline {
            break (lines, reported);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let seconds = started.elapsed().as_secs() as usize + 1;
    println!(
        "{total} refusals, {:?} with the wait for the last counts: {} log lines",
        started.elapsed(),
        lines.len()
    );
    assert_eq!(
        reported,
        total,
        "refusals in the log:\n{}",
        lines.join("\n")
    );
    // Two shards, each at most one line per second (the seconds the flood
    // and the wait for the last counts spanned, one more for the edges).
    assert!(
        lines.len() <= 2 * (seconds + 1),
        "{} lines in {seconds} s:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        lines[0].contains("INFO") && lines[0].contains("\"https://evil.example\""),
        "{}",
        lines[0]
    );
}

/// `REFUSAL_LOG_INTERVAL_MS=0`: every refusal has its line.
#[test]
fn a_refusal_log_interval_of_zero_logs_every_refusal() {
    let server = TestServer::start_with(&[("REFUSAL_LOG_INTERVAL_MS", "0")]);
    for _ in 0..20 {
        let r = http_request(server.port(), "GET", "/api/v1/channels", None, None).unwrap();
        assert_eq!(r.status, 401);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        let lines = log
            .lines()
            .filter(|l| l.contains("refused:") && l.contains("reason=token_missing"))
            .count();
        if lines == 20 {
            assert!(!log.contains("suppressed=1"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "{lines} lines of 20:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
