//! `gatrix-chat import --from mysql://…` against the Node.js Gatrix chat
//! server's schema (tests/fixtures/gatrix_original_schema.sql, from its
//! knex migrations) filled with every case the import maps or skips, on
//! scripts/test's MariaDB: our tables after the import, a second run that
//! changes nothing, then the real server on the imported database seen
//! through the Gatrix dialect (the backend's REST calls and a frontend
//! socket with a backend-style token): the original's channel numbers and
//! message ids, and a new message taking the next seq. An import beside a
//! running server, and into the served store afterwards, is refused.

mod common;

use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::{Value, json};

use common::mysql::{connect, mysql_db};
use common::raw::{as_event_args, open, recv_text, send_text, sio_connect_with};
use common::rest::Http;
use common::{TestServer, now_secs};

const GATRIX_JWT_SECRET: &str = "the-gatrix-backends-jwt-secret-for-the-import-test";
const SERVICE_TOKEN: &str = "the-gatrix-backends-service-token-for-the-import-test";

/// The original's data: every case the import handles. Times are UTC.
/// Rows the original's foreign keys would refuse (a message of a channel
/// and a message of a user that are gone, a member of a channel that is
/// gone) are written with the checks off, as a restored or hand-edited
/// database can hold them.
const DATA: &str = "
SET time_zone = '+00:00';
INSERT INTO chat_users (id, gatrixUserId, username, email, name, avatarUrl, chatStatus, customStatus,
                        createdAt, updatedAt) VALUES
 (2, 1001, 'ann', 'ann@example.com', 'Ann', 'https://cdn.example/ann.png', 'online', 'here',
  '2025-01-02 03:04:05', '2025-01-03 00:00:00'),
 (3, 1002, 'bob', 'bob@example.com', 'Bob', NULL, 'busy', NULL,
  '2025-01-02 03:04:06', '2025-01-02 03:04:06'),
 (4, 1003, 'cid', NULL, NULL, NULL, 'offline', NULL, '2025-01-02 03:04:07', '2025-01-02 03:04:07'),
 (5, 1004, 'dee', NULL, 'Dee', NULL, 'offline', NULL, '2025-01-02 03:04:08', '2025-01-02 03:04:08');
INSERT INTO chat_channels (id, name, channelName, description, type, createdBy, ownerId, isArchived,
                           archivedAt, settings, maxMembers, createdAt, updatedAt) VALUES
 (10, 'general', 'general', 'all of us', 'public', 2, 2, 0, NULL,
  '{\"allowReactions\": true, \"slowMode\": 0}', 500, '2025-02-01 00:00:00', '2025-02-01 00:00:00'),
 (11, 'team', 'team', NULL, 'group', 2, 2, 0, NULL, NULL, 1000,
  '2025-02-01 00:00:01', '2025-02-01 00:00:01'),
 (12, NULL, 'ann-bob', NULL, 'direct', 3, 3, 0, NULL, NULL, 2,
  '2025-02-01 00:00:02', '2025-02-01 00:00:02'),
 (13, 'old', 'old', NULL, 'public', 2, 2, 1, '2025-03-01 00:00:00', NULL, 1000,
  '2025-02-01 00:00:03', '2025-03-01 00:00:00');
INSERT INTO chat_channel_members (channelId, userId, role, status, joinedAt, lastReadMessageId,
                                  lastReadAt) VALUES
 (10, 2, 'owner',  'active', '2025-02-01 00:00:00', 24,   '2025-02-02 00:10:00'),
 (10, 3, 'member', 'active', '2025-02-01 00:01:00', 21,   '2025-02-02 00:02:00'),
 (10, 4, 'admin',  'active', '2025-02-01 00:02:00', 28,   '2025-02-02 00:20:00'),
 (10, 5, 'member', 'left',   '2025-02-01 00:03:00', NULL, NULL),
 (11, 2, 'owner',  'active', '2025-02-01 00:00:01', NULL, NULL),
 (11, 3, 'admin',  'muted',  '2025-02-01 00:00:02', 22,   '2025-02-02 00:00:00'),
 (12, 2, 'member', 'active', '2025-02-01 00:00:02', NULL, NULL),
 (12, 3, 'owner',  'active', '2025-02-01 00:00:02', 26,   '2025-02-02 00:00:00'),
 (13, 2, 'owner',  'active', '2025-02-01 00:00:03', NULL, NULL);
