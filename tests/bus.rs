//! The bus (several instances through Redis, docs/architecture.md "Several
//! instances") against real parts: gatrix-chat processes on scripts/test's
//! MariaDB with a throwaway redis-server (tests/common/cluster.rs).
//!
//! One instance: its messages go through the ordered log (published,
//! read back and dropped as already applied), a batch the writer never
//! hands on (the test-only `GATRIX_TEST_BUS_SKIP_BATCH`, debug builds) is
//! read from the database and re-published, and Redis stopped and started
//! under sends changes nothing a client sees. Two instances: a message
//! sent on one reaches a subscriber on the other in seq order, also
//! through a Redis outage (polling) and a skipped append.

mod common;

use std::time::{Duration, Instant};

use common::client::Client;
use common::cluster::Cluster;
use common::raw;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// Partition 0's stream; its hash tag is `redis_link::slots::spread_tag(0, 1)`.
const STREAM: &str = "gatrix:bus:{fjl}:log:0";

fn join(c: &mut Client, channel: &str) {
    let ack = c.call("join_channel", json!({ "channelId": channel }));
    assert_eq!(ack["ok"], true, "{ack}");
}

/// Sends one message and waits for its ack: its seq and pos.
fn send(c: &mut Client, channel: &str, text: &str) -> u64 {
    let ack = c.call(
        "send_message",
        json!({ "channelId": channel, "content": text }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    ack["message"]["seq"].as_u64().expect("seq")
}

/// The seqs of the next `n` `message` events of `channel`.
fn receive(c: &mut Client, channel: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let m = c.event_where("message", WAIT, |m| m["channelId"] == channel);
            m["seq"].as_u64().expect("seq")
        })
        .collect()
}

