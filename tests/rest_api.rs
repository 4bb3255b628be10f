//! The REST API (PROTOCOL.md §4) against the real binary: every route with
//! its success, its refusals and its permissions; keep-alive, the idle
//! timeout, the probes; and REST sends, edits and deletions reaching a
//! Socket.IO subscriber.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use common::{TestServer, now_secs};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

/// One answer: status, lower-cased headers, and the body as JSON (Null
/// when empty).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    json: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error code of an error answer.
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("<none>")
    }
}

/// A blocking HTTP/1.1 client on one keep-alive connection.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    fn connect(server: &TestServer) -> Http {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port())).expect("connect");
        stream.set_read_timeout(Some(SEC)).unwrap();
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one request and reads its answer (bodies have Content-Length).
    fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.stream.write_all(&bytes).expect("write request");
        self.read_answer(method == "HEAD")
    }

    fn read_answer(&mut self, head_only: bool) -> Answer {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            self.fill();
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let len = if head_only { 0 } else { len };
        while self.buf.len() < len {
            self.fill();
        }
        let body: Vec<u8> = self.buf.drain(..len).collect();
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("a JSON body")
        };
        Answer {
            status,
            headers,
            json,
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).expect("read answer");
        assert!(n > 0, "connection closed before a full answer");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Did the server close the connection (EOF within `within`)?
    fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => panic!("unexpected bytes from the server"),
        }
    }
}

/// The API as one user sees it; each call on a fresh connection.
struct Api<'a> {
    server: &'a TestServer,
    token: Option<String>,
}

impl Api<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string());
        self.raw(method, path, body.as_deref().map(str::as_bytes))
    }

    fn raw(&self, method: &str, path: &str, body: Option<&[u8]>) -> Answer {
        Http::connect(self.server).send(method, path, self.token.as_deref(), body)
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None)
    }

    fn create(&self, name: &str, kind: &str, members: &[&str]) -> Value {
        let body = json!({"name": name, "type": kind, "members": members});
        let a = self.call("POST", "/api/v1/channels", Some(body));
        assert_eq!(a.status, 201, "{a:?}");
        a.json["channel"].clone()
    }

    fn send(&self, channel: &str, content: &str) -> Value {
        let body = json!({"channelId": channel, "content": content});
        let a = self.call("POST", "/api/v1/messages", Some(body));
        assert_eq!(a.status, 201, "{a:?}");
        a.json["message"].clone()
    }
}

fn as_user<'a>(server: &'a TestServer, user: &str) -> Api<'a> {
    Api {
        server,
        token: Some(server.token(user)),
    }
}

const SEC: Duration = Duration::from_secs(5);

#[test]
fn probes_keep_alive_and_unknown_paths() {
    let server = TestServer::start();
    let mut http = Http::connect(&server);
    let a = http.send("GET", "/health", None, None);
    assert_eq!((a.status, &a.json), (200, &json!({"status": "ok"})));
    let a = http.send("GET", "/ready", None, None);
    assert_eq!((a.status, &a.json), (200, &json!({"status": "ready"})));
    // Same connection, an authenticated request, then a HEAD.
    let a = http.send("GET", "/api/v1/channels", Some(&server.token("u")), None);
    assert_eq!((a.status, &a.json), (200, &json!({"channels": []})));
    let a = http.send("HEAD", "/health", None, None);
    assert_eq!(a.status, 200);
    let a = http.send("GET", "/nope", None, None);
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"), "{a:?}");
    let a = http.send("POST", "/health", None, Some(b"{}"));
    assert_eq!((a.status, a.header("allow")), (405, Some("GET, HEAD")));
    let a = http.send("PATCH", "/api/v1/channels/1", None, None);
    assert_eq!(
        (a.status, a.header("allow")),
        (405, Some("GET, PUT, DELETE"))
    );
    // Still the same connection after errors.
    let a = http.send("GET", "/health", None, None);
    assert_eq!(a.status, 200);
}

