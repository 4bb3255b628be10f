//! Connection state recovery with several sequencing partitions
//! (SEQUENCER_PARTITIONS=4, MariaDB): each partition has its own gapless
//! `pos`, so the offset a client holds is a vector, one position per
//! partition (docs/protocol.md "Connection state recovery"). A client on
//! channels of every partition drops and comes back with its `{pid,
//! offset}`: recovered, with exactly the messages it missed, each
//! channel's in seq order, none twice; on one instance, and across three
//! instances sharing Redis.

mod common;

use std::collections::HashMap;

use serde_json::{Value, json};

use common::TestServer;
use common::chat::{NO_RATE_LIMIT, send_all};
use common::cluster::Cluster;
use common::http::http_get;
use common::mysql::mysql_db;
use common::raw::*;
use gatrix_chat::store::sequencing::partition_of;

const PARTITIONS: u32 = 4;

/// Creates public channels on `server` until there is one in each
/// sequencing partition; returns them by partition.
fn one_channel_per_partition(server: &TestServer) -> Vec<String> {
    let mut by_partition: Vec<Option<String>> = vec![None; PARTITIONS as usize];
    for i in 0..200 {
        if by_partition.iter().all(Option::is_some) {
            break;
        }
        let id = server.create_channel("owner", &format!("c{i}"), "public", &[]);
        let p = partition_of(&id, PARTITIONS) as usize;
        if by_partition[p].is_none() {
            by_partition[p] = Some(id);
        }
    }
    by_partition
        .into_iter()
        .map(|c| c.expect("a channel in every partition"))
        .collect()
}

/// Connects with `auth`; returns the socket and the CONNECT reply's pid.
fn connect_with(server: &TestServer, auth: &Value) -> (Ws, String) {
    let (mut ws, _) = open(server);
    let reply = sio_connect_with(&mut ws, auth);
    let pid = reply["pid"].as_str().expect("CONNECT reply pid").to_owned();
    (ws, pid)
}

/// One instance on MariaDB with [`PARTITIONS`] partitions, a channel in
/// each, alice and bob connected and joined to all of them.
struct OnePartitioned {
    server: TestServer,
    channels: Vec<String>,
    alice: Ws,
    /// alice's session id, for her recovery.
    pid: String,
    bob: Ws,
}

fn one_partitioned() -> OnePartitioned {
    let db = mysql_db();
    let parts = PARTITIONS.to_string();
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.extend([
        ("DATABASE_URL", db.as_str()),
        ("SEQUENCER_PARTITIONS", parts.as_str()),
        ("RECOVERY_WINDOW_MS", "120000"),
    ]);
    let server = TestServer::start_with(&env);
    let channels = one_channel_per_partition(&server);
    let (alice_token, bob_token) = (server.token("alice"), server.token("bob"));
    let (mut alice, pid) = connect_with(&server, &json!({ "token": alice_token }));
    let (mut bob, _) = connect_with(&server, &json!({ "token": bob_token }));
    for c in &channels {
        join(&mut alice, c);
        join(&mut bob, c);
    }
    OnePartitioned {
        server,
        channels,
        alice,
        pid,
        bob,
    }
}

/// One received `message`: channel, seq, content, offset.
#[derive(Debug, Clone)]
struct Got {
    channel: String,
    seq: u64,
    content: String,
    offset: String,
}

/// The next `message` event on `ws`.
fn next(ws: &mut Ws) -> Got {
    loop {
        if let Some((name, args)) = as_event_args(&recv_text(ws))
            && name == "message"
        {
            assert_eq!(args.len(), 2, "message without an offset: {args:?}");
            return Got {
                channel: args[0]["channelId"].as_str().expect("channelId").to_owned(),
                seq: args[0]["seq"].as_u64().expect("seq"),
                content: args[0]["content"].as_str().expect("content").to_owned(),
                offset: args[1].as_str().expect("a string offset").to_owned(),
            };
        }
    }
}

/// An offset of `PARTITIONS` decimal positions joined by `.`.
fn vector(offset: &str) -> Vec<u64> {
    let v: Vec<u64> = offset
        .split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("offset {offset:?}")))
        .collect();
    assert_eq!(v.len(), PARTITIONS as usize, "offset {offset:?}");
    v
}

