//! The limits toward Redis (issue 13), attacked from real sockets while
//! the servers' memory is watched: instances of the real binary on one
//! MariaDB database and one redis-server (`common::cluster`), the Redis
//! frozen with SIGSTOP so that every queue toward it fills, and Socket.IO
//! clients flooding what feeds each queue:
//! - `BUS_QUEUE_BATCHES` / `BUS_MAX_PARKED`: large messages sent on every
//!   instance; each is acked, reaches every subscriber on every instance
//!   in seq order (the bus drops, the gap fill reads MySQL) and is in
//!   MySQL once;
//! - `PRESENCE_QUEUE`: connects, joins, leaves and typing; events are
//!   dropped, never queued without bound, and flow again after SIGCONT;
//! - `RECOVERY_REDIS_QUEUE`: joins and leaves (session writes) and
//!   reconnects with a pid; a reconnect is answered "not recovered" within
//!   twice `RECOVERY_REDIS_TIMEOUT_MS`, and recovers again after SIGCONT.
//!
//! Each samples the instances' VmRSS (/proc/<pid>/status) through the
//! flood and asserts it stays under a bound derived from the limits, over
//! a baseline taken after a warm-up. The machine is shared: the bounds
//! have wide margins and no speed is asserted.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::{Value, json};

use common::TestServer;
use common::chat::{WINDOW, send_message_frame};
use common::cluster::Cluster;
use common::http_get;
use common::proc::rss_kib;
use common::raw::*;

const MIB: u64 = 1024;

/// Floods are bursts from one connection: no rate limiting.
const NO_RATE_LIMIT: [(&str, &str); 2] = [
    ("RATE_LIMIT_PER_SEC", "1000000"),
    ("RATE_LIMIT_BURST", "1000000"),
];

/// Samples the VmRSS of some processes every few milliseconds on a thread
/// of its own, keeping each one's highest.
struct RssWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

impl RssWatch {
    fn start(pids: Vec<u32>) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = vec![0u64; pids.len()];
                while !stop.load(Ordering::Relaxed) {
                    for (p, pid) in peak.iter_mut().zip(&pids) {
                        *p = (*p).max(rss_kib(*pid).unwrap_or(0));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak
            })
        };
        RssWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// The highest VmRSS of each process, in KiB.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("watch running")
            .join()
            .expect("RSS watch thread")
    }
}

/// Asserts the peak of each instance stayed under its baseline plus
/// `allowed` KiB; prints the figures either way.
fn assert_rss_within(what: &str, baseline: &[u64], peak: &[u64], allowed: u64) {
    for (i, (b, p)) in baseline.iter().zip(peak).enumerate() {
        eprintln!(
            "{what}: instance {i}: VmRSS baseline {} MiB, peak {} MiB (+{} MiB, allowed +{} MiB)",
            b / MIB,
            p / MIB,
            p.saturating_sub(*b) / MIB,
            allowed / MIB
        );
    }
    for (i, (b, p)) in baseline.iter().zip(peak).enumerate() {
        assert!(
            *p <= b + allowed,
            "{what}: instance {i} grew from {b} KiB to {p} KiB, more than the limits allow \
             (+{allowed} KiB): a queue toward Redis is not bounded"
        );
    }
}

/// Every instance answers `/health` with 200.
fn assert_responsive(cluster: &Cluster) {
    for i in 0..cluster.len() {
        let r = http_get(cluster.server(i).port(), "/health").expect("GET /health");
        assert_eq!(r.status, 200, "instance {i} /health: {}", r.body);
    }
}

/// A WebSocket connected as `user` whose reads wait up to `wait`.
fn client(server: &TestServer, user: &str, wait: Duration) -> Ws {
    let stream = TcpStream::connect(server.addr()).expect("TCP connect");
    let (mut ws, _) = open_on(stream, server);
    sio_connect(&mut ws, &server.token(user));
    ws.get_mut()
        .set_read_timeout(Some(wait))
        .expect("read timeout");
    ws
}

// ---- The bus ---------------------------------------------------------------

