//! Chat-level helpers shared by the durability tests (SQLite and MariaDB):
//! sending many `send_message` with acks over a raw client
//! ([`super::raw`]), and checking a channel's history against what was
//! acked.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::raw::{Ws, as_event_args, recv_ack, recv_text, send_text};

/// Environment for the tests that send bursts from one connection.
pub const NO_RATE_LIMIT: [(&str, &str); 2] = [
    ("RATE_LIMIT_PER_SEC", "100000"),
    ("RATE_LIMIT_BURST", "100000"),
];

/// How many `send_message` a client keeps in flight.
pub const WINDOW: usize = 32;

/// Sends every `(clientMessageId, content)` with ack ids `first_id..`,
/// keeping up to WINDOW in flight, and returns the acks in send order.
pub fn send_all(
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
            send_message_frame(ws, id, channel, cmid, content);
        }
        while acks.len() < sent + batch {
            let (id, ack) = recv_ack(ws);
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

/// Sends one `send_message` with ack id `id` and a clientMessageId, without
/// waiting for the ack.
pub fn send_message_frame(ws: &mut Ws, id: u64, channel: &str, cmid: &str, content: &str) {
    let event = json!(["send_message", {
        "channelId": channel, "content": content, "clientMessageId": cmid,
    }]);
    send_text(ws, format!("42{id}{event}"));
}

/// `(clientMessageId, content)` pairs `prefix-0..count`.
pub fn numbered(prefix: &str, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| (format!("{prefix}-{i}"), format!("{prefix} message {i}")))
        .collect()
}

/// The fields a stored message must keep exactly.
pub fn essentials(m: &Value) -> Value {
    json!({
        "id": m["id"], "channelId": m["channelId"], "seq": m["seq"], "userId": m["userId"],
        "content": m["content"], "type": m["type"], "clientMessageId": m["clientMessageId"],
        "createdAt": m["createdAt"],
    })
}

/// Asserts the history holds exactly `acked`, in order, with seqs 1..=n.
pub fn assert_history_is(history: &[Value], acked: &[Value]) {
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

/// Asserts the history's seqs are 1..=n and every clientMessageId in it
/// appears once; returns the messages by clientMessageId.
pub fn assert_gapless_and_unique(history: &[Value]) -> HashMap<String, Value> {
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=history.len() as u64).collect::<Vec<_>>(),
        "gaps in history"
    );
    let mut by_cmid = HashMap::new();
    for m in history {
        let cmid = m["clientMessageId"].as_str().expect("clientMessageId kept");
        assert!(
            by_cmid.insert(cmid.to_owned(), m.clone()).is_none(),
            "{cmid} stored twice"
        );
    }
    by_cmid
}

/// Reads frames until a `message` event of `channel`; returns (message,
/// offset). Other frames are skipped.
pub fn next_message(ws: &mut Ws, channel: &str) -> (Value, String) {
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
