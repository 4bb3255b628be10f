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

use checks::{check_served, check_tables};
use common::TestServer;
use common::mysql::{connect, mysql_db};

#[path = "gatrix_import/checks.rs"]
mod checks;

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
    import_into(Some(db), from)
}

/// [`import`], into SQLite in a temp dir when `db` is None.
fn import_into(db: Option<&str>, from: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gatrix-chat"));
    command
        .args(["import", "--from", from])
        .current_dir(dir.path())
        .env("DATA_DIR", dir.path().join("data"))
        .env("JWT_SECRET", "a-test-secret-of-enough-length-0123456789");
    match db {
        Some(db) => command.env("DATABASE_URL", db),
        None => command
            .env_remove("DATABASE_URL")
            .env_remove("DB_HOST")
            .env_remove("CHAT_DB_HOST"),
    };
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

/// Refusals that need no database: each exits 2 with its reason, before
/// connecting anywhere (the ports named are closed).
#[test]
fn imports_into_sqlite_or_from_no_database_or_into_the_original_are_refused() {
    let from = "mysql://chat_user:pw@127.0.0.1:1/gatrix_chat";
    let (code, out, err) = import_into(None, from);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("the store is SQLite") && err.contains("DATABASE_URL"),
        "{err}"
    );

    let store = "mysql://gatrix:pw@127.0.0.1:1/gatrix_chat_rs";
    let (code, out, err) = import(store, "mysql://chat_user:pw@127.0.0.1:1");
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--from names no database"), "{err}");

    let (code, out, err) = import(store, "mysql://other:pw@127.0.0.1:1/gatrix_chat_rs");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("one database") && !err.contains("pw@"),
        "{err}"
    );
}

/// Instances with Redis on the database (the import takes the whole
/// database's lock, and an instance holds a slot lock): refused before the
/// original is even read (its port here is closed).
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn an_import_beside_instances_with_redis_is_refused() {
    let db = mysql_db();
    let redis = common::redis::Redis::start();
    let url = redis.url();
    let instance = TestServer::start_with(&[
        ("DATABASE_URL", db.as_str()),
        ("REDIS_URL", url.as_str()),
        ("SERVER_ID", "chat-a"),
    ]);
    let (code, out, err) = import(&db, "mysql://chat_user:pw@127.0.0.1:1/gatrix_chat");
    assert_eq!(
        code, 2,
        "an import beside an instance with Redis: {out}{err}"
    );
    assert!(
        err.contains("not importing") && err.contains("instances with Redis"),
        "{err}"
    );
    let status = instance.stop();
    assert!(status.success(), "the instance's exit: {status}");
}
