//! The REST API against the real binary: probes, keep-alive, idle
//! timeout, tokens, channels and their validation, rate limits.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::rest::*;
use common::{TestServer, now_secs};
use serde_json::{Value, json};

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
    assert_eq!(
        (a.status, a.header("allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
    let a = http.send("PATCH", "/api/v1/channels/1", None, None);
    assert_eq!(
        (a.status, a.header("allow")),
        (405, Some("GET, PUT, DELETE, OPTIONS"))
    );
    // Still the same connection after errors.
    let a = http.send("GET", "/health", None, None);
    assert_eq!(a.status, 200);
}

#[test]
fn idle_connections_are_closed_and_shutdown_does_not_wait_for_them() {
    // The idle timeout of its own (it was HANDSHAKE_TIMEOUT_MS's), far
    // below the head deadline.
    let server = TestServer::start_with(&[
        ("REST_KEEPALIVE_TIMEOUT_MS", "600"),
        ("HANDSHAKE_TIMEOUT_MS", "30000"),
    ]);
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
