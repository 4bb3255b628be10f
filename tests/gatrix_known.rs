//! `GATRIX_REQUIRE_KNOWN_USERS` (issue 15 item 2; docs/protocol.md, "The
//! Gatrix dialect", and docs/api.md, "The Gatrix REST dialect") against
//! the real binary: a Gatrix CONNECT or REST call of a user the directory
//! does not know is refused with the original's words (the frontend does
//! not loop refreshing its token on them), a sync admits the user, a
//! delete refuses them again, also after the directory had them in memory
//! (put there by the sync, or by a CONNECT's store read); native tokens
//! are never checked. A server of its own: js_clients.rs's server serves
//! every Gatrix scenario without the setting.

mod common;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::client::{Client, read_text};
use common::rest::{Answer, Http};
use common::{TestServer, run_client};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

const SERVICE_TOKEN: &str = "gatrix-known-service-token-of-the-tests-0123456789";
const BACKEND_SECRET: &str = "gatrix-known-backend-secret-of-the-tests-0123456789";

fn server() -> TestServer {
    TestServer::start_with(&[
        ("GATRIX_COMPAT", "true"),
        ("GATRIX_REQUIRE_KNOWN_USERS", "true"),
        ("BACKEND_SERVICE_TOKEN", SERVICE_TOKEN),
        ("GATRIX_JWT_SECRET", BACKEND_SECRET),
    ])
}

/// An access token as the Gatrix backend signs it (`utils/jwt.ts`).
fn backend_token(user: &str) -> String {
    let now = common::now_secs();
    let claims = json!({"userId": user, "email": format!("{user}@example.com"),
                        "iat": now, "exp": now + 900, "iss": "gatrix", "aud": "gatrix-users"});
    let key = EncodingKey::from_secret(BACKEND_SECRET.as_bytes());
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
}

/// A Gatrix REST call as the backend sends it: for `user` through its
/// proxy, or for itself (`None`).
fn gx(
    server: &TestServer,
    method: &str,
    path: &str,
    user: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let body = body.map(|b| b.to_string());
    let mut headers = vec![("X-API-Token", SERVICE_TOKEN)];
    if let Some(u) = user {
        headers.push(("X-User-ID", u));
    }
    Http::connect(server).send_with(
        method,
        &format!("/api/v1{path}"),
        &headers,
        None,
        body.as_deref().map(str::as_bytes),
    )
}

fn sync(server: &TestServer, user: &str, acting: Option<&str>) {
    let a = gx(
        server,
        "POST",
        "/users/upsert",
        acting,
        Some(json!({"id": user, "username": user, "name": format!("N {user}")})),
    );
    assert!(a.status == 200 && a.json["success"] == true, "{a:?}");
}

fn delete(server: &TestServer, user: &str) {
    let a = gx(server, "DELETE", &format!("/users/{user}"), None, None);
    assert!(a.status == 200 && a.json["success"] == true, "{a:?}");
}

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

/// A Socket.IO CONNECT with `token`: the reply packet, and the socket.
fn connect(server: &TestServer, token: &str) -> (String, Ws) {
    let mut ws = Client::open(server, "");
    let open = read_text(&mut ws);
    assert!(open.starts_with("0{"), "{open}");
    ws.send(Message::text(format!("40{}", json!({ "token": token }))))
        .unwrap();
    (read_text(&mut ws), ws)
}

