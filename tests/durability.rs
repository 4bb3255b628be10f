//! The durable store, against the real binary: what was acked survives a
//! `kill -9`, a retried clientMessageId never makes a second message (not
//! even across a restart), a store that cannot write refuses sends with
//! UNAVAILABLE instead of acking them, and a restart is not a recovery.
//!
//! Messages go through a raw WebSocket client (`common::raw`); history is
//! read back through `GET /api/v1/messages/channel/:id?after=…`.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::TestServer;
use common::raw::{
    Ws, as_event_args, call, connect, join, join_ack, open, recv_text, send_text, sio_connect_with,
};

/// Environment for the tests that send bursts from one connection.
const NO_RATE_LIMIT: [(&str, &str); 2] = [
    ("RATE_LIMIT_PER_SEC", "100000"),
    ("RATE_LIMIT_BURST", "100000"),
];

/// How many `send_message` a client keeps in flight.
const WINDOW: usize = 32;

/// Sends every `(clientMessageId, content)` with ack ids `first_id..`,
/// keeping up to WINDOW in flight, and returns the acks in send order.
fn send_all(
    ws: &mut Ws,
    channel: &str,
    first_id: u64,
    messages: &[(String, String)],
) -> Vec<Value> {
    let mut acks: HashMap<u64, Value> = HashMap::new();
    let mut sent = 0;
    while sent < messages.len() {
        let batch = WINDOW.min(messages.len() - sent);
        for (i, (cmid, content)) in messages[sent..sent + batch].iter().enumerate() {
            let id = first_id + (sent + i) as u64;
            let event = json!(["send_message", {
                "channelId": channel, "content": content, "clientMessageId": cmid,
            }]);
            send_text(ws, format!("42{id}{event}"));
        }
        while acks.len() < sent + batch {
            let (id, ack) = common::raw::recv_ack(ws);
            assert!(
                acks.insert(id, ack).is_none(),
                "two acks for the same ack id {id}"
            );
        }
        sent += batch;
    }
    (0..messages.len() as u64)
        .map(|i| acks.remove(&(first_id + i)).expect("an ack per send"))
        .collect()
}

/// `(clientMessageId, content)` pairs `prefix-0..count`.
fn numbered(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("{prefix}-{i}"), format!("{prefix} message {i}")))
        .collect()
}

/// The fields a stored message must keep exactly.
fn essentials(m: &Value) -> Value {
    json!({
        "id": m["id"], "channelId": m["channelId"], "seq": m["seq"], "userId": m["userId"],
        "content": m["content"], "type": m["type"], "clientMessageId": m["clientMessageId"],
        "createdAt": m["createdAt"],
    })
}

/// Asserts the history holds exactly `acked`, in order, with seqs 1..=n.
fn assert_history_is(history: &[Value], acked: &[Value]) {
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=acked.len() as u64).collect();
    assert!(
        seqs == expected,
        "history seqs are not 1..={}: {seqs:?}",
        acked.len()
    );
    let ids: HashSet<&str> = history.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), history.len(), "a message id twice in history");
    for (stored, acked) in history.iter().zip(acked) {
        assert_eq!(essentials(stored), essentials(acked), "stored != acked");
    }
}

/// Reads frames until a `message` event of `channel`; returns (message,
/// offset). Other frames are skipped.
fn next_message(ws: &mut Ws, channel: &str) -> (Value, String) {
    loop {
        if let Some((name, args)) = as_event_args(&recv_text(ws))
            && name == "message"
            && args[0]["channelId"] == channel
        {
            assert_eq!(args.len(), 2, "message without an offset: {args:?}");
            let offset = args[1]
                .as_str()
                .unwrap_or_else(|| panic!("offset not a string: {args:?}"))
                .to_owned();
            return (args[0].clone(), offset);
        }
    }
}

