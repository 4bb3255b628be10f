//! Connection state recovery across instances: gatrix-chat processes on
//! one MariaDB database and one Redis (a throwaway redis-server per test).
//! A client that joined on instance A and dropped reconnects on instance B
//! with its `{pid, offset}` and gets its session back (`recovered`: the
//! CONNECT reply names its pid) with exactly the messages sent meanwhile,
//! in order, before anything live; also after `kill -9` of A and after a
//! graceful stop of A (a rolling restart). After the recovery window, or
//! with Redis gone, it starts fresh.
//!
//! Messages sent while the client is away are sent on A itself, and the
//! live one after the recovery on B, so the replay (from MySQL) is what
//! is tested; while A runs, a message sent on A after the recovery then
//! reaches the client on B through the bus, its offset after the replay's.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::TestServer;
use common::chat::{NO_RATE_LIMIT, send_all};
use common::mysql::mysql_db;
use common::raw::*;
use common::redis::Redis;

/// The session when the window ends or Redis fails.
#[path = "recovery_instances/windows_and_faults.rs"]
mod windows_and_faults;

/// Reads of the session keys of a throwaway redis-server
/// (`common::redis`: free port, temp dir, no persistence, killed at drop).
trait SessionKeys {
    /// GET `key` (None: Redis unreachable; Some(None): absent).
    fn try_get(&self, key: &str) -> Option<Option<Vec<u8>>>;

    /// Waits until the session of `pid` satisfies `ok` (the Redis thread
    /// writes it after the command that changed it was answered).
    fn await_session(&self, pid: &str, what: &str, ok: impl Fn(Option<&[u8]>) -> bool);
}

