//! The two faults of issue 14 item 3 that tests/redis_cluster_faults.rs
//! leaves out, under its load (`common::load`: one sender and one
//! subscriber per instance on six channels, a round of three sends about
//! every 100 ms) on three gatrix-chat instances with four sequencing
//! partitions, MariaDB and a 6-node Redis Cluster:
//!
//! - the whole cluster down for 30 s: every node killed (`kill -9`), kept
//!   down, started again on its port and directory (`nodes.conf` keeps the
//!   topology; with no persistence the streams, leases and sessions come
//!   back empty). Sends must ack throughout and the MySQL polling fallback
//!   deliver meanwhile; afterwards the log carries delivery again, typing
//!   and presence cross instances again;
//! - `kill -9` of a gatrix-chat instance: its clients move to the others
//!   with connection state recovery (a send in flight at the kill sent
//!   again with its `clientMessageId`), its users' presence is reaped after
//!   its lease, and the instance, started again with the same `SERVER_ID`,
//!   serves and receives.
//!
//! After each: every subscriber's `seq` per channel complete, in order,
//! without duplicates (message by message); every acked message once in
//! MySQL. The times to resume and to catch up are printed (`--no-capture`
//! shows them; docs/operations.md has them).
//!
//! Needs MariaDB and redis-server: run with `scripts/test --with-mariadb
//! cargo nextest run --run-ignored all --test redis_cluster_outage
//! --no-capture`.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::client::Client;
use common::cluster::Cluster;
use common::load::{Load, RESUME, per_instance};
use common::redis_cluster::NODES;

const INSTANCES: usize = 3;

/// How long the whole Redis Cluster stays down.
const OUTAGE: Duration = Duration::from_secs(30);

/// The oldest a round may be, at the end of the outage, and not have
/// reached every subscriber: the polling fallback reads the database
/// every `BUS_POLL_INTERVAL_MS` (500 ms), so a round waits about that;
/// generous for the shared CPU, and far below the outage (a fallback that
/// does not deliver fails it).
const FALLBACK_LATE: Duration = Duration::from_secs(10);

/// The presence lease of the instance-kill test: a killed instance's
/// users are announced offline within it.
const LEASE_MS: u64 = 4_000;

fn start(env: &[(&str, &str)]) -> (Cluster, Load) {
    let mut all = vec![("SEQUENCER_PARTITIONS", "4"), ("PRESENCE_INTERVAL_MS", "0")];
    all.extend_from_slice(env);
    let cluster = Cluster::start_on_redis_cluster(INSTANCES, &all);
    let mut load = Load::start(&cluster);
    for _ in 0..5 {
        load.round();
    }
    load.settle();
    load.typing_crosses();
    (cluster, load)
}

/// A user of its own on instance `i`, joined to load channel 0, once
/// subscriber `watcher` (on another instance) was told it joined.
fn presence_probe(
    cluster: &Cluster,
    load: &mut Load,
    i: usize,
    user: &str,
    watcher: usize,
) -> Client {
    let mut probe = Client::connect(cluster.server(i), user);
    let ack = probe.call(
        "join_channel",
        serde_json::json!({ "channelId": load.channels[0] }),
    );
    assert_eq!(ack["ok"], true, "{ack}");
    seen_by(load, watcher, "user_joined", user);
    probe
}

/// Waits until subscriber `watcher` gets `event` (`user_joined`,
/// `user_left`, or `presence_update` offline) about `user` in load
/// channel 0, the load going on meanwhile; how long it took.
fn seen_by(load: &mut Load, watcher: usize, event: &str, user: &str) -> Duration {
    let t0 = Instant::now();
    let ch = load.channels[0].clone();
    let matches = |d: &Value| {
        d["userId"] == user
            && match event {
                "presence_update" => d["status"] == "offline",
                _ => d["channelId"] == ch.as_str(),
            }
    };
    loop {
        let got = load.subscribers[watcher].client.try_event_where(
            event,
            Duration::from_millis(100),
            matches,
        );
        if got.is_some() {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < RESUME,
            "subscriber {watcher} got no {event} of {user} within {RESUME:?}"
        );
        load.round();
        load.receive(Duration::from_millis(100));
    }
}

