//! Native TLS against the real binary: WSS Socket.IO and HTTPS on the
//! public port with a generated certificate, and SIGHUP reloading it
//! (existing connections keep theirs, new ones get the new one, a bad file
//! changes nothing).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use nix::sys::signal::Signal;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::{Message, WebSocket};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A test CA and the leaves it signs.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "gatrix test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a leaf for localhost/127.0.0.1 into `dir` (cert.pem,
    /// key.pem) and returns its DER.
    fn leaf(&self, dir: &Path, name: &str, serial: u64) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        cert.der().clone()
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// A TLS connection to the server, verified against the test CA.
fn tls_connect(port: u16, config: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The leaf certificate the server presented.
fn presented(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().expect("a certificate")[0].clone()
}

/// `GET path` over HTTPS; returns (status, body).
fn https_get(port: u16, config: &Arc<ClientConfig>, path: &str) -> std::io::Result<(u16, String)> {
    let mut tls = tls_connect(port, config)?;
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends the read with an error;
    // what arrived before it is the answer.
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {text:?}")))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
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

fn start_tls(dir: &Path, config: &Arc<ClientConfig>) -> TestServer {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut server = TestServer::start_unready(&[
        ("TLS_CERT_FILE", cert.to_str().unwrap()),
        ("TLS_KEY_FILE", key.to_str().unwrap()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = https_get(server.port(), config, "/health") {
            return server;
        }
        assert!(server.exited().is_none(), "exited:\n{}", server.log());
        assert!(Instant::now() < deadline, "not ready:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
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