/// The CONNECT is answered `40` and `connected` follows.
fn admitted(server: &TestServer, user: &str) {
    let (reply, mut ws) = connect(server, &backend_token(user));
    assert!(reply.starts_with("40{"), "{user}: {reply}");
    let next = read_text(&mut ws);
    assert!(next.starts_with(r#"42["connected","#), "{user}: {next}");
}

/// The CONNECT is answered with the original's refusal, then the
/// connection is closed with 4003 (nothing else in between).
fn refused(server: &TestServer, user: &str) {
    let (reply, mut ws) = connect(server, &backend_token(user));
    let body = reply
        .strip_prefix("44")
        .unwrap_or_else(|| panic!("{user}: expected CONNECT_ERROR, got {reply}"));
    let v: Value = serde_json::from_str(body).expect("CONNECT_ERROR JSON");
    assert_eq!(
        v,
        json!({"message": "User not found in chat server",
               "data": {"code": "UNAUTHORIZED", "reason": "USER_UNKNOWN"}}),
        "{user}"
    );
    // The frontend refreshes its token and reconnects on these words
    // (chatWebSocketService.ts): a refresh would not help here.
    let message = v["message"].as_str().unwrap();
    for word in ["jwt", "expired", "Authentication error"] {
        assert!(!message.contains(word), "{message}");
    }
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                let f = f.expect("a close code");
                assert_eq!((u16::from(f.code), &*f.reason), (4003, "connect refused"));
                break;
            }
            Ok(Message::Text(t)) => panic!("{user}: after the CONNECT_ERROR: {t}"),
            Ok(_) => {}
            Err(e) => panic!("{user}: no close frame: {e}"),
        }
    }
}

/// The CONNECT is answered with `message` and `data`, then closed 4003.
fn refused_with(server: &TestServer, user: &str, expected: Value) {
    let (reply, mut ws) = connect(server, &backend_token(user));
    let body = reply
        .strip_prefix("44")
        .unwrap_or_else(|| panic!("{user}: expected CONNECT_ERROR, got {reply}"));
    let v: Value = serde_json::from_str(body).expect("CONNECT_ERROR JSON");
    assert_eq!(v, expected, "{user}");
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 4003),
        other => panic!("{user}: expected close 4003, got {other:?}"),
    }
}