impl SessionKeys for Redis {
    fn try_get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let mut con = redis::Client::open(self.url())
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("GET").arg(key).query(&mut con).ok()
    }

    fn await_session(&self, pid: &str, what: &str, ok: impl Fn(Option<&[u8]>) -> bool) {
        let key = format!("gatrix:session:{pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self.try_get(&key)
                && ok(v.as_deref())
            {
                return;
            }
            assert!(Instant::now() < deadline, "session {pid}: never {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An instance on `db` and `redis`; with `secret`, tokens of another
/// instance (the first one's) are valid on it.
fn instance(db: &str, redis: &Redis, id: &str, secret: Option<&str>, window: &str) -> TestServer {
    instance_with(db, redis, id, secret, window, &[])
}

/// [`instance`] with more settings.
fn instance_with(
    db: &str,
    redis: &Redis,
    id: &str,
    secret: Option<&str>,
    window: &str,
    more: &[(&str, &str)],
) -> TestServer {
    let url = redis.url();
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.extend([
        ("DATABASE_URL", db),
        ("REDIS_URL", url.as_str()),
        ("SERVER_ID", id),
        ("RECOVERY_WINDOW_MS", window),
    ]);
    if let Some(s) = secret {
        env.push(("JWT_SECRET", s));
    }
    env.extend_from_slice(more);
    TestServer::start_with(&env)
}

/// Connects to `server` with `auth`; returns the socket and the CONNECT
/// reply's pid.
fn connect_with(server: &TestServer, auth: &Value) -> (Ws, String) {
    let (mut ws, _) = open(server);
    let reply = sio_connect_with(&mut ws, auth);
    let pid = reply["pid"].as_str().expect("CONNECT reply pid").to_owned();
    (ws, pid)
}

/// A `message` event's content and offset.
fn message(packet: &str) -> Option<(String, u64)> {
    let (name, args) = as_event_args(packet)?;
    if name != "message" {
        return None;
    }
    let content = args[0]["content"].as_str()?.to_owned();
    let offset = args.get(1)?.as_str()?.parse().ok()?;
    Some((content, offset))
}

/// The next `message` on `ws`: content and offset.
fn next_message(ws: &mut Ws) -> (String, u64) {
    loop {
        if let Some(m) = message(&recv_text(ws)) {
            return m;
        }
    }
}

fn one(tag: &str) -> Vec<(String, String)> {
    vec![(tag.to_owned(), tag.to_owned())]
}

/// How instance A goes away after the client dropped.
#[derive(Clone, Copy)]
enum End {
    /// A runs on (both instances at once on the database and Redis).
    Runs,
    Kill9,
    Stop,
}

/// On A: alice joins, receives one message (her offset) and drops; bob
/// sends five more; A ends as `end`. On B (a new process on the same
/// database and Redis): alice reconnects with her pid and offset and gets
/// her session back with exactly the five, in order, then a live one.
fn recovered_on_another_instance(end: End) {
    let db = mysql_db();
    let redis = Redis::start();
    let a = instance(&db, &redis, "chat-a", None, "120000");
    let secret = a.secret().to_owned();
    let (alice_token, bob_token) = (a.token("alice"), a.token("bob"));
    let channel = a.create_channel("owner", "general", "public", &[]);
    let (mut alice, pid) = connect_with(&a, &json!({ "token": alice_token }));
    join(&mut alice, &channel);
    let (mut bob, _) = connect_with(&a, &json!({ "token": bob_token }));
    join(&mut bob, &channel);
    send_all(&mut bob, &channel, 10, &one("seen"));
    let (content, offset) = next_message(&mut alice);
    assert_eq!(content, "seen");
    // The join is in Redis before anything else happens.
    redis.await_session(&pid, "written with the channel", |v| {
        v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&channel))
    });
    drop(alice);
    let missed: Vec<String> = (0..5).map(|i| format!("missed {i}")).collect();
    for (i, m) in missed.iter().enumerate() {
        send_all(&mut bob, &channel, 20 + i as u64, &one(m));
    }
    // Kept on A while it runs: its next message reaches alice on B
    // through the log.
    let mut bob_on_a = matches!(end, End::Runs).then_some(bob);
    let mut a = a;
    match end {
        End::Runs => {}
        End::Kill9 => a.kill9(),
        End::Stop => {
            let status = a.stop();
            assert!(status.success(), "A stopped: {status}");
        }
    }

    let b = instance(&db, &redis, "chat-b", Some(&secret), "120000");
    let auth = json!({ "token": alice_token, "pid": pid, "offset": offset.to_string() });
    let (mut alice, got) = connect_with(&b, &auth);
    assert_eq!(got, pid, "recovered on B: the same pid");
    let (mut bob, _) = connect_with(&b, &json!({ "token": bob_token }));
    join(&mut bob, &channel);
    send_all(&mut bob, &channel, 40, &one("live"));
    let mut want = missed.clone();
    want.push("live".into());
    let mut got = Vec::new();
    let mut last = offset;
    while got.len() < want.len() {
        let (content, off) = next_message(&mut alice);
        assert!(off > last, "offsets not increasing: {off} after {last}");
        last = off;
        got.push(content);
    }
    assert_eq!(
        got, want,
        "exactly the missed messages, in order, then live"
    );
    // The session is B's connection's now: settled, with the channel.
    redis.await_session(&pid, "restored on B", |v| {
        v.is_some_and(|v| v.get(8) == Some(&b'=') && String::from_utf8_lossy(v).ends_with(&channel))
    });
    if let Some(bob) = &mut bob_on_a {
        send_all(bob, &channel, 60, &one("from A"));
        let (content, off) = next_message(&mut alice);
        assert_eq!(content, "from A", "A's next message, on B");
        assert!(off > last, "offsets not increasing: {off} after {last}");
    }
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_session_dropped_on_a_is_recovered_on_b_while_a_runs() {
    recovered_on_another_instance(End::Runs);
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_session_dropped_on_a_is_recovered_on_b_after_kill_9_of_a() {
    recovered_on_another_instance(End::Kill9);
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_session_dropped_on_a_is_recovered_on_b_after_a_stops() {
    recovered_on_another_instance(End::Stop);
}

/// The owner token of a stored session (its first 8 bytes).
fn owner_of(v: Option<&[u8]>) -> Option<Vec<u8>> {
    v.and_then(|v| v.get(..8)).map(<[u8]>::to_vec)
}

/// A reconnect on B while the connection that recovered the session on A
/// is still open (half open, say) takes the session over; the connection
/// on A stays open but its joins and leaves no longer change the session,
/// so the next recovery restores what B's connection had.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_stale_connection_on_the_pid_does_not_change_the_session() {
    let db = mysql_db();
    let redis = Redis::start();
    let a = instance(&db, &redis, "chat-a", None, "120000");
    let b = instance(&db, &redis, "chat-b", Some(a.secret()), "120000");
    let general = a.create_channel("owner", "general", "public", &[]);
    let other = a.create_channel("owner", "other", "public", &[]);
    let token = a.token("alice");
    let key = |pid: &str| format!("gatrix:session:{pid}");
    let (mut first, pid) = connect_with(&a, &json!({ "token": token }));
    join(&mut first, &general);
    let has_general =
        |v: Option<&[u8]>| v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&general));
    redis.await_session(&pid, "written with the channel", has_general);
    drop(first);
    let auth = json!({ "token": token, "pid": pid, "offset": "0" });
    let (mut on_a, got) = connect_with(&a, &auth);
    assert_eq!(got, pid, "recovered on A");
    let settled = |v: Option<&[u8]>| v.is_some_and(|v| v.get(8) == Some(&b'='));
    redis.await_session(&pid, "restored on A", |v| settled(v) && has_general(v));
    let a_owner = owner_of(redis.try_get(&key(&pid)).flatten().as_deref());
    // On B, with A's connection still open: recovered, the session B's.
    let (on_b, got) = connect_with(&b, &auth);
    assert_eq!(got, pid, "recovered on B too");
    redis.await_session(&pid, "restored on B", |v| {
        settled(v) && has_general(v) && owner_of(v) != a_owner
    });
    let b_session = redis.try_get(&key(&pid)).flatten();
    // A's connection joins another channel (acked: it is still open) and
    // leaves general: neither reaches the session. A fresh connection on
    // A written afterwards shows A's Redis thread got past them (one
    // queue, in order).
    join(&mut on_a, &other);
    let left = call(
        &mut on_a,
        8,
        "leave_channel",
        json!({ "channelId": general }),
    );
    assert_eq!(left["ok"], true, "leave: {left}");
    let (mut probe, probe_pid) = connect_with(&a, &json!({ "token": a.token("probe") }));
    join(&mut probe, &other);
    redis.await_session(&probe_pid, "written", |v| {
        v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&other))
    });
    assert_eq!(
        redis.try_get(&key(&pid)).flatten(),
        b_session,
        "the stale connection changed the session"
    );
    // B's connection drops; the next recovery restores general, not other.
    drop(on_b);
    let (mut again, got) = connect_with(&b, &auth);
    assert_eq!(got, pid, "recovered again");
    for (id, channel, ok) in [(20, &general, true), (21, &other, false)] {
        let ack = call(
            &mut again,
            id,
            "send_message",
            json!({ "channelId": channel, "content": "which?" }),
        );
        if ok {
            assert!(ack["message"]["seq"].is_u64(), "general restored: {ack}");
        } else {
            assert_eq!(
                ack["error"]["code"], "FORBIDDEN",
                "other not restored: {ack}"
            );
        }
    }
}