fn one(tag: &str) -> Vec<(String, String)> {
    vec![(tag.to_owned(), tag.to_owned())]
}

/// Reads `n` messages and checks them against `want` (content by
/// channel, in seq order): exactly those, none twice, each channel's in
/// seq order, offsets never going back in any partition. Returns the last
/// offset.
fn expect_exactly(ws: &mut Ws, want: &HashMap<String, Vec<String>>, from: &[u64]) -> String {
    let n: usize = want.values().map(Vec::len).sum();
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut last = from.to_vec();
    let mut offset = String::new();
    for _ in 0..n {
        let m = next(ws);
        offset = m.offset.clone();
        let v = vector(&m.offset);
        assert!(
            v.iter().zip(&last).all(|(a, b)| a >= b),
            "offset went back: {v:?} after {last:?} ({m:?})"
        );
        last = v;
        let prev = last_seq.insert(m.channel.clone(), m.seq);
        assert!(
            prev.is_none_or(|p| p < m.seq),
            "seq not increasing in {}: {m:?} after {prev:?}",
            m.channel
        );
        got.entry(m.channel).or_default().push(m.content);
    }
    assert_eq!(
        &got, want,
        "exactly the missed messages, then the live ones"
    );
    offset
}

/// Sends `count` messages tagged `tag` to every channel (all partitions,
/// interleaved), ack ids from `first_id`; returns what each channel gets.
fn send_round(
    ws: &mut Ws,
    channels: &[String],
    tag: &str,
    count: usize,
    first_id: u64,
) -> HashMap<String, Vec<String>> {
    let mut sent: HashMap<String, Vec<String>> = HashMap::new();
    let mut id = first_id;
    for i in 0..count {
        for (k, c) in channels.iter().enumerate() {
            let content = format!("{tag} {k}/{i}");
            send_all(ws, c, id, &one(&content));
            id += 1;
            sent.entry(c.clone()).or_default().push(content);
        }
    }
    sent
}

/// One instance, MySQL, four partitions: alice on a channel of each;
/// partition 0 runs ahead of partition 1 before she drops, so a single
/// position could not say what she has.
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn one_instance_recovers_exactly_across_partitions() {
    let OnePartitioned {
        server,
        channels,
        mut alice,
        pid,
        mut bob,
    } = one_partitioned();
    // Partition 0 far ahead, then one message in partition 1: its offset
    // is what alice holds when she drops.
    let mut early: Vec<String> = (0..6).map(|i| format!("early {i}")).collect();
    for (i, m) in early.iter().enumerate() {
        send_all(&mut bob, &channels[0], 10 + i as u64, &one(m));
    }
    send_all(&mut bob, &channels[1], 20, &one("early last"));
    early.push("early last".into());
    let mut offset = String::new();
    for want in &early {
        let m = next(&mut alice);
        assert_eq!(&m.content, want);
        offset = m.offset;
    }
    let held = vector(&offset);
    drop(alice);

    let missed = send_round(&mut bob, &channels, "missed", 3, 100);
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": offset });
    let (mut alice, got) = connect_with(&server, &auth);
    assert_eq!(got, pid, "recovered: the same pid");
    let live = send_round(&mut bob, &channels, "live", 1, 200);
    let mut want = missed;
    for (c, l) in live {
        want.entry(c).or_default().extend(l);
    }
    let last = expect_exactly(&mut alice, &want, &held);

    // An offset of another length (one position, as from before the
    // partitions were raised) is no usable offset: a fresh session; the
    // kept session stays for a claim with a usable one.
    drop(alice);
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": "5" });
    let (_fresh, got) = connect_with(&server, &auth);
    assert_ne!(got, pid, "a single position with four partitions: fresh");
    let auth = json!({ "token": server.token("alice"), "pid": pid, "offset": last });
    let (_alice, got) = connect_with(&server, &auth);
    assert_eq!(got, pid, "then recovered with its own offset");
}