/// `chat_refusals_total{reason}` summed over the shards.
fn refusals(server: &TestServer, reason: &str) -> f64 {
    let r = common::http_get(server.port(), "/metrics").expect("GET /metrics");
    let label = format!("reason=\"{reason}\"");
    r.body
        .lines()
        .filter(|l| l.starts_with("chat_refusals_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn rest_refused(a: &Answer) {
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(
        a.json,
        json!({"success": false, "error": {"code": "UNAUTHORIZED", "reason": "USER_UNKNOWN",
               "message": "User not found in chat system. Please sync user first."}}),
    );
}

#[test]
fn unknown_users_are_refused_until_synced_and_again_once_deleted() {
    let server = server();
    let before = refusals(&server, "user_unknown");
    refused(&server, "u1");
    assert_eq!(refusals(&server, "user_unknown"), before + 1.0);
    assert_eq!(server.gauge("chat_connections_active"), 0.0);
    rest_refused(&gx(&server, "GET", "/channels/my", Some("u1"), None));
    rest_refused(&gx(&server, "GET", "/users", Some("u1"), None));
    rest_refused(&gx(&server, "GET", "/users/check/u1", Some("u1"), None));
    assert_eq!(refusals(&server, "user_unknown"), before + 4.0);

    // Synced by the backend (the directory has them in memory now).
    sync(&server, "u1", None);
    admitted(&server, "u1");
    let mine = gx(&server, "GET", "/channels/my", Some("u1"), None);
    assert!(
        mine.status == 200 && mine.json["success"] == true,
        "{mine:?}"
    );

    // Deleted: refused again at once, whatever memory had.
    delete(&server, "u1");
    refused(&server, "u1");
    rest_refused(&gx(&server, "GET", "/channels/my", Some("u1"), None));
    sync(&server, "u1", None);
    admitted(&server, "u1");
    assert_eq!(refusals(&server, "user_unknown"), before + 6.0);
}

#[test]
fn a_user_the_store_knows_is_admitted_by_a_read_and_refused_after_a_delete() {
    let server = server();
    // Synced by another instance, or imported: in the store, not in this
    // process's memory. The CONNECT reads it (and keeps it in memory).
    let db = rusqlite::Connection::open(server.db_path()).expect("open the server's database");
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO users (id, username, created_at, updated_at) VALUES ('u2', 'u2', 'x', 'x')",
        [],
    )
    .expect("insert a user");
    drop(db);
    admitted(&server, "u2");
    admitted(&server, "u2");
    let mine = gx(&server, "GET", "/channels/my", Some("u2"), None);
    assert_eq!(mine.status, 200, "{mine:?}");
    delete(&server, "u2");
    refused(&server, "u2");
    rest_refused(&gx(&server, "GET", "/messages/1", Some("u2"), None));
}

#[test]
fn a_users_own_sync_is_never_refused_and_native_tokens_are_never_checked() {
    let server = server();
    // The frontend syncs its user through the backend's proxy (with
    // X-User-ID) before it connects.
    sync(&server, "u3", Some("u3"));
    admitted(&server, "u3");
    // Changing someone else still needs the user known.
    let a = gx(
        &server,
        "PUT",
        "/users/u3/status",
        Some("stranger"),
        Some(json!({"status": "away"})),
    );
    rest_refused(&a);

    // A native client (native token, no directory entry) is not checked,
    // over Socket.IO and REST alike.
    let mut native = Client::connect(&server, "nobody");
    let channel = server.create_channel("nobody", "native-room", "public", &[]);
    let ack = native.call("join_channel", json!({ "channelId": channel }));
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = native.call(
        "send_message",
        json!({"channelId": channel, "content": "hi"}),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(server.history("nobody", &channel).len(), 1);
    assert_eq!(refusals(&server, "user_unknown"), 1.0, "only the stranger");
}

#[test]
fn a_store_that_cannot_answer_refuses_never_admits() {
    let server = server();
    sync(&server, "cached", None);
    // Every read of the directory fails from now on, as with a store
    // that is down (the SQLite file is the server's own).
    let db = rusqlite::Connection::open(server.db_path()).expect("open the server's database");
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute("DROP TABLE users", []).expect("drop users");
    drop(db);
    refused_with(
        &server,
        "u4",
        json!({"message": "User directory unavailable; retry later",
               "data": {"code": "UNAVAILABLE", "reason": "DIRECTORY_UNAVAILABLE"}}),
    );
    let a = gx(&server, "GET", "/channels/my", Some("u4"), None);
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(
        (&a.json["success"], &a.json["error"]["reason"]),
        (&json!(false), &json!("DIRECTORY_UNAVAILABLE")),
        "{a:?}"
    );
    assert_eq!(refusals(&server, "directory_unavailable"), 2.0);
    assert_eq!(refusals(&server, "user_unknown"), 0.0);
    // A user the process has in memory needs no read.
    admitted(&server, "cached");
}

/// The same with the stock socket.io-client configured as the frontend
/// configures it, over WebSocket and long-polling
/// (`tests/js/gatrix_known/known.test.js`).
#[test]
#[ignore = "needs node_modules / python venv: run scripts/test"]
fn the_stock_client_sees_the_refusal_as_the_frontend_would() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/socket.io-client/package.json")
            .is_file(),
        "socket.io-client is not installed in {}: run scripts/test (or `npm ci` there)",
        js.display()
    );
    let server = server();
    let output = run_client(
        Command::new("node")
            .arg("--test")
            .arg("--test-reporter=spec")
            .arg("--test-timeout=30000")
            .arg(Path::new("gatrix_known").join("known.test.js"))
            .current_dir(&js)
            .env("GATRIX_URL", server.url())
            .env("JWT_SECRET", server.secret())
            .env("GATRIX_JWT_SECRET", BACKEND_SECRET)
            .env("BACKEND_SERVICE_TOKEN", SERVICE_TOKEN),
        Duration::from_secs(120),
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "known.test.js failed ({})",
        output.status
    );
    assert_eq!(refusals(&server, "user_unknown"), 4.0);
}
