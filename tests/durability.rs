//! The durable store, against the real binary: what was acked survives a
//! `kill -9`, a retried clientMessageId never makes a second message (not
//! even across a restart), a store that cannot write refuses sends with
//! UNAVAILABLE instead of acking them, and a restart is not a recovery.
//!
//! Messages go through a raw WebSocket client (`common::raw`); history is
//! read back through `GET /api/v1/messages/channel/:id?after=…`. The kill -9
//! and restart scenarios live in `common::durable`, shared with
//! tests/mysql_durability.rs.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use common::TestServer;
use common::chat::{assert_history_is, essentials, next_message, numbered, send_message_frame};
use common::durable;
use common::raw::{Ws, call, connect, join, open, sio_connect_with};

#[test]
fn acked_messages_survive_kill_9() {
    durable::acked_messages_survive_kill_9(&[]);
}

#[test]
fn kill_9_while_sending_keeps_every_acked_message_once() {
    durable::kill_9_while_sending_keeps_every_acked_message_once(&[]);
}

#[test]
fn repeated_client_message_id_across_restart_returns_the_first_message() {
    durable::repeated_client_message_id_across_restart_returns_the_first_message(&[]);
}

/// Opens the server's database from the test and takes SQLite's write lock
/// (WAL: readers go on, writers wait for the busy timeout and fail).
fn lock_database(server: &TestServer) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(server.db_path()).expect("open the server's database");
    db.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    db.execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    db
}

