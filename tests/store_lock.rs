//! One store, one process: a second gatrix-chat on the store of a running
//! one (the same DATA_DIR, or the same MySQL database) exits 2 at start,
//! saying who holds it, and the first keeps serving; `migrate` is refused
//! the same way while a server runs. With MySQL the lock is the writer
//! connection's named lock: when that connection is lost and another
//! process takes the lock meanwhile, the server stops writing (sends
//! refused with UNAVAILABLE, an error logged) and resumes, with seqs that
//! continue the other process's, once the lock is free.
//!
//! With Redis (several instances on one database) the lock is per
//! SERVER_ID: a second process with the same SERVER_ID is refused, one
//! with another SERVER_ID serves beside the first, and an instance with
//! Redis refuses a database that a server without Redis holds, and a
//! server without Redis one that instances with Redis use.
//!
//! The MariaDB tests are ignored without scripts/test's MariaDB.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::{Value, json};

use common::TestServer;
use common::mysql::{NEEDS_MARIADB, connect as db_connect, mysql_db};
use common::raw::{Ws, call, connect, join};
use common::redis::Redis;

/// How long a refused second process may take to exit.
const REFUSED_WITHIN: Duration = Duration::from_secs(60);

/// Runs `gatrix-chat <args>` on `data_dir` (and `env`) with the first
/// server's secret, on a port of its own; returns (exit code, stderr).
/// A process that is not refused runs until the timeout, which panics.
fn gatrix_chat(
    first: &TestServer,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String) {
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatrix-chat"));
    command
        .args(args)
        .current_dir(cwd.path())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("CLUSTER_WORKERS", "1")
        .env("JWT_SECRET", first.secret())
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "info");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = common::run_client(&mut command, REFUSED_WITHIN);
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

fn send(ws: &mut Ws, id: u64, channel: &str, cmid: &str) -> Value {
    call(
        ws,
        id,
        "send_message",
        json!({ "channelId": channel, "content": cmid, "clientMessageId": cmid }),
    )
}

/// The first server still takes and stores messages, seqs following on.
fn assert_first_serves(first: &TestServer, channel: &str, ws: &mut Ws, expected_seq: u64) {
    let ack = send(ws, 10 + expected_seq, channel, &format!("m{expected_seq}"));
    assert_eq!(ack["ok"], true, "send on the first server: {ack}");
    assert_eq!(ack["message"]["seq"], expected_seq, "{ack}");
    let seqs: Vec<u64> = first
        .history("alice", channel)
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=expected_seq).collect::<Vec<_>>());
}