/// Messages of this many bytes: large, so that a queue holding what the
/// flood sends would show in RSS.
const BIG: usize = 40_000;
/// Limits of the bus test. A batch holds at most COMMIT_BATCH_MAX
/// messages; the publisher's queue, the applier's and the reader's hold
/// BUS_QUEUE_BATCHES batches each; the applier parks BUS_MAX_PARKED.
const BUS_QUEUE: u64 = 4;
const BUS_PARKED: u64 = 4;
const BATCH_MAX: u64 = 8;
const SENDERS_PER_INSTANCE: usize = 1;
/// Messages each sender sends while Redis is frozen, and after (two
/// senders: each connection reads every message, and more readers make
/// the test's debug-built clients slow consumers on a loaded machine).
const WHILE_FROZEN: usize = 1800;
const AFTER: usize = 40;

/// The raw JSON value after `key` in `text` (up to the next `,` or `}`).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let rest = &text[at..];
    let end = rest.find([',', '}'])?;
    Some(&rest[..end])
}

/// Reads (and drops) whatever comes on `ws` until `flag` is set.
fn drain_until(ws: &mut Ws, flag: &AtomicBool) {
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    while !flag.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) if t.as_str() == "2" => send_text(ws, "3"),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("connection lost while idle: {e}"),
        }
    }
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
}

/// Subscribes `ws` to `channel` and collects its `message`s (seq,
/// clientMessageId) until the one with `last` as clientMessageId.
fn collect_until(mut ws: Ws, last: String) -> JoinHandle<Vec<(u64, String)>> {
    std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            // A cheap look, not a parse: thousands of 40 kB frames are
            // too slow to parse in a debug build for the server's
            // outbound limits.
            let text = recv_text(&mut ws);
            if !text.starts_with("42[\"message\"") {
                continue;
            }
            let seq = field(&text, "\"seq\":")
                .and_then(|s| s.parse().ok())
                .expect("message seq");
            let cmid = field(&text, "\"clientMessageId\":")
                .expect("message clientMessageId")
                .trim_matches('"')
                .to_owned();
            let done = cmid == last;
            got.push((seq, cmid));
            if done {
                return got;
            }
        }
    })
}

/// Sends `messages` on `ws` (joined), WINDOW in flight, and returns the
/// acked clientMessageIds; every ack must say ok.
fn send_acked(ws: &mut Ws, channel: &str, messages: &[String], content: &str) -> Vec<String> {
    let mut acked = Vec::new();
    let mut next_id = 100u64;
    for chunk in messages.chunks(WINDOW) {
        let first = next_id;
        for cmid in chunk {
            send_message_frame(ws, next_id, channel, cmid, content);
            next_id += 1;
        }
        let mut acks: HashMap<u64, Value> = HashMap::new();
        while acks.len() < chunk.len() {
            let (id, ack) = recv_ack(ws);
            acks.insert(id, ack);
        }
        for (i, cmid) in chunk.iter().enumerate() {
            let ack = &acks[&(first + i as u64)];
            assert_eq!(ack["ok"], true, "send {cmid} not acked ok: {ack}");
            acked.push(cmid.clone());
        }
    }
    acked
}

/// Redis frozen while two clients (one per instance) send 40 kB
/// messages: every send is acked, the instances stay responsive and their
/// memory bounded; after SIGCONT, with more sends (the log now has a gap:
/// batches park, BUS_MAX_PARKED of them at most), every subscriber on
/// every instance has every message once, in seq order, and MySQL has
/// every acked one once. Small batch counts here.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn bus_queues_stay_bounded_while_redis_is_frozen_and_lose_nothing() {
    let (queue, parked, batch) = (
        BUS_QUEUE.to_string(),
        BUS_PARKED.to_string(),
        BATCH_MAX.to_string(),
    );
    bus_flood(&[
        ("BUS_QUEUE_BATCHES", queue.as_str()),
        ("BUS_MAX_PARKED", parked.as_str()),
        ("COMMIT_BATCH_MAX", batch.as_str()),
    ]);
}

/// The same with the default batch counts (BUS_QUEUE_BATCHES and
/// BUS_MAX_PARKED 1024; batches of BATCH_MAX messages, as a flood of
/// larger batches makes the test's debug-built readers slow consumers)
/// and BUS_QUEUE_BYTES of 8 MiB: the bytes bound the publisher's queue,
/// which 1024 batches alone do not (1024 x 8 x 40 kB, 320 MiB). With
/// BUS_QUEUE_BYTES at 100 GB (as before it existed) this test saw +420
/// and +425 MiB: the queue held nearly all that was sent while Redis was
/// frozen.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn bus_queue_bytes_bound_memory_at_the_default_batch_counts() {
    let batch = BATCH_MAX.to_string();
    bus_flood(&[
        ("COMMIT_BATCH_MAX", batch.as_str()),
        ("BUS_QUEUE_BYTES", "8388608"),
    ]);
}