/// B's bus is behind the database when the client recovers there: A's
/// second batch is committed but never handed on (the test-only
/// `GATRIX_TEST_BUS_SKIP_BATCH`), so B applies it only when a later batch
/// shows the gap and `BUS_GAP_WAIT_MS` has passed. The replay stops at
/// what B had applied, and the missed message comes once, live, when B
/// fills the gap: was twice (replayed from the database, then applied).
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_message_the_bus_has_not_applied_yet_is_not_replayed_and_then_delivered() {
    let db = mysql_db();
    let redis = Redis::start();
    let slow_fill = ("BUS_GAP_WAIT_MS", "3000");
    let a = instance_with(
        &db,
        &redis,
        "chat-a",
        None,
        "120000",
        &[("GATRIX_TEST_BUS_SKIP_BATCH", "2"), slow_fill],
    );
    let b = instance_with(
        &db,
        &redis,
        "chat-b",
        Some(a.secret()),
        "120000",
        &[slow_fill],
    );
    let channel = a.create_channel("owner", "general", "public", &[]);
    let (alice_token, bob_token) = (a.token("alice"), a.token("bob"));
    let (mut alice, pid) = connect_with(&a, &json!({ "token": alice_token }));
    join(&mut alice, &channel);
    let (mut bob, _) = connect_with(&a, &json!({ "token": bob_token }));
    join(&mut bob, &channel);
    // Batch 1: applied everywhere.
    send_all(&mut bob, &channel, 10, &one("seen"));
    let (_, offset) = next_message(&mut alice);
    redis.await_session(&pid, "written with the channel", |v| {
        v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&channel))
    });
    drop(alice);
    // Batch 2: committed and acked, not in the log.
    send_all(&mut bob, &channel, 20, &one("missed"));
    let auth = json!({ "token": alice_token, "pid": pid, "offset": offset.to_string() });
    let (mut alice, got) = connect_with(&b, &auth);
    assert_eq!(got, pid, "recovered on B");
    // Batch 3 (B's own) shows B the gap; after the wait B fills it, then
    // applies 3.
    let (mut bob_b, _) = connect_with(&b, &json!({ "token": bob_token }));
    join(&mut bob_b, &channel);
    send_all(&mut bob_b, &channel, 30, &one("live"));
    let mut got = Vec::new();
    let mut last = offset;
    while got.last().is_none_or(|c| c != "live") {
        let (content, off) = next_message(&mut alice);
        assert!(
            off > last,
            "offset {off} after {last}: {got:?} then {content}"
        );
        last = off;
        got.push(content);
    }
    assert_eq!(got, ["missed", "live"], "each once, in order");
}
