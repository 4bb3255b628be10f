//! The long-polling and upgrade cases of the official suite (handshake,
//! heartbeat, close, upgrade), and what it leaves out: the NOOP that
//! flushes a waiting GET during the upgrade with nothing lost or
//! reordered, the payload format, overlapping GETs, oversized POSTs, CORS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use tungstenite::Message;

use super::{Ws, closed, server, text};

/// One answer: status, lower-cased headers, body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`).
fn request(method: &str, query: &str, headers: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(server()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let length = if headers.contains("Content-Length") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    write!(
        s,
        "{method} /socket.io/?{query} HTTP/1.1\r\nHost: x\r\n{headers}{length}Connection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(sid: &str) -> Reply {
    request("GET", &format!("EIO=4&transport=polling&sid={sid}"), "", "")
}

fn post(sid: &str, body: &str) -> Reply {
    request(
        "POST",
        &format!("EIO=4&transport=polling&sid={sid}"),
        "Content-Type: text/plain;charset=UTF-8\r\n",
        body,
    )
}

/// A new session's OPEN packet.
fn handshake() -> Value {
    let r = request("GET", "EIO=4&transport=polling", "", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with('0'), "{}", r.body);
    serde_json::from_str(&r.body[1..]).unwrap()
}

fn sid() -> String {
    handshake()["sid"].as_str().unwrap().to_owned()
}

/// The packets of a GET, pings answered with a POST and skipped.
fn packets(sid: &str) -> Vec<String> {
    loop {
        let r = get(sid);
        assert_eq!(r.status, 200, "{}", r.body);
        let packets: Vec<String> = r
            .body
            .split('\x1e')
            .filter(|p| *p != "2")
            .map(str::to_owned)
            .collect();
        if r.body.split('\x1e').any(|p| p == "2") {
            assert_eq!(post(sid, "3").body, "ok");
        }
        if !packets.is_empty() {
            return packets;
        }
    }
}

fn upgrade_ws(sid: &str) -> Ws {
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
        server()
    );
    let (mut ws, _) = tungstenite::connect(url).expect("websocket connect");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    }
    ws
}

