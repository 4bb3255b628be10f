//! Presence, user_joined/user_left, typing and REST edits across two real
//! gatrix-chat processes on one MariaDB database and one throwaway
//! redis-server (docs/protocol.md "Several instances"): presence changes
//! are announced exactly once cluster-wide, a typist on A reaches a
//! subscriber on B, a REST edit and delete through A reach a subscriber on
//! B, and the users of an instance killed with SIGKILL go offline on the
//! other within its lease period.
//!
//! Two processes share the database because the store's lock is per
//! SERVER_ID when Redis is configured (tests/store_lock.rs).
//!
//! Needs MariaDB and redis-server: run with
//! `scripts/test --with-mariadb cargo nextest run --run-ignored all --test presence_cluster`.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::TestServer;
use common::mysql::mysql_db;
use common::raw::{Ws, as_event, call, join, open, recv_text, send_text, sio_connect};
use common::redis::Redis;
use common::rest::Api;

/// The lease period the instances run with: a dead one is reaped within it.
const LEASE_MS: u64 = 3_000;
/// How long an event may take to cross (generous: the machine is shared).
const CROSS: Duration = Duration::from_secs(10);

/// Two instances, A and B, on one database and one Redis. Tokens come
/// from A (B runs with A's secret).
struct Pair {
    a: TestServer,
    b: TestServer,
    redis: Redis,
}

impl Pair {
    fn start() -> Self {
        let redis = Redis::start();
        let db = mysql_db();
        let env = |id: &'static str| {
            vec![
                ("DATABASE_URL", db.clone()),
                ("REDIS_URL", redis.url()),
                ("SERVER_ID", id.to_owned()),
                ("PRESENCE_LEASE_MS", LEASE_MS.to_string()),
                // Every change announced at once: the test counts them.
                ("PRESENCE_INTERVAL_MS", "0".to_owned()),
            ]
        };
        let a = TestServer::start_with(&pairs(&env("a")));
        let mut b_env = env("b");
        b_env.push(("JWT_SECRET", a.secret().to_owned()));
        let b = TestServer::start_with(&pairs(&b_env));
        Self { a, b, redis }
    }

    /// Waits until instance `server`'s count of `field` in the `kind`
    /// hash (`u`: a user's connections, `s`: `<channel>\n<user>`) is in
    /// Redis: the instance writes it a moment after the ack, and a change
    /// elsewhere before that is, for the cluster, earlier.
    fn until_counted(&self, kind: &str, server: &str, field: &str, want: u64) {
        let mut c = redis::Client::open(self.redis.url())
            .and_then(|c| c.get_connection())
            .expect("connect to redis-server");
        let key = format!("gatrix:{{presence}}:{kind}:{server}");
        let deadline = Instant::now() + CROSS;
        loop {
            let n: Option<u64> = redis::cmd("HGET")
                .arg(&key)
                .arg(field)
                .query(&mut c)
                .expect("HGET");
            if n == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} {field:?} is {n:?}, not {want}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A Socket.IO connection of `user` on `server`.
    fn connect(&self, server: &TestServer, user: &str) -> Ws {
        let (mut ws, _) = open(server);
        sio_connect(&mut ws, &self.a.token(user));
        ws
    }
}

fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, val)| (*k, val.as_str())).collect()
}

/// Reads `ws` until an event `name` whose data matches `want`; returns it
/// with every `presence_update` seen on the way (in order).
fn until(ws: &mut Ws, name: &str, want: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let deadline = Instant::now() + CROSS;
    let mut presence = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no {name} within {CROSS:?}");
        let Some((event, data)) = as_event(&recv_text(ws)) else {
            continue;
        };
        if event == name && want(&data) {
            return (data, presence);
        }
        if event == "presence_update" {
            presence.push(data);
        }
    }
}

fn user_event(user: &'static str) -> impl Fn(&Value) -> bool {
    move |d: &Value| d["userId"] == user
}

fn close(mut ws: Ws) {
    let _ = ws.close(None);
    // Until the server's close frame or the end: the session ended.
    while ws.read().is_ok() {}
}

/// What an observer saw: every event, in order.
struct Seen {
    ws: Ws,
    events: Vec<(String, Value)>,
}

impl Seen {
    /// How many `name` events of `user` arrived so far.
    fn count(&self, name: &str, user: &str) -> usize {
        self.events
            .iter()
            .filter(|(e, d)| e == name && d["userId"] == user)
            .count()
    }

    /// Reads until `n` `name` events of `user` arrived in all.
    fn until(&mut self, name: &str, user: &str, n: usize) {
        let deadline = Instant::now() + CROSS;
        while self.count(name, user) < n {
            assert!(
                Instant::now() < deadline,
                "no {name} #{n} of {user} within {CROSS:?}: {:?}",
                self.events
            );
            if let Some(event) = as_event(&recv_text(&mut self.ws)) {
                self.events.push(event);
            }
        }
    }

    /// Reads until `user`'s last presence status is `status`.
    fn until_status(&mut self, user: &str, status: &str) {
        let deadline = Instant::now() + CROSS;
        while self.statuses(user).last() != Some(&status) {
            assert!(Instant::now() < deadline, "no {status}: {:?}", self.events);
            let n = self.count("presence_update", user);
            self.until("presence_update", user, n + 1);
        }
    }

