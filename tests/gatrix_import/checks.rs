//! What tests/gatrix_import.rs checks after the import: our tables, and
//! what the Gatrix backend and frontend see of them on the real server.

use mysql::prelude::Queryable;
use serde_json::{Value, json};

use super::{GATRIX_JWT_SECRET, SERVICE_TOKEN};
use crate::common::mysql::connect;
use crate::common::raw::{Ws, as_event_args, open, recv_text, send_text, sio_connect_with};
use crate::common::rest::Http;
use crate::common::{TestServer, now_secs};

/// Our tables after the first import.
pub(crate) fn check_tables(db: &str) {
    let mut c = connect(db).expect("connect");
    // id, num, type, deleted_at, settings, max_members, last_seq
    type Channel = (
        String,
        u64,
        String,
        Option<String>,
        Option<String>,
        Option<u32>,
        u64,
    );
    let channels: Vec<Channel> = c
        .query(
            "SELECT id, num, type, deleted_at, settings, max_members, last_seq FROM channels ORDER BY num",
        )
        .unwrap();
    let settings = r#"{"allowReactions":true,"slowMode":0}"#;
    assert_eq!(
        channels,
        vec![
            (
                "gatrix-10".into(),
                10,
                "public".into(),
                None,
                Some(settings.into()),
                Some(500),
                9
            ),
            (
                "gatrix-11".into(),
                11,
                "private".into(),
                None,
                None,
                Some(1000),
                1
            ),
            (
                "gatrix-12".into(),
                12,
                "direct".into(),
                None,
                None,
                Some(2),
                1
            ),
            (
                "gatrix-13".into(),
                13,
                "public".into(),
                Some("2025-03-01T00:00:00.000Z".into()),
                None,
                Some(1000),
                1
            ),
        ]
    );
    let name: Option<String> = c
        .query_first("SELECT name FROM channels WHERE num = 12")
        .unwrap();
    assert_eq!(
        name.as_deref(),
        Some("ann-bob"),
        "channelName when name is NULL"
    );

    // Messages: the original ids, seqs per channel in id order, replies.
    type Row = (
        u64,
        String,
        u64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = c
        .query(
            "SELECT id, channel_id, seq, user_id, reply_to, edited_at, deleted_at, type
             FROM messages WHERE channel_id = 'gatrix-10' ORDER BY seq",
        )
        .unwrap();
    let ids: Vec<(u64, u64)> = rows.iter().map(|r| (r.0, r.2)).collect();
    assert_eq!(
        ids,
        [
            (20, 1),
            (21, 2),
            (23, 3),
            (24, 4),
            (25, 5),
            (27, 6),
            (29, 7),
            (30, 8),
            (32, 9)
        ]
    );
    let by_id = |id: u64| rows.iter().find(|r| r.0 == id).unwrap();
    assert_eq!(by_id(20).3, "1001");
    assert_eq!(by_id(21).4.as_deref(), Some("20"), "a reply");
    assert_eq!(by_id(25).4, None, "a thread's message is no plain reply");
    // A thread's message is a reply in the thread of its first message,
    // which counts it (schema 8).
    let threads: Vec<(u64, Option<u64>, u64, Option<String>)> = c
        .query(
            "SELECT id, thread_id, thread_count, last_thread_at FROM messages
             WHERE id IN (20, 25) ORDER BY id",
        )
        .unwrap();
    assert_eq!(
        threads,
        [
            (20, None, 1, Some("2025-02-02T00:06:00.000Z".to_owned())),
            (25, Some(20), 1, None)
        ],
        "the thread of message 20"
    );
    assert_eq!(by_id(32).4, None, "a reply to a message not imported");
    assert_eq!(
        by_id(23).5.as_deref(),
        Some("2025-02-02T00:09:00.000Z"),
        "edited"
    );
    assert_eq!(
        by_id(24).6.as_deref(),
        Some("2025-02-02T00:05:00.000Z"),
        "deleted"
    );
    assert_eq!(by_id(27).3, "chat-user-9", "an author without a row");
    assert_eq!(by_id(29).3, "chat-user-1", "the original's system user");
    assert_eq!(by_id(29).7, "system");
    let missing: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM messages WHERE id = 28")
        .unwrap();
    assert_eq!(missing, Some(0), "the message of a missing channel");
    let pinned: Vec<(u64, Option<String>)> = c
        .query("SELECT id, pinned_at FROM messages WHERE pinned_at IS NOT NULL")
        .unwrap();
    assert_eq!(pinned, [(30, Some("2025-02-02T00:12:00.000Z".into()))]);
    // pos: gapless over the one partition, in id order; the counter at the end.
    let pos: Vec<u64> = c.query("SELECT pos FROM messages ORDER BY id").unwrap();
    assert_eq!(pos, (1..=12).collect::<Vec<u64>>());
    let last_pos: Option<u64> = c
        .query_first("SELECT last_pos FROM sequencer WHERE partition_id = 0")
        .unwrap();
    assert_eq!(last_pos, Some(12));

    // Members, roles and read marks.
    let members: Vec<(String, String, String, u64, Option<u64>)> = c
        .query(
            "SELECT channel_id, user_id, role, last_read_seq, last_read_message_id
             FROM channel_members ORDER BY channel_id, user_id",
        )
        .unwrap();
    let m = |ch: &str, u: &str, role: &str, seq: u64, id: Option<u64>| {
        (ch.to_owned(), u.to_owned(), role.to_owned(), seq, id)
    };
    assert_eq!(
        members,
        vec![
            m("gatrix-10", "1001", "owner", 4, Some(24)),
            m("gatrix-10", "1002", "member", 2, Some(21)),
            // message 28 is not here: the last imported one before it
            m("gatrix-10", "1003", "admin", 6, Some(28)),
            m("gatrix-11", "1001", "owner", 0, None),
            m("gatrix-11", "1002", "admin", 1, Some(22)),
            m("gatrix-12", "1001", "member", 0, None),
            m("gatrix-12", "1002", "owner", 1, Some(26)),
            m("gatrix-13", "1001", "owner", 0, None),
        ]
    );

    // The directory.
    type User = (String, String, Option<String>, Option<String>, String);
    let users: Vec<User> = c
        .query("SELECT id, username, name, avatar_url, status FROM users ORDER BY id")
        .unwrap();
    assert_eq!(users.len(), 5);
    assert_eq!(
        users[0],
        (
            "1001".into(),
            "ann".into(),
            Some("Ann".into()),
            Some("https://cdn.example/ann.png".into()),
            "offline".into()
        )
    );
    assert_eq!(users[1].4, "busy");
    assert_eq!(users[4].0, "chat-user-1");
}

/// The backend's REST call as its proxy makes it, as `user`.
fn backend(
    server: &TestServer,
    method: &str,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> Value {
    let mut http = Http::connect(server);
    let body = body.map(|b| b.to_string());
    let answer = http.send_with(
        method,
        &format!("/api/v1{path}"),
        &[("X-API-Token", SERVICE_TOKEN), ("X-User-ID", user)],
        None,
        body.as_deref().map(str::as_bytes),
    );
    assert!(
        answer.status < 300 && answer.json["success"] == true,
        "{method} {path}: {} {}",
        answer.status,
        answer.json
    );
    answer.json["data"].clone()
}

/// What the Gatrix frontend and backend see of the imported history.
pub(crate) fn check_served(server: &TestServer) {
    let page = backend(
        server,
        "GET",
        "/channels/10/messages?limit=50",
        "1002",
        None,
    );
    let messages = page["messages"].as_array().unwrap();
    let ids: Vec<u64> = messages.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids,
        [20, 21, 23, 25, 27, 29, 30, 32, 33],
        "deleted 24 left out: {page}"
    );
    assert!(messages.iter().all(|m| m["channelId"] == 10), "{page}");
    let by_id = |id: u64| messages.iter().find(|m| m["id"] == id).unwrap();
    assert_eq!(by_id(21)["replyToId"], 20);
    assert_eq!(by_id(23)["isEdited"], true);
    assert_eq!(by_id(20)["userId"], "1001");
    assert_eq!(
        by_id(20)["userName"],
        "Ann",
        "the imported directory names the author"
    );
    assert_eq!(by_id(20)["createdAt"], "2025-02-02T00:00:00.000Z");
    // The frontend pages by the ids it holds.
    let older = backend(
        server,
        "GET",
        "/channels/10/messages?before=25&limit=2",
        "1002",
        None,
    );
    let older: Vec<u64> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(older, [21, 23]);

    let mine = backend(server, "GET", "/channels/my", "1002", None);
    let mine = mine.as_array().unwrap_or_else(|| panic!("{mine}"));
    let nums: Vec<u64> = mine.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(
        {
            let mut n = nums.clone();
            n.sort_unstable();
            n
        },
        [10, 11, 12],
        "the archived channel is not listed"
    );
    let general = mine.iter().find(|c| c["id"] == 10).unwrap();
    assert_eq!(general["role"], "member");
    assert_eq!(general["lastReadMessageId"], 21);
    assert_eq!(general["unreadCount"], 8, "{general}");
    let admin_of = mine.iter().find(|c| c["id"] == 11).unwrap();
    assert_eq!(admin_of["role"], "admin", "an imported admin: {admin_of}");

    // The frontend's socket, with a token the backend signs.
    let claims = json!({
        "userId": "1002", "iss": "gatrix", "aud": "gatrix-users",
        "iat": now_secs(), "exp": now_secs() + 600,
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(GATRIX_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let (mut ws, _) = open(server);
    sio_connect_with(&mut ws, &json!({ "token": token }));
    send_text(
        &mut ws,
        format!("42{}", json!(["join_channel", {"channelId": 10}])),
    );
    let joined = next_event(&mut ws, "channel_joined");
    assert_eq!(joined["channelId"], 10);
    let content = "the first message after the import";
    send_text(
        &mut ws,
        format!(
            "42{}",
            json!(["send_message", {"channelId": 10, "content": content}])
        ),
    );
    let created = next_event(&mut ws, "message");
    assert_eq!(created["type"], "message_created", "{created}");
    let data = &created["data"];
    assert_eq!(
        (data["channelId"].clone(), data["content"].clone()),
        (json!(10), json!(content))
    );
    assert_eq!(
        data["seq"], 11,
        "the next seq after the imported ones: {data}"
    );
    let id = data["id"].as_u64().unwrap();
    assert!(
        (1 << 43..1 << 53).contains(&id),
        "a new id of the server's own: {id}"
    );
}

/// The next event `name` (others are passed over); its first argument.
fn next_event(ws: &mut Ws, name: &str) -> Value {
    loop {
        let packet = recv_text(ws);
        if let Some((event, mut args)) = as_event_args(&packet)
            && event == name
        {
            return args.swap_remove(0);
        }
    }
}
