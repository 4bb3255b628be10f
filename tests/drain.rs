//! Readiness during a drain: SIGTERM turns /ready to 503 at once (so a load
//! balancer stops sending), WebSocket clients get close 1001, and the
//! process exits 0 once they are gone; long-polling sessions get the close
//! packet and idle keep-alive polling connections are closed.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::raw::{Ended, sio_connect, until_closed};
use common::rest::Http;
use nix::sys::signal::Signal;
use serde_json::json;

#[test]
fn sigterm_turns_ready_to_503_and_drains() {
    let mut server = TestServer::start();
    // A keep-alive connection opened before the drain (new connections are
    // refused once the listener is gone).
    let mut http = Http::connect(&server);
    let a = http.send("GET", "/ready", None, None);
    assert_eq!((a.status, &a.json), (200, &json!({"status": "ready"})));
    let (mut ws, _) = common::raw::open(&server);
    sio_connect(&mut ws, &server.token("watcher"));

    server.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let drained = loop {
        let a = http.send("GET", "/ready", None, None);
        if a.status == 503 {
            break a;
        }
        assert_eq!(a.status, 200, "{:?}", a.json);
        assert!(Instant::now() < deadline, "/ready stayed 200 after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        drained.json["error"]["code"], "UNAVAILABLE",
        "{:?}",
        drained.json
    );
    match until_closed(&mut ws).0 {
        Ended::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001, "{f:?}"),
        ended => panic!("expected close 1001, got {ended:?}"),
    }
    drop(http);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = server.exited() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
}

/// Reads one HTTP response (head and Content-Length body) from a
/// keep-alive connection.
fn read_response(s: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("read head"), 1, "closed mid-head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read body");
    (
        head[9..12].parse().unwrap(),
        String::from_utf8(body).unwrap(),
    )
}

/// SIGTERM with long-polling clients: the waiting GET of a session is
/// answered with the close packet, a keep-alive connection waiting for its
/// next request is closed, and the process exits without waiting for the
/// request head timeout (set far above the test's patience here).
#[test]
fn sigterm_closes_polling_sessions_and_idle_keep_alive_connections() {
    use std::io::{Read, Write};
    let mut server = TestServer::start_with(&[
        ("HANDSHAKE_TIMEOUT_MS", "120000"),
        ("SHUTDOWN_TIMEOUT_MS", "120000"),
        ("PING_INTERVAL_MS", "120000"),
        ("PING_TIMEOUT_MS", "120000"),
    ]);
    let handshake = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n";
    // A keep-alive connection, idle after its handshake.
    let mut idle = std::net::TcpStream::connect(server.addr()).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    idle.write_all(handshake).unwrap();
    assert_eq!(read_response(&mut idle).0, 200);
    // A session whose GET waits (the first ping is two minutes away).
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(handshake).unwrap();
    let (status, open) = read_response(&mut s);
    assert_eq!(status, 200);
    let open: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap();
    write!(
        s,
        "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    // Nothing outside tells that the GET waits (a second one would close
    // the session): a generous margin for the server to read it.
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    server.signal(Signal::SIGTERM);
    let (status, body) = read_response(&mut s);
    assert_eq!((status, body.as_str()), (200, "1"), "the waiting GET");
    let mut rest = Vec::new();
    assert_eq!(
        idle.read_to_end(&mut rest).expect("idle connection closed"),
        0
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.exited() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
}