#[test]
fn polling_handshake_opens_a_session() {
    let r = request("GET", "EIO=4&transport=polling", "", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
    let open: Value = serde_json::from_str(&r.body[1..]).unwrap();
    let mut keys: Vec<&str> = open
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert!(open["sid"].is_string());
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(
        (
            &open["pingInterval"],
            &open["pingTimeout"],
            &open["maxPayload"]
        ),
        (
            &Value::from(300),
            &Value::from(200),
            &Value::from(1_000_000)
        )
    );
}

#[test]
fn polling_bad_handshakes_get_the_reference_errors() {
    for (method, query, code) in [
        ("GET", "transport=polling", 5),
        ("GET", "EIO=abc&transport=polling", 5),
        ("GET", "EIO=4", 0),
        ("GET", "EIO=4&transport=abc", 0),
        ("POST", "EIO=4&transport=polling", 2),
        ("PUT", "EIO=4&transport=polling", 2),
        ("GET", "EIO=4&transport=polling&sid=nope", 1),
        ("POST", "EIO=4&transport=polling&sid=nope.0", 1),
    ] {
        let r = request(method, query, "", "");
        assert_eq!(r.status, 400, "{method} {query}");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["code"], code, "{method} {query}: {}", r.body);
    }
    let r = get("nope");
    assert_eq!(r.body, r#"{"code":1,"message":"Session ID unknown"}"#);
}

#[test]
fn polling_heartbeat_pings_and_takes_pongs() {
    let sid = sid();
    for _ in 0..3 {
        let r = get(&sid);
        assert_eq!((r.status, r.body.as_str()), (200, "2"));
        let r = post(&sid, "3");
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
}

#[test]
fn polling_session_without_pong_times_out() {
    let sid = sid();
    // pingInterval 300 + pingTimeout 200, and a margin.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(get(&sid).status, 400);
}

#[test]
fn polling_close_packet_answers_the_waiting_get_with_noop() {
    let sid = sid();
    let waiting = std::thread::spawn({
        let sid = sid.clone();
        move || get(&sid)
    });
    // The GET waits (up to the ping) for something to send: the close
    // ends it with a NOOP whether it arrived before or after the POST.
    let r = post(&sid, "1");
    assert_eq!(r.status, 200);
    let r = waiting.join().unwrap();
    assert!(
        (r.status, r.body.as_str()) == (200, "6") || r.status == 400,
        "{} {}",
        r.status,
        r.body
    );
    assert_eq!(get(&sid).status, 400);
}

#[test]
fn polling_events_acks_and_binary_use_the_payload_format() {
    let sid = sid();
    assert_eq!(post(&sid, "40").body, "ok");
    let p = packets(&sid);
    assert!(p[0].starts_with("40{\"sid\":"), "{p:?}");
    if p.len() == 1 {
        assert_eq!(packets(&sid), [r#"42["auth",{}]"#]);
    } else {
        assert_eq!(p[1], r#"42["auth",{}]"#);
    }
    // Two packets in one POST, a binary attachment as base64.
    let body = "42[\"message\",1]\x1e451-[\"message\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID";
    assert_eq!(post(&sid, body).body, "ok");
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(packets(&sid));
    }
    assert_eq!(
        got,
        [
            r#"42["message-back",1]"#,
            r#"451-["message-back",{"_placeholder":true,"num":0}]"#,
            "bAQID",
        ]
    );
}

#[test]
fn a_second_get_closes_the_session() {
    let sid = sid();
    assert_eq!(get(&sid).body, "2"); // the first ping
    assert_eq!(post(&sid, "3").body, "ok");
    let first = std::thread::spawn({
        let sid = sid.clone();
        move || get(&sid)
    });
    // Whichever comes second is refused and the session closes: the
    // other one gets the close packet (or, second, the refusal too).
    let second = get(&sid);
    let first = first.join().unwrap();
    let statuses = [first.status, second.status];
    assert!(statuses.contains(&400), "{statuses:?}");
    assert!(
        [&first, &second]
            .iter()
            .any(|r| r.status == 400 || r.body.ends_with('1')),
        "{} / {}",
        first.body,
        second.body
    );
    assert_eq!(get(&sid).status, 400);
}

#[test]
fn an_oversized_post_is_refused_with_413_and_closes_the_session() {
    let sid = sid();
    // Refused from its Content-Length (MAX_PAYLOAD is 1,000,000 here),
    // before a byte of the body is read.
    let r = request(
        "POST",
        &format!("EIO=4&transport=polling&sid={sid}"),
        "Content-Length: 1000001\r\n",
        "",
    );
    assert_eq!(r.status, 413);
    assert_eq!(get(&sid).status, 400);
}

#[test]
fn polling_cors_allows_any_origin_and_answers_preflights() {
    // The example allows any origin (`OriginPolicy::any`), so `*`, as on
    // REST; a listed origin is echoed (tests/polling.rs).
    let origin = "Origin: https://app.example\r\n";
    let r = request("GET", "EIO=4&transport=polling", origin, "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = request(
        "OPTIONS",
        "EIO=4&transport=polling",
        "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n",
        "",
    );
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(
        r.header("access-control-allow-headers")
            .unwrap()
            .split(", ")
            .any(|h| h == "content-type")
    );
}

#[test]
fn upgrade_probe_then_upgrade_packet() {
    let sid = sid();
    let mut ws = upgrade_ws(&sid);
    ws.send(Message::text("2probe")).unwrap();
    assert_eq!(text(&mut ws), "3probe");
    ws.send(Message::text("5")).unwrap();
    // On WebSocket now: the session's pings come here.
    assert_eq!(ws.read().unwrap(), Message::text("2"));
    ws.send(Message::text("3")).unwrap();
    ws.send(Message::text("40")).unwrap();
    assert!(text(&mut ws).starts_with("40"));
    assert_eq!(text(&mut ws), r#"42["auth",{}]"#);
}

#[test]
fn after_the_upgrade_polling_and_a_second_websocket_are_refused() {
    let sid = sid();
    let mut ws = upgrade_ws(&sid);
    ws.send(Message::text("2probe")).unwrap();
    assert_eq!(text(&mut ws), "3probe");
    ws.send(Message::text("5")).unwrap();
    ws.send(Message::text("40")).unwrap();
    assert!(text(&mut ws).starts_with("40"), "the upgrade is done");
    assert_eq!(text(&mut ws), r#"42["auth",{}]"#);
    assert_eq!(get(&sid).status, 400);
    // The reference accepts the second WebSocket and closes it at once.
    let mut second = upgrade_ws(&sid);
    closed(&mut second, Duration::from_secs(3));
    // The first one goes on.
    ws.send(Message::text(r#"42["message","still"]"#)).unwrap();
    assert_eq!(text(&mut ws), r#"42["message-back","still"]"#);
}

#[test]
fn upgrade_flushes_the_waiting_get_with_noop_and_loses_nothing() {
    let sid = sid();
    assert_eq!(post(&sid, "40").body, "ok");
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(packets(&sid));
    }
    // A GET waits; the probe answers it with a NOOP (the client pauses
    // polling before it sends `5`).
    let waiting = std::thread::spawn({
        let sid = sid.clone();
        move || get(&sid)
    });
    let mut ws = upgrade_ws(&sid);
    ws.send(Message::text("2probe")).unwrap();
    assert_eq!(text(&mut ws), "3probe");
    let r = waiting.join().unwrap();
    assert_eq!(r.status, 200);
    let mut before: Vec<String> = r.body.split('\x1e').map(str::to_owned).collect();
    if before == ["2"] {
        // The ping came first: the next GET gets the NOOP.
        assert_eq!(post(&sid, "3").body, "ok");
        before = vec![get(&sid).body];
    }
    assert_eq!(before, ["6"]);
    // Sent over polling while paused: answered over the WebSocket, after
    // the upgrade, in order with what is sent on the WebSocket.
    assert_eq!(post(&sid, r#"42["message","a"]"#).body, "ok");
    ws.send(Message::text("5")).unwrap();
    ws.send(Message::text(r#"42["message","b"]"#)).unwrap();
    assert_eq!(text(&mut ws), r#"42["message-back","a"]"#);
    assert_eq!(text(&mut ws), r#"42["message-back","b"]"#);
}
