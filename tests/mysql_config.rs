//! Pointing the real binary at MariaDB: the original server's DB_HOST /
//! DB_PORT / DB_NAME / DB_USER / DB_PASSWORD select the MySQL store as
//! DATABASE_URL does, and `gatrix-chat migrate` and `gatrix-chat db
//! partitions` work on a database of its own.
//!
//! Ignored without scripts/test's MariaDB (and failing, run without it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::json;

use common::TestServer;
use common::mysql::{connect, mysql_db};
use common::raw::{call, connect as ws_connect, join};

/// The parts of `mysql://user:pass@host:port/db`.
struct UrlParts {
    user: String,
    password: String,
    host: String,
    port: String,
    db: String,
}

fn parts(url: &str) -> UrlParts {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let (userinfo, rest) = rest.rsplit_once('@').expect("user@host");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    let (hostport, db) = rest.split_once('/').expect("host:port/db");
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    UrlParts {
        user: user.into(),
        password: password.into(),
        host: host.into(),
        port: port.into(),
        db: db.into(),
    }
}

fn count(db: &str, sql: &str) -> u64 {
    let mut conn = connect(db).expect("connect to the test database");
    conn.query_first(sql).expect(sql).expect("a count")
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn db_host_settings_select_mariadb() {
    let db = mysql_db();
    let p = parts(&db);
    let server = TestServer::start_with(&[
        ("DB_HOST", &p.host),
        ("DB_PORT", &p.port),
        ("DB_NAME", &p.db),
        ("DB_USER", &p.user),
        ("DB_PASSWORD", &p.password),
        // One writer and one reader connection.
        ("DB_POOL_SIZE", "2"),
    ]);
    let channel = server.create_channel("alice", "configured", "public", &[]);
    let mut ws = ws_connect(&server, "alice");
    join(&mut ws, &channel);
    let ack = call(
        &mut ws,
        2,
        "send_message",
        json!({ "channelId": channel, "content": "stored in MariaDB 🐬" }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    let history = server.history("alice", &channel);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["content"], "stored in MariaDB 🐬");

    // In the database named by DB_NAME, not in a SQLite file.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages"), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM channels"), 1);
    assert!(
        !server.db_path().exists(),
        "a SQLite database was made under DATA_DIR"
    );
    // The server's connections: at most DB_POOL_SIZE, all to this
    // database. The ones made at start (migrations, partition upkeep) are
    // closed by then, but MariaDB can list a closed connection for a
    // moment after it ends: wait for the count to come down, a bounded time.
    let mut conn = connect(&db).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mine = loop {
        let mine: u64 = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
                (&p.db,),
            )
            .expect("processlist")
            .expect("a count");
        if mine <= 2 || Instant::now() > deadline {
            break mine;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        (1..=2).contains(&mine),
        "{mine} server connections to the database with DB_POOL_SIZE=2"
    );
}

/// Runs the binary with `args` and the database at `db` as DATABASE_URL;
/// returns (exit code, stdout, stderr).
fn gatrix_chat(db: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatrix-chat"));
    command
        .args(args)
        .current_dir(dir.path())
        .env("DATABASE_URL", db)
        .env("DATA_DIR", dir.path().join("data"))
        .env("JWT_SECRET", "a-test-secret-of-enough-length-0123456789");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = common::run_client(&mut command, Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn migrate_and_db_partitions_commands() {
    let db = mysql_db();
    let (code, out, err) = gatrix_chat(&db, &["migrate"], &[]);
    assert_eq!(code, 0, "migrate: {out}{err}");
    let (code, out, err) = gatrix_chat(&db, &["migrate"], &[]);
    assert_eq!(code, 0, "migrate again: {out}{err}");
    assert!(
        out.contains("0 migration"),
        "a second migrate applied some: {out}"
    );

    // A dry run changes nothing; the real run makes this month and three
    // ahead, before the MAXVALUE catch-all.
    let partitions = |db: &str| -> Vec<String> {
        let mut conn = connect(db).expect("connect");
        conn.query(
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'messages'
             ORDER BY PARTITION_ORDINAL_POSITION",
        )
        .expect("partitions")
    };
    let before = partitions(&db);
    let ahead = [("DB_PARTITION_MONTHS_AHEAD", "3")];
    let (code, out, err) = gatrix_chat(&db, &["db", "partitions", "--dry-run"], &ahead);
    assert_eq!(code, 0, "db partitions --dry-run: {out}{err}");
    assert_eq!(partitions(&db), before, "a dry run changed the partitions");
    let (code, out, err) = gatrix_chat(&db, &["db", "partitions"], &ahead);
    assert_eq!(code, 0, "db partitions: {out}{err}");
    let password = parts(&db).password;
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "the password is printed: {out}{err}"
    );
    let after = partitions(&db);
    assert_eq!(after.last().map(String::as_str), Some("pmax"), "{after:?}");
    let months: Vec<&String> = after.iter().filter(|p| p.as_str() != "pmax").collect();
    assert!(months.len() >= 4, "this month and 3 ahead: {after:?}");
    let now = time::OffsetDateTime::now_utc();
    let this_month = format!("p{:04}{:02}", now.year(), u8::from(now.month()));
    assert!(
        after.contains(&this_month),
        "no partition for this month ({this_month}): {after:?}"
    );
    // Upkeep again: nothing to do.
    let (code, out, err) = gatrix_chat(&db, &["db", "partitions"], &ahead);
    assert_eq!(code, 0, "db partitions again: {out}{err}");
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(partitions(&db), after);
}