/// The bus tests' body, with `limits` on top of the flood's settings.
fn bus_flood(limits: &[(&str, &str)]) {
    let big = BIG.to_string();
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.extend_from_slice(limits);
    env.extend([
        ("MAX_MESSAGE_LENGTH", big.as_str()),
        // Each bus thread stays stuck on one Redis command for the whole
        // freeze: what is queued behind it stays queued (a short timeout
        // would drop it at each reconnect attempt).
        ("BUS_REDIS_TIMEOUT_MS", "60000"),
        ("OUTBOUND_QUEUE_BYTES", "33554432"),
        ("OUTBOUND_QUEUE_MESSAGES", "4096"),
    ]);
    let mut cluster = Cluster::start(2, &env);
    let channel = cluster
        .server(0)
        .create_channel("owner", "flood", "public", &[]);
    let content = "x".repeat(BIG);
    let wait = Duration::from_secs(120);

    // One subscriber per instance; each collects up to the last message.
    let last = "end".to_owned();
    let subscribers: Vec<_> = (0..cluster.len())
        .map(|i| {
            let mut ws = client(cluster.server(i), &format!("watcher-{i}"), wait);
            join(&mut ws, &channel);
            collect_until(ws, last.clone())
        })
        .collect();
    let mut senders: Vec<Ws> = (0..cluster.len() * SENDERS_PER_INSTANCE)
        .map(|s| {
            let mut ws = client(
                cluster.server(s % cluster.len()),
                &format!("sender-{s}"),
                wait,
            );
            join(&mut ws, &channel);
            ws
        })
        .collect();

    // Warm-up with Redis up: the bus, the writer and the sockets have
    // allocated what they keep; then the baseline.
    let mut acked: Vec<String> = Vec::new();
    for (s, ws) in senders.iter_mut().enumerate() {
        let warm: Vec<String> = (0..8).map(|i| format!("warm-{s}-{i}")).collect();
        acked.extend(send_acked(ws, &channel, &warm, &content));
    }
    let pids: Vec<u32> = (0..cluster.len())
        .map(|i| cluster.server(i).pid())
        .collect();
    let baseline: Vec<u64> = pids.iter().map(|p| rss_kib(*p).expect("VmRSS")).collect();

    cluster.redis.pause();
    let watch = RssWatch::start(pids.clone());
    let resumed = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(AtomicBool::new(false));
    let (phase_tx, phase_rx) = std::sync::mpsc::channel::<bool>();
    let threads: Vec<_> = senders
        .drain(..)
        .enumerate()
        .map(|(s, mut ws)| {
            let (channel, content) = (channel.clone(), content.clone());
            let (resumed, ended, phase) = (resumed.clone(), ended.clone(), phase_tx.clone());
            std::thread::spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    let cmids: Vec<String> = (0..WHILE_FROZEN)
                        .map(|i| format!("frozen-{s}-{i}"))
                        .collect();
                    let mut acked = send_acked(&mut ws, &channel, &cmids, &content);
                    let _ = phase.send(true);
                    // Read on (the others' messages) so as not to be a
                    // slow consumer meanwhile.
                    drain_until(&mut ws, &resumed);
                    let cmids: Vec<String> = (0..AFTER).map(|i| format!("after-{s}-{i}")).collect();
                    acked.extend(send_acked(&mut ws, &channel, &cmids, &content));
                    let _ = phase.send(true);
                    drain_until(&mut ws, &ended);
                    acked
                });
                // A failed sender says so at once: the test then fails
                // rather than wait for it.
                std::panic::catch_unwind(run).unwrap_or_else(|panic| {
                    let _ = phase.send(false);
                    std::panic::resume_unwind(panic)
                })
            })
        })
        .collect();
    drop(phase_tx);
    // Responsive while the floods run.
    assert_responsive(&cluster);
    for _ in 0..threads.len() {
        let ok = phase_rx.recv().unwrap_or(false);
        assert!(ok, "a sender failed while Redis was frozen");
        assert_responsive(&cluster);
    }
    let bus_dropped = cluster.metric_total("chat_bus_publishes_dropped_total");
    cluster.redis.resume();
    resumed.store(true, Ordering::Relaxed);
    for _ in 0..threads.len() {
        let ok = phase_rx.recv().unwrap_or(false);
        assert!(ok, "a sender failed after SIGCONT");
    }
    // The last message: after every other one in seq order.
    let mut closer = client(cluster.server(1), "closer", wait);
    join(&mut closer, &channel);
    acked.extend(send_acked(
        &mut closer,
        &channel,
        std::slice::from_ref(&last),
        "the end",
    ));
    ended.store(true, Ordering::Relaxed);
    for t in threads {
        acked.extend(t.join().expect("a sender failed"));
    }
    let received: Vec<Vec<(u64, String)>> = subscribers
        .into_iter()
        .map(|t| t.join().expect("a subscriber missed messages"))
        .collect();
    let peak = watch.finish();

    // Bound: what the bus's queues may hold is small: with small counts,
    // (3 queues + the parked) x BATCH_MAX messages of BIG bytes per
    // instance (~5 MiB); with the default counts, BUS_QUEUE_BYTES (8 MiB)
    // in the publisher's queue, the one that fills while Redis is stuck;
    // the rest is the server's own churn through the flood (the senders'
    // windows, 2 x 32 x 40 kB in the writer's queue and sockets, each
    // connection's outbound queue, JSON and compression buffers, the
    // allocator's slack): +40 MiB with Redis up; frozen, +50..75 MiB with
    // small counts and +70..120 MiB with the default ones (beside other
    // tests), on the machine this was written on. 160 MiB leaves room for
    // a shared CPU. What the
    // senders send while Redis is frozen is 3600 x 40 kB, ~140 MiB, and a
    // batch in a queue holds more than its messages' bytes: with the
    // publisher's queue unbounded (the BUS_REDIS_TIMEOUT_MS of 60 s keeps
    // it stuck on one append the whole time) this test saw +420 and +380
    // MiB, and with the default counts and no BUS_QUEUE_BYTES (set to
    // 100 GB) +420 and +425 MiB.
    assert_rss_within("bus", &baseline, &peak, 160 * MIB);
    assert!(
        bus_dropped > 0.0,
        "the bus dropped nothing while Redis was frozen: the flood did not fill its queues"
    );

    let want: HashSet<&str> = acked.iter().map(String::as_str).collect();
    assert_eq!(want.len(), acked.len(), "a clientMessageId acked twice");
    for (i, got) in received.iter().enumerate() {
        let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=acked.len() as u64).collect::<Vec<_>>(),
            "subscriber on instance {i}: not every seq once, in order"
        );
        let cmids: HashSet<&str> = got.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(
            cmids, want,
            "subscriber on instance {i}: not the acked messages"
        );
    }
    let mut db = cluster.db();
    let rows: Vec<(Vec<u8>, u64)> = db
        .exec(
            "SELECT client_message_id, COUNT(*) FROM messages WHERE channel_id = ? \
             GROUP BY client_message_id",
            (channel.as_bytes(),),
        )
        .expect("SELECT the channel's messages");
    let stored: HashMap<String, u64> = rows
        .into_iter()
        .map(|(c, n)| (String::from_utf8(c).expect("utf-8 clientMessageId"), n))
        .collect();
    assert_eq!(
        stored.len(),
        want.len(),
        "MySQL holds other messages than the acked"
    );
    for cmid in &want {
        assert_eq!(
            stored.get(*cmid),
            Some(&1),
            "{cmid} in MySQL not exactly once"
        );
    }
}