INSERT INTO chat_messages (id, channelId, userId, content, contentType, messageData, replyToMessageId,
                           threadId, isEdited, isDeleted, isPinned, deletedAt, createdAt, updatedAt) VALUES
 (20, 10, 2, 'hello', 'text', NULL, NULL, NULL, 0, 0, 0, NULL, '2025-02-02 00:00:00', '2025-02-02 00:00:00'),
 (21, 10, 3, 'hi ann', 'text', NULL, 20, NULL, 0, 0, 0, NULL, '2025-02-02 00:01:00', '2025-02-02 00:01:00'),
 (22, 11, 2, 'team news', 'text', NULL, NULL, NULL, 0, 0, 0, NULL, '2025-02-02 00:02:00', '2025-02-02 00:02:00'),
 (23, 10, 4, 'typo fixed', 'text', NULL, NULL, NULL, 1, 0, 0, NULL, '2025-02-02 00:03:00', '2025-02-02 00:09:00'),
 (24, 10, 2, 'oops', 'text', NULL, NULL, NULL, 0, 1, 0, '2025-02-02 00:05:00', '2025-02-02 00:04:00', '2025-02-02 00:05:00'),
 (25, 10, 3, 'in the thread', 'text', NULL, NULL, 20, 0, 0, 0, NULL, '2025-02-02 00:06:00', '2025-02-02 00:06:00'),
 (26, 12, 3, 'just us', 'text', NULL, NULL, NULL, 0, 0, 0, NULL, '2025-02-02 00:07:00', '2025-02-02 00:07:00'),
 (29, 10, 1, 'Dee left', 'system', NULL, NULL, NULL, 0, 0, 0, NULL, '2025-02-02 00:10:00', '2025-02-02 00:10:00'),
 (30, 10, 2, 'see picture', 'image', '{\"url\": \"https://cdn.example/p.png\"}', NULL, NULL, 0, 0, 1, NULL,
  '2025-02-02 00:11:00', '2025-02-02 00:12:00'),
 (31, 13, 2, 'archived talk', 'text', NULL, NULL, NULL, 0, 0, 0, NULL, '2025-02-02 00:13:00', '2025-02-02 00:13:00');
SET FOREIGN_KEY_CHECKS = 0;
INSERT INTO chat_messages (id, channelId, userId, content, replyToMessageId, createdAt, updatedAt) VALUES
 (27, 10, 9, 'from a user without a row', NULL, '2025-02-02 00:08:00', '2025-02-02 00:08:00'),
 (28, 99, 3, 'of a channel without a row', NULL, '2025-02-02 00:09:00', '2025-02-02 00:09:00'),
 (32, 10, 3, 'replying to the lost one', 28, '2025-02-02 00:14:00', '2025-02-02 00:14:00');
INSERT INTO chat_channel_members (channelId, userId, role, status) VALUES (99, 3, 'member', 'active');
INSERT INTO chat_channel_members (channelId, userId, role, status) VALUES (10, 9, 'member', 'active');
SET FOREIGN_KEY_CHECKS = 1;
INSERT INTO chat_message_reactions (messageId, userId, emoji) VALUES (20, 3, '+1'), (21, 2, 'heart');
INSERT INTO chat_message_attachments (messageId, fileName, fileUrl, fileType, fileSize)
VALUES (30, 'p.png', 'https://cdn.example/p.png', 'image/png', 1234);
";

/// Runs the SQL statements of `sql` (`;` at a line's end ends one; `--`
/// lines are comments) on the database at `url`.
fn run_script(url: &str, sql: &str) {
    let mut c = connect(url).expect("connect");
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    for statement in text.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        let statement = statement.trim_end_matches(';');
        c.query_drop(statement)
            .unwrap_or_else(|e| panic!("{e}: {statement}"));
    }
}

/// The original's database, built from its migrations and filled.
fn original() -> String {
    let url = mysql_db();
    run_script(&url, include_str!("fixtures/gatrix_original_schema.sql"));
    run_script(&url, DATA);
    url
}

