//! The channel owner under hostile clients, against the real binary (2
//! shards): typing is relayed only from a connection whose join the owner
//! accepted, on a channel that still exists; and commands on made-up
//! channel ids leave nothing behind in the owner's cache.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use common::TestServer;
use common::raw::*;
use common::rest::as_user;

/// Reads `ws` until the event `name` whose data satisfies `pred`, and
/// returns every event read before it (name, data).
fn events_until(ws: &mut Ws, name: &str, pred: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
    let mut before = Vec::new();
    loop {
        if let Some((n, data)) = as_event(&recv_text(ws)) {
            if n == name && pred(&data) {
                return before;
            }
            before.push((n, data));
        }
    }
}

/// The acks of ids `ids` (in any order, events skipped), by id.
fn acks(ws: &mut Ws, count: usize) -> Vec<(u64, Value)> {
    let mut got: Vec<(u64, Value)> = (0..count).map(|_| recv_ack(ws)).collect();
    got.sort_by_key(|(id, _)| *id);
    got
}

/// Writes every frame with one socket write (tungstenite buffers `write`
/// until `flush`), so that the server reads them together.
fn write_together(ws: &mut Ws, frames: impl IntoIterator<Item = String>) {
    for f in frames {
        ws.write(Message::text(f)).expect("buffer frame");
    }
    ws.flush().expect("write frames");
}

#[test]
fn typing_needs_an_accepted_join_on_a_live_channel() {
    let server = TestServer::start();
    let channel = server.create_channel("alice", "team", "private", &["bob"]);
    let mut bob = connect(&server, "bob");
    join(&mut bob, &channel);

    // A non-member joins and types in the same write: the join is refused,
    // and so is the typing, which reaches nobody.
    let mut eve = connect(&server, "eve");
    let data = json!({ "channelId": channel });
    write_together(
        &mut eve,
        [
            format!("421{}", json!(["join_channel", data])),
            format!("422{}", json!(["typing_start", data])),
        ],
    );
    let got = acks(&mut eve, 2);
    assert_eq!(got[0].1["error"]["code"], "FORBIDDEN", "join: {got:?}");
    assert_eq!(got[1].1["ok"], false, "typing: {got:?}");
    assert_eq!(got[1].1["error"]["code"], "FORBIDDEN", "typing: {got:?}");
    // The owner relays in order: alice's user_joined, which it sends after
    // handling eve's typing, comes after any typing it would have relayed.
    let mut alice = connect(&server, "alice");
    join(&mut alice, &channel);
    let before = events_until(&mut bob, "user_joined", |d| d["userId"] == "alice");
    assert!(
        !before.iter().any(|(n, _)| n == "typing"),
        "a refused join's typing was relayed: {before:?}"
    );

    // The channel is deleted: a typing on it is NOT_FOUND and relayed to
    // no one.
    let deleted =
        as_user(&server, "alice").call("DELETE", &format!("/api/v1/channels/{channel}"), None);
    assert_eq!(deleted.status, 204, "{deleted:?}");
    // The 204 comes once the owner holds commands for the reload, so a
    // typing sent after it is checked against the deleted channel.
    let ack = call(&mut bob, 2, "typing_start", json!({ "channelId": channel }));
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "NOT_FOUND", "{ack}");
    // bob's leave reaches alice after any typing of bob's (same owner).
    let left = call(
        &mut bob,
        3,
        "leave_channel",
        json!({ "channelId": channel }),
    );
    assert_eq!(left["ok"], true, "{left}");
    let before = events_until(&mut alice, "user_left", |d| d["userId"] == "bob");
    assert!(
        !before.iter().any(|(n, _)| n == "typing"),
        "a typing on a deleted channel was relayed: {before:?}"
    );
}

/// Connections sending join_channel + typing_start pairs on made-up ids;
/// the first one warms the server up (buffers, queues, allocator arenas)
/// and the server's RSS after it is the baseline.
const ATTACKERS: usize = 12;
/// Rounds per connection, and pairs per round (written together).
const ROUNDS: usize = 10;
const PAIRS: usize = 500;

