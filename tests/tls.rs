//! Native TLS against the real binary: WSS Socket.IO and HTTPS on the
//! public port with a generated certificate, and SIGHUP reloading it
//! (existing connections keep theirs, new ones get the new one, a bad file
//! changes nothing).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use common::tls::{Ca, Tls, https_get, start_tls, tls_connect};
use nix::sys::signal::Signal;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use tungstenite::{Message, WebSocket};

/// The leaf certificate the server presented.
fn presented(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().expect("a certificate")[0].clone()
}

/// A Socket.IO session over WSS, connected to `/` as `user`.
fn wss_connect(server: &TestServer, config: &Arc<ClientConfig>, user: &str) -> WebSocket<Tls> {
    let tls = tls_connect(server.port(), config).unwrap();
    let url = format!(
        "wss://localhost:{}/socket.io/?EIO=4&transport=websocket",
        server.port()
    );
    let (mut ws, _) = tungstenite::client::client(url, tls).expect("WSS handshake");
    assert!(next_text(&mut ws).starts_with("0{"));
    let connect = serde_json::json!({"token": server.token(user)});
    ws.send(Message::text(format!("40{connect}"))).unwrap();
    let reply = next_text(&mut ws);
    assert!(reply.starts_with("40{"), "{reply}");
    ws
}

fn next_text(ws: &mut WebSocket<Tls>) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) => return t.to_string(),
            _ => {}
        }
    }
}

/// The next frame starting with `prefix`; events in between (presence)
/// are skipped.
fn next_starting(ws: &mut WebSocket<Tls>, prefix: &str) -> String {
    loop {
        let t = next_text(ws);
        if t.starts_with(prefix) {
            return t;
        }
        assert!(t.starts_with("42["), "unexpected {t}");
    }
}

/// An Engine.IO ping answered and a Socket.IO event acked: the session
/// is alive end to end.
fn round_trip(ws: &mut WebSocket<Tls>, ack: u64) {
    ws.send(Message::text("2probe")).unwrap();
    assert_eq!(next_starting(ws, "3"), "3probe");
    ws.send(Message::text(format!(
        r#"42{ack}["join_channel",{{"channelId":"no-such-channel"}}]"#
    )))
    .unwrap();
    let reply = next_starting(ws, &format!("43{ack}["));
    assert!(reply.contains("NOT_FOUND"), "{reply}");
}

#[test]
fn wss_and_https_work_and_sighup_swaps_the_certificate_for_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let config = ca.client_config();
    let first = ca.leaf(dir.path(), "gatrix test 1", 1);
    let server = start_tls(dir.path(), &config);

    let (status, body) = https_get(server.port(), &config, "/health").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let mut old = wss_connect(&server, &config, "alice");
    assert_eq!(presented(old.get_ref()), first);
    round_trip(&mut old, 1);
    // The port speaks TLS only.
    let plain = common::http_get(server.port(), "/health");
    assert!(plain.map_or(true, |r| r.status != 200));

    // A new certificate, then SIGHUP: new connections get it.
    let second = ca.leaf(dir.path(), "gatrix test 2", 2);
    assert_ne!(first, second);
    server.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tls = tls_connect(server.port(), &config).unwrap();
        if presented(&tls) == second {
            break;
        }
        assert!(Instant::now() < deadline, "still the old certificate");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut new = wss_connect(&server, &config, "bob");
    assert_eq!(presented(new.get_ref()), second);
    round_trip(&mut new, 1);
    // The connection made before the reload is untouched.
    assert_eq!(presented(old.get_ref()), first);
    round_trip(&mut old, 2);

    // A reload that fails keeps the current certificate.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    server.signal(Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log().contains("TLS reload failed") {
        assert!(
            Instant::now() < deadline,
            "no reload error:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("TLS_CERT_FILE (tls_cert_file)"));
    let (status, _) = https_get(server.port(), &config, "/health").unwrap();
    assert_eq!(status, 200);
    let tls = tls_connect(server.port(), &config).unwrap();
    assert_eq!(presented(&tls), second);
    // (A connection that never sends a request holds a drain until the
    // handshake timeout, TLS or not.)
    drop((tls, old, new));
    assert!(server.stop().success());
}

#[test]
fn a_bad_certificate_file_stops_the_start_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnope\n").unwrap();
    std::fs::write(&key, "").unwrap();
    let mut server = TestServer::start_unready(&[
        ("TLS_CERT_FILE", cert.to_str().unwrap()),
        ("TLS_KEY_FILE", key.to_str().unwrap()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.exited() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // A configuration error (exit 2), as `config check` reports it too.
    assert_eq!(status.code(), Some(2), "{}", server.log());
    assert!(
        server.log().contains("TLS_CERT_FILE (tls_cert_file)"),
        "{}",
        server.log()
    );
}
