//! Two gatrix-chat instances on a 6-node Redis Cluster
//! (`common::redis_cluster`, `REDIS_CLUSTER_NODES`) when a master their
//! presence subscribers listen on dies: the subscribers (sharded pub/sub,
//! one connection per master each) subscribe again on the new master, so
//! typing crosses instances again, and the bus's messages keep arriving
//! in seq order through the failover. And the
//! recovery sessions' TTL renewals (pipelined per node) keep a live
//! connection's session past its TTL.
//!
//! Needs MariaDB and redis-server: run with `scripts/test --with-mariadb
//! cargo nextest run --run-ignored all --test redis_cluster_instances`.

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::client::Client;
use common::cluster::Cluster;
use common::redis_cluster::RedisCluster;

/// How long anything may take to come back after the node's death: the
/// failover (cluster-node-timeout 1 s, then an election) and the threads'
/// reconnect backoffs, generous for the shared CPU.
const RESUME: Duration = Duration::from_secs(60);

/// The sharded subscribers' connections on node `i` (`CLIENT LIST TYPE
/// pubsub` with shard channels: `ssub=` above 0).
fn subscribers_on(rc: &RedisCluster, i: usize) -> usize {
    rc.cli(i, &["CLIENT", "LIST", "TYPE", "pubsub"])
        .unwrap_or_else(|e| panic!("CLIENT LIST on node {i}: {e}"))
        .lines()
        .filter(|l| l.contains("cmd=") && !l.contains(" ssub=0 "))
        .count()
}