// ---- Presence and events ---------------------------------------------------

/// Limits of the presence test.
const PRESENCE_QUEUE: u64 = 16;
const FLOODERS_PER_INSTANCE: usize = 6;
const ROOMS: usize = 8;
/// typing_start + typing_stop pairs per flooder and room.
const TOGGLES: usize = 300;

/// A user id of the longest kind (MAX_SUB_BYTES, 128): the events that
/// carry it are as large as a user can make them.
fn long_user(tag: &str) -> String {
    format!("{tag}-{}", "u".repeat(120 - tag.len()))
}

/// Connects as `user`, joins every room, toggles typing in each `TOGGLES`
/// times, leaves and joins each again, and disconnects; then connects
/// once more (a count going 1 -> 0 -> 1) and leaves. Every command acked.
fn presence_flood(server: &TestServer, user: &str, rooms: &[String]) {
    let wait = Duration::from_secs(60);
    let mut ws = client(server, user, wait);
    let mut id = 10u64;
    let mut call_ok = |ws: &mut Ws, name: &str, channel: &str| {
        id += 1;
        let ack = call(ws, id, name, json!({ "channelId": channel }));
        assert_eq!(ack["ok"], true, "{name} {channel}: {ack}");
    };
    for room in rooms {
        call_ok(&mut ws, "join_channel", room);
    }
    for _ in 0..TOGGLES {
        for room in rooms {
            call_ok(&mut ws, "typing_start", room);
            call_ok(&mut ws, "typing_stop", room);
        }
    }
    for room in rooms {
        call_ok(&mut ws, "leave_channel", room);
        call_ok(&mut ws, "join_channel", room);
    }
    drop(ws);
    let mut ws = client(server, user, wait);
    call_ok(&mut ws, "join_channel", &rooms[0]);
}

