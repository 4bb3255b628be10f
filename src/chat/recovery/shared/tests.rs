//! The Redis sessions thread against a real, throwaway redis-server (one
//! per test, free port, temp dir, no persistence, killed at drop).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::entry::{self, CLAIMED, Entry, SETTLED};
use super::{Request, Settings, Shared, Worker};
use crate::chat::Mail;
use crate::chat::mail::{ReplayStep, ToConnShard, conn_id};
use crate::mailbox::{Mailbox, Mesh};
use crate::metrics::RecoveryMetrics;
use crate::testing::redis::RedisServer;

/// A window of 60 s (TTL 75 s), `max_dropped` ended sessions kept.
fn settings(max_dropped: usize) -> Settings {
    Settings {
        window: Duration::from_secs(60),
        max_dropped,
        queue: 1_000,
        timeout: Duration::from_secs(2),
        reconnect_max: Duration::from_secs(5),
    }
}

fn worker(redis: &RedisServer, max_dropped: usize) -> Worker {
    Worker::new(redis.client(), Mesh::new(1, 1), &settings(max_dropped))
}

const PID: &str = "AAAAAAAAAAAAAAAAAAAA";

fn value(owner: &str, user: &str, channels: &[&str]) -> Vec<u8> {
    entry::encode(owner, user, &[5], channels.iter().copied())
}

