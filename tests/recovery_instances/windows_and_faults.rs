//! Recovery across instances when the window ends or Redis fails: the
//! session of a dead instance expires; Redis stopped means a fresh session
//! at once; Redis restarted empty gets the live sessions back.

use super::*;

/// After the recovery window (and its refresh period) the session is gone
/// from Redis, even though A died without a word: B starts a fresh one
/// (a new pid: `recovered` false), and the client catches up by history.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn after_the_window_the_session_is_gone() {
    let db = mysql_db();
    let redis = Redis::start();
    // A window of 1 s: TTL 1.25 s (plus the 250 ms refresh period).
    let mut a = instance(&db, &redis, "chat-a", None, "1000");
    let secret = a.secret().to_owned();
    let alice_token = a.token("alice");
    let channel = a.create_channel("owner", "general", "public", &[]);
    let (mut alice, pid) = connect_with(&a, &json!({ "token": alice_token }));
    join(&mut alice, &channel);
    redis.await_session(&pid, "written with the channel", |v| {
        v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&channel))
    });
    drop(alice);
    a.kill9();
    redis.await_session(&pid, "expired", |v| v.is_none());
    let b = instance(&db, &redis, "chat-b", Some(&secret), "1000");
    let auth = json!({ "token": alice_token, "pid": pid, "offset": "0" });
    let (mut alice, got) = connect_with(&b, &auth);
    assert_ne!(got, pid, "after the window: a fresh session");
    let ack = call(
        &mut alice,
        7,
        "send_message",
        json!({ "channelId": channel, "content": "am I in?" }),
    );
    assert_eq!(
        ack["error"]["code"], "FORBIDDEN",
        "channels restored: {ack}"
    );
}

/// Redis unreachable: a reconnect is answered at once with a fresh
/// session (`recovered` false), not held; the instance keeps serving.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn with_redis_gone_a_reconnect_starts_fresh() {
    let db = mysql_db();
    let mut redis = Redis::start();
    let a = instance(&db, &redis, "chat-a", None, "120000");
    let channel = a.create_channel("owner", "general", "public", &[]);
    let alice_token = a.token("alice");
    let (mut alice, pid) = connect_with(&a, &json!({ "token": alice_token }));
    join(&mut alice, &channel);
    redis.await_session(&pid, "written with the channel", |v| {
        v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&channel))
    });
    drop(alice);
    redis.stop();
    let auth = json!({ "token": alice_token, "pid": pid, "offset": "0" });
    let (mut alice, got) = connect_with(&a, &auth);
    assert_ne!(got, pid, "Redis gone: a fresh session");
    join(&mut alice, &channel);
    let mut bob = connect(&a, "bob");
    join(&mut bob, &channel);
    send_all(&mut bob, &channel, 10, &one("still here"));
    assert_eq!(next_message(&mut alice).0, "still here");
}

/// Redis restarts empty while alice is connected: her instance writes its
/// live sessions again once it reaches Redis, so her session (with its
/// channel) is there for a later drop, and she recovers.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn sessions_are_written_again_after_redis_restarts_empty() {
    let db = mysql_db();
    let mut redis = Redis::start();
    // A window of 4 s: the sessions are refreshed every second.
    let a = instance(&db, &redis, "chat-a", None, "4000");
    let channel = a.create_channel("owner", "general", "public", &[]);
    let alice_token = a.token("alice");
    let (mut alice, pid) = connect_with(&a, &json!({ "token": alice_token }));
    join(&mut alice, &channel);
    let has_channel =
        |v: Option<&[u8]>| v.is_some_and(|v| String::from_utf8_lossy(v).ends_with(&channel));
    redis.await_session(&pid, "written with the channel", has_channel);
    // Empty when it starts again: nothing is persisted.
    redis.stop();
    redis.restart();
    redis.await_session(&pid, "written again", has_channel);
    let mut bob = connect(&a, "bob");
    join(&mut bob, &channel);
    send_all(&mut bob, &channel, 10, &one("seen"));
    let (_, offset) = next_message(&mut alice);
    drop(alice);
    send_all(&mut bob, &channel, 20, &one("missed"));
    let auth = json!({ "token": alice_token, "pid": pid, "offset": offset.to_string() });
    let (mut alice, got) = connect_with(&a, &auth);
    assert_eq!(got, pid, "recovered after the Redis restart");
    assert_eq!(next_message(&mut alice).0, "missed");
}
