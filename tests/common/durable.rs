//! The durability scenarios of tests/durability.rs (SQLite) and
//! tests/mysql_durability.rs (MariaDB), written once: each takes the
//! backend's environment for [`TestServer::start_with`] (nothing for the
//! embedded SQLite store, `DATABASE_URL` for MySQL).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::TestServer;
use super::chat::{
    NO_RATE_LIMIT, assert_gapless_and_unique, assert_history_is, essentials, next_message,
    numbered, send_all, send_message_frame,
};
use super::raw::{Ws, call, connect, join, join_ack, open, recv_ack, sio_connect_with};

/// `env` followed by the backend's.
pub fn with_backend<'a>(
    env: &[(&'a str, &'a str)],
    backend: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    env.iter().chain(backend).copied().collect()
}

/// Sends N messages with acks, kills the server with SIGKILL right after
/// the last ack and restarts it: history holds exactly the acked messages,
/// seqs 1..=N, the old session is not recovered, and the next message
/// continues the seqs.
pub fn acked_messages_survive_kill_9(backend: &[(&str, &str)]) {
    const N: usize = 300;
    let mut server = TestServer::start_with(&with_backend(&NO_RATE_LIMIT, backend));
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

/// Sends a burst at once and kills the server after the 100th ack: what
/// was stored is a gapless prefix holding every acked message once, and
/// retrying everything completes it without duplicates.
pub fn kill_9_while_sending_keeps_every_acked_message_once(backend: &[(&str, &str)]) {
    const N: usize = 400;
    let mut server = TestServer::start_with(&with_backend(&NO_RATE_LIMIT, backend));
    let channel = server.create_channel("owner", "in-flight", "public", &[]);
    let mut ws = connect(&server, "writer");
    join(&mut ws, &channel);

    // Everything goes out at once; the server is killed after the 100th ack.
    let messages = numbered("inflight", N);
    for (i, (cmid, content)) in messages.iter().enumerate() {
        send_message_frame(&mut ws, 1000 + i as u64, &channel, cmid, content);
    }
    let mut acked: HashMap<String, Value> = HashMap::new();
    while acked.len() < 100 {
        let (id, ack) = recv_ack(&mut ws);
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
    let stored = assert_gapless_and_unique(&history);
    for (cmid, m) in &acked {
        let stored = stored
            .get(cmid)
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

/// A clientMessageId repeated after a kill -9 and restart returns the
/// first message, stores and broadcasts nothing, and burns no seq.
pub fn repeated_client_message_id_across_restart_returns_the_first_message(
    backend: &[(&str, &str)],
) {
    let mut server = TestServer::start_with(backend);
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