fn stored(redis: &RedisServer, pid: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(entry::key(pid))
        .query(&mut redis.connection())
        .expect("GET")
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_claim_takes_a_settled_session_of_its_user_once() {
    let redis = RedisServer::start();
    let mut w = worker(&redis, 100);
    w.put(
        PID,
        "holder01",
        Some(&value("holder01", "alice", &["a", "b"])),
    );
    // Another user's claim finds nothing and changes nothing.
    assert_eq!(w.claim(PID, "eve", "claimEve"), None);
    assert_eq!(w.claim(PID, "alic", "claimEve"), None);
    assert_eq!(
        stored(&redis, PID),
        Some(value("holder01", "alice", &["a", "b"]))
    );
    let got = w.claim(PID, "alice", "claimer1");
    let want = Entry {
        user: "alice".into(),
        start_pos: [5].into(),
        channels: vec!["a".into(), "b".into()],
    };
    assert_eq!(got, Some(want.clone()));
    let now = stored(&redis, PID).expect("kept, claimed");
    assert_eq!(&now[..8], b"claimer1");
    assert_eq!(now[8], CLAIMED);
    // Claimed: a second reconnect gets nothing.
    assert_eq!(w.claim(PID, "alice", "claimer2"), None);
    // The old holder (a stale connection elsewhere) cannot overwrite it,
    // nor delete it.
    w.put(PID, "holder01", Some(&value("holder01", "alice", &["x"])));
    w.put(PID, "holder01", None);
    assert_eq!(
        stored(&redis, PID).as_deref().map(|v| &v[..9]),
        Some(&b"claimer1~"[..])
    );
    // Restored by the claimant (settled): claimable again, by a later
    // reconnect.
    w.put(
        PID,
        "claimer1",
        Some(&value("claimer1", "alice", &["a", "b", "c"])),
    );
    assert_eq!(stored(&redis, PID).map(|v| v[8]), Some(SETTLED));
    let again = w.claim(PID, "alice", "claimer2").expect("claimable again");
    assert_eq!(again.channels, ["a", "b", "c"]);
    // The holder deletes it (a `41`).
    w.put(PID, "claimer2", None);
    assert_eq!(stored(&redis, PID), None);
    assert_eq!(w.claim(PID, "alice", "claimer3"), None);
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn of_reconnects_racing_on_one_pid_exactly_one_wins() {
    let redis = RedisServer::start();
    for round in 0..20 {
        let pid = format!("{round:0>20}");
        worker(&redis, 100).put(&pid, "holder01", Some(&value("holder01", "bob", &["c"])));
        let won: usize = std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|i| {
                    let (pid, redis) = (&pid, &redis);
                    s.spawn(move || {
                        let mut w = worker(redis, 100);
                        w.claim(pid, "bob", &format!("racer{i:03}")).is_some()
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| usize::from(r.join().expect("racer")))
                .sum()
        });
        assert_eq!(won, 1, "round {round}");
    }
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn ttls_are_renewed_and_the_dropped_are_capped() {
    let redis = RedisServer::start();
    let mut w = worker(&redis, 2);
    let pttl = |pid: &str| -> i64 {
        redis::cmd("PTTL")
            .arg(entry::key(pid))
            .query(&mut redis.connection())
            .expect("PTTL")
    };
    let pids: Vec<String> = (0..3).map(|n| format!("{n:0>20}")).collect();
    for p in &pids {
        w.put(p, "owner001", Some(&value("owner001", "u", &[])));
        assert!((70_000..=75_000).contains(&pttl(p)), "{}", pttl(p));
    }
    // Shortened behind the worker's back, renewed by a refresh.
    redis::cmd("PEXPIRE")
        .arg(entry::key(&pids[0]))
        .arg(1_000)
        .exec(&mut redis.connection())
        .expect("PEXPIRE");
    w.refresh(&[pids[0].as_str().into()]);
    assert!(pttl(&pids[0]) > 70_000);
    // Three connections end with a cap of two: the oldest is deleted.
    for p in &pids {
        w.handle(Request::Dropped {
            pid: p.as_str().into(),
            owner: "owner001".into(),
        });
    }
    assert_eq!(stored(&redis, &pids[0]), None);
    assert!(stored(&redis, &pids[1]).is_some() && stored(&redis, &pids[2]).is_some());
    assert_eq!(w.dropped.len(), 2);
    // A session dropped but since claimed by another connection is not
    // deleted by the cap: it is not this owner's any more.
    assert!(w.claim(&pids[1], "u", "claimer1").is_some());
    for n in 3..5 {
        w.handle(Request::Dropped {
            pid: format!("{n:0>20}").into(),
            owner: "owner001".into(),
        });
    }
    assert!(stored(&redis, &pids[1]).is_some());
    assert_eq!(stored(&redis, &pids[2]), None);
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn without_redis_a_claim_is_answered_not_recovered() {
    let redis = RedisServer::start();
    let mesh = Mesh::<Mail>::new(1, 1);
    let mailbox = Mailbox::new(mesh.clone(), 0);
    let metrics = RecoveryMetrics::default();
    let shared =
        Shared::start(redis.client(), mesh, &settings(100), metrics.clone()).expect("thread");
    let conn = conn_id(0, 7);
    let claim = |shared: &Arc<Shared>| {
        assert!(shared.send(Request::Claim {
            pid: PID.into(),
            user: "alice".into(),
            owner: "claimer1".into(),
            conn,
        }));
        answer(&mailbox, conn)
    };
    assert!(shared.send(Request::Put {
        pid: PID.into(),
        owner: "holder01".into(),
        value: Some(value("holder01", "alice", &["a"])),
    }));
    // Through the thread and the shard's mailbox: recovered.
    assert_eq!(
        claim(&shared).map(|e| e.channels),
        Some(vec!["a".to_owned()])
    );
    // Redis gone: answered (not recovered), not left waiting, counted.
    assert_eq!(metrics.redis_errors.get(), 0);
    drop(redis);
    assert_eq!(claim(&shared), None);
    assert!(metrics.redis_errors.get() >= 1);
}

/// Waits for the claim answer to `conn` in the shard's mailbox.
fn answer(mailbox: &Mailbox<Mail>, conn: u64) -> Option<Entry> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut got = Vec::new();
        mailbox.drain_for_tests(&mut got);
        for m in got {
            if let Mail::ConnShard(ToConnShard::Replayed {
                conn: c,
                step: ReplayStep::Claimed { entry: e, owner },
            }) = m
                && c == conn
            {
                // The claim's own owner token comes back with it.
                assert_eq!(&*owner, "claimer1");
                return e;
            }
        }
        assert!(Instant::now() < deadline, "no claim answer");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn after_redis_comes_back_empty_the_shards_write_their_sessions_again() {
    let redis = RedisServer::start();
    let port = redis.port();
    let mesh = Mesh::<Mail>::new(2, 1);
    let boxes = [Mailbox::new(mesh.clone(), 0), Mailbox::new(mesh.clone(), 1)];
    let metrics = RecoveryMetrics::default();
    let shared =
        Shared::start(redis.client(), mesh, &settings(100), metrics.clone()).expect("thread");
    let refresh = || shared.send(Request::Refresh(vec![PID.into()]));
    assert!(refresh());
    // Redis restarts empty on the same port: the next commands fail, then
    // one reconnects and every shard is told to write its sessions again.
    drop(redis);
    let redis = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut told = [false, false];
    while told != [true, true] {
        assert!(Instant::now() < deadline, "shards told {told:?}");
        assert!(refresh());
        std::thread::sleep(Duration::from_millis(50));
        for (i, b) in boxes.iter().enumerate() {
            let mut got = Vec::new();
            b.drain_for_tests(&mut got);
            told[i] |= got
                .iter()
                .any(|m| matches!(m, Mail::ConnShard(ToConnShard::RewriteSessions)));
        }
    }
    // The rewrite: pipelined, the script loaded into the new Redis first.
    let puts: Vec<_> = (0..3)
        .map(|n| {
            let pid: Box<str> = format!("{n:0>20}").into();
            (pid, "owner001".into(), value("owner001", "u", &["c"]))
        })
        .collect();
    assert!(shared.send(Request::PutMany(puts)));
    let last = format!("{:0>20}", 2);
    while stored(&redis, &last).is_none() {
        assert!(Instant::now() < deadline, "not rewritten");
        std::thread::sleep(Duration::from_millis(20));
    }
    for n in 0..3 {
        assert_eq!(
            stored(&redis, &format!("{n:0>20}")),
            Some(value("owner001", "u", &["c"]))
        );
    }
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_session_whose_write_failed_is_deleted_when_redis_is_back() {
    let redis = RedisServer::start();
    let port = redis.port();
    let mut w = worker(&redis, 100);
    w.put(PID, "owner001", Some(&value("owner001", "u", &["a"])));
    // Redis stops (keeping its data, as a pause would): the join of "b"
    // is not written; the old version would restore "a" only.
    // (The write waits its 2 s timeout for the stopped Redis.)
    let stopped = redis;
    stopped.pause();
    w.put(PID, "owner001", Some(&value("owner001", "u", &["a", "b"])));
    assert_eq!(w.unsure.len(), 1);
    stopped.resume();
    assert_eq!(stopped.port(), port);
    // Back: before anything else, the unsure session is deleted, so a
    // claim finds nothing rather than the wrong channels.
    // (After the worker's backoff: until then it does not try.)
    while !w.backoff.ready(Instant::now()) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(w.claim(PID, "u", "claimer1"), None);
    assert_eq!(stored(&stopped, PID), None);
    assert!(w.unsure.is_empty());
}
