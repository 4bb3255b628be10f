//! Three gatrix-chat instances on a 6-node Redis Cluster with four
//! sequencing partitions (their streams spread over the three masters; each
//! instance's log reader holds one blocking XREAD per stream's slot), under
//! a steady load of senders and subscribers spread over the instances,
//! through the cluster's faults in turn: SIGSTOP/SIGCONT of a master,
//! `kill -9` of a master (failover), `CLUSTER FAILOVER` on a replica, a
//! migration of a stream's hash slot to another master, then of a sharded
//! pub/sub channel's (the server's unsolicited `sunsubscribe`), `CLIENT
//! KILL TYPE pubsub`.
//!
//! The periodic slot-map read is off (`REDIS_CLUSTER_REFRESH_MS` of ten
//! minutes): each fault is found from the connections alone. After each
//! fault: every instance's reader regrouped and reads the log
//! again (`chat_bus_reader_regroups_total` moved, `chat_bus_connected` 1,
//! one XREAD per master); every subscriber's `seq` per channel is
//! complete, in order, without duplicates (checked message by message);
//! typing crosses instances again. At the end every acked message is once
//! in MySQL. The times to resume are printed (`--no-capture` shows them).
//!
//! Needs MariaDB and redis-server: run with `scripts/test --with-mariadb
//! cargo nextest run --run-ignored all --test redis_cluster_faults`.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::load::{Load, RESUME, per_instance};
use common::redis_cluster::RedisCluster;

/// Instances.
const INSTANCES: usize = 3;