#[test]
fn a_second_server_on_the_same_data_dir_exits_2_and_the_first_keeps_serving() {
    let first = TestServer::start();
    let channel = first.create_channel("alice", "one-process", "public", &[]);
    let mut ws = connect(&first, "alice");
    join(&mut ws, &channel);
    assert_first_serves(&first, &channel, &mut ws, 1);

    let (code, err) = gatrix_chat(&first, &first.data_dir(), &[], &[]);
    assert_eq!(code, 2, "the second server: {err}");
    assert!(err.contains("in use by another gatrix-chat"), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    assert!(err.contains("gatrix-chat.lock"), "{err}");

    assert_first_serves(&first, &channel, &mut ws, 2);
    // Another DATA_DIR is another store: no refusal there (it starts, so
    // `migrate` stands in for a server that would run until stopped).
    let other = first.dir().join("other");
    let (code, out) = gatrix_chat(&first, &other, &["migrate"], &[]);
    assert_eq!(code, 0, "migrate on another DATA_DIR: {out}");
}

#[test]
fn migrate_is_refused_while_a_server_runs_on_the_store() {
    let first = TestServer::start();
    let (code, err) = gatrix_chat(&first, &first.data_dir(), &["migrate"], &[]);
    assert_eq!(code, 2, "migrate beside a running server: {err}");
    assert!(err.contains("not migrating"), "{err}");
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    let data_dir = first.data_dir();
    let status = first.stop();
    assert!(status.success(), "{status}");
    let cwd = tempfile::tempdir().expect("temp dir");
    let out = common::run_client(
        Command::new(env!("CARGO_BIN_EXE_gatrix-chat"))
            .arg("migrate")
            .current_dir(cwd.path())
            .env("DATA_DIR", &data_dir)
            .env("JWT_SECRET", "a-test-secret-of-enough-length-0123456789"),
        REFUSED_WITHIN,
    );
    assert!(
        out.status.success(),
        "migrate once the server stopped: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lock name the server uses for the database at `url`.
fn lock_name(url: &str) -> String {
    let db = url.rsplit('/').next().expect("a database in the URL");
    format!("gatrix-chat:{db}")
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn a_second_server_on_the_same_database_exits_2_and_the_first_keeps_serving() {
    let db = mysql_db();
    let first = TestServer::start_with(&[("DATABASE_URL", &db)]);
    let channel = first.create_channel("alice", "one-process", "public", &[]);
    let mut ws = connect(&first, "alice");
    join(&mut ws, &channel);
    assert_first_serves(&first, &channel, &mut ws, 1);

    let mut conn = db_connect(&db).expect(NEEDS_MARIADB);
    let holder: Option<u64> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (lock_name(&db),))
        .expect("IS_USED_LOCK")
        .flatten();
    let holder = holder.expect("the first server holds the lock");

    // Its own DATA_DIR: the database is what is shared.
    let data_dir = first.dir().join("second");
    for args in [&[][..], &["migrate"][..]] {
        let (code, err) = gatrix_chat(&first, &data_dir, args, &[("DATABASE_URL", &db)]);
        assert_eq!(code, 2, "gatrix-chat {args:?} on the same database: {err}");
        assert!(err.contains("in use by another gatrix-chat"), "{err}");
        assert!(
            err.contains(&format!("database connection {holder}")),
            "{err}"
        );
        let password = db
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(userinfo, _)| userinfo.split_once(':'))
            .map(|(_, p)| p)
            .expect("a password in the test URL");
        assert!(!err.contains(password), "the password: {err}");
    }
    assert_first_serves(&first, &channel, &mut ws, 2);
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn a_lost_lock_taken_by_another_process_stops_writes_until_it_is_free() {
    let db = mysql_db();
    let first = TestServer::start_with(&[("DATABASE_URL", &db)]);
    // `quiet` gets one message and then
    // none through this server until the end; `busy` takes the sends
    // refused meanwhile.
    let quiet = first.create_channel("alice", "quiet", "public", &[]);
    let busy = first.create_channel("alice", "busy", "public", &[]);
    let mut ws = connect(&first, "alice");
    join(&mut ws, &quiet);
    let ack = call(&mut ws, 2, "join_channel", json!({ "channelId": busy }));
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = send(&mut ws, 3, &quiet, "quiet-1");
    assert_eq!(ack["message"]["seq"], 1, "{ack}");
    let id: u64 = ack["message"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("message id");
    assert!(id < 1 << 53, "a JSON-safe id: {id}");

    // The writer's connection ends (a network cut, a KILL) and "another
    // process" (this test) takes the lock and writes `quiet`'s seq 2.
    let name = lock_name(&db);
    let mut other = db_connect(&db).expect(NEEDS_MARIADB);
    let writer: u64 = other
        .exec_first::<Option<u64>, _, _>("SELECT IS_USED_LOCK(?)", (&name,))
        .expect("IS_USED_LOCK")
        .flatten()
        .expect("the server holds the lock");
    other.query_drop(format!("KILL {writer}")).expect("KILL");
    let got: Option<i64> = other
        .exec_first("SELECT GET_LOCK(?, 10)", (&name,))
        .expect("GET_LOCK")
        .flatten();
    assert_eq!(got, Some(1), "the test could not take the lock");
    // As a writer does since schema 3: its pos and seq from the counters,
    // raised in the same transaction, its id made of its month and pos.
    let created = ack["message"]["createdAt"].as_str().expect("createdAt");
    let month = gatrix_chat::ids::month_index_at(created);
    other
        .query_drop("START TRANSACTION")
        .expect("START TRANSACTION");
    other
        .query_drop("UPDATE sequencer SET last_pos = last_pos + 1 WHERE partition_id = 0")
        .expect("take a pos as another process");
    other
        .exec_drop("UPDATE channels SET last_seq = 2 WHERE id = ?", (&quiet,))
        .expect("take seq 2 as another process");
    other
        .exec_drop(
            "INSERT INTO messages (id, partition_id, pos, channel_id, seq, user_id, content, type, created_at)
             SELECT (? << 43) | ((last_pos << 5) & 8796093022207), 0, last_pos, ?, 2, 'bob',
                    'from another process', 'text', ?
             FROM sequencer WHERE partition_id = 0",
            (month, &quiet, created),
        )
        .expect("insert as another process");
    other.query_drop("COMMIT").expect("COMMIT");

    // Sends are refused while the other holds the lock: never acked.
    for i in 0..3 {
        let ack = send(&mut ws, 100 + i, &busy, "while-locked");
        assert_eq!(ack["ok"], false, "acked without the lock: {ack}");
        assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
    }
    let log = first.log();
    assert!(
        log.contains("another process holds it now"),
        "no error logged:\n{log}"
    );

    // Free again: the writer takes it back and sends are stored again.
    other
        .exec_drop("SELECT RELEASE_LOCK(?)", (&name,))
        .expect("RELEASE_LOCK");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ack = send(&mut ws, 200, &busy, "while-locked");
        if ack["ok"] == true {
            assert_eq!(ack["message"]["seq"], 1, "{ack}");
            break;
        }
        assert_eq!(ack["error"]["code"], "UNAVAILABLE", "{ack}");
        assert!(
            Instant::now() < deadline,
            "sends still refused 30 s after the lock was freed: {ack}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The writer takes `quiet`'s seq from its counter in each commit
    // (nothing cached): the next follows the other process's message.
    let ack = send(&mut ws, 300, &quiet, "quiet-3");
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["seq"], 3, "{ack}");
    let seqs: Vec<u64> = first
        .history("alice", &quiet)
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3], "each seq once");
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn with_redis_the_lock_is_per_server_id() {
    let db = mysql_db();
    let redis = Redis::start();
    let url = redis.url();
    let env = |id| {
        [
            ("DATABASE_URL", db.as_str()),
            ("REDIS_URL", &url),
            ("SERVER_ID", id),
        ]
    };
    let a_pairs = env("chat-a");
    let a = TestServer::start_with(&a_pairs);
    let channel = a.create_channel("alice", "instances", "public", &[]);
    let mut on_a = connect(&a, "alice");
    join(&mut on_a, &channel);
    assert_first_serves(&a, &channel, &mut on_a, 1);

    // The whole-database lock is not taken: instances share the database.
    let mut conn = db_connect(&db).expect(NEEDS_MARIADB);
    let whole: Option<u64> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (lock_name(&db),))
        .expect("IS_USED_LOCK")
        .flatten();
    assert_eq!(whole, None, "an instance with Redis took the database lock");
    let mine: Option<u64> = conn
        .exec_first(
            "SELECT IS_USED_LOCK(?)",
            (format!("{}/chat-a", lock_name(&db)),),
        )
        .expect("IS_USED_LOCK")
        .flatten();
    let holder = mine.expect("the instance holds its SERVER_ID's lock");

    // The same SERVER_ID again: refused, naming the holder and the fix.
    let data_dir = a.dir().join("second");
    for args in [&[][..], &["migrate"][..]] {
        let (code, err) = gatrix_chat(&a, &data_dir, args, &a_pairs);
        assert_eq!(
            code, 2,
            "gatrix-chat {args:?} with chat-a's SERVER_ID: {err}"
        );
        assert!(err.contains("in use by another gatrix-chat"), "{err}");
        assert!(
            err.contains(&format!("database connection {holder}")),
            "{err}"
        );
        assert!(err.contains("SERVER_ID"), "{err}");
    }

    // Another SERVER_ID serves beside it, on the same counters.
    let b = TestServer::start_with(&env("chat-b"));
    let mut on_b = connect(&b, "alice");
    join(&mut on_b, &channel);
    let ack = send(&mut on_b, 50, &channel, "via-b");
    assert_eq!(ack["ok"], true, "send on the second instance: {ack}");
    assert_eq!(ack["message"]["seq"], 2, "{ack}");
    assert_first_serves(&a, &channel, &mut on_a, 3);
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn an_instance_with_redis_refuses_a_database_held_by_a_server_without() {
    let db = mysql_db();
    let redis = Redis::start();
    let single = TestServer::start_with(&[("DATABASE_URL", &db)]);
    let channel = single.create_channel("alice", "single", "public", &[]);
    let mut ws = connect(&single, "alice");
    join(&mut ws, &channel);
    assert_first_serves(&single, &channel, &mut ws, 1);
    let mut conn = db_connect(&db).expect(NEEDS_MARIADB);
    let holder: Option<u64> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (lock_name(&db),))
        .expect("IS_USED_LOCK")
        .flatten();
    let holder = holder.expect("the server without Redis holds the database lock");

    let url = redis.url();
    let env = [
        ("DATABASE_URL", db.as_str()),
        ("REDIS_URL", url.as_str()),
        ("SERVER_ID", "chat-a"),
    ];
    let (code, err) = gatrix_chat(&single, &single.dir().join("second"), &[], &env);
    assert_eq!(code, 2, "an instance with Redis beside one without: {err}");
    assert!(err.contains("without Redis"), "{err}");
    assert!(
        err.contains(&format!("database connection {holder}")),
        "{err}"
    );
    assert!(err.contains("REDIS_URL"), "{err}");
    assert_first_serves(&single, &channel, &mut ws, 2);
}

/// The other way round: an instance with Redis runs (it holds one of the
/// instance slot locks, `gatrix-chat-instance:<db>#<i>`); a server without
/// Redis on its database, and `migrate` without Redis, exit 2 naming the
/// fix (the same REDIS_URL for every process); once the instance stops,
/// the server without Redis starts and serves, seqs following on.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_server_without_redis_refuses_a_database_instances_with_redis_hold() {
    let db = mysql_db();
    let redis = Redis::start();
    let url = redis.url();
    let a = TestServer::start_with(&[
        ("DATABASE_URL", db.as_str()),
        ("REDIS_URL", url.as_str()),
        ("SERVER_ID", "chat-a"),
    ]);
    let channel = a.create_channel("alice", "instances", "public", &[]);
    let mut ws = connect(&a, "alice");
    join(&mut ws, &channel);
    assert_first_serves(&a, &channel, &mut ws, 1);
    let mut conn = db_connect(&db).expect(NEEDS_MARIADB);
    let name = db.rsplit('/').next().expect("a database in the URL");
    let slot: Option<u64> = conn
        .exec_first(
            "SELECT IS_USED_LOCK(?)",
            (format!("gatrix-chat-instance:{name}#0"),),
        )
        .expect("IS_USED_LOCK")
        .flatten();
    let holder = slot.expect("the instance holds the first slot lock");

    let data_dir = a.dir().join("second");
    for args in [&[][..], &["migrate"][..]] {
        let (code, err) = gatrix_chat(&a, &data_dir, args, &[("DATABASE_URL", &db)]);
        assert_eq!(
            code, 2,
            "gatrix-chat {args:?} without Redis beside an instance with: {err}"
        );
        assert!(err.contains("instances with Redis"), "{err}");
        assert!(
            err.contains(&format!("database connection {holder}")),
            "{err}"
        );
        assert!(err.contains("same REDIS_URL"), "{err}");
    }
    // Refused before it wrote or held anything.
    let whole: Option<u64> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (lock_name(&db),))
        .expect("IS_USED_LOCK")
        .flatten();
    assert_eq!(whole, None, "the refused server kept the database lock");
    assert_first_serves(&a, &channel, &mut ws, 2);

    drop(ws);
    let status = a.stop();
    assert!(status.success(), "the instance stopped: {status}");
    let single = TestServer::start_with(&[("DATABASE_URL", db.as_str())]);
    let mut ws = connect(&single, "alice");
    join(&mut ws, &channel);
    assert_first_serves(&single, &channel, &mut ws, 3);
}
