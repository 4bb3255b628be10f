//! Recovery sessions: `RECOVERY_REDIS_QUEUE`.

use super::*;

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