    /// `user`'s presence statuses, in order.
    fn statuses(&self, user: &str) -> Vec<&str> {
        self.events
            .iter()
            .filter(|(e, d)| e == "presence_update" && d["userId"] == user)
            .map(|(_, d)| d["status"].as_str().unwrap_or("?"))
            .collect()
    }
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn presence_and_membership_change_once_cluster_wide() {
    let p = Pair::start();
    let channel = p.a.create_channel("obs", "lobby", "public", &[]);
    let mut observers = Vec::new();
    for (server, user) in [(&p.a, "obs"), (&p.b, "obs2")] {
        let mut ws = p.connect(server, user);
        join(&mut ws, &channel);
        observers.push(Seen {
            ws,
            events: Vec::new(),
        });
    }

    // alice joins on A: both observers hear user_joined. Her first
    // connection's online reaches them only if it is announced after her
    // join put the channel in her list (it comes from Redis, a moment
    // later). She leaves: user_left and offline (in no fixed order: two
    // owners announce them).
    let mut first = p.connect(&p.a, "alice");
    join(&mut first, &channel);
    for o in &mut observers {
        o.until("user_joined", "alice", 1);
    }
    close(first);
    for o in &mut observers {
        o.until("user_left", "alice", 1);
        let deadline = Instant::now() + CROSS;
        while o.statuses("alice").last() != Some(&"offline") {
            assert!(Instant::now() < deadline, "no offline: {:?}", o.events);
            o.until(
                "presence_update",
                "alice",
                o.count("presence_update", "alice") + 1,
            );
        }
        o.events.clear();
    }

    // On A, then also on B, subscribed on both: one online, one
    // user_joined. Gone from A, then from B: one user_left, one offline,
    // announced by B.
    let mut on_a = p.connect(&p.a, "alice");
    for o in &mut observers {
        o.until("presence_update", "alice", 1);
    }
    join(&mut on_a, &channel);
    for o in &mut observers {
        o.until("user_joined", "alice", 1);
    }
    let mut on_b = p.connect(&p.b, "alice");
    join(&mut on_b, &channel);
    p.until_counted("u", "b", "alice", 1);
    p.until_counted("s", "b", &format!("{channel}\nalice"), 1);
    close(on_a);
    close(on_b);
    for o in &mut observers {
        o.until("presence_update", "alice", 2);
        o.until("user_left", "alice", 1);
    }
    // A marker after: anything announced twice would most likely have
    // come before it.
    let mut marker = p.connect(&p.b, "carol");
    join(&mut marker, &channel);
    for o in &mut observers {
        o.until("user_joined", "carol", 1);
        assert_eq!(o.statuses("alice"), ["online", "offline"], "{:?}", o.events);
        assert_eq!(o.count("user_joined", "alice"), 1, "{:?}", o.events);
        assert_eq!(o.count("user_left", "alice"), 1, "{:?}", o.events);
    }
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn typing_and_rest_edits_on_a_reach_a_subscriber_on_b() {
    let p = Pair::start();
    let channel = p.a.create_channel("alice", "team", "public", &[]);
    let mut alice = p.connect(&p.a, "alice");
    join(&mut alice, &channel);
    let mut bob = p.connect(&p.b, "bob");
    join(&mut bob, &channel);

    send_text(
        &mut alice,
        format!("42{}", json!(["typing_start", {"channelId": channel}])),
    );
    let (typing, _) = until(&mut bob, "typing", user_event("alice"));
    assert_eq!(typing["isTyping"], true, "{typing}");
    assert_eq!(typing["channelId"], channel.as_str());
    let stop = call(&mut alice, 7, "typing_stop", json!({"channelId": channel}));
    assert_eq!(stop["ok"], true, "{stop}");
    let (typing, _) = until(&mut bob, "typing", user_event("alice"));
    assert_eq!(typing["isTyping"], false, "{typing}");

    // Sent, edited and deleted through A's REST API.
    let api = Api {
        server: &p.a,
        token: Some(p.a.token("alice")),
    };
    let m = api.send(&channel, "first");
    let id = m["id"].as_str().expect("message id").to_owned();
    let edited = api.call(
        "PUT",
        &format!("/api/v1/messages/{id}"),
        Some(json!({"content": "second"})),
    );
    assert_eq!(edited.status, 200, "{edited:?}");
    let (update, _) = until(&mut bob, "message_updated", |d| d["id"] == id.as_str());
    assert_eq!(update["content"], "second", "{update}");
    assert_eq!(update["channelId"], channel.as_str());
    let deleted = api.call("DELETE", &format!("/api/v1/messages/{id}"), None);
    assert_eq!(deleted.status, 204, "{deleted:?}");
    let (gone, _) = until(&mut bob, "message_deleted", |d| d["id"] == id.as_str());
    assert_eq!(gone["seq"], m["seq"], "{gone}");
}

#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn the_users_of_a_killed_instance_go_offline_within_its_lease() {
    let mut p = Pair::start();
    let channel = p.a.create_channel("alice", "team", "public", &[]);
    let mut obs = p.connect(&p.b, "obs");
    join(&mut obs, &channel);
    let mut alice = p.connect(&p.a, "alice");
    join(&mut alice, &channel);
    until(&mut obs, "user_joined", user_event("alice"));

    p.a.kill9();
    let killed = Instant::now();
    let mut obs = Seen {
        ws: obs,
        events: Vec::new(),
    };
    obs.until("user_left", "alice", 1);
    obs.until_status("alice", "offline");
    let waited = killed.elapsed();
    // Her online may have come just before (announced after her join).
    let statuses = obs.statuses("alice");
    assert!(
        statuses == ["offline"] || statuses == ["online", "offline"],
        "{:?}",
        obs.events
    );
    // Within the lease period, with the machine's slack (not a speed
    // figure: a ghost would stay forever).
    assert!(
        waited < Duration::from_millis(LEASE_MS) + CROSS,
        "offline after {waited:?}"
    );
    drop(alice);
}