#[test]
fn idle_connections_are_closed_and_shutdown_does_not_wait_for_them() {
    let server = TestServer::start_with(&[("HANDSHAKE_TIMEOUT_MS", "600")]);
    let mut idle = Http::connect(&server);
    assert_eq!(idle.send("GET", "/health", None, None).status, 200);
    assert!(
        idle.closed_within(Duration::from_secs(3)),
        "idle connection kept open"
    );

    let mut kept = Http::connect(&server);
    assert_eq!(kept.send("GET", "/health", None, None).status, 200);
    let t = Instant::now();
    assert!(server.stop().success());
    // The drain deadline is 10 s; an idle keep-alive connection is closed
    // at once instead of being waited for.
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn tokens_are_required_and_checked() {
    let server = TestServer::start();
    let anonymous = Api {
        server: &server,
        token: None,
    };
    for (method, path) in [
        ("GET", "/api/v1/channels"),
        ("POST", "/api/v1/channels"),
        ("GET", "/api/v1/channels/1"),
        ("PUT", "/api/v1/channels/1"),
        ("DELETE", "/api/v1/channels/1"),
        ("GET", "/api/v1/messages/channel/1"),
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/messages/1"),
        ("PUT", "/api/v1/messages/1"),
        ("DELETE", "/api/v1/messages/1"),
    ] {
        let a = anonymous.call(method, path, Some(json!({})));
        assert_eq!(
            (a.status, a.code()),
            (401, "UNAUTHORIZED"),
            "{method} {path}"
        );
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    }
    let expired = server.token_with("u", None, now_secs() - 3600);
    for token in ["not-a-jwt", expired.as_str()] {
        let api = Api {
            server: &server,
            token: Some(token.to_owned()),
        };
        assert_eq!(api.get("/api/v1/channels").status, 401);
    }
    let mut http = Http::connect(&server);
    let basic = format!(
        "GET /api/v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
        server.token("u")
    );
    http.stream.write_all(basic.as_bytes()).unwrap();
    assert_eq!(http.read_answer(false).status, 401);
}

#[test]
fn channels_are_created_listed_changed_and_deleted_by_their_owner() {
    let server = TestServer::start();
    let (alice, bob, carol) = (
        as_user(&server, "alice"),
        as_user(&server, "bob"),
        as_user(&server, "carol"),
    );
    let public = alice.create("general", "public", &[]);
    assert_eq!(public["name"], "general");
    assert_eq!(public["type"], "public");
    assert_eq!(public["ownerId"], "alice");
    assert_eq!(public["description"], Value::Null);
    assert!(public["createdAt"].as_str().unwrap().ends_with('Z'));
    let public_id = public["id"].as_str().unwrap().to_owned();
    let private = alice.create("secret", "private", &["bob"]);
    let private_id = private["id"].as_str().unwrap().to_owned();
    let direct = bob.create("dm", "direct", &["carol", "bob"]);
    assert_eq!(direct["type"], "direct");

    let names = |api: &Api| -> Vec<String> {
        let a = api.get("/api/v1/channels");
        assert_eq!(a.status, 200, "{a:?}");
        let list = a.json["channels"].as_array().unwrap();
        list.iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&alice), ["general", "secret"]);
    assert_eq!(names(&bob), ["secret", "dm"]);
    assert_eq!(names(&carol), ["dm"]);

    // Visibility: public to anyone, private to members only.
    let channel = |api: &Api, id: &str| api.get(&format!("/api/v1/channels/{id}"));
    assert_eq!(channel(&carol, &public_id).status, 200);
    let a = channel(&carol, &private_id);
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
    assert_eq!(channel(&bob, &private_id).json["channel"]["name"], "secret");
    let a = channel(&alice, "404404");
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"));

    // Changes: the owner only.
    let path = format!("/api/v1/channels/{private_id}");
    let a = bob.call("PUT", &path, Some(json!({"name": "mine"})));
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
    let a = alice.call(
        "PUT",
        &path,
        Some(json!({"name": " renamed ", "description": "d"})),
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(
        (
            &a.json["channel"]["name"],
            &a.json["channel"]["description"]
        ),
        (&json!("renamed"), &json!("d"))
    );
    assert!(a.json["channel"]["updatedAt"].as_str() >= private["updatedAt"].as_str());
    let a = alice.call("PUT", &path, Some(json!({"description": null})));
    assert_eq!(
        (
            &a.json["channel"]["name"],
            &a.json["channel"]["description"]
        ),
        (&json!("renamed"), &Value::Null)
    );
    for bad in [
        json!({}),
        json!({"name": ""}),
        json!({"name": null}),
        json!({"name": 5}),
    ] {
        let a = alice.call("PUT", &path, Some(bad.clone()));
        assert_eq!((a.status, a.code()), (400, "INVALID_PAYLOAD"), "{bad}");
    }
    let a = alice.call("PUT", "/api/v1/channels/404404", Some(json!({"name": "x"})));
    assert_eq!(a.status, 404);

    // Deletion: the owner only; then it is gone everywhere.
    assert_eq!(bob.call("DELETE", &path, None).status, 403);
    let a = alice.call("DELETE", &path, None);
    assert_eq!((a.status, &a.json), (204, &Value::Null));
    assert_eq!(channel(&alice, &private_id).status, 404);
    assert_eq!(alice.call("DELETE", &path, None).status, 404);
    assert_eq!(names(&alice), ["general"]);
    assert_eq!(names(&bob), ["dm"]);
}

#[test]
fn channel_bodies_are_validated() {
    let server = TestServer::start_with(&[("REST_MAX_BODY_BYTES", "20000")]);
    let alice = as_user(&server, "alice");
    let post = |body: &[u8]| alice.raw("POST", "/api/v1/channels", Some(body));
    let long = |n: usize| "x".repeat(n);
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    for bad in [
        b"{".to_vec(),
        b"[]".to_vec(),
        br#"{"type":"public"}"#.to_vec(),
        json!({"name": long(101), "type": "public"})
            .to_string()
            .into(),
        json!({"name": "n", "type": "public", "description": long(1001)})
            .to_string()
            .into(),
        json!({"name": "n", "type": "group"}).to_string().into(),
        json!({"name": "n", "type": "public", "members": "bob"})
            .to_string()
            .into(),
        json!({"name": "n", "type": "public", "members": [7]})
            .to_string()
            .into(),
        json!({"name": "n", "type": "public", "members": many})
            .to_string()
            .into(),
        json!({"name": "n", "type": "direct", "members": []})
            .to_string()
            .into(),
        json!({"name": "n", "type": "direct", "members": ["b", "c"]})
            .to_string()
            .into(),
    ] {
        let a = post(&bad);
        assert_eq!(
            (a.status, a.code()),
            (400, "INVALID_PAYLOAD"),
            "{}",
            String::from_utf8_lossy(&bad[..bad.len().min(80)])
        );
    }
    // The limits themselves are accepted.
    let edge = json!({"name": long(100), "type": "public", "description": long(1000)});
    assert_eq!(post(edge.to_string().as_bytes()).status, 201);

    // A body over REST_MAX_BODY_BYTES: 413, and the answer arrives whole
    // although the server did not read the body.
    let big = json!({"name": "n", "type": "public", "description": long(30_000)}).to_string();
    let a = post(big.as_bytes());
    assert_eq!((a.status, a.code()), (413, "PAYLOAD_TOO_LARGE"));
    // Chunked (no Content-Length): refused once the limit is passed.
    let mut http = Http::connect(&server);
    let head = format!(
        "POST /api/v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.token("alice")
    );
    let mut req = head.into_bytes();
    for chunk in big.as_bytes().chunks(4096) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    http.stream.write_all(&req).unwrap();
    assert_eq!(http.read_answer(false).status, 413);
}

#[test]
fn messages_are_sent_read_edited_and_deleted() {
    let server = TestServer::start_with(&[("MAX_MESSAGE_LENGTH", "100")]);
    let (alice, bob, carol) = (
        as_user(&server, "alice"),
        as_user(&server, "bob"),
        as_user(&server, "carol"),
    );
    let channel = alice.create("team", "private", &["bob"]);
    let cid = channel["id"].as_str().unwrap();

    let sent = alice.send(cid, "hello");
    assert_eq!(
        (
            &sent["channelId"],
            &sent["seq"],
            &sent["userId"],
            &sent["content"],
            &sent["type"]
        ),
        (
            &json!(cid),
            &json!(1),
            &json!("alice"),
            &json!("hello"),
            &json!("text")
        )
    );
    let mid = sent["id"].as_str().unwrap().to_owned();
    assert!(mid.parse::<u64>().is_ok());

    // Sends: membership, existence, the send_message rules.
    let post = |api: &Api, body: Value| api.call("POST", "/api/v1/messages", Some(body));
    let a = post(&carol, json!({"channelId": cid, "content": "hi"}));
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
    let a = post(&alice, json!({"channelId": "404404", "content": "hi"}));
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"));
    for bad in [
        json!({"channelId": cid}),
        json!({"channelId": cid, "content": "  "}),
        json!({"channelId": cid, "content": 7}),
        json!({"content": "hi"}),
        json!({"channelId": cid, "content": "x", "type": ""}),
    ] {
        let a = post(&alice, bad.clone());
        assert_eq!((a.status, a.code()), (400, "INVALID_PAYLOAD"), "{bad}");
    }
    let a = alice.raw("POST", "/api/v1/messages", Some(b"{\"channelId\":"));
    assert_eq!(a.status, 400);
    let a = post(
        &alice,
        json!({"channelId": cid, "content": "x".repeat(101)}),
    );
    assert_eq!((a.status, a.code()), (413, "PAYLOAD_TOO_LARGE"));

    // A repeated clientMessageId: the first message, 200.
    let body =
        json!({"channelId": cid, "content": "once", "clientMessageId": "c-1", "replyTo": mid});
    let first = post(&bob, body.clone());
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(first.json["message"]["replyTo"], json!(mid));
    let again = post(&bob, body);
    assert_eq!(again.status, 200);
    assert_eq!(again.json["message"], first.json["message"]);
    let bob_mid = first.json["message"]["id"].as_str().unwrap().to_owned();

    // One message: readable by members of its channel.
    let path = format!("/api/v1/messages/{mid}");
    let a = bob.get(&path);
    assert_eq!((a.status, &a.json["message"]), (200, &sent));
    assert_eq!(carol.get(&path).status, 403);
    assert_eq!(alice.get("/api/v1/messages/123").status, 404);
    let a = alice.get("/api/v1/messages/abc");
    assert_eq!((a.status, a.code()), (400, "INVALID_PAYLOAD"));

    // Edit: the author only, same content rules.
    let a = bob.call("PUT", &path, Some(json!({"content": "hacked"})));
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
    let a = alice.call("PUT", &path, Some(json!({"content": "hello, edited"})));
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.json["message"]["content"], "hello, edited");
    assert_eq!(a.json["message"]["seq"], 1);
    assert!(a.json["message"]["editedAt"].is_string());
    assert_eq!(bob.get(&path).json["message"]["content"], "hello, edited");
    let a = alice.call("PUT", &path, Some(json!({"content": ""})));
    assert_eq!(a.status, 400);
    let a = alice.call("PUT", &path, Some(json!({"content": "y".repeat(101)})));
    assert_eq!(a.status, 413);
    let a = alice.call("PUT", "/api/v1/messages/123", Some(json!({"content": "z"})));
    assert_eq!(a.status, 404);

    // Delete: the author, or the channel's owner; not another member.
    assert_eq!(bob.call("DELETE", &path, None).status, 403);
    let bob_path = format!("/api/v1/messages/{bob_mid}");
    assert_eq!(alice.call("DELETE", &bob_path, None).status, 204);
    assert_eq!(alice.call("DELETE", &path, None).status, 204);
    assert_eq!(alice.get(&path).status, 404);
    assert_eq!(alice.call("DELETE", &path, None).status, 404);
    assert_eq!(
        alice
            .call("PUT", &path, Some(json!({"content": "z"})))
            .status,
        404
    );
    let a = alice.get(&format!("/api/v1/messages/channel/{cid}"));
    assert_eq!(a.json, json!({"messages": [], "hasMore": false}));
}

