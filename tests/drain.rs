//! Readiness during a drain: SIGTERM turns /ready to 503 at once (so a load
//! balancer stops sending), WebSocket clients get close 1001, and the
//! process exits 0 once they are gone.

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