/// Injects `fault`, keeps the load going until every instance's reader
/// regrouped and reads again (a round every 100 ms: the load's pace, not
/// a synchronisation) and a few rounds more arrived, then `heal`s; prints
/// and returns the time until the readers were back.
fn phase(
    name: &str,
    cluster: &mut Cluster,
    load: &mut Load,
    fault: impl FnOnce(&mut RedisCluster),
    heal: impl FnOnce(&mut RedisCluster),
    degrades: bool,
) -> Duration {
    load.settle();
    load.slowest = Duration::ZERO;
    let before = per_instance(cluster, "chat_bus_reader_regroups_total");
    let t0 = Instant::now();
    fault(cluster.redis_cluster.as_mut().expect("a Redis Cluster"));
    let mut back: Option<Duration> = None;
    let mut rounds_after = 0;
    // Whether an instance's /ready said the bus or pub/sub was degraded.
    let (mut bus_down, mut pubsub_down) = (false, false);
    loop {
        load.round();
        load.receive(Duration::from_millis(100));
        for i in 0..INSTANCES {
            let (status, body) = cluster.ready(i);
            assert_eq!(status, 200, "instance {i} unready during {name}: {body}");
            bus_down |= body.contains(r#""connected":false"#);
            pubsub_down |= body.contains(r#""subscribed":false"#);
        }
        if back.is_none() {
            let regrouped = per_instance(cluster, "chat_bus_reader_regroups_total")
                .iter()
                .zip(&before)
                .all(|(now, was)| now > was);
            let up = per_instance(cluster, "chat_bus_connected")
                .iter()
                .all(|c| *c == 1.0);
            if regrouped && up {
                back = Some(t0.elapsed());
            }
        } else {
            rounds_after += 1;
        }
        if back.is_some() && rounds_after >= 10 {
            break;
        }
        assert!(
            t0.elapsed() < RESUME,
            "{name}: the readers did not come back within {RESUME:?}: regroups {:?} (were \
             {before:?}), connected {:?}",
            per_instance(cluster, "chat_bus_reader_regroups_total"),
            per_instance(cluster, "chat_bus_connected")
        );
    }
    let back = back.expect("set before the loop ends");
    if degrades {
        assert!(bus_down, "{name}: no /ready said the bus was down");
    }
    heal(cluster.redis_cluster.as_mut().expect("a Redis Cluster"));
    load.settle();
    let typing = load.typing_crosses();
    let rc = cluster.redis_cluster.as_ref().expect("a Redis Cluster");
    rc.wait_settled();
    for i in 0..INSTANCES {
        let (_, body) = cluster.ready(i);
        assert!(
            body.contains(r#""connected":true"#) && body.contains(r#""subscribed":true"#),
            "instance {i} after {name}: {body}"
        );
    }
    println!(
        "{name}: every reader back on the log after {back:?}; the slowest round reached \
         every subscriber in {:?}; typing crossed after {typing:?}; resubscribes {:?}, \
         probes failed {:?}; /ready showed the bus down: {bus_down}, pub/sub down: \
         {pubsub_down}",
        load.slowest,
        per_instance(cluster, "chat_cluster_resubscribes_total"),
        per_instance(cluster, "chat_cluster_probes_failed_total"),
    );
    back
}

/// A master owning one of the partitions' streams, and the stream.
fn stream_master(rc: &RedisCluster) -> (usize, String) {
    for m in rc.masters() {
        let keys = rc
            .cli(m, &["--scan", "--pattern", "gatrix:bus:*:log:*"])
            .unwrap_or_else(|e| panic!("SCAN on node {m}: {e}"));
        if let Some(k) = keys.lines().next() {
            return (m, k.to_owned());
        }
    }
    panic!("no stream on any master");
}

/// A master with a subscribed shard channel, and the channel.
fn shard_channel_master(rc: &RedisCluster) -> (usize, String) {
    for m in rc.masters() {
        let chs = rc
            .cli(m, &["PUBSUB", "SHARDCHANNELS", "gatrix:ev:*"])
            .unwrap_or_else(|e| panic!("PUBSUB SHARDCHANNELS on node {m}: {e}"));
        if let Some(c) = chs.lines().find(|l| !l.is_empty()) {
            return (m, c.to_owned());
        }
    }
    panic!("no shard channel subscribed on any master");
}

/// Moves `slot` from master `from` to master `to`: IMPORTING, MIGRATING,
/// MIGRATE of its keys, then NODE on every master (what `redis-cli
/// --cluster reshard` does, for one slot).
fn migrate_slot(rc: &RedisCluster, slot: u16, from: usize, to: usize) {
    let id = |i: usize| {
        rc.cli(i, &["CLUSTER", "MYID"])
            .unwrap_or_else(|e| panic!("CLUSTER MYID on node {i}: {e}"))
            .trim()
            .to_owned()
    };
    let (from_id, to_id) = (id(from), id(to));
    let slot = slot.to_string();
    let ok = |i: usize, args: &[&str]| {
        let out = rc
            .cli(i, args)
            .unwrap_or_else(|e| panic!("{args:?} on node {i}: {e}"));
        assert!(!out.contains("ERR"), "{args:?} on node {i}: {out}");
    };
    ok(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
    ok(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
    loop {
        let keys = rc
            .cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"])
            .unwrap_or_else(|e| panic!("GETKEYSINSLOT on node {from}: {e}"));
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        if keys.is_empty() {
            break;
        }
        let port = rc.port(to).to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend(keys);
        ok(from, &args);
    }
    for m in rc.masters() {
        ok(m, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn readers_and_subscribers_resume_after_each_fault_with_every_message_once_in_order() {
    let mut cluster = Cluster::start_on_redis_cluster(
        INSTANCES,
        &[
            ("SEQUENCER_PARTITIONS", "4"),
            ("PRESENCE_INTERVAL_MS", "0"),
            // No periodic slot-map read during the test: each fault must
            // be found by what it does to the connections (an error, a
            // silent node, MOVED, an unsolicited sunsubscribe).
            ("REDIS_CLUSTER_REFRESH_MS", "600000"),
        ],
    );
    let mut load = Load::start(&cluster);
    for _ in 0..5 {
        load.round();
    }
    load.settle();
    load.typing_crosses();
    // Four partitions' streams, four slots over three masters: one
    // blocking XREAD per slot (a cluster refuses CROSSSLOT on one node).
    assert_eq!(
        per_instance(&cluster, "chat_bus_reader_connections"),
        vec![4.0; INSTANCES]
    );
    let mut times = Vec::new();

    // A master stops answering: the blocking read is its probe.
    let (m, _) = stream_master(cluster.redis_cluster.as_ref().expect("rc"));
    times.push(phase(
        "SIGSTOP of a master",
        &mut cluster,
        &mut load,
        |rc| rc.pause(m),
        |rc| rc.resume(m),
        true,
    ));

    // A master dies: its replica takes over, the readers follow.
    let (m, _) = stream_master(cluster.redis_cluster.as_ref().expect("rc"));
    times.push(phase(
        "kill -9 of a master",
        &mut cluster,
        &mut load,
        |rc| rc.kill9(m),
        |rc| {
            rc.restart(m);
        },
        true,
    ));

    // A manual failover: the old master turns replica and redirects.
    let (m, _) = stream_master(cluster.redis_cluster.as_ref().expect("rc"));
    let r = cluster.redis_cluster.as_ref().expect("rc").replicas_of(m)[0];
    times.push(phase(
        "CLUSTER FAILOVER",
        &mut cluster,
        &mut load,
        |rc| rc.failover(r),
        |_| {},
        false,
    ));

    // A stream's slot moves to another master.
    let rc = cluster.redis_cluster.as_ref().expect("rc");
    let (from, key) = stream_master(rc);
    let to = rc
        .masters()
        .into_iter()
        .find(|&x| x != from)
        .expect("another master");
    let slot = rc.slot_of(&key);
    times.push(phase(
        "migration of a stream's slot",
        &mut cluster,
        &mut load,
        |rc| migrate_slot(rc, slot, from, to),
        |_| {},
        false,
    ));
    assert_eq!(
        cluster
            .redis_cluster
            .as_ref()
            .expect("rc")
            .master_of_slot(slot),
        to
    );

    // A shard channel's slot moves: every instance's subscriber is told
    // (an unsolicited sunsubscribe) and subscribes on the new owner.
    let rc = cluster.redis_cluster.as_ref().expect("rc");
    let (from, shard) = shard_channel_master(rc);
    let to = rc
        .masters()
        .into_iter()
        .find(|&x| x != from)
        .expect("another master");
    let before = per_instance(&cluster, "chat_cluster_resubscribes_total");
    let moves = per_instance(&cluster, "chat_cluster_slot_moves_total");
    let t0 = Instant::now();
    migrate_slot(rc, rc.slot_of(&shard), from, to);
    loop {
        let now = per_instance(&cluster, "chat_cluster_resubscribes_total");
        let told = per_instance(&cluster, "chat_cluster_slot_moves_total");
        if now.iter().zip(&before).all(|(n, b)| n > b)
            && told.iter().zip(&moves).all(|(n, b)| n > b)
        {
            break;
        }
        assert!(
            t0.elapsed() < RESUME,
            "resubscribes {now:?} (were {before:?}), sunsubscribes {told:?} (were {moves:?}) \
             after {shard}'s slot moved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let resubscribed = t0.elapsed();
    let typing = load.typing_crosses();
    println!(
        "migration of a shard channel's slot: every subscriber resubscribed after \
         {resubscribed:?}; typing crossed {typing:?} later"
    );
    load.round();
    load.settle();

    // The presence subscribers' connections are killed: they reconnect.
    let rc = cluster.redis_cluster.as_ref().expect("rc");
    let t0 = Instant::now();
    for i in 0..6 {
        if rc.is_running(i) {
            let _ = rc.cli(i, &["CLIENT", "KILL", "TYPE", "pubsub"]);
        }
    }
    load.round();
    load.settle();
    let typing = load.typing_crosses();
    println!(
        "CLIENT KILL TYPE pubsub: typing crossed again {typing:?} after the kill ({:?} in all)",
        t0.elapsed()
    );

    // Every acked message once in MySQL, in its channel's seq order.
    load.check_mysql(&cluster);
    println!("times until every reader was back: {times:?}");
}