/// Runs `gatrix-chat import --from <from>` on the store at `db`; (exit
/// code, stdout, stderr).
fn import(db: &str, from: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gatrix-chat"));
    command
        .args(["import", "--from", from])
        .current_dir(dir.path())
        .env("DATABASE_URL", db)
        .env("DATA_DIR", dir.path().join("data"))
        .env("JWT_SECRET", "a-test-secret-of-enough-length-0123456789");
    let out = common::run_client(&mut command, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report's line of `table`: (read, written, already, skipped).
fn counts(report: &str, table: &str) -> (u64, u64, u64, u64) {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{table} ")))
        .unwrap_or_else(|| panic!("no line for {table} in the report:\n{report}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .rev()
        .take(4)
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{line}")))
        .collect();
    (n[3], n[2], n[1], n[0])
}

/// Row counts and MariaDB's checksums of `tables`.
fn snapshot(url: &str, tables: &[&str]) -> Vec<(String, u64, Option<u64>)> {
    let mut c = connect(url).expect("connect");
    tables
        .iter()
        .map(|t| {
            let n: Option<u64> = c.query_first(format!("SELECT COUNT(*) FROM {t}")).unwrap();
            let sum: Option<(String, Option<u64>)> =
                c.query_first(format!("CHECKSUM TABLE {t}")).unwrap();
            ((*t).to_owned(), n.unwrap(), sum.unwrap().1)
        })
        .collect()
}

const OURS: &[&str] = &[
    "users",
    "channels",
    "channel_members",
    "messages",
    "sequencer",
];
const THEIRS: &[&str] = &[
    "chat_users",
    "chat_channels",
    "chat_channel_members",
    "chat_messages",
    "chat_message_reactions",
];

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn the_originals_data_imported_once_and_served_with_its_ids() {
    let from = original();
    let db = mysql_db();
    let theirs_before = snapshot(&from, THEIRS);

    let (code, out, err) = import(&db, &from);
    assert_eq!(code, 0, "import: {out}{err}");
    println!("the first import's report:\n{out}");
    assert_eq!(counts(&out, "chat_users"), (5, 5, 0, 0), "{out}");
    assert_eq!(counts(&out, "chat_channels"), (4, 4, 0, 0), "{out}");
    assert_eq!(counts(&out, "chat_messages"), (13, 12, 0, 1), "{out}");
    assert_eq!(counts(&out, "chat_channel_members"), (11, 8, 0, 3), "{out}");
    assert_eq!(
        counts(&out, "chat_message_reactions"),
        (2, 0, 0, 2),
        "{out}"
    );
    assert_eq!(
        counts(&out, "chat_message_attachments"),
        (1, 0, 0, 1),
        "{out}"
    );
    assert!(out.contains("29 row(s) written"), "{out}");
    for reason in [
        "chat_messages: 1 of a channel that chat_channels does not hold",
        "chat_channel_members: 1 the member left the channel",
        "chat_channel_members: 1 of a user chat_users does not hold",
        "chat_channel_members: 1 of a channel that chat_channels does not hold",
        "chat_message_reactions: 2 gatrix-chat's schema has no reactions",
        "chat_messages: 1 by a user chat_users does not hold",
        "chat_messages: 1 in a thread: imported as a reply",
        "chat_messages: 1 replying to a message not imported",
        "chat_channels: 1 archived: imported as deleted",
        "chat_channel_members: 1 muted",
    ] {
        assert!(out.contains(reason), "no {reason:?} in the report:\n{out}");
    }
    check_tables(&db);

    // A second run: nothing written, nothing changed, and it says so.
    let ours_after_first = snapshot(&db, OURS);
    let (code, again, err) = import(&db, &from);
    assert_eq!(code, 0, "second import: {again}{err}");
    println!("the second import's report:\n{again}");
    assert!(again.contains("nothing written"), "{again}");
    assert_eq!(counts(&again, "chat_messages"), (13, 0, 12, 1), "{again}");
    assert_eq!(
        counts(&again, "chat_channel_members"),
        (11, 0, 8, 3),
        "{again}"
    );
    assert_eq!(counts(&again, "chat_users"), (5, 0, 5, 0), "{again}");
    assert_eq!(
        snapshot(&db, OURS),
        ours_after_first,
        "the second run changed the store"
    );
    assert_eq!(
        snapshot(&from, THEIRS),
        theirs_before,
        "the import changed the original"
    );

    // The original got a message since: a third run adds it alone, after
    // its channel's last seq.
    run_script(
        &from,
        "INSERT INTO chat_messages (id, channelId, userId, content, createdAt, updatedAt)
         VALUES (33, 10, 2, 'one more before the switch', '2025-02-03 00:00:00', '2025-02-03 00:00:00');",
    );
    let (code, third, err) = import(&db, &from);
    assert_eq!(code, 0, "third import: {third}{err}");
    assert_eq!(counts(&third, "chat_messages"), (14, 1, 12, 1), "{third}");
    assert!(third.contains("1 row(s) written"), "{third}");
    let mut c = connect(&db).expect("connect");
    let added: Option<(String, u64)> = c
        .query_first("SELECT channel_id, seq FROM messages WHERE id = 33")
        .unwrap();
    assert_eq!(added, Some(("gatrix-10".into(), 10)));

    let server = TestServer::start_with(&[
        ("DATABASE_URL", &db),
        ("GATRIX_COMPAT", "true"),
        ("GATRIX_JWT_SECRET", GATRIX_JWT_SECRET),
        ("BACKEND_SERVICE_TOKEN", SERVICE_TOKEN),
    ]);
    let (code, out, err) = import(&db, &from);
    assert_eq!(code, 2, "an import beside a running server: {out}{err}");
    assert!(
        err.contains("not importing") && err.contains("in use"),
        "{err}"
    );

    check_served(&server);
    let status = server.stop();
    assert!(status.success(), "the server's exit: {status}");
    let (code, out, err) = import(&db, &from);
    assert_eq!(code, 2, "an import into a served store: {out}{err}");
    assert!(
        err.contains("STORE_SERVED") && err.contains("1 message(s)"),
        "{err}"
    );
}

/// Our tables after the first import.
fn check_tables(db: &str) {
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
    assert_eq!(by_id(25).4.as_deref(), Some("20"), "a thread's message");
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
fn check_served(server: &TestServer) {
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
fn next_event(ws: &mut common::raw::Ws, name: &str) -> Value {
    loop {
        let packet = recv_text(ws);
        if let Some((event, mut args)) = as_event_args(&packet)
            && event == name
        {
            return args.swap_remove(0);
        }
    }
}
