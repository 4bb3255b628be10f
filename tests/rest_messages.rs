//! The REST API against the real binary: messages (send, read, edit,
//! delete), history paging, and REST changes reaching Socket.IO subscribers.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use common::client::Client;
use common::rest::*;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};
const SEC: Duration = Duration::from_secs(5);

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

    // Past every seq (2^63 and more, up to past u64): exact answers, where
    // such values once wrapped to negative in the store (everything after
    // "-1", nothing before it).
    for huge in [
        "9223372036854775808",
        "18446744073709551615",
        "99999999999999999999999",
    ] {
        assert_eq!(page(&alice, &format!("?after={huge}")), (vec![], false));
        assert_eq!(
            page(&alice, &format!("?before={huge}")),
            (range(56, 105), true)
        );
    }
    assert_eq!(
        page(&alice, "?before=9223372036854775807&limit=2"),
        (range(104, 105), true)
    );

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

/// A REST send with a `clientMessageId`.
fn send_once(api: &Api, cid: &str, cmid: &str) -> Answer {
    let body = json!({"channelId": cid, "content": "once", "clientMessageId": cmid});
    api.call("POST", "/api/v1/messages", Some(body))
}

#[test]
fn a_deleted_channels_messages_are_gone_for_delete_and_repeated_sends() {
    let server = TestServer::start();
    let alice = as_user(&server, "alice");
    let send = send_once;
    // Its messages are gone for DELETE as for GET and PUT (DELETE answered
    // 204), and a repeated clientMessageId is refused as a first send is
    // (it answered 200 with the stored message).
    let doomed = alice.create("doomed", "private", &[]);
    let did = doomed["id"].as_str().unwrap();
    let first = send(&alice, did, "a-1");
    assert_eq!(first.status, 201, "{first:?}");
    let again = send(&alice, did, "a-1");
    assert_eq!((again.status, &again.json), (200, &first.json));
    let path = format!(
        "/api/v1/messages/{}",
        first.json["message"]["id"].as_str().unwrap()
    );
    assert_eq!(
        alice
            .call("DELETE", &format!("/api/v1/channels/{did}"), None)
            .status,
        204
    );
    assert_eq!(alice.get(&path).status, 404);
    let a = alice.call("PUT", &path, Some(json!({"content": "z"})));
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"));
    let a = alice.call("DELETE", &path, None);
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"), "{a:?}");
    let a = send(&alice, did, "a-1");
    assert_eq!((a.status, a.code()), (404, "NOT_FOUND"), "{a:?}");
}

#[test]
fn a_repeated_send_after_leaving_is_refused_like_a_first_send() {
    let server = TestServer::start();
    let alice = as_user(&server, "alice");
    let send = send_once;
    // bob's membership of a public channel ends when he leaves it: a
    // repeat is refused like a first send by a non-member (it answered 200
    // with the stored message).
    let public = alice.create("open", "public", &[]);
    let pid = public["id"].as_str().unwrap();
    let bob = as_user(&server, "bob");
    let mut ws = Client::connect(&server, "bob");
    assert_eq!(
        ws.call("join_channel", json!({"channelId": pid}))["ok"],
        true
    );
    let first = send(&bob, pid, "b-1");
    assert_eq!(first.status, 201, "{first:?}");
    assert_eq!(
        ws.call("leave_channel", json!({"channelId": pid}))["ok"],
        true
    );
    // The leave is acked before the store has written it: wait until the
    // store no longer lists bob as a member.
    let deadline = Instant::now() + SEC;
    while bob.get("/api/v1/channels").json["channels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == pid)
    {
        assert!(Instant::now() < deadline, "bob is still a member");
        std::thread::sleep(Duration::from_millis(20));
    }
    let a = send(&bob, pid, "b-2");
    assert_eq!(
        (a.status, a.code()),
        (403, "FORBIDDEN"),
        "a first send: {a:?}"
    );
    let a = send(&bob, pid, "b-1");
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"), "a repeat: {a:?}");
}