#[test]
fn store_outage_refuses_with_unavailable_and_retries_store_once() {
    /// SQLite's busy timeout is 5 s: a locked batch fails after it, and
    /// the queue holds 4, so every send is answered within two timeouts.
    const ANSWERED_WITHIN: Duration = Duration::from_secs(20);
    const SENDS: usize = 12;
    let server = TestServer::start_with(&[
        ("STORE_WRITER_QUEUE", "4"),
        ("RATE_LIMIT_PER_SEC", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
    ]);
    // The sender owns the channel, so joining writes nothing.
    let channel = server.create_channel("sender", "outage", "public", &[]);
    let mut watcher = connect(&server, "watcher");
    join(&mut watcher, &channel);
    let mut ws = connect(&server, "sender");
    join(&mut ws, &channel);
    // One message before the outage: everything queued earlier (the
    // watcher's membership) is written by the time it is acked.
    let ack = call(
        &mut ws,
        2,
        "send_message",
        json!({ "channelId": channel, "content": "before", "clientMessageId": "before" }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    let before = ack["message"].clone();
    assert_eq!(next_message(&mut watcher, &channel).0, before);

    let lock = lock_database(&server);
    let messages = numbered("outage", SENDS);
    ws.get_ref()
        .set_read_timeout(Some(ANSWERED_WITHIN))
        .expect("read timeout");
    let started = Instant::now();
    for (i, (cmid, content)) in messages.iter().enumerate() {
        send_message_frame(&mut ws, 100 + i as u64, &channel, cmid, content);
    }
    let mut answered = HashSet::new();
    let mut at_once = 0;
    while answered.len() < SENDS {
        assert!(
            started.elapsed() < ANSWERED_WITHIN,
            "only {} of {SENDS} sends answered within {ANSWERED_WITHIN:?} of a locked store",
            answered.len()
        );
        let (id, ack) = common::raw::recv_ack(&mut ws);
        assert_eq!(
            ack["ok"], false,
            "ack {id} says ok while the store is locked: {ack}"
        );
        assert_eq!(ack["error"]["code"], "UNAVAILABLE", "ack {id}: {ack}");
        assert!(answered.insert(id), "two acks for ack id {id}");
        if started.elapsed() < Duration::from_secs(2) {
            at_once += 1;
        }
    }
    let took = started.elapsed();
    assert!(took < ANSWERED_WITHIN, "answers took {took:?}");
    println!("{SENDS} sends refused within {took:?}, {at_once} of them at once");
    // The writer holds one batch and the queue 4 more: the rest cannot wait
    // for the busy timeout, they are refused as soon as the queue is full.
    assert!(
        at_once >= 1,
        "no send refused at once although STORE_WRITER_QUEUE=4 was full"
    );

    // Nothing reached the watcher: it sees only what comes after.
    watcher
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    loop {
        match watcher.read() {
            Ok(tungstenite::Message::Text(t)) => {
                assert!(
                    !t.as_str().starts_with(r#"42["message""#),
                    "a message was broadcast while the store was locked: {t}"
                );
            }
            Ok(_) => {}
            Err(e) if common::raw::is_timeout(&e) => break,
            Err(e) => panic!("watcher: {e}"),
        }
    }
    watcher
        .get_ref()
        .set_read_timeout(Some(common::raw::WAIT))
        .expect("read timeout");

    lock.execute_batch("ROLLBACK").expect("release the lock");
    drop(lock);

    // Retried one at a time with the same clientMessageIds: each is stored
    // now, once, in order.
    let mut retried = vec![before];
    for (i, (cmid, content)) in messages.iter().enumerate() {
        let ack = call(
            &mut ws,
            200 + i as u64,
            "send_message",
            json!({ "channelId": channel, "content": content, "clientMessageId": cmid }),
        );
        assert_eq!(ack["ok"], true, "retry of {cmid} after the outage: {ack}");
        assert_eq!(ack["message"]["seq"], i as u64 + 2, "{ack}");
        retried.push(ack["message"].clone());
    }
    for m in &retried[1..] {
        assert_eq!(&next_message(&mut watcher, &channel).0, m);
    }
    // A second retry of all of them is answered with the same messages.
    for (i, (cmid, content)) in messages.iter().enumerate() {
        let ack = call(
            &mut ws,
            300 + i as u64,
            "send_message",
            json!({ "channelId": channel, "content": content, "clientMessageId": cmid }),
        );
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(essentials(&ack["message"]), essentials(&retried[i + 1]));
    }
    let history = server.history("sender", &channel);
    assert_history_is(&history, &retried);
}

/// A recovery claim that outlived RECOVERY_WINDOW_MS is a fresh session.
#[test]
fn recovery_window_expires() {
    let server = TestServer::start_with(&[("RECOVERY_WINDOW_MS", "500")]);
    let channel = server.create_channel("owner", "window", "public", &[]);
    let token = server.token("alice");

    // Within the window: same pid, channel back, missed message replayed.
    let (mut ws, _) = open(&server);
    let pid = sio_connect_with(&mut ws, &json!({ "token": token }))["pid"].clone();
    assert!(pid.is_string(), "no pid");
    join(&mut ws, &channel);
    let mut bob = connect(&server, "bob");
    join(&mut bob, &channel);
    let send = |bob: &mut Ws, id: u64, content: &str| {
        let ack = call(
            bob,
            id,
            "send_message",
            json!({ "channelId": channel, "content": content }),
        );
        assert_eq!(ack["ok"], true, "{ack}");
        ack["message"].clone()
    };
    let first = send(&mut bob, 2, "first");
    let (got, offset) = next_message(&mut ws, &channel);
    assert_eq!(got, first);
    drop(ws); // the transport drops, no `41`
    std::thread::sleep(Duration::from_millis(100));
    let missed = send(&mut bob, 3, "missed");

    let (mut ws, _) = open(&server);
    let auth = json!({ "token": token, "pid": pid, "offset": offset });
    let connected = sio_connect_with(&mut ws, &auth);
    assert_eq!(connected["pid"], pid, "not recovered within the window");
    assert_eq!(next_message(&mut ws, &channel).0, missed);

    // Past the window: a fresh session.
    drop(ws);
    std::thread::sleep(Duration::from_millis(1200));
    send(&mut bob, 4, "too late");
    let (mut ws, _) = open(&server);
    let auth = json!({ "token": token, "pid": pid, "offset": offset });
    let connected = sio_connect_with(&mut ws, &auth);
    assert_ne!(connected["pid"], pid, "recovered after the window");
    let ack = call(
        &mut ws,
        5,
        "send_message",
        json!({ "channelId": channel, "content": "hello?" }),
    );
    assert_eq!(
        ack["error"]["code"], "FORBIDDEN",
        "channels restored: {ack}"
    );
}