#[test]
fn acked_messages_survive_kill_9() {
    const N: usize = 300;
    let mut server = TestServer::start_with(&NO_RATE_LIMIT);
    let channel = server.create_channel("owner", "durable", "public", &[]);

    let (mut ws, _) = open(&server);
    let connected = sio_connect_with(&mut ws, &json!({ "token": server.token("writer") }));
    let pid = connected["pid"]
        .as_str()
        .unwrap_or_else(|| panic!("CONNECT reply without a pid: {connected}"))
        .to_owned();
    join(&mut ws, &channel);
    let acks = send_all(&mut ws, &channel, 100, &numbered("durable", N));
    let acked: Vec<Value> = acks
        .iter()
        .map(|ack| {
            assert_eq!(ack["ok"], true, "send_message: {ack}");
            ack["message"].clone()
        })
        .collect();
    // The `message` events came in between the acks (and were skipped).

    // No shutdown of any kind, right after the last ack.
    server.kill9();
    drop(ws);
    server.restart();

    let history = server.history("owner", &channel);
    assert_eq!(history.len(), N, "messages in history after kill -9");
    assert_history_is(&history, &acked);

    // A restart is not recoverable: presenting the old session gives a
    // fresh one (and no replay), and the client catches up by history.
    let (mut ws, _) = open(&server);
    let auth = json!({ "token": server.token("writer"), "pid": pid, "offset": "1" });
    let connected = sio_connect_with(&mut ws, &auth);
    assert!(connected["pid"].is_string(), "{connected}");
    assert_ne!(connected["pid"], pid, "a session survived the restart");
    let ack = call(
        &mut ws,
        7,
        "send_message",
        json!({ "channelId": channel, "content": "after the restart" }),
    );
    assert_eq!(
        ack["error"]["code"], "FORBIDDEN",
        "channels restored without recovery: {ack}"
    );

    // The next message continues the channel's seqs.
    let join = join_ack(&mut ws, 8, &channel);
    assert_eq!(join["lastSeq"], N as u64, "{join}");
    let ack = call(
        &mut ws,
        9,
        "send_message",
        json!({ "channelId": channel, "content": "after the restart" }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["seq"], N as u64 + 1, "{ack}");
    let history = server.history("owner", &channel);
    assert_eq!(history.len(), N + 1);
    assert_eq!(essentials(&history[N]), essentials(&ack["message"]));
}

#[test]
fn kill_9_while_sending_keeps_every_acked_message_once() {
    const N: usize = 400;
    let mut server = TestServer::start_with(&NO_RATE_LIMIT);
    let channel = server.create_channel("owner", "in-flight", "public", &[]);
    let mut ws = connect(&server, "writer");
    join(&mut ws, &channel);

    // Everything goes out at once; the server is killed after the 100th ack.
    let messages = numbered("inflight", N);
    for (i, (cmid, content)) in messages.iter().enumerate() {
        let event = json!(["send_message", {
            "channelId": channel, "content": content, "clientMessageId": cmid,
        }]);
        send_text(&mut ws, format!("42{}{event}", 1000 + i));
    }
    let mut acked: HashMap<String, Value> = HashMap::new();
    while acked.len() < 100 {
        let (id, ack) = common::raw::recv_ack(&mut ws);
        assert_eq!(ack["ok"], true, "send_message {id}: {ack}");
        let m = ack["message"].clone();
        acked.insert(m["clientMessageId"].as_str().unwrap().to_owned(), m);
    }
    server.kill9();
    drop(ws);
    server.restart();

    // Whatever was stored is a gapless prefix of seqs, each message once,
    // and every acked message is in it unchanged.
    let history = server.history("owner", &channel);
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "gaps in history"
    );
    let mut cmids = HashSet::new();
    for m in &history {
        let cmid = m["clientMessageId"].as_str().expect("clientMessageId kept");
        assert!(cmids.insert(cmid.to_owned()), "{cmid} stored twice");
    }
    for (cmid, m) in &acked {
        let stored = history
            .iter()
            .find(|h| h["clientMessageId"] == cmid.as_str())
            .unwrap_or_else(|| panic!("acked message {cmid} lost by kill -9: {m}"));
        assert_eq!(essentials(stored), essentials(m));
    }

    // Retrying everything after the restart: the stored ones come back as
    // they were, the others are stored now; no duplicates, no gaps.
    let stored_before = history.len();
    println!(
        "{} acked, {stored_before} stored when killed, of {N} sent",
        acked.len()
    );
    let mut ws = connect(&server, "writer");
    join(&mut ws, &channel);
    let acks = send_all(&mut ws, &channel, 5000, &messages);
    for ack in &acks {
        assert_eq!(ack["ok"], true, "retry: {ack}");
    }
    let history = server.history("owner", &channel);
    assert_eq!(history.len(), N, "history after retrying every message");
    let retried: Vec<Value> = acks.iter().map(|a| a["message"].clone()).collect();
    let by_seq: HashMap<u64, &Value> = retried
        .iter()
        .map(|m| (m["seq"].as_u64().unwrap(), m))
        .collect();
    assert_eq!(by_seq.len(), N, "two retries acked with one seq");
    for m in &history {
        let seq = m["seq"].as_u64().unwrap();
        assert_eq!(essentials(m), essentials(by_seq[&seq]), "seq {seq}");
    }
    for old in &history[..stored_before] {
        let cmid = old["clientMessageId"].as_str().unwrap();
        let retry = retried
            .iter()
            .find(|m| m["clientMessageId"] == cmid)
            .unwrap();
        assert_eq!(
            retry["id"], old["id"],
            "{cmid}: the retry made a new message"
        );
    }
}

#[test]
fn repeated_client_message_id_across_restart_returns_the_first_message() {
    let mut server = TestServer::start();
    let channel = server.create_channel("owner", "dedupe", "public", &[]);
    let mut ws = connect(&server, "alice");
    join(&mut ws, &channel);
    let send = |ws: &mut Ws, id: u64, cmid: Option<&str>, content: &str| {
        let mut payload = json!({ "channelId": channel, "content": content });
        if let Some(cmid) = cmid {
            payload["clientMessageId"] = json!(cmid);
        }
        let ack = call(ws, id, "send_message", payload);
        assert_eq!(ack["ok"], true, "send_message: {ack}");
        ack["message"].clone()
    };
    let before = send(&mut ws, 2, None, "before");
    let first = send(&mut ws, 3, Some("cmid-across-restart"), "only once");
    assert_eq!(first["seq"], 2);

    server.kill9();
    drop(ws);
    server.restart();

    let mut watcher = connect(&server, "watcher");
    join(&mut watcher, &channel);
    let mut ws = connect(&server, "alice");
    join(&mut ws, &channel);
    let again = send(&mut ws, 2, Some("cmid-across-restart"), "only once");
    assert_eq!(
        essentials(&again),
        essentials(&first),
        "the retry did not return the first message"
    );
    // Nothing was stored or broadcast for the retry: the next message
    // takes the next seq and is the first the watcher sees.
    let next = send(&mut ws, 3, None, "next");
    assert_eq!(next["seq"], 3, "{next}");
    let (seen, _) = next_message(&mut watcher, &channel);
    assert_eq!(seen, next, "the watcher saw the retry broadcast");

    let history = server.history("owner", &channel);
    assert_history_is(&history, &[before, first, next]);
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
        let event = json!(["send_message", {
            "channelId": channel, "content": content, "clientMessageId": cmid,
        }]);
        send_text(&mut ws, format!("42{}{event}", 100 + i));
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
