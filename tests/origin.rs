//! ALLOWED_ORIGINS / ALLOW_MISSING_ORIGIN against the real binary: the
//! upgrade request's `Origin` decides between 101 and a JSON 403.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::TestServer;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

/// Tries the WebSocket upgrade with `origin` (or none): Ok once upgraded
/// and the Engine.IO OPEN arrived, Err((status, body)) when refused.
fn upgrade(server: &TestServer, origin: Option<&str>) -> Result<(), (u16, String)> {
    let mut req = server.ws_url().into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((mut ws, _)) => {
            let open = ws.read().expect("OPEN packet");
            assert!(open.to_text().unwrap().starts_with("0{"), "{open}");
            Ok(())
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            // tungstenite keeps only part of a refusal's body: ask again by
            // hand for the whole answer.
            Err((r.status().as_u16(), refusal_body(server, origin)))
        }
        Err(e) => panic!("upgrade failed otherwise: {e}"),
    }
}

/// The body of the answer to a raw upgrade request with `origin`.
fn refusal_body(server: &TestServer, origin: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn listed_origins_upgrade_and_others_get_403() {
    let server = TestServer::start_with(&[(
        "ALLOWED_ORIGINS",
        "https://play.example.com, http://localhost:8080",
    )]);
    assert_eq!(upgrade(&server, Some("https://play.example.com")), Ok(()));
    assert_eq!(upgrade(&server, Some("HTTPS://Play.Example.COM")), Ok(()));
    assert_eq!(upgrade(&server, Some("http://localhost:8080")), Ok(()));
    // Native clients send no Origin: allowed by default.
    assert_eq!(upgrade(&server, None), Ok(()));
    for bad in [
        "https://evil.example",
        "http://play.example.com",
        "https://play.example.com:8443",
        "null",
    ] {
        let (status, body) = upgrade(&server, Some(bad)).unwrap_err();
        assert_eq!(status, 403, "{bad}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(v["error"]["code"], "FORBIDDEN", "{body}");
    }
    // REST is not a WebSocket upgrade: the list does not apply.
    assert_eq!(
        common::http_get(server.port(), "/health").unwrap().status,
        200
    );
}

#[test]
fn a_missing_origin_can_be_refused() {
    let server = TestServer::start_with(&[
        ("ALLOWED_ORIGINS", "https://play.example.com"),
        ("ALLOW_MISSING_ORIGIN", "false"),
    ]);
    assert_eq!(upgrade(&server, None).unwrap_err().0, 403);
    assert_eq!(upgrade(&server, Some("https://play.example.com")), Ok(()));
}

#[test]
fn without_a_list_any_origin_upgrades() {
    let server = TestServer::start();
    assert_eq!(upgrade(&server, Some("https://anything.example")), Ok(()));
    assert_eq!(upgrade(&server, None), Ok(()));
}