/// Waits until instance `i`'s metric `name` reaches `at_least`.
fn wait_metric(cluster: &Cluster, i: usize, name: &str, at_least: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = cluster.metric(i, name);
        if v >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {v}, not {at_least}, after {WAIT:?}:\n{}",
            cluster.server(i).log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `pos` of every entry of partition 0's stream, in order.
fn stream_positions(cluster: &Cluster) -> Vec<u64> {
    let out = cluster
        .redis
        .cli(&["XRANGE", STREAM, "-", "+"])
        .expect("XRANGE");
    out.lines()
        .filter_map(|l| l.trim().strip_suffix("-0"))
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn messages_go_through_the_log_in_order() {
    let cluster = Cluster::start(1, &[]);
    cluster.wait_all_ready();
    wait_metric(&cluster, 0, "chat_bus_connected", 1.0);
    let server = cluster.server(0);
    let (ready, body) = cluster.ready(0);
    assert_eq!(ready, 200);
    assert!(body.contains(r#""bus":{"connected":true"#), "{body}");
    let channel = server.create_channel("alice", "bus", "public", &[]);
    let mut bob = Client::connect(server, "bob");
    let mut alice = Client::connect(server, "alice");
    join(&mut bob, &channel);
    join(&mut alice, &channel);
    let sent: Vec<u64> = (0..20)
        .map(|i| {
            let seq = send(&mut alice, &channel, &format!("m{i}"));
            // A delivering sender gets its own `message` before its ack
            // (kept while the batch applies at once: docs/protocol.md).
            let own = alice.try_event_where("message", Duration::ZERO, |m| m["seq"] == seq);
            assert!(
                own.is_some(),
                "the ack of seq {seq} came before its message"
            );
            seq
        })
        .collect();
    assert_eq!(sent, (1..=20).collect::<Vec<_>>());
    assert_eq!(receive(&mut bob, &channel, 20), sent);
    // Each batch was appended once and read back from the log, where it
    // was dropped as applied already (the in-process copy came first).
    wait_metric(&cluster, 0, "chat_bus_duplicates_dropped_total", 1.0);
    assert!(cluster.metric(0, "chat_bus_publishes_total") >= 1.0);
    assert_eq!(cluster.metric(0, "chat_bus_publishes_dropped_total"), 0.0);
    let positions = stream_positions(&cluster);
    assert!(!positions.is_empty());
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(
        bob.try_event("message", Duration::from_millis(500))
            .is_none(),
        "a message delivered twice"
    );
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_batch_never_handed_on_is_read_from_the_database_and_republished() {
    // The second committed batch is neither appended nor applied here, as
    // if the writer had died between its commit and its append.
    let cluster = Cluster::start(1, &[("GATRIX_TEST_BUS_SKIP_BATCH", "2")]);
    cluster.wait_all_ready();
    wait_metric(&cluster, 0, "chat_bus_connected", 1.0);
    let server = cluster.server(0);
    let channel = server.create_channel("alice", "gap", "public", &[]);
    let mut bob = Client::connect(server, "bob");
    let mut alice = Client::connect(server, "alice");
    join(&mut bob, &channel);
    join(&mut alice, &channel);
    // One commit each: the next is sent once the previous is acked.
    let sent: Vec<u64> = (0..3)
        .map(|i| send(&mut alice, &channel, &format!("m{i}")))
        .collect();
    assert_eq!(
        receive(&mut bob, &channel, 3),
        sent,
        "in seq order, none missing"
    );
    wait_metric(&cluster, 0, "chat_bus_gap_fills_total", 1.0);
    // The fill re-published the missing batch: the log is whole again.
    let deadline = Instant::now() + WAIT;
    let mut positions = stream_positions(&cluster);
    while positions.len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        positions = stream_positions(&cluster);
    }
    assert_eq!(positions.len(), 3, "{positions:?}");
    assert!(
        positions.windows(2).all(|w| w[1] == w[0] + 1),
        "{positions:?}"
    );
    assert!(
        bob.try_event("message", Duration::from_millis(500))
            .is_none()
    );
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn redis_stopped_and_started_under_sends_loses_and_reorders_nothing() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.wait_all_ready();
    wait_metric(&cluster, 0, "chat_bus_connected", 1.0);
    let channel = cluster
        .server(0)
        .create_channel("alice", "outage", "public", &[]);
    let mut bob = Client::connect(cluster.server(0), "bob");
    let mut alice = Client::connect(cluster.server(0), "alice");
    join(&mut bob, &channel);
    join(&mut alice, &channel);
    let mut sent: Vec<u64> = (0..5)
        .map(|i| send(&mut alice, &channel, &format!("a{i}")))
        .collect();
    cluster.redis.stop();
    // Sends keep being acked while Redis is away.
    sent.extend((0..10).map(|i| send(&mut alice, &channel, &format!("b{i}"))));
    wait_metric(&cluster, 0, "chat_bus_polling", 1.0);
    cluster.redis.restart();
    wait_metric(&cluster, 0, "chat_bus_connected", 1.0);
    sent.extend((0..5).map(|i| send(&mut alice, &channel, &format!("c{i}"))));
    assert_eq!(sent, (1..=20).collect::<Vec<_>>());
    assert_eq!(receive(&mut bob, &channel, 20), sent);
    assert!(cluster.metric(0, "chat_bus_polling_fallbacks_total") >= 1.0);
    assert_eq!(cluster.metric(0, "chat_bus_polling"), 0.0);
    assert!(
        bob.try_event("message", Duration::from_millis(500))
            .is_none()
    );
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_message_sent_on_one_instance_reaches_a_subscriber_on_another_in_order() {
    let mut cluster = Cluster::start(2, &[("GATRIX_TEST_BUS_SKIP_BATCH", "3")]);
    cluster.wait_all_ready();
    wait_metric(&cluster, 0, "chat_bus_connected", 1.0);
    wait_metric(&cluster, 1, "chat_bus_connected", 1.0);
    let channel = cluster
        .server(0)
        .create_channel("alice", "across", "public", &[]);
    let mut bob = Client::connect(cluster.server(1), "bob");
    let mut alice = Client::connect(cluster.server(0), "alice");
    join(&mut bob, &channel);
    join(&mut alice, &channel);
    // Instance 0 skips its third batch: it is read from the database once
    // the gap has waited, and re-published.
    let mut sent: Vec<u64> = (0..10)
        .map(|i| send(&mut alice, &channel, &format!("a{i}")))
        .collect();
    assert_eq!(receive(&mut bob, &channel, 10), sent);
    // Redis away: instance 1 polls the database.
    cluster.redis.stop();
    sent.extend((0..10).map(|i| send(&mut alice, &channel, &format!("b{i}"))));
    assert_eq!(receive(&mut bob, &channel, 10), sent[10..]);
    cluster.redis.restart();
    wait_metric(&cluster, 1, "chat_bus_connected", 1.0);
    sent.extend((0..10).map(|i| send(&mut alice, &channel, &format!("c{i}"))));
    assert_eq!(receive(&mut bob, &channel, 10), sent[20..]);
    assert_eq!(sent, (1..=30).collect::<Vec<_>>());
    // Filled by whichever instance noticed the gap first (instance 0's
    // own applier parks its fourth batch at once).
    assert!(cluster.metric_total("chat_bus_gap_fills_total") >= 1.0);
    assert!(cluster.metric(1, "chat_bus_polling_fallbacks_total") >= 1.0);
    assert!(
        bob.try_event("message", Duration::from_millis(500))
            .is_none()
    );
}

/// Connects `sub` without a recovery claim and joins `channel`: the
/// socket and its session's pid.
fn session(server: &common::TestServer, sub: &str, channel: &str) -> (raw::Ws, String) {
    let (mut ws, _) = raw::open(server);
    let reply = raw::sio_connect_with(&mut ws, &json!({ "token": server.token(sub) }));
    let pid = reply["pid"].as_str().expect("pid").to_owned();
    raw::join_ack(&mut ws, 100, channel);
    (ws, pid)
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn a_session_made_before_the_first_batch_starts_at_the_databases_last_pos() {
    let mut cluster = Cluster::start(1, &[]);
    cluster.wait_all_ready();
    let channel = cluster
        .server(0)
        .create_channel("alice", "restart", "public", &[]);
    {
        let mut alice = Client::connect(cluster.server(0), "alice");
        join(&mut alice, &channel);
        for i in 0..3 {
            send(&mut alice, &channel, &format!("before{i}"));
        }
    }
    // A new process: nothing applied yet, the database holds 3 messages.
    cluster.restart(0);
    cluster.wait_all_ready();
    let server = cluster.server(0);
    let (_carol, _) = session(server, "carol", &channel);
    let (bob, pid) = session(server, "bob", &channel);
    // Dropped without a 41: the session is kept. Wait until the server has
    // let go of the connection (carol's is the one left). Not carol's
    // `user_left`: presence counts are absolute, so a join and a leave that
    // reach the presence thread in one round make no edge at all.
    drop(bob);
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.metric(0, "chat_connections_active") > 1.0 {
        assert!(Instant::now() < deadline, "bob's connection never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut alice = Client::connect(server, "alice");
    join(&mut alice, &channel);
    assert_eq!(send(&mut alice, &channel, "after"), 4);
    // Bob never got a message: his claim has no offset, so the replay
    // starts where his session started, after the 3 older messages.
    let (mut ws, _) = raw::open(server);
    let reply = raw::sio_connect_with(
        &mut ws,
        &json!({ "token": server.token("bob"), "pid": pid }),
    );
    assert_eq!(reply["pid"], pid.as_str(), "recovered: {reply}");
    let first = loop {
        if let Some((name, args)) = raw::as_event_args(&raw::recv_text(&mut ws))
            && name == "message"
        {
            break args;
        }
    };
    assert_eq!(first[0]["content"], "after", "{first:?}");
    assert_eq!(first[0]["seq"], 4);
}
