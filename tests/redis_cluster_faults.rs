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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use common::client::Client;
use common::cluster::Cluster;
use common::redis_cluster::RedisCluster;

/// How long the instances may take to read the log again after a fault:
/// the cluster's failover (cluster-node-timeout, an election), the read
/// timeout of a stopped node (block time plus the Redis timeout) and the
/// readers' backoff, generous for the shared CPU.
const RESUME: Duration = Duration::from_secs(60);

/// Instances, and channels the load rotates over.
const INSTANCES: usize = 3;
const CHANNELS: usize = 6;

/// The load: one sender and one subscriber per instance, every one a
/// member of every channel.
struct Load {
    channels: Vec<String>,
    senders: Vec<Client>,
    subscribers: Vec<Client>,
    /// Per channel, the seqs acked so far (1, 2, …: only the load sends).
    acked: HashMap<String, Vec<u64>>,
    /// Per subscriber and channel, the last seq received.
    seen: Vec<HashMap<String, u64>>,
    /// Rounds sent and not yet received by every subscriber: (sent at,
    /// per channel the last seq of the round).
    pending: Vec<(Instant, HashMap<String, u64>)>,
    /// The longest a round took to reach every subscriber, this phase.
    slowest: Duration,
    next: usize,
}

impl Load {
    fn start(cluster: &Cluster) -> Load {
        let channels: Vec<String> = (0..CHANNELS)
            .map(|i| {
                cluster
                    .server(0)
                    .create_channel("owner", &format!("load{i}"), "public", &[])
            })
            .collect();
        let join = |c: &mut Client| {
            for ch in &channels {
                let ack = c.call("join_channel", json!({ "channelId": ch }));
                assert_eq!(ack["ok"], true, "{ack}");
            }
        };
        let mut senders = Vec::new();
        let mut subscribers = Vec::new();
        for i in 0..INSTANCES {
            let mut s = Client::connect(cluster.server(i), &format!("sender{i}"));
            join(&mut s);
            senders.push(s);
            let mut r = Client::connect(cluster.server(i), &format!("reader{i}"));
            join(&mut r);
            subscribers.push(r);
        }
        Load {
            acked: channels.iter().map(|c| (c.clone(), Vec::new())).collect(),
            seen: vec![HashMap::new(); INSTANCES],
            channels,
            senders,
            subscribers,
            pending: Vec::new(),
            slowest: Duration::ZERO,
            next: 0,
        }
    }

    /// One message from each sender, each to the next channel of the
    /// rotation; every one must be acked (the store commits whatever Redis
    /// does).
    fn round(&mut self) {
        let mut last = HashMap::new();
        for s in &mut self.senders {
            let ch = self.channels[self.next % CHANNELS].clone();
            self.next += 1;
            let ack = s.call(
                "send_message",
                json!({ "channelId": ch, "content": format!("m{}", self.next) }),
            );
            assert_eq!(ack["ok"], true, "{ack}");
            let seq = ack["message"]["seq"].as_u64().expect("seq");
            let acked = self.acked.get_mut(&ch).expect("a load channel");
            assert_eq!(
                seq,
                acked.last().map_or(1, |l| l + 1),
                "acked seqs of {ch} are not consecutive"
            );
            acked.push(seq);
            last.insert(ch, seq);
        }
        self.pending.push((Instant::now(), last));
    }

    /// Reads the subscribers for up to `within` (each message checked: the
    /// next seq of its channel), and retires the rounds every subscriber
    /// has; true once none is pending.
    fn receive(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        for (i, sub) in self.subscribers.iter_mut().enumerate() {
            loop {
                let behind = self.acked.iter().any(|(ch, seqs)| {
                    seqs.last().copied().unwrap_or(0) > self.seen[i].get(ch).copied().unwrap_or(0)
                });
                if !behind {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(m) = sub.try_event("message", left.max(Duration::from_millis(1))) else {
                    break;
                };
                let ch = m["channelId"].as_str().expect("channelId").to_owned();
                let seq = m["seq"].as_u64().expect("seq");
                let last = self.seen[i].entry(ch.clone()).or_insert(0);
                assert_eq!(
                    seq,
                    *last + 1,
                    "subscriber {i} got seq {seq} of {ch} after {last}: a gap, a repeat or \
                     out of order"
                );
                *last = seq;
            }
        }
        let seen = &self.seen;
        let slowest = &mut self.slowest;
        self.pending.retain(|(sent, last)| {
            let done = last
                .iter()
                .all(|(ch, seq)| seen.iter().all(|s| s.get(ch).copied().unwrap_or(0) >= *seq));
            if done {
                *slowest = (*slowest).max(sent.elapsed());
            }
            !done
        });
        self.pending.is_empty()
    }

    /// Waits until every subscriber has every acked message.
    fn settle(&mut self) {
        let deadline = Instant::now() + RESUME;
        while !self.receive(Duration::from_millis(500)) {
            assert!(
                Instant::now() < deadline,
                "messages not delivered within {RESUME:?}: seen {:?}, acked up to {:?}",
                self.seen,
                self.acked
                    .iter()
                    .map(|(c, s)| (c, s.last()))
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Sender 0's typing reaches subscriber 1 (another instance); typing
    /// is at most once, so it is sent again until seen.
    fn typing_crosses(&mut self) -> Duration {
        let start = Instant::now();
        let ch = self.channels[0].clone();
        let mut typing = true;
        loop {
            let event = if typing {
                "typing_start"
            } else {
                "typing_stop"
            };
            self.senders[0].emit(event, json!({ "channelId": ch }));
            let seen =
                self.subscribers[1].try_event_where("typing", Duration::from_millis(300), |d| {
                    d["userId"] == "sender0" && d["isTyping"] == typing
                });
            if seen.is_some() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < RESUME,
                "typing did not cross instances within {RESUME:?}"
            );
            typing = !typing;
        }
    }
}

/// Per instance, a metric's value.
fn per_instance(cluster: &Cluster, name: &str) -> Vec<f64> {
    (0..INSTANCES).map(|i| cluster.metric(i, name)).collect()
}

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
    let mut db = cluster.db();
    for (ch, seqs) in &load.acked {
        let stored: Vec<u64> = mysql::prelude::Queryable::exec(
            &mut db,
            "SELECT seq FROM messages WHERE channel_id = ? ORDER BY seq",
            (ch.as_bytes(),),
        )
        .expect("SELECT the channel's messages");
        assert_eq!(
            &stored, seqs,
            "{ch}: stored seqs differ from the acked ones"
        );
    }
    println!("times until every reader was back: {times:?}");
}