#[test]
fn history_pages_with_before_after_and_limit() {
    let server = TestServer::start();
    let (alice, carol) = (as_user(&server, "alice"), as_user(&server, "carol"));
    let public = alice.create("big", "public", &[]);
    let cid = public["id"].as_str().unwrap().to_owned();
    // One keep-alive connection for the sends: also exercises keep-alive
    // under load (a burst within the per-connection rate limit).
    let mut http = Http::connect(&server);
    let token = server.token("alice");
    for i in 1..=105 {
        let body = json!({"channelId": cid, "content": format!("m{i}")}).to_string();
        let a = loop {
            let a = http.send(
                "POST",
                "/api/v1/messages",
                Some(&token),
                Some(body.as_bytes()),
            );
            if a.status != 429 {
                break a;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(a.status, 201, "{a:?}");
    }
    let page = |api: &Api, query: &str| {
        let a = api.get(&format!("/api/v1/messages/channel/{cid}{query}"));
        assert_eq!(a.status, 200, "{query}: {a:?}");
        let seqs: Vec<u64> = a.json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        (seqs, a.json["hasMore"].as_bool().unwrap())
    };
    let range = |a: u64, b: u64| (a..=b).collect::<Vec<u64>>();
    assert_eq!(page(&alice, ""), (range(56, 105), true));
    assert_eq!(page(&alice, "?limit=1000"), (range(6, 105), true));
    assert_eq!(page(&alice, "?before=56&limit=50"), (range(6, 55), true));
    assert_eq!(page(&alice, "?before=6"), (range(1, 5), false));
    assert_eq!(page(&alice, "?after=0&limit=100"), (range(1, 100), true));
    assert_eq!(page(&alice, "?after=100"), (range(101, 105), false));
    assert_eq!(page(&alice, "?after=105"), (vec![], false));
    // Public history is open to any authenticated user.
    assert_eq!(page(&carol, "?limit=2"), (range(104, 105), true));
    let first = alice.get(&format!("/api/v1/messages/channel/{cid}?after=0&limit=1"));
    assert_eq!(first.json["messages"][0]["content"], "m1");

    for bad in [
        "?before=1&after=2",
        "?limit=0",
        "?limit=x",
        "?before=-1",
        "?after=a",
    ] {
        let a = alice.get(&format!("/api/v1/messages/channel/{cid}{bad}"));
        assert_eq!((a.status, a.code()), (400, "INVALID_PAYLOAD"), "{bad}");
    }
    assert_eq!(alice.get("/api/v1/messages/channel/404404").status, 404);
    let private = alice.create("p", "private", &[]);
    let pid = private["id"].as_str().unwrap();
    let a = carol.get(&format!("/api/v1/messages/channel/{pid}"));
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"));
}

#[test]
fn requests_past_the_rate_limit_get_429() {
    let server = TestServer::start_with(&[("RATE_LIMIT_PER_SEC", "1"), ("RATE_LIMIT_BURST", "2")]);
    let token = server.token("u");
    let mut http = Http::connect(&server);
    let answers: Vec<Answer> = (0..4)
        .map(|_| http.send("GET", "/api/v1/channels", Some(&token), None))
        .collect();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(&statuses[..2], [200, 200]);
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    assert_eq!(limited.code(), "RATE_LIMITED");
    assert_eq!(limited.header("retry-after"), Some("1"));
    // The probes are not limited.
    assert_eq!(http.send("GET", "/health", None, None).status, 200);
}

/// Reads text frames until one starts with `prefix` (pings answered).
fn frame(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, prefix: &str) -> String {
    let deadline = Instant::now() + SEC;
    while Instant::now() < deadline {
        match ws.read().expect("websocket read") {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).unwrap(),
            Message::Text(t) if t.as_str().starts_with(prefix) => return t.to_string(),
            _ => {}
        }
    }
    panic!("no frame starting with {prefix:?}");
}

/// The payload of a `42["<event>",<payload>,…]` frame.
fn event(ws: &mut WebSocket<MaybeTlsStream<TcpStream>>, name: &str) -> Value {
    let f = frame(ws, &format!(r#"42["{name}","#));
    let v: Value = serde_json::from_str(&f[2..]).unwrap();
    v[1].clone()
}

#[test]
fn rest_sends_edits_and_deletions_reach_socket_io_subscribers() {
    let server = TestServer::start();
    let alice = as_user(&server, "alice");
    let channel = alice.create("live", "public", &[]);
    let cid = channel["id"].as_str().unwrap();

    let (mut ws, _) = tungstenite::connect(server.ws_url()).expect("websocket connect");
    if let MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(SEC)).unwrap();
    }
    frame(&mut ws, "0{");
    let auth = json!({"token": server.token("bob")});
    ws.send(Message::text(format!("40{auth}"))).unwrap();
    frame(&mut ws, "40{");
    let join = json!(["join_channel", {"channelId": cid}]);
    ws.send(Message::text(format!("4217{join}"))).unwrap();
    let ack: Value = serde_json::from_str(&frame(&mut ws, "4317")[4..]).unwrap();
    assert_eq!(ack[0]["ok"], true, "{ack}");

    let sent = alice.send(cid, "over REST");
    let f = frame(&mut ws, r#"42["message","#);
    let v: Value = serde_json::from_str(&f[2..]).unwrap();
    assert_eq!(v[1], sent);
    assert!(v[2].is_string(), "the recovery offset: {f}");

    let path = format!("/api/v1/messages/{}", sent["id"].as_str().unwrap());
    let edited = alice.call("PUT", &path, Some(json!({"content": "edited"})));
    assert_eq!(edited.status, 200);
    assert_eq!(event(&mut ws, "message_updated"), edited.json["message"]);

    assert_eq!(alice.call("DELETE", &path, None).status, 204);
    assert_eq!(
        event(&mut ws, "message_deleted"),
        json!({"id": sent["id"], "channelId": cid, "seq": 1})
    );
}