/// One attacker: ROUNDS writes of PAIRS join_channel + typing_start pairs
/// on made-up ids, every one of them refused.
fn attack(server: &TestServer, a: usize) {
    let mut ws = connect(server, &format!("attacker-{a}"));
    for r in 0..ROUNDS {
        let frames = (0..PAIRS).flat_map(|i| {
            let data = json!({ "channelId": format!("made-up-{a}-{r}-{i}") });
            [
                format!("42{}{}", 2 * i, json!(["join_channel", data])),
                format!("42{}{}", 2 * i + 1, json!(["typing_start", data])),
            ]
        });
        write_together(&mut ws, frames);
        for (id, ack) in acks(&mut ws, 2 * PAIRS) {
            assert_eq!(ack["ok"], false, "ack {id}: {ack}");
            // The typing is refused by the owner (the join it queued
            // behind was refused) or, once the refusal is back, by the
            // connection's shard.
            let code = ack["error"]["code"].as_str().unwrap_or_default();
            assert!(
                code == "NOT_FOUND" || (id % 2 == 1 && code == "FORBIDDEN"),
                "ack {id}: {ack}"
            );
        }
    }
}

#[test]
fn made_up_channel_ids_leave_nothing_in_the_owner_cache() {
    let server = TestServer::start_with(&[
        ("RATE_LIMIT_PER_SEC", "1000000"),
        ("RATE_LIMIT_BURST", "1000000"),
        ("MAX_CHANNELS_PER_CONNECTION", &(2 * PAIRS).to_string()),
    ]);
    attack(&server, 0);
    let baseline = server.rss_kib();
    let mut peak = baseline;
    for a in 1..ATTACKERS {
        attack(&server, a);
        peak = peak.max(server.rss_kib());
    }
    let ids = (ATTACKERS - 1) * ROUNDS * PAIRS;

    // Every connection is gone: the owners hold no channel (the gauge is
    // refreshed every 250 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut held = server.gauge("chat_channels_active");
    while held != 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        held = server.gauge("chat_channels_active");
    }
    assert_eq!(held, 0.0, "channels still cached after the made-up ids");
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("{ids} made-up ids after the warm-up: RSS {baseline} KiB, peak +{grown_mib} MiB");
    assert!(
        grown_mib < 16,
        "RSS grew by {grown_mib} MiB over {ids} made-up ids"
    );
}

#[test]
fn a_refused_join_that_closes_at_once_does_not_cut_off_a_subscriber() {
    let server = TestServer::start();
    let channel = server.create_channel("alice", "team", "private", &["bob"]);
    // Several connections of bob, so that some share a shard with some
    // strangers (the kernel spreads connections over the 2 shards, and the
    // owner counts subscribers per shard).
    let mut bobs: Vec<Ws> = (0..8).map(|_| connect(&server, "bob")).collect();
    for bob in &mut bobs {
        join(bob, &channel);
    }
    // Each stranger's join is refused, but it closes before the refusal
    // is back, so its shard also tells the owner it left.
    for i in 0..40 {
        let mut eve = connect(&server, &format!("eve-{i}"));
        let join = json!(["join_channel", { "channelId": channel }]);
        write_together(&mut eve, [format!("42{join}")]);
        eve.get_mut()
            .shutdown(std::net::Shutdown::Both)
            .expect("shutdown");
    }
    // An edit reaches the channel's subscribers through the owner's count
    // of them per shard.
    let alice = as_user(&server, "alice");
    let sent = alice.send(&channel, "before the strangers left");
    let path = format!("/api/v1/messages/{}", sent["id"].as_str().expect("id"));
    let edited = alice.call("PUT", &path, Some(json!({ "content": "edited" })));
    assert_eq!(edited.status, 200, "{edited:?}");
    for bob in &mut bobs {
        let before = events_until(bob, "message_updated", |d| d["id"] == sent["id"]);
        assert!(
            before.iter().any(|(n, _)| n == "message"),
            "the message came first: {before:?}"
        );
    }
}
