//! The WebSocket handshake and close, with a raw TCP client
//! (`ws_hostile/wire.rs`): bad upgrade requests are refused (400, or 426
//! for a wrong `Sec-WebSocket-Version`), close codes that are invalid on
//! the wire close with 1002, valid ones are echoed, and invalid UTF-8
//! closes with 1007 as soon as it is certain (at the fragment, or the part
//! of a frame, that makes the text invalid).

mod common;
#[path = "ws_hostile/wire.rs"]
mod wire;

use common::TestServer;
use wire::*;

fn request(port: u16, version: &str, key: &str) -> String {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket {version}\r\nHost: 127.0.0.1:{port}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n{key}\r\n"
    )
}

#[test]
fn bad_upgrades_are_refused() {
    let server = TestServer::start();
    let port = server.port();
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let cases = [
        (
            "empty key",
            request(port, "HTTP/1.1", &format!("{v13}Sec-WebSocket-Key: \r\n")),
        ),
        (
            "key not base64",
            request(
                port,
                "HTTP/1.1",
                &format!("{v13}Sec-WebSocket-Key: not base64!!\r\n"),
            ),
        ),
        // base64 of 15 bytes, not 16.
        (
            "short key",
            request(
                port,
                "HTTP/1.1",
                &format!("{v13}Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n"),
            ),
        ),
        ("no key", request(port, "HTTP/1.1", v13)),
        (
            "HTTP/1.0",
            request(
                port,
                "HTTP/1.0",
                &format!("{v13}Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
            ),
        ),
        (
            "no version",
            request(
                port,
                "HTTP/1.1",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            ),
        ),
    ];
    for (what, req) in cases {
        let (_, head) = Wire::request(server.addr(), &req);
        assert_eq!(head.status, 400, "{what}: {}", head.text);
    }
    // RFC 6455 4.4: a version the server does not speak gets 426 and the
    // version it does.
    let req = request(
        port,
        "HTTP/1.1",
        "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    let (_, head) = Wire::request(server.addr(), &req);
    assert_eq!(head.status, 426, "{}", head.text);
    assert_eq!(
        head.header("sec-websocket-version"),
        Some("13"),
        "{}",
        head.text
    );
    // A good one still works.
    let mut w = Wire::open(server.addr());
    w.sio_connect(&server.token("fine"));
}

#[test]
fn invalid_close_codes_close_with_1002() {
    let server = TestServer::start();
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
        let mut w = Wire::open(server.addr());
        w.send(&close_frame(code, b""));
        assert_eq!(w.close_code(), 1002, "client close with {code}");
    }
}

/// RFC 6455 5.5.1: the close that answers the client's echoes its code.
#[test]
fn valid_close_codes_are_echoed() {
    let server = TestServer::start();
    for code in [1000, 1001, 1003, 1011, 3000, 4321, 4999] {
        let mut w = Wire::open(server.addr());
        w.sio_connect(&server.token("closer"));
        w.send(&close_frame(code, b"bye"));
        assert_eq!(w.close_code(), code, "client close with {code}");
    }
    // No code at all is answered with 1000.
    let mut w = Wire::open(server.addr());
    w.send(&frame(0x88, b""));
    assert_eq!(w.close_code(), 1000);
}

#[test]
fn invalid_utf8_closes_with_1007() {
    let server = TestServer::start();
    let token = server.token("utf8");
    let connected = || {
        let mut w = Wire::open(server.addr());
        w.sio_connect(&token);
        w
    };

    let mut w = connected();
    w.send(&frame(0x81, b"42[\"a\xff\"]"));
    assert_eq!(w.close_code(), 1007, "text frame");

    let mut w = connected();
    w.send(&close_frame(1000, b"\xc3\x28"));
    assert_eq!(w.close_code(), 1007, "close reason");

    // Fragments: the second one makes the text invalid; the server closes
    // without waiting for the last (which is never sent).
    let mut w = connected();
    w.send(&frame(0x01, "42[\"κό".as_bytes()));
    w.send(&frame(0x00, b"\xf4\x90\x80\x80"));
    assert_eq!(w.close_code(), 1007, "second fragment");

    // One frame, cut: its first part already cannot be UTF-8 (0xC0 never
    // starts a character); the rest never comes.
    let mut w = connected();
    let mut bytes = frame_header(0x81, 100);
    bytes.extend(mask_from(b"42[\"\xc0\xaf", 0));
    w.send(&bytes);
    assert_eq!(w.close_code(), 1007, "first part of a frame");
}
