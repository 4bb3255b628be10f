//! The scripts against a real, throwaway redis-server (one per test: a
//! free port, a temp dir, no persistence, killed at drop), and the two
//! threads of two "instances" talking through it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Commands;

use super::scripts::{Kind, PREFIX, Reaped, Scripts, Totals};
use super::{ClusterMetrics, Event, Settings};
use crate::chat::Mail;
use crate::chat::mail::{ToChannelOwner, ToUserOwner};
use crate::mailbox::{Mailbox, Mesh};
use crate::testing::redis::RedisServer;

/// Generous: the machine is shared.
const WAIT: Duration = Duration::from_secs(20);

/// Simulates an instance's death: its lease ends now.
fn expire_lease(c: &mut redis::Connection, server: &str) {
    let _: i64 = c.del(format!("{PREFIX}lease:{server}")).unwrap();
}

const LEASE_MS: u64 = 60_000;

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn counts_make_one_edge_per_cluster_wide_crossing() {
    let r = RedisServer::start();
    let mut c = r.connection();
    let (a, b) = (Scripts::new("a", LEASE_MS), Scripts::new("b", LEASE_MS));
    let t = |before, after| Totals {
        before,
        after,
        lost: true,
    };
    // First use takes the lease (`lost`): nothing was held before.
    assert_eq!(
        a.set(&mut c, Kind::Users, "alice", 1).unwrap().totals,
        t(0, 1)
    );
    assert_eq!(
        b.set(&mut c, Kind::Users, "alice", 2).unwrap().totals,
        t(1, 3)
    );
    let t = |before, after| Totals {
        before,
        after,
        lost: false,
    };
    assert_eq!(
        a.set(&mut c, Kind::Users, "alice", 0).unwrap().totals,
        t(3, 2)
    );
    assert_eq!(
        b.set(&mut c, Kind::Users, "alice", 1).unwrap().totals,
        t(2, 1)
    );
    // The presence list comes with a user's edges.
    a.member(&mut c, "alice", "c1", true).unwrap();
    a.member(&mut c, "alice", "c2", true).unwrap();
    a.member(&mut c, "alice", "c2", false).unwrap();
    let last = b.set(&mut c, Kind::Users, "alice", 0).unwrap();
    assert_eq!(last.totals, t(1, 0));
    assert_eq!(last.totals.edge(), Some(false));
    assert_eq!(last.list, ["c1"]);
    let again = a.set(&mut c, Kind::Users, "alice", 1).unwrap();
    assert_eq!(
        (again.totals.edge(), again.list),
        (Some(true), vec!["c1".to_owned()])
    );
    let more = b.set(&mut c, Kind::Users, "alice", 1).unwrap();
    assert_eq!(
        (more.totals.edge(), more.list),
        (None, vec![]),
        "no edge, no list"
    );
    a.set(&mut c, Kind::Users, "alice", 0).unwrap();
    b.set(&mut c, Kind::Users, "alice", 0).unwrap();
    // Subscriptions are counted apart from connections.
    let first = a.set(&mut c, Kind::Subs, "c1\nalice", 1).unwrap().totals;
    assert_eq!(first.edge(), Some(true));
    assert_eq!(a.query(&mut c, Kind::Users, "alice").unwrap(), 0);
    assert_eq!(a.query(&mut c, Kind::Subs, "c1\nalice").unwrap(), 1);
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_dead_instance_is_reaped_once_with_the_edges_it_leaves() {
    let r = RedisServer::start();
    let mut c = r.connection();
    let (a, b, d) = (
        Scripts::new("a", LEASE_MS),
        Scripts::new("b", LEASE_MS),
        Scripts::new("d", LEASE_MS),
    );
    a.set(&mut c, Kind::Users, "alice", 2).unwrap();
    a.set(&mut c, Kind::Users, "bob", 1).unwrap();
    a.set(&mut c, Kind::Subs, "c1\nalice", 1).unwrap();
    b.set(&mut c, Kind::Users, "bob", 1).unwrap();
    d.renew(&mut c).unwrap();
    // Alive: nothing to reap.
    assert_eq!(b.reap(&mut c, false).unwrap(), Reaped::default());
    expire_lease(&mut c, "a");
    // An expired lease no longer counts, before any reap.
    assert_eq!(b.query(&mut c, Kind::Users, "alice").unwrap(), 0);
    assert_eq!(b.query(&mut c, Kind::Users, "bob").unwrap(), 1);
    let mut reaped = b.reap(&mut c, false).unwrap();
    reaped.gone.sort();
    assert_eq!(reaped.instances, 1);
    assert_eq!(
        reaped.gone,
        vec![
            (Kind::Users, "alice".to_owned()),
            (Kind::Subs, "c1\nalice".to_owned())
        ],
        "bob is still online on b"
    );
    // Exactly once: the next reapers find nothing.
    assert_eq!(d.reap(&mut c, false).unwrap(), Reaped::default());
    assert_eq!(b.reap(&mut c, false).unwrap(), Reaped::default());
    let left: Vec<String> = c.keys(format!("{PREFIX}*:a")).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_lost_lease_is_reported_and_leftovers_are_cleared_at_start() {
    let r = RedisServer::start();
    let mut c = r.connection();
    let a = Scripts::new("a", LEASE_MS);
    a.set(&mut c, Kind::Users, "alice", 1).unwrap();
    assert!(!a.renew(&mut c).unwrap());
    expire_lease(&mut c, "a");
    assert!(a.renew(&mut c).unwrap(), "the lease had gone");
    expire_lease(&mut c, "a");
    assert!(a.set(&mut c, Kind::Users, "bob", 1).unwrap().totals.lost);
    // A restart under the same id: the earlier run's users are gone.
    let again = Scripts::new("a", LEASE_MS);
    let mut reaped = again.reap(&mut c, true).unwrap();
    reaped.gone.sort();
    assert_eq!(
        reaped.gone,
        vec![
            (Kind::Users, "alice".to_owned()),
            (Kind::Users, "bob".to_owned())
        ]
    );
    assert_eq!(again.query(&mut c, Kind::Users, "alice").unwrap(), 0);
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn every_key_has_a_ttl() {
    let r = RedisServer::start();
    let mut c = r.connection();
    let a = Scripts::new("a", LEASE_MS);
    a.set(&mut c, Kind::Users, "alice", 1).unwrap();
    a.set(&mut c, Kind::Subs, "c1\nalice", 1).unwrap();
    a.member(&mut c, "alice", "c1", true).unwrap();
    a.renew(&mut c).unwrap();
    let keys: Vec<String> = c.keys(format!("{PREFIX}*")).unwrap();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for k in keys {
        let ttl: i64 = c.pttl(&k).unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
    }
}

/// One "instance": its threads and the mesh they answer into.
struct Instance {
    cluster: Arc<super::Cluster>,
    inbox: std::rc::Rc<Mailbox<Mail>>,
    directory: Arc<crate::chat::gatrix::Directory>,
}

impl Instance {
    fn start(r: &RedisServer, id: &str) -> Self {
        let mesh = Mesh::new(1, 4);
        let settings = Settings {
            target: r.client().into(),
            server_id: id.to_owned(),
            lease: Duration::from_secs(60),
            queue: 64,
            pubsub_partitions: 64,
            refresh: Duration::from_secs(5),
            // Short: a_leave_while_redis_was_away… waits a cap after the
            // subscriber is back.
            reconnect_max: Duration::from_secs(1),
            directory: Arc::new(crate::chat::gatrix::Directory::new(10)),
        };
        let directory = settings.directory.clone();
        let cluster = super::Cluster::start(settings, mesh.clone(), ClusterMetrics::default())
            .expect("start the threads");
        Self {
            cluster,
            inbox: Mailbox::new(mesh, 0),
            directory,
        }
    }

    /// The next mail the threads hand to the shard matching `want`.
    fn next(&self, what: &str, want: impl Fn(&Mail) -> bool) -> Mail {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut got = Vec::new();
            self.inbox.drain_for_tests(&mut got);
            if let Some(m) = got.into_iter().find(|m| want(m)) {
                return m;
            }
            assert!(Instant::now() < deadline, "no {what} within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn two_instances_see_edges_and_each_others_events() {
    let r = RedisServer::start();
    let (a, b) = (Instance::start(&r, "a"), Instance::start(&r, "b"));
    let alice: Arc<str> = "alice".into();
    let is_edge = |m: &Mail| {
        matches!(
            m,
            Mail::UserOwner(ToUserOwner::Cluster { edge: Some(_), .. })
        )
    };
    assert!(a.cluster.count(Kind::Users, &alice, None, 1));
    let Mail::UserOwner(ToUserOwner::Cluster { edge, online, .. }) = a.next("edge", is_edge) else {
        unreachable!()
    };
    assert_eq!((edge, online), (Some(true), true));
    // b's connection is no edge: its answer says online, without one.
    assert!(b.cluster.count(Kind::Users, &alice, None, 1));
    let any = |m: &Mail| matches!(m, Mail::UserOwner(ToUserOwner::Cluster { .. }));
    let Mail::UserOwner(ToUserOwner::Cluster { edge, online, .. }) = b.next("answer", any) else {
        unreachable!()
    };
    assert_eq!((edge, online), (None, true));
    // Events published by a reach b, not a itself. The subscriber may
    // still be subscribing: publish until one arrives (at-most-once).
    let emit = |m: &Mail| matches!(m, Mail::ChannelOwner(ToChannelOwner::ChannelEmit { .. }));
    let deadline = Instant::now() + WAIT;
    let got = loop {
        a.cluster.publish(Event::Emit {
            channel: "c1".into(),
            frame: "42[\"typing\",{}]".into(),
        });
        let mut got = Vec::new();
        std::thread::sleep(Duration::from_millis(50));
        b.inbox.drain_for_tests(&mut got);
        if let Some(m) = got.into_iter().find(emit) {
            break m;
        }
        assert!(Instant::now() < deadline, "no event reached b");
    };
    let Mail::ChannelOwner(ToChannelOwner::ChannelEmit { channel, frame }) = got else {
        unreachable!()
    };
    assert_eq!((&*channel, frame.as_str()), ("c1", "42[\"typing\",{}]"));
    let mut mine = Vec::new();
    a.inbox.drain_for_tests(&mut mine);
    assert!(!mine.iter().any(emit), "a ignores its own events");
    assert!(a.cluster.metrics.published.get() >= 1);
    assert!(b.cluster.metrics.received.get() >= 1);
    // The last disconnection, on b, is b's edge.
    assert!(a.cluster.count(Kind::Users, &alice, None, 0));
    a.next("answer", any);
    assert!(b.cluster.count(Kind::Users, &alice, None, 0));
    let Mail::UserOwner(ToUserOwner::Cluster { edge, .. }) = b.next("edge", is_edge) else {
        unreachable!()
    };
    assert_eq!(edge, Some(false));
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn after_redis_comes_back_empty_the_counts_are_asserted_again_and_shards_told() {
    let mut r = RedisServer::start();
    let a = Instance::start(&r, "a");
    let alice: Arc<str> = "alice".into();
    let c1: Arc<str> = "c1".into();
    assert!(a.cluster.count(Kind::Users, &alice, None, 2));
    assert!(a.cluster.count(Kind::Subs, &alice, Some(&c1), 1));
    let joined = |m: &Mail| matches!(m, Mail::ChannelOwner(ToChannelOwner::SubEdge { .. }));
    a.next("subscription edge", joined);
    a.directory.put(&directory_user("ann"));
    r.restart_empty();
    // The worker notices on its next round (a tick at the latest),
    // reconnects, and writes its counts again: the edges are made again
    // (announced: the others' subscribers were told nothing meanwhile).
    let reconnected = |m: &Mail| matches!(m, Mail::ChannelOwner(ToChannelOwner::Reconnected));
    let deadline = Instant::now() + WAIT;
    let mut c = r.connection();
    let probe = Scripts::new("probe", LEASE_MS);
    while probe.query(&mut c, Kind::Users, "alice").unwrap() != 2 {
        assert!(
            Instant::now() < deadline,
            "alice's count was not asserted again"
        );
        // Something must make the worker use its dead connection: a tick
        // (a sixth of the lease) or a request.
        a.cluster.publish(Event::Invalidate {
            channel: "c0".into(),
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(probe.query(&mut c, Kind::Subs, "c1\nalice").unwrap(), 1);
    a.next("the shards' cache drop", reconnected);
    // Directory changes may have been missed too.
    assert!(
        !a.directory.contains("ann"),
        "the directory was not cleared"
    );
    assert!(a.cluster.metrics.reconnects.get() >= 1);
    assert_eq!(a.cluster.metrics.lease.get(), 1);
}

/// A user who leaves a channel while Redis is away, which then comes back
/// empty: the count that announced the join is gone from Redis, so writing
/// 0 crosses no total there; the instance that held it announces the
/// `user_left` anyway (the test fails without it: the other instances'
/// subscribers kept the user in the channel for good).
#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_leave_while_redis_was_away_is_announced_when_it_comes_back_empty() {
    let mut r = RedisServer::start();
    let a = Instance::start(&r, "a");
    let alice: Arc<str> = "alice".into();
    let c1: Arc<str> = "c1".into();
    assert!(a.cluster.count(Kind::Subs, &alice, Some(&c1), 1));
    let sub_edge = |joined: bool| move |m: &Mail| matches!(m, Mail::ChannelOwner(ToChannelOwner::SubEdge { joined: j, .. }) if *j == joined);
    a.next("the join's edge", sub_edge(true));
    r.restart_empty();
    assert!(a.cluster.count(Kind::Subs, &alice, Some(&c1), 0));
    a.next("the leave's edge", sub_edge(false));
}

fn directory_user(id: &str) -> crate::store::UserRecord {
    crate::store::UserRecord {
        id: id.into(),
        username: format!("{id}@x"),
        name: None,
        email: None,
        avatar_url: None,
        status: None,
        custom_status: None,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

/// A user changed in the directory on one instance: the others forget
/// their copy (the Gatrix frames then read it again).
#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_changed_user_is_forgotten_by_the_other_instances() {
    let r = RedisServer::start();
    let (a, b) = (Instance::start(&r, "a"), Instance::start(&r, "b"));
    let ann = directory_user("ann");
    a.directory.put(&ann);
    b.directory.put(&ann);
    // The subscriber may still be subscribing: publish until it lands.
    let deadline = Instant::now() + WAIT;
    while b.directory.contains("ann") {
        assert!(Instant::now() < deadline, "b kept its copy");
        a.cluster.publish(Event::User { user: "ann".into() });
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(a.directory.contains("ann"), "a ignores its own events");
    let mut mails = Vec::new();
    b.inbox.drain_for_tests(&mut mails);
    assert!(mails.is_empty(), "no shard is bothered: {}", mails.len());
}

#[test]
fn envelopes_carry_the_origin_and_the_event() {
    let e = super::Envelope {
        origin: "chat-1".into(),
        event: Event::Member {
            channel: "c1".into(),
            user: "bob".into(),
            added: true,
        },
    };
    let text = serde_json::to_string(&e).unwrap();
    assert_eq!(
        text,
        r#"{"o":"chat-1","k":"member","channel":"c1","user":"bob","added":true}"#
    );
    let back: super::Envelope = serde_json::from_str(&text).unwrap();
    assert_eq!((back.origin.as_str(), back.event), ("chat-1", e.event));
    assert!(serde_json::from_str::<super::Envelope>(r#"{"o":"x","k":"nope"}"#).is_err());
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn a_connection_opened_and_closed_within_one_round_makes_both_edges() {
    let r = RedisServer::start();
    let a = Instance::start(&r, "a");
    let alice: Arc<str> = "alice".into();
    // Queued back to back, most of these land in one round of the worker:
    // written as absolute counts, a round would see only the last one and
    // announce nothing in between.
    const PAIRS: usize = 25;
    for _ in 0..PAIRS {
        assert!(a.cluster.count(Kind::Users, &alice, None, 1));
        assert!(a.cluster.count(Kind::Users, &alice, None, 0));
    }
    let mut edges = Vec::new();
    let deadline = Instant::now() + WAIT;
    while edges.len() < 2 * PAIRS {
        let mut got = Vec::new();
        a.inbox.drain_for_tests(&mut got);
        edges.extend(got.into_iter().filter_map(|m| match m {
            Mail::UserOwner(ToUserOwner::Cluster { edge: Some(e), .. }) => Some(e),
            _ => None,
        }));
        assert!(
            Instant::now() < deadline,
            "{} edges of {} within {WAIT:?}: {edges:?}",
            edges.len(),
            2 * PAIRS
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let want: Vec<bool> = (0..2 * PAIRS).map(|i| i % 2 == 0).collect();
    assert_eq!(edges, want, "online, offline, in turn, none missing");
}