/// Alice types (start, stop, start, …) until Bob, on the other instance,
/// sees her typing: events are at-most-once, so one lost while a
/// subscriber reconnects is sent again.
fn typing_crosses(alice: &mut Client, bob: &mut Client, channel: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let mut typing = true;
    loop {
        let event = if typing {
            "typing_start"
        } else {
            "typing_stop"
        };
        alice.emit(event, json!({ "channelId": channel }));
        let seen = bob.try_event_where("typing", Duration::from_millis(500), |d| {
            d["userId"] == "alice" && d["isTyping"] == typing
        });
        if seen.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "alice's typing did not reach bob within {within:?}"
        );
        typing = !typing;
    }
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn the_subscribers_move_to_the_new_master_when_theirs_dies_and_messages_keep_their_order() {
    let mut cluster = Cluster::start_on_redis_cluster(2, &[("PRESENCE_INTERVAL_MS", "0")]);
    let channel = cluster
        .server(0)
        .create_channel("alice", "team", "public", &[]);
    let mut alice = Client::connect(cluster.server(0), "alice");
    let mut bob = Client::connect(cluster.server(1), "bob");
    for c in [&mut alice, &mut bob] {
        let ack = c.call("join_channel", json!({ "channelId": channel }));
        assert_eq!(ack["ok"], true, "{ack}");
    }
    typing_crosses(&mut alice, &mut bob, &channel, RESUME);
    let send = |c: &mut Client, text: &str| {
        let ack = c.call(
            "send_message",
            json!({ "channelId": channel, "content": text }),
        );
        assert_eq!(ack["ok"], true, "{ack}");
        ack["message"]["seq"].as_u64().expect("seq")
    };
    let before = send(&mut alice, "before");
    let m = bob.event_where("message", RESUME, |m| m["content"] == "before");
    assert_eq!(m["seq"].as_u64(), Some(before));

    // Each instance holds one sharded subscriber connection per master
    // (the shard channels spread over the three), none on a replica.
    let rc = cluster.redis_cluster.as_mut().expect("a Redis Cluster");
    let masters = rc.masters();
    for m in &masters {
        assert_eq!(subscribers_on(rc, *m), 2, "master {m}: one per instance");
    }
    let dead = masters[0];
    rc.kill9(dead);
    rc.wait_settled();

    // Typing crosses again: both subscribed on the new master.
    let deadline = Instant::now() + RESUME;
    let rc = cluster.redis_cluster.as_ref().expect("a Redis Cluster");
    loop {
        typing_crosses(&mut alice, &mut bob, &channel, RESUME);
        let now_masters = rc.masters();
        let on: Vec<usize> = now_masters.iter().map(|m| subscribers_on(rc, *m)).collect();
        if now_masters.len() == 3 && on.iter().all(|n| *n == 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "subscribers per master {now_masters:?}: {on:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..2 {
        assert!(
            cluster.metric(i, "chat_cluster_resubscribes_total") >= 1.0,
            "instance {i} did not count its subscriber's resubscription"
        );
    }

    // A manual failover: the demoted master serves no slot, and the
    // subscribers move to the new master (Redis 7.0 may keep them
    // subscribed on the replica, which still relays the messages: the
    // slot map read every REDIS_CLUSTER_REFRESH_MS finds the change).
    let rc = cluster.redis_cluster.as_mut().expect("a Redis Cluster");
    rc.restart(dead);
    rc.wait_settled();
    let master = rc.masters()[0];
    let replica = rc.replicas_of(master)[0];
    rc.failover(replica);
    let deadline = Instant::now() + RESUME;
    loop {
        let masters = rc.masters();
        let on: Vec<usize> = masters.iter().map(|m| subscribers_on(rc, *m)).collect();
        let on_replicas: usize = (0..6)
            .filter(|i| rc.is_running(*i) && !masters.contains(i))
            .map(|i| subscribers_on(rc, i))
            .sum();
        if masters.len() == 3 && on.iter().all(|n| *n == 2) && on_replicas == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after CLUSTER FAILOVER: subscribers per master {masters:?}: {on:?}, on replicas \
             {on_replicas}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    typing_crosses(&mut alice, &mut bob, &channel, RESUME);
    // Messages go on in seq order, nothing lost or repeated.
    let after: Vec<u64> = (0..3)
        .map(|i| send(&mut alice, &format!("after {i}")))
        .collect();
    assert_eq!(after, [before + 1, before + 2, before + 3]);
    let got: Vec<u64> = (0..3)
        .map(|_| {
            let m = bob.event_where("message", RESUME, |m| m["channelId"] == channel.as_str());
            m["seq"].as_u64().expect("seq")
        })
        .collect();
    assert_eq!(got, after, "bob's messages after the node's death");
}

/// The session keys on the cluster's masters.
fn sessions(rc: &RedisCluster) -> Vec<String> {
    rc.masters()
        .into_iter()
        .flat_map(|m| {
            rc.cli(m, &["--scan", "--pattern", "gatrix:session:*"])
                .unwrap_or_else(|e| panic!("SCAN on node {m}: {e}"))
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn live_sessions_outlive_their_ttl_through_the_renewals() {
    // A session's TTL is the window plus its refresh period (a quarter,
    // at least 250 ms): 1,250 ms here, renewed every 250 ms while its
    // connection lives.
    let cluster = Cluster::start_on_redis_cluster(1, &[("RECOVERY_WINDOW_MS", "1000")]);
    let rc = cluster.redis_cluster.as_ref().expect("a Redis Cluster");
    let mut clients: Vec<Client> = (0..4)
        .map(|i| Client::connect(cluster.server(0), &format!("user{i}")))
        .collect();
    let deadline = Instant::now() + RESUME;
    while sessions(rc).len() < clients.len() {
        assert!(
            Instant::now() < deadline,
            "sessions not written: {:?}",
            sessions(rc)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Four TTLs later (a timing wait: the renewal has no event a client
    // sees), every live connection's session is still there.
    std::thread::sleep(Duration::from_millis(5_000));
    for c in &mut clients {
        // Read what came meanwhile (pings are answered).
        let _ = c.try_event("-", Duration::from_millis(1));
    }
    let left = sessions(rc);
    assert_eq!(left.len(), clients.len(), "sessions left: {left:?}");
    assert_eq!(cluster.metric(0, "chat_recovery_redis_errors_total"), 0.0);
}
