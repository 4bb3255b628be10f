//! HTTP clients that try to hold or churn the server, against the real
//! binary: a second request head trickled on a keep-alive connection, a
//! bad `Content-Length`, and thousands of connections opened and dropped
//! from one address (the per-IP rate of new connections, and the memory).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use common::raw::{recv_text, sio_connect};
use common::rest::*;
use serde_json::Value;

/// Writes `bytes` one every 50 ms until the server closes the connection;
/// returns what the server sent meanwhile and when it closed. Fails past
/// 15 s (on the old code a trickled head was still open after 20 s).
fn trickle(stream: &mut TcpStream, mut bytes: impl Iterator<Item = u8>) -> (Vec<u8>, Duration) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    loop {
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(15),
            "a trickle held the connection for {elapsed:?}"
        );
        let byte = bytes.next().expect("enough bytes to trickle");
        if stream.write_all(&[byte]).is_err() {
            return (answer, elapsed);
        }
        let mut b = [0u8; 1024];
        match stream.read(&mut b) {
            Ok(0) => return (answer, started.elapsed()),
            Ok(n) => answer.extend_from_slice(&b[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (answer, started.elapsed()),
        }
    }
}

#[test]
fn a_trickled_second_request_head_is_cut_off_at_the_head_deadline() {
    // The idle timeout is far away: only the head deadline can end this.
    let server = TestServer::start_with(&[
        ("HANDSHAKE_TIMEOUT_MS", "1000"),
        ("REST_KEEPALIVE_TIMEOUT_MS", "60000"),
    ]);
    let mut http = Http::connect(&server);
    // The first request is answered; the connection is kept alive.
    assert_eq!(http.send("GET", "/health", None, None).status, 200);

    // The second request's head, one byte every 50 ms, never finished.
    let head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n".iter();
    let pad = std::iter::repeat_n(b"X-Pad: slow\r\n", 1000).flatten();
    let (answer, closed_after) = trickle(&mut http.stream, head.chain(pad).copied());
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    // 1 s of deadline; the margin is for a shared, slow machine.
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    // The server is fine.
    assert_eq!(
        Http::connect(&server)
            .send("GET", "/health", None, None)
            .status,
        200
    );
}

#[test]
fn a_trickled_body_gets_408_at_its_deadline_and_the_connection_ends() {
    let server = TestServer::start_with(&[
        ("HANDSHAKE_TIMEOUT_MS", "1000"),
        ("REST_KEEPALIVE_TIMEOUT_MS", "60000"),
    ]);
    let mut http = Http::connect(&server);
    assert_eq!(http.send("GET", "/health", None, None).status, 200);
    let token = server.token("alice");
    write!(
        http.stream,
        "POST /api/v1/channels HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 60000\r\n\r\n"
    )
    .unwrap();
    let body = std::iter::once(b'{').chain(std::iter::repeat(b' '));
    let (answer, closed_after) = trickle(&mut http.stream, body);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains(r#""code":"INVALID_PAYLOAD""#), "{answer}");
    // The body's deadline, then at most the head deadline for what is
    // still trickled after the answer; margins for a shared machine.
    assert!(
        closed_after < Duration::from_secs(6),
        "closed after {closed_after:?}"
    );
}

#[test]
fn a_bad_content_length_gets_the_json_error_shape() {
    let server = TestServer::start();
    let token = server.token("alice");
    for length in [
        "Content-Length: abc\r\n",
        "Content-Length: 1\r\nContent-Length: 2\r\n",
    ] {
        let mut http = Http::connect(&server);
        write!(
            http.stream,
            "POST /api/v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n{length}\r\n{{}}"
        )
        .unwrap();
        let a = http.read_answer(false);
        assert_eq!(
            (a.status, a.code()),
            (400, "INVALID_PAYLOAD"),
            "{length}: {a:?}"
        );
        assert!(http.closed_within(Duration::from_secs(5)), "{length}");
    }
}

/// A refused connection: status, `Retry-After`, JSON body.
type Refused = (u16, Option<String>, Value);

/// One connection of the attack: a WebSocket upgrade and a Socket.IO
/// CONNECT, then dropped without a close. `Ok` when admitted.
fn connect_and_drop(server: &TestServer, token: &str) -> Result<(), Refused> {
    let stream = TcpStream::connect(server.addr()).expect("TCP connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match tungstenite::client::client(server.ws_url(), stream) {
        Ok((mut ws, _)) => {
            assert!(recv_text(&mut ws).starts_with('0'), "an Engine.IO OPEN");
            sio_connect(&mut ws, token);
            Ok(())
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = r.body().as_deref().unwrap_or_default();
            Err((
                r.status().as_u16(),
                retry,
                serde_json::from_slice(body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[test]
fn new_connections_from_one_address_are_limited_in_rate_and_memory() {
    const RATE: u64 = 20;
    const BURST: u64 = 50;
    let server = TestServer::start_with(&[
        ("WS_CONNECTION_RATE_PER_IP", "20"),
        ("WS_CONNECTION_BURST_PER_IP", "50"),
    ]);
    let token = server.token("mallory");
    let baseline = server.rss_kib();
    let (mut admitted, mut refused, mut peak) = (0u64, 0u64, baseline);
    let mut last_refusal = None;
    let started = Instant::now();
    // As fast as one thread can: on the old code every one was admitted
    // (6,012 in 15 s added 86 MB).
    while started.elapsed() < Duration::from_secs(5) {
        match connect_and_drop(&server, &token) {
            Ok(()) => admitted += 1,
            Err(r) => {
                refused += 1;
                // Every refusal is a 429 with Retry-After and the reason.
                assert_eq!((r.0, r.1.is_some()), (429, true), "{r:?}");
                assert_eq!(r.2["error"]["code"], "RATE_LIMITED", "{r:?}");
                last_refusal = Some(r);
            }
        }
        if (admitted + refused) % 100 == 0 {
            peak = peak.max(server.rss_kib());
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    peak = peak.max(server.rss_kib());
    eprintln!(
        "{admitted} admitted, {refused} refused in {elapsed:.1} s; RSS {baseline} KiB -> peak {peak} KiB"
    );
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    assert!(grown_mib < 32, "RSS grew {grown_mib} MiB under the attack");
    // The burst, then the rate; one second of slack for the clocks.
    let allowed = BURST + RATE * (elapsed.ceil() as u64 + 1);
    assert!(
        admitted <= allowed,
        "{admitted} admitted (refused {refused}) in {elapsed:.1} s; at most {allowed}"
    );
    assert!(admitted >= BURST, "the burst is admitted: {admitted}");
    let (status, retry, body) = last_refusal.expect("some connections refused");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WS_CONNECTION_RATE_PER_IP"),
        "{body}"
    );
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&retry), "Retry-After: {retry}");

    // After the wait the server asked for, the address is welcome again.
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(
        Http::connect(&server)
            .send("GET", "/health", None, None)
            .status,
        200
    );
}