/// Every instance's `/ready` after the fault: 200, the bus connected and
/// the events subscribed.
fn assert_all_ready(cluster: &Cluster, after: &str) {
    for i in 0..INSTANCES {
        let (status, body) = cluster.ready(i);
        assert!(
            status == 200
                && body.contains(r#""connected":true"#)
                && body.contains(r#""subscribed":true"#),
            "instance {i} after {after}: {status} {body}"
        );
    }
    assert_eq!(
        per_instance(cluster, "chat_bus_connected"),
        vec![1.0; INSTANCES]
    );
}

/// The partitions' streams on the masters, with their lengths.
fn streams(cluster: &Cluster) -> Vec<(String, u64)> {
    let rc = cluster.redis_cluster.as_ref().expect("a Redis Cluster");
    let mut all = Vec::new();
    for m in rc.masters() {
        let keys = rc
            .cli(m, &["--scan", "--pattern", "gatrix:bus:*:log:*"])
            .unwrap_or_else(|e| panic!("SCAN on node {m}: {e}"));
        for k in keys.lines().filter(|k| !k.is_empty()) {
            let len = rc
                .cli(m, &["XLEN", k])
                .unwrap_or_else(|e| panic!("XLEN {k}: {e}"));
            all.push((k.to_owned(), len.trim().parse().expect("XLEN")));
        }
    }
    all
}

/// The whole Redis Cluster down for 30 s under load: every node killed
/// with SIGKILL (an outage is not a clean `SHUTDOWN`: a crash, the OOM
/// killer, a host or rack losing power; no node gets to say goodbye or
/// save, and with `--save ''` a `SHUTDOWN NOSAVE` would come back just as
/// empty), then started again on its port and directory.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn the_whole_redis_cluster_down_30s_under_load_loses_nothing_and_resumes() {
    let (mut cluster, mut load) = start(&[]);
    // A user on instance 2 who goes during the outage: once
    // the cluster is back (empty: nothing there says it was subscribed)
    // subscriber 0 on instance 0 must hear of it.
    let probe = presence_probe(&cluster, &mut load, 2, "probe", 0);
    assert!(!streams(&cluster).is_empty(), "no stream before the outage");
    let regroups = per_instance(&cluster, "chat_bus_reader_regroups_total");
    let fallbacks = per_instance(&cluster, "chat_bus_polling_fallbacks_total");

    let t0 = Instant::now();
    let acked_before = load.acked_count();
    let rc = cluster.redis_cluster.as_mut().expect("a Redis Cluster");
    for i in 0..NODES {
        rc.kill9(i);
    }
    load.slowest = Duration::ZERO;
    let (mut bus_down, mut polling, mut pubsub_down) = (false, false, false);
    let mut probe = Some(probe);
    while t0.elapsed() < OUTAGE {
        load.round();
        load.receive(Duration::from_millis(100));
        if t0.elapsed() > OUTAGE / 2 {
            // The probe goes, Redis away: its instance must tell the
            // others once Redis is back.
            drop(probe.take());
        }
        for i in 0..INSTANCES {
            let (status, body) = cluster.ready(i);
            assert_eq!(status, 200, "instance {i} unready with Redis down: {body}");
            bus_down |= body.contains(r#""connected":false"#);
            polling |= body.contains(r#""polling":true"#);
            pubsub_down |= body.contains(r#""subscribed":false"#);
        }
    }
    let acked_during = load.acked_count() - acked_before;
    // The fallback delivered during the outage: nothing older than a few
    // poll intervals is missing.
    let oldest = load.oldest_pending().unwrap_or_default();
    assert!(
        oldest < FALLBACK_LATE,
        "with Redis down a round sent {oldest:?} ago has not reached every subscriber: the \
         polling fallback does not deliver"
    );
    assert!(
        bus_down && polling && pubsub_down,
        "/ready said: bus down {bus_down}, polling {polling}, pub/sub down {pubsub_down}"
    );
    let fallback_slowest = load.slowest;
    let missing_at_restart: u64 = (0..load.subscribers.len()).map(|i| load.missing(i)).sum();

    let restart = Instant::now();
    let rc = cluster.redis_cluster.as_mut().expect("a Redis Cluster");
    for i in 0..NODES {
        rc.restart(i);
    }
    let nodes_up = restart.elapsed();
    let (mut resumed, mut caught_up) = (None, None);
    while resumed.is_none() || caught_up.is_none() {
        load.round();
        load.receive(Duration::from_millis(100));
        if caught_up.is_none() && !load.pending_before(restart) {
            caught_up = Some(restart.elapsed());
        }
        if resumed.is_none() {
            let back = per_instance(&cluster, "chat_bus_reader_regroups_total")
                .iter()
                .zip(&regroups)
                .all(|(now, was)| now > was)
                && per_instance(&cluster, "chat_bus_connected") == vec![1.0; INSTANCES]
                && per_instance(&cluster, "chat_bus_polling") == vec![0.0; INSTANCES];
            if back {
                resumed = Some(restart.elapsed());
            }
        }
        assert!(
            restart.elapsed() < RESUME,
            "{RESUME:?} after the restart: readers back {resumed:?}, caught up {caught_up:?}; \
             connected {:?}, polling {:?}",
            per_instance(&cluster, "chat_bus_connected"),
            per_instance(&cluster, "chat_bus_polling"),
        );
    }
    let resumed = resumed.expect("set before the loop ends");
    let caught_up = caught_up.expect("set before the loop ends");
    for _ in 0..10 {
        load.round();
        load.receive(Duration::from_millis(100));
    }
    load.settle();
    // The log carries the messages again: the emptied streams are
    // written anew.
    let after = streams(&cluster);
    assert!(
        !after.is_empty() && after.iter().all(|(_, len)| *len > 0),
        "the streams after the restart: {after:?}"
    );
    let typing = load.typing_crosses();
    cluster
        .redis_cluster
        .as_ref()
        .expect("a Redis Cluster")
        .wait_settled();
    assert_all_ready(&cluster, "the outage");
    let fell_back = per_instance(&cluster, "chat_bus_polling_fallbacks_total");
    assert!(
        fell_back.iter().zip(&fallbacks).all(|(now, was)| now > was),
        "fallbacks {fell_back:?}, were {fallbacks:?}"
    );
    // Presence crosses instances again: the probe's departure during the
    // outage (Redis came back without the counts that announced it) and a
    // new user's join on instance 1 reach subscriber 0.
    let left = seen_by(&mut load, 0, "user_left", "probe");
    let offline = seen_by(&mut load, 0, "presence_update", "probe");
    let late = presence_probe(&cluster, &mut load, 1, "late", 0);
    drop(late);
    load.settle();
    load.check_mysql(&cluster);

    // Every message acked during the outage reached every subscriber
    // this long after the outage began.
    let delivered_in = restart - t0 + caught_up;
    let rate = acked_during as f64 / delivered_in.as_secs_f64();
    println!(
        "whole cluster down {OUTAGE:?} (kill -9 of {NODES} nodes): {acked_during} messages \
         acked meanwhile ({} in all), the polling fallback delivering them (slowest round to \
         every subscriber {fallback_slowest:?}, /ready 200, bus.connected false, polling \
         true); nodes started again in {nodes_up:?}; resume: every reader back on the log \
         {resumed:?} after the restart; catch-up: every message acked during the outage at \
         every subscriber {caught_up:?} after the restart ({missing_at_restart} deliveries \
         missing at the restart), {delivered_in:?} after the outage began: {rate:.1} \
         messages/s; typing crossed {typing:?} later; the probe's departure during the \
         outage announced to another instance {left:?} and {offline:?} after \
         the readers were back; streams after: {after:?}",
        load.acked_count()
    );
}

/// kill -9 of one of three instances under load on the Redis Cluster:
/// its clients move, its users' presence is reaped, and it comes back
/// with the same `SERVER_ID` (a stable name, as docs/operations.md
/// advises: the restarted instance reaps its own leftovers and takes the
/// database's instance lock of that name again).
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn kill_9_of_an_instance_on_the_redis_cluster_loses_nothing_acked() {
    const VICTIM: usize = 1;
    let lease = LEASE_MS.to_string();
    let (mut cluster, mut load) = start(&[("PRESENCE_LEASE_MS", &lease)]);
    // A user of the victim that does not come back: the others must
    // announce it gone once the victim's lease expired.
    let ghost = presence_probe(&cluster, &mut load, VICTIM, "ghost", 0);

    // Every sender's send on the wire, none acked yet, when the instance
    // dies: the victim's sender sends again on another instance.
    let t0 = Instant::now();
    load.round_with(|| cluster.kill9(VICTIM));
    load.instance_down(VICTIM);
    drop(ghost);
    let moved =
        |load: &Load| load.senders[VICTIM].moves == 1 && load.subscribers[VICTIM].moves == 1;
    let mut resumed = None;
    while resumed.is_none() {
        load.receive(Duration::from_millis(100));
        if moved(&load) && load.oldest_pending().is_none() {
            resumed = Some(t0.elapsed());
        } else {
            load.round();
        }
        assert!(
            t0.elapsed() < RESUME,
            "the victim's clients did not resume within {RESUME:?}"
        );
    }
    let resumed = resumed.expect("set before the loop ends");
    let slowest = load.slowest;
    for (i, m) in load.senders.iter().chain(&load.subscribers).enumerate() {
        let expected = u32::from(i % INSTANCES == VICTIM);
        assert_eq!(m.moves, expected, "{} moved {} times", m.user, m.moves);
        assert_ne!(m.instance, VICTIM, "{} still on the victim", m.user);
    }

    // The ghost is reaped after the victim's lease: gone from the channel
    // and offline, for a subscriber on another instance.
    let left = t0.elapsed() + seen_by(&mut load, 0, "user_left", "ghost");
    seen_by(&mut load, 0, "presence_update", "ghost");
    let offline = t0.elapsed();
    let survivors = [0, 2];
    let reaped: f64 = survivors
        .iter()
        .map(|&i| cluster.metric(i, "chat_cluster_instances_reaped_total"))
        .sum();
    assert_eq!(reaped, 1.0, "the victim reaped by exactly one survivor");
    // The moved users never looked gone: their counts on their new
    // instances hold them online through the reap.
    for user in ["sender1", "reader1"] {
        let watcher = &mut load.subscribers[0].client;
        let gone = watcher.try_event_where("user_left", Duration::ZERO, |d| d["userId"] == user);
        let offline = watcher.try_event_where("presence_update", Duration::ZERO, |d| {
            d["userId"] == user && d["status"] == "offline"
        });
        assert!(
            gone.is_none() && offline.is_none(),
            "{user} moved and was announced gone: {gone:?} {offline:?}"
        );
    }

    // The instance again, with its SERVER_ID: a new sender and subscriber
    // on it send and receive.
    let restart = Instant::now();
    cluster.restart(VICTIM);
    load.instance_up(VICTIM);
    let started = restart.elapsed();
    // Ready means serving, polling the database until its log reader has
    // read from every master once: wait for that.
    while cluster.metric(VICTIM, "chat_bus_connected") != 1.0 {
        assert!(
            restart.elapsed() < RESUME,
            "the restarted instance's reader not on the log within {RESUME:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let on_log = restart.elapsed();
    load.add_sender(&cluster, VICTIM, "sender-back");
    load.add_subscriber(&cluster, VICTIM, "reader-back");
    let back = load.subscribers.len() - 1;
    let sent = Instant::now();
    load.round();
    load.settle();
    let first = sent.elapsed();
    for _ in 0..10 {
        load.round();
        load.receive(Duration::from_millis(100));
    }
    load.settle();
    let typing_out = load.typing_between(INSTANCES, 0);
    let typing_in = load.typing_between(0, back);
    assert_all_ready(&cluster, "the restart of the killed instance");
    load.check_mysql(&cluster);
    println!(
        "kill -9 of instance {VICTIM} (a send of each sender in flight): its clients moved and \
         every subscriber had every message again {resumed:?} after the kill (slowest round \
         {slowest:?}); its user left everywhere {left:?} and went offline {offline:?} after \
         the kill (lease {LEASE_MS} ms); restarted (same SERVER_ID) and ready in {started:?}, \
         its reader on the log in {on_log:?}, its new clients' first round delivered everywhere in {first:?}, typing out \
         {typing_out:?} and in {typing_in:?}; {} messages acked in all",
        load.acked_count()
    );
}