/// Redis frozen while twelve clients with the longest user ids join,
/// type, leave and reconnect on two instances: the presence queue
/// (PRESENCE_QUEUE 16) drops events rather than holding them, memory stays
/// bounded, every command is answered and /health too; after SIGCONT,
/// typing crosses instances again.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn presence_queue_stays_bounded_while_redis_is_frozen() {
    let queue = PRESENCE_QUEUE.to_string();
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.extend([
        ("PRESENCE_QUEUE", queue.as_str()),
        // The lease's TTL (half of it) is the worker's Redis timeout: one
        // stuck command holds it for the whole freeze, so what is queued
        // behind it stays queued.
        ("PRESENCE_LEASE_MS", "120000"),
    ]);
    let mut cluster = Cluster::start(2, &env);
    let rooms: Vec<String> = (0..ROOMS)
        .map(|r| {
            cluster
                .server(0)
                .create_channel("owner", &format!("room-{r}"), "public", &[])
        })
        .collect();
    // The after-SIGCONT check's channel, apart from the floods.
    let lobby = cluster
        .server(0)
        .create_channel("owner", "lobby", "public", &[]);
    let wait = Duration::from_secs(60);
    let mut watcher = client(cluster.server(1), "watcher", wait);
    join(&mut watcher, &lobby);
    // Warm-up with Redis up: one round of every kind of event.
    std::thread::scope(|s| {
        for i in 0..cluster.len() {
            let (server, rooms) = (cluster.server(i), &rooms);
            s.spawn(move || presence_flood(server, &long_user(&format!("warm{i}")), rooms));
        }
    });
    let pids: Vec<u32> = (0..cluster.len())
        .map(|i| cluster.server(i).pid())
        .collect();
    let baseline: Vec<u64> = pids.iter().map(|p| rss_kib(*p).expect("VmRSS")).collect();
    let dropped_before = cluster.metric_total("chat_cluster_events_dropped_total");

    cluster.redis.pause();
    let watch = RssWatch::start(pids);
    std::thread::scope(|s| {
        for i in 0..cluster.len() {
            for f in 0..FLOODERS_PER_INSTANCE {
                let (server, rooms) = (cluster.server(i), &rooms);
                s.spawn(move || presence_flood(server, &long_user(&format!("f{i}x{f}")), rooms));
            }
        }
        assert_responsive(&cluster);
    });
    assert_responsive(&cluster);
    let dropped = cluster.metric_total("chat_cluster_events_dropped_total") - dropped_before;
    cluster.redis.resume();
    let peak = watch.finish();
    // Bound: PRESENCE_QUEUE requests of a few hundred bytes, and the
    // worker's round (at most 4097 requests taken at once), are well under
    // a MiB; the rest is the server's churn through the flood (twelve
    // connections, their joins, acks and frames). Measured: +0..2 MiB.
    // The floods make 12 x 8 x 600 = 57,600 typing events while Redis is
    // frozen; with the queue unbounded this test saw +10 and +14 MiB (and
    // nothing dropped). 8 MiB lies between, with room for a shared CPU.
    assert_rss_within("presence", &baseline, &peak, 8 * MIB);
    assert!(
        dropped > 0.0,
        "no event was dropped while Redis was frozen: the flood did not fill the queue"
    );

    // After SIGCONT: events cross instances again (the worker's stuck
    // command ends with the freeze; a typing may still be dropped while it
    // reconnects, so it is repeated until one arrives).
    let mut typist = client(cluster.server(0), "typist", wait);
    join(&mut typist, &lobby);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut id = 10;
    let seen = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no typing from instance 0 reached instance 1 after SIGCONT"
        );
        id += 2;
        call(
            &mut typist,
            id,
            "typing_start",
            json!({ "channelId": lobby }),
        );
        if let Some(ev) = next_event(&mut watcher, "typing", Duration::from_secs(2)) {
            break ev;
        }
        call(
            &mut typist,
            id + 1,
            "typing_stop",
            json!({ "channelId": lobby }),
        );
    };
    assert_eq!(seen["userId"], "typist", "{seen}");
    assert_responsive(&cluster);
}