/// Three instances on one MariaDB and Redis, four partitions: senders on
/// every instance; alice, on instance 0, drops and comes back on
/// instance 2 with exactly what she missed.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn three_instances_recover_exactly_across_partitions() {
    let parts = PARTITIONS.to_string();
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.extend([
        ("SEQUENCER_PARTITIONS", parts.as_str()),
        ("RECOVERY_WINDOW_MS", "120000"),
    ]);
    let cluster = Cluster::start(3, &env);
    let channels = one_channel_per_partition(cluster.server(0));
    let alice_token = cluster.token("alice");
    let mut senders: Vec<Ws> = (0..3)
        .map(|i| {
            let token = cluster.token(&format!("bob{i}"));
            let (mut ws, _) = connect_with(cluster.server(i), &json!({ "token": token }));
            for c in &channels {
                join(&mut ws, c);
            }
            ws
        })
        .collect();
    let (mut alice, pid) = connect_with(cluster.server(0), &json!({ "token": alice_token }));
    for c in &channels {
        join(&mut alice, c);
    }
    // Each instance sends to every channel; partition 0 runs ahead.
    let mut seen = HashMap::new();
    for (i, ws) in senders.iter_mut().enumerate() {
        let extra = send_round(ws, &channels[..1], &format!("early{i}x"), 4, 10);
        let round = send_round(ws, &channels, &format!("early{i}"), 1, 50);
        for (c, l) in extra.into_iter().chain(round) {
            seen.entry(c).or_insert_with(Vec::new).extend(l);
        }
    }
    let n: usize = seen.values().map(Vec::len).sum();
    let mut offset = String::new();
    for _ in 0..n {
        offset = next(&mut alice).offset;
    }
    let held = vector(&offset);
    drop(alice);

    let mut want: HashMap<String, Vec<String>> = HashMap::new();
    for (i, ws) in senders.iter_mut().enumerate() {
        for (c, l) in send_round(ws, &channels, &format!("missed{i}"), 2, 100) {
            want.entry(c).or_default().extend(l);
        }
    }
    let auth = json!({ "token": alice_token, "pid": pid, "offset": offset });
    let (mut alice, got) = connect_with(cluster.server(2), &auth);
    assert_eq!(got, pid, "recovered on another instance: the same pid");
    for (i, ws) in senders.iter_mut().enumerate() {
        for (c, l) in send_round(ws, &channels, &format!("live{i}"), 1, 200) {
            want.entry(c).or_default().extend(l);
        }
    }
    // Per channel, the instances' sends interleave in commit order, not
    // in the order sent here: compare as sets per channel, seq order
    // checked by expect_exactly's seqs.
    let n: usize = want.values().map(Vec::len).sum();
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let mut last_seq: HashMap<String, u64> = HashMap::new();
    let mut last = held;
    for _ in 0..n {
        let m = next(&mut alice);
        let v = vector(&m.offset);
        assert!(
            v.iter().zip(&last).all(|(a, b)| a >= b),
            "offset went back: {v:?} after {last:?} ({m:?})"
        );
        last = v;
        let prev = last_seq.insert(m.channel.clone(), m.seq);
        assert!(prev.is_none_or(|p| p < m.seq), "seq order in {m:?}");
        got.entry(m.channel).or_default().push(m.content);
    }
    for l in got.values_mut().chain(want.values_mut()) {
        l.sort();
    }
    assert_eq!(got, want, "exactly the missed messages and the live ones");
    // Every instance applied every partition up to the last positions
    // alice was sent: `/ready` and `/metrics` say so per partition.
    for i in 0..3 {
        let port = cluster.server(i).port();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let (ready, metrics) = loop {
            let ready: Value = serde_json::from_str(&http_get(port, "/ready").unwrap().body)
                .expect("a JSON /ready");
            let metrics = http_get(port, "/metrics").unwrap().body;
            let caught_up = ready["bus"]["appliedPositions"] == json!(last);
            if caught_up || std::time::Instant::now() > deadline {
                break (ready, metrics);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert_eq!(ready["bus"]["appliedPositions"], json!(last), "{ready}");
        assert_eq!(ready["bus"]["appliedPos"], json!(last[0]), "{ready}");
        for (p, pos) in last.iter().enumerate() {
            let line = format!("chat_bus_applied_pos{{partition=\"{p}\"}} {pos}");
            assert!(
                metrics.lines().any(|l| l == line),
                "no {line:?} on instance {i}"
            );
        }
    }
}

/// Offsets ahead of what the instance applied (the floor).
#[path = "recovery_partitions/floor.rs"]
mod floor;
