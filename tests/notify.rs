//! sd_notify against the real binary: the test plays systemd, with a
//! datagram socket named by NOTIFY_SOCKET and a 200 ms watchdog.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{TestServer, http_get};
use nix::sys::signal::Signal;

/// Reads notifications until one contains `line`; returns every one read.
fn until(sock: &UnixDatagram, line: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {line:?} within {within:?}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = msg.lines().any(|l| l == line);
                seen.push(msg);
                if found {
                    return seen;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_systemd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut server = TestServer::start_unready(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]);

    // READY=1 only once the server serves: the very next request works.
    let seen = until(&sock, "READY=1", Duration::from_secs(20));
    let ready = http_get(server.port(), "/ready").expect("connect right after READY=1");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        seen.iter().all(|m| !m.contains("WATCHDOG=1")),
        "a watchdog ping before READY: {seen:?}"
    );
    assert!(
        seen.last()
            .unwrap()
            .contains("STATUS=serving on http://127.0.0.1:"),
        "{seen:?}"
    );

    // WATCHDOG=1 every 100 ms (half of WATCHDOG_USEC) while shards beat.
    let started = Instant::now();
    for _ in 0..5 {
        until(&sock, "WATCHDOG=1", Duration::from_secs(2));
    }
    let took = started.elapsed();
    // About 500 ms; a ping is skipped when a busy machine delays a shard's
    // beat, hence the margin.
    assert!(
        took < Duration::from_secs(3),
        "5 pings took {took:?}, expected about 500 ms"
    );
    assert!(server.exited().is_none());

    // SIGTERM: STOPPING=1 as the drain begins, then a clean exit.
    server.signal(Signal::SIGTERM);
    let seen = until(&sock, "STOPPING=1", Duration::from_secs(5));
    assert!(seen.last().unwrap().contains("STATUS=draining"), "{seen:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = server.exited() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn without_notify_socket_nothing_changes() {
    // The harness sets no NOTIFY_SOCKET: the server starts and answers as
    // always, and SIGTERM still drains and exits 0.
    let server = TestServer::start_with(&[("WATCHDOG_USEC", "200000")]);
    assert_eq!(http_get(server.port(), "/ready").unwrap().status, 200);
    assert!(server.stop().success());
}

#[test]
fn shards_that_cannot_listen_stop_the_start_without_ready() {
    // A socket without SO_REUSEPORT holds the port: no shard can bind it.
    // Each shard says so (the main thread waits for every answer), and the
    // server tells systemd why instead of READY=1, then exits 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut server =
        TestServer::start_unready(&[("NOTIFY_SOCKET", path.to_str().unwrap()), ("PORT", &port)]);
    let seen = until(
        &sock,
        "STATUS=2 of 2 shards could not listen",
        Duration::from_secs(20),
    );
    assert!(
        seen.iter().all(|m| !m.contains("READY=1")),
        "READY=1 although no shard listens: {seen:?}"
    );
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", server.log());
    assert!(
        server.log().contains("2 of 2 shards failed"),
        "{}",
        server.log()
    );
    drop(taken);
}