/// The next event `name` on `ws` within `within`, skipping others.
fn next_event(ws: &mut Ws, name: &str, within: Duration) -> Option<Value> {
    let deadline = std::time::Instant::now() + within;
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let found = loop {
        if std::time::Instant::now() >= deadline {
            break None;
        }
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) if t.as_str() == "2" => send_text(ws, "3"),
            Ok(tungstenite::Message::Text(t)) => {
                if let Some((n, v)) = as_event(t.as_str())
                    && n == name
                {
                    break Some(v);
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("connection lost waiting for {name}: {e}"),
        }
    };
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    found
}

// ---- Recovery sessions -----------------------------------------------------

/// Limits of the recovery test.
const RECOVERY_QUEUE: u64 = 8;
const RECOVERY_TIMEOUT_MS: u64 = 1_000;
const SESSION_FLOODERS: usize = 6;
/// Rounds of joining and leaving every room, per flooder.
const SESSION_ROUNDS: usize = 40;

/// Waits until Redis holds the session of `pid` and it names `channel`.
fn await_session(cluster: &Cluster, pid: &str, channel: &str) {
    let key = format!("gatrix:session:{pid}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let value = redis::Client::open(cluster.redis.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut con| {
                redis::cmd("GET")
                    .arg(&key)
                    .query::<Option<Vec<u8>>>(&mut con)
            })
            .ok()
            .flatten();
        if value.is_some_and(|v| String::from_utf8_lossy(&v).contains(channel)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session {pid} never written with {channel}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects with `auth` (a token, and a pid and offset to recover);
/// returns the socket, the CONNECT reply's pid and how long the reply took.
fn connect_timed(server: &TestServer, auth: &Value) -> (Ws, String, Duration) {
    let (mut ws, _) = open(server);
    let asked = std::time::Instant::now();
    let reply = sio_connect_with(&mut ws, auth);
    let took = asked.elapsed();
    let pid = reply["pid"].as_str().expect("CONNECT reply pid").to_owned();
    (ws, pid, took)
}

/// Joins and leaves every room `SESSION_ROUNDS` times (a session write to
/// Redis each), and reconnects with its pid between rounds (a claim).
fn session_flood(server: &TestServer, user: &str, rooms: &[String]) {
    let token = server.token(user);
    let (mut ws, mut pid, _) = connect_timed(server, &json!({ "token": token }));
    let mut id = 10u64;
    for round in 0..SESSION_ROUNDS {
        for name in ["join_channel", "leave_channel"] {
            for room in rooms {
                id += 1;
                let ack = call(&mut ws, id, name, json!({ "channelId": room }));
                assert_eq!(ack["ok"], true, "{name} {room}: {ack}");
            }
        }
        if round % 10 == 9 {
            drop(ws);
            let auth = json!({ "token": token, "pid": pid, "offset": "0" });
            (ws, pid, _) = connect_timed(server, &auth);
        }
    }
}

/// Redis frozen while six clients join and leave eight rooms over and
/// over and reconnect with their pids (RECOVERY_REDIS_QUEUE 8): a client
/// reconnecting with its pid is answered at once or within twice
/// RECOVERY_REDIS_TIMEOUT_MS with a fresh session, sends are acked,
/// /health answers, memory stays bounded; after SIGCONT a session is
/// recovered again.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn recovery_queue_stays_bounded_while_redis_is_frozen() {
    let (queue, timeout) = (RECOVERY_QUEUE.to_string(), RECOVERY_TIMEOUT_MS.to_string());
    let mut env: Vec<(&str, &str)> = NO_RATE_LIMIT.to_vec();
    env.extend([
        ("RECOVERY_REDIS_QUEUE", queue.as_str()),
        ("RECOVERY_REDIS_TIMEOUT_MS", timeout.as_str()),
    ]);
    let mut cluster = Cluster::start(1, &env);
    let server = cluster.server(0);
    let rooms: Vec<String> = (0..ROOMS)
        .map(|r| server.create_channel("owner", &format!("room-{r}"), "public", &[]))
        .collect();
    let alice_token = server.token("alice");
    let (mut alice, alice_pid, _) = connect_timed(server, &json!({ "token": alice_token }));
    join(&mut alice, &rooms[0]);
    await_session(&cluster, &alice_pid, &rooms[0]);
    drop(alice);
    let mut sender = connect(server, "sender");
    join(&mut sender, &rooms[0]);
    // Warm-up with Redis up, then the baseline.
    session_flood(server, "warm", &rooms);
    let pid = server.pid();
    let baseline = vec![rss_kib(pid).expect("VmRSS")];
    let dropped_before = cluster.metric_total("chat_recovery_redis_dropped_total");

    cluster.redis.pause();
    let watch = RssWatch::start(vec![pid]);
    let server = cluster.server(0);
    std::thread::scope(|s| {
        for f in 0..SESSION_FLOODERS {
            let rooms = &rooms;
            s.spawn(move || session_flood(server, &format!("flooder-{f}"), rooms));
        }
        // Meanwhile: alice comes back with her pid, five times. Each
        // answer is a fresh session, at once (queue full, or Redis known
        // away) or once the Redis thread gave up: on the command under
        // way when the claim came (one RECOVERY_REDIS_TIMEOUT_MS) and on
        // the claim's own reconnect attempt (one more); seen: 1.0 s,
        // 2.1 s, then under a ms. 8 s more allow for a shared CPU and are
        // far less than the freeze, which lasts the whole flood.
        let auth = json!({ "token": alice_token, "pid": alice_pid, "offset": "0" });
        for i in 0..5 {
            let (ws, got, took) = connect_timed(server, &auth);
            eprintln!("recovery while frozen: reconnect {i} answered in {took:?}");
            assert_ne!(got, alice_pid, "recovered while Redis is frozen");
            assert!(
                took < Duration::from_millis(2 * RECOVERY_TIMEOUT_MS) + Duration::from_secs(8),
                "reconnect {i} held {took:?} by a frozen Redis \
                 (RECOVERY_REDIS_TIMEOUT_MS {RECOVERY_TIMEOUT_MS})"
            );
            drop(ws);
            let ack = call(
                &mut sender,
                100 + i,
                "send_message",
                json!({ "channelId": rooms[0], "content": format!("frozen {i}") }),
            );
            assert_eq!(ack["ok"], true, "send while Redis is frozen: {ack}");
            assert_responsive(&cluster);
        }
    });
    let dropped = cluster.metric_total("chat_recovery_redis_dropped_total") - dropped_before;
    cluster.redis.resume();
    let peak = watch.finish();
    // Bound: RECOVERY_REDIS_QUEUE requests (a session of at most eight
    // rooms, a few hundred bytes) and as many "unsure" pids are a few
    // KiB; the rest is churn (six connections, 6 x 40 x 16 joins and
    // leaves, thousands of requests dropped). Measured: +6 MiB. 16 MiB
    // leaves room for a shared CPU. (The Redis thread fails requests at
    // once between its reconnect attempts, so even an unbounded queue
    // would hold little here: this bounds the churn; the contract checked
    // is the answers above.)
    assert_rss_within("recovery", &baseline, &peak, 16 * MIB);
    eprintln!("recovery: {dropped} requests dropped on a full queue while frozen");

    // After SIGCONT: a session is written and recovered again.
    let bob_token = cluster.server(0).token("bob");
    let (mut bob, bob_pid, _) = connect_timed(cluster.server(0), &json!({ "token": bob_token }));
    join(&mut bob, &rooms[1]);
    await_session(&cluster, &bob_pid, &rooms[1]);
    drop(bob);
    let auth = json!({ "token": bob_token, "pid": bob_pid, "offset": "0" });
    let (_bob, got, _) = connect_timed(cluster.server(0), &auth);
    assert_eq!(got, bob_pid, "not recovered after SIGCONT");
}
