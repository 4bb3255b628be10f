//! Chat state without sockets: two shards' `Chat`s on one thread, links
//! whose queues we read, and the mailboxes pumped by hand.

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::{Value, json};

use std::time::Duration;

use super::{Chat, ChatLimits, Mail};
use crate::auth::{Authenticator, mint_hs256};
use crate::config::Config;
use crate::mailbox::{Mailbox, Mesh};
use crate::protocol::{Event, Handler, Handshake, Link, QueueLimits};
use crate::store::handle::StoreSettings;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::WriterSettings;
use crate::store::{ChannelRecord, ChannelType, Store};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const GATRIX_SECRET: &str = "the-gatrix-backend-secret-0123456789";
/// The owner cache's limits unless a test sets its own.
const CACHE_IDLE: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 1000;
const COMPRESSION: crate::protocol::deflate::Settings = crate::protocol::deflate::Settings {
    enabled: true,
    threshold: 1024,
};

struct World {
    chats: Vec<Rc<Chat>>,
    boxes: Vec<Rc<Mailbox<Mail>>>,
    next_conn: u64,
    dir: tempfile::TempDir,
}

struct Peer {
    link: Rc<Link>,
    socket: Rc<super::ChatConn>,
    shard: usize,
}

impl World {
    fn new(shards: usize) -> Self {
        Self::with_cache(shards, CACHE_IDLE, CACHE_MAX)
    }

    /// A world whose owners evict idle channels after `idle` and cache at
    /// most `max` (entries not in use).
    fn with_cache(shards: usize, idle: Duration, max: usize) -> Self {
        Self::build(shards, idle, max, None)
    }

    /// A world whose shards have a presence thread's handle (several
    /// instances), without the thread: `cluster.rs` reads the requests.
    fn with_cluster(shards: usize, cluster: Arc<super::cluster::Cluster>) -> Self {
        Self::build(shards, CACHE_IDLE, CACHE_MAX, Some(cluster))
    }

    fn build(
        shards: usize,
        idle: Duration,
        max: usize,
        cluster: Option<Arc<super::cluster::Cluster>>,
    ) -> Self {
        let config = Config {
            jwt_secret: Some(SECRET.into()),
            // The Gatrix dialect on, for `gatrix.rs`: native tokens are
            // what they were.
            gatrix_compat: true,
            gatrix_jwt_secret: Some(GATRIX_SECRET.into()),
            ..Config::default()
        };
        let auth = Arc::new(Authenticator::from_config(&config).unwrap());
        let mesh = Mesh::new(shards, 64);
        let dir = tempfile::tempdir().unwrap();
        crate::store::sqlite::migrate(dir.path()).unwrap();
        let settings = StoreSettings {
            writer: WriterSettings {
                max_batch: 100,
                window: Duration::ZERO,
            },
            writer_queue: 100,
            readers: 1,
            reader_queue: 100,
            metrics: crate::metrics::StoreMetrics::detached(),
        };
        let path = dir.path().to_owned();
        let (store, threads) = crate::store::handle::start(
            &settings,
            move || Ok(Box::new(SqliteStore::open(&path)?) as Box<dyn Store>),
            super::commit::MeshFanout::new(mesh.clone(), COMPRESSION, 1, Default::default()),
        )
        .unwrap();
        std::mem::forget(threads); // they end with the test process
        let limits = ChatLimits {
            max_message_length: 100,
            max_channels_per_connection: 10,
            rate_per_sec: 1000,
            rate_burst: 1000,
            rate_disconnect_after: 10,
            typing_timeout: std::time::Duration::from_secs(5),
            // No coalescing: every presence change is seen at once here
            // (presence.rs tests the coalescing).
            presence_interval: Duration::ZERO,
            recovery_window: std::time::Duration::from_secs(60),
            channel_cache_idle: idle,
            channel_cache_max: max,
            recovery_max_replay: 90,
            server_id: "test".into(),
            start_positions: [0].into(),
            directory: Arc::new(super::gatrix::Directory::new(100)),
            require_known_users: false,
        };
        let sessions = super::recovery::SessionStore::Local(super::recovery::Sessions::new(1_000));
        let boxes: Vec<_> = (0..shards).map(|i| Mailbox::new(mesh.clone(), i)).collect();
        let chats = boxes
            .iter()
            .map(|b| {
                Chat::new(
                    b.clone(),
                    auth.clone(),
                    store.clone(),
                    sessions.clone(),
                    limits.clone(),
                    crate::metrics::ShardMetrics::detached(),
                    cluster.clone(),
                )
            })
            .collect();
        World {
            chats,
            boxes,
            next_conn: 0,
            dir,
        }
    }

    /// Creates a channel straight in the store.
    fn channel(&self, id: &str, kind: ChannelType, owner: &str, members: &[&str]) {
        let mut s = SqliteStore::open(self.dir.path()).unwrap();
        let rec = ChannelRecord {
            id: id.into(),
            name: id.into(),
            kind,
            description: None,
            owner_id: owner.into(),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            num: 0,
            settings: None,
            max_members: None,
        };
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        s.create_channel(&rec, &members).unwrap();
    }

    /// Delivers every pending mail, on every shard, until quiet. Remote
    /// batches wait in the per-peer buffers (no flusher runs here), so they
    /// are moved by hand.
    fn pump(&self) {
        // Store threads answer asynchronously: pump until quiet for a while.
        let mut idle = 0;
        while idle < 20 {
            let mut moved = false;
            for b in &self.boxes {
                for (to, mail) in b.take_pending_for_tests() {
                    self.boxes[to].post(to, mail);
                    moved = true;
                }
            }
            for (i, b) in self.boxes.iter().enumerate() {
                let mut out = Vec::new();
                b.drain_for_tests(&mut out);
                moved |= !out.is_empty();
                for m in out {
                    self.chats[i].handle(m);
                }
            }
            if moved {
                idle = 0;
            } else {
                idle += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn connect(&mut self, shard: usize, user: &str) -> Peer {
        self.connect_with(shard, user, json!({}))
    }

    /// Connects with extra auth fields (e.g. `{pid, offset}`).
    fn connect_with(&mut self, shard: usize, user: &str, extra: Value) -> Peer {
        self.next_conn += 1;
        let id = super::mail::conn_id(shard, self.next_conn);
        let limits = QueueLimits {
            max_frames: 100,
            max_bytes: 1 << 20,
        };
        let link = Rc::new(Link::new(
            id,
            "sid".into(),
            "127.0.0.1:9".parse().unwrap(),
            limits,
        ));
        let hs = Handshake {
            peer: link.peer,
            query: vec![],
            bearer: None,
        };
        let mut auth = extra;
        if auth.get("token").is_none() {
            let token = mint_hs256(SECRET, user, None, 60, None, None).unwrap();
            auth["token"] = json!(token);
        }
        let socket = self.chats[shard]
            .connect(&link, &hs, "/", Some(auth))
            .ok()
            .unwrap();
        // The reply as the driver queues it (a recovery holds it).
        let pid = self.chats[shard].pid(&socket);
        let reply = crate::protocol::packet::encode_connect("/", "sid", pid.as_deref());
        link.push_text(reply).unwrap();
        self.chats[shard].connected(&socket, "sid");
        self.pump();
        Peer {
            link,
            socket,
            shard,
        }
    }

    fn emit(&self, p: &Peer, name: &str, ack: Option<u64>, payload: Value) {
        let ev = Event {
            name: name.into(),
            args: vec![payload],
            ack_id: ack,
            attachments: vec![],
        };
        self.chats[p.shard].event(&p.socket, ev);
        self.pump();
    }
}

/// Every text frame queued on a link, drained.
fn frames(link: &Link) -> Vec<String> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    while let Poll::Ready(f) = link.pop(&mut cx) {
        if let Some(t) = f.text() {
            out.push(t.to_owned());
        }
    }
    out
}

fn events(link: &Link, name: &str) -> Vec<Value> {
    frames(link)
        .iter()
        .filter_map(|f| f.strip_prefix("42"))
        .map(|rest| serde_json::from_str::<Value>(rest).unwrap())
        .filter(|v| v[0] == name)
        .map(|v| v[1].clone())
        .collect()
}

#[test]
fn messages_are_sequenced_once_and_fanned_out_to_both_shards() {
    let mut w = World::new(2);
    w.channel("c", ChannelType::Public, "a", &[]);
    let (a, b) = (w.connect(0, "a"), w.connect(1, "b"));
    for p in [&a, &b] {
        w.emit(p, "join_channel", Some(1), json!({"channelId": "c"}));
    }
    frames(&a.link);
    frames(&b.link);
    for i in 0..5 {
        w.emit(
            &a,
            "send_message",
            None,
            json!({"channelId": "c", "content": format!("m{i}")}),
        );
    }
    for link in [&a.link, &b.link] {
        let seqs: Vec<u64> = events(link, "message")
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }
}

#[test]
fn join_ack_reports_last_seq_and_later_messages_only() {
    let mut w = World::new(2);
    w.channel("c", ChannelType::Public, "a", &[]);
    let a = w.connect(0, "a");
    w.emit(&a, "join_channel", None, json!({"channelId": "c"}));
    w.emit(
        &a,
        "send_message",
        None,
        json!({"channelId": "c", "content": "before"}),
    );
    let b = w.connect(1, "b");
    w.emit(&b, "join_channel", Some(7), json!({"channelId": "c"}));
    let ack = frames(&b.link)
        .into_iter()
        .find(|f| f.starts_with("437["))
        .unwrap();
    assert!(
        ack.starts_with(r#"437[{"ok":true,"channel":{"id":"c","name":"c","type":"public""#),
        "{ack}"
    );
    assert!(ack.ends_with(r#""lastSeq":1}]"#), "{ack}");
    w.emit(
        &a,
        "send_message",
        None,
        json!({"channelId": "c", "content": "after"}),
    );
    let got = events(&b.link, "message");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["seq"], 2);
}

#[test]
fn repeated_client_message_id_is_answered_not_broadcast() {
    let mut w = World::new(1);
    w.channel("c", ChannelType::Public, "a", &[]);
    let a = w.connect(0, "a");
    w.emit(&a, "join_channel", None, json!({"channelId": "c"}));
    for (i, id) in ["x", "y", "x"].iter().enumerate() {
        w.emit(
            &a,
            "send_message",
            Some(i as u64),
            json!({"channelId": "c", "content": "m", "clientMessageId": id}),
        );
    }
    let f = frames(&a.link);
    let broadcasts = f
        .iter()
        .filter(|f| f.starts_with(r#"42["message""#))
        .count();
    assert_eq!(broadcasts, 2, "{f:?}");
    let ack = |n: u64| {
        f.iter()
            .find(|f| f.starts_with(&format!("43{n}[")))
            .cloned()
            .unwrap()
    };
    assert_eq!(
        ack(0),
        ack(2).replacen("432[", "430[", 1),
        "the repeat gets the first message"
    );
}

#[test]
fn private_channels_admit_members_only_and_unknown_channels_are_not_found() {
    let mut w = World::new(2);
    w.channel("p", ChannelType::Private, "owner", &["friend"]);
    let (friend, stranger) = (w.connect(0, "friend"), w.connect(1, "stranger"));
    w.emit(&friend, "join_channel", Some(1), json!({"channelId": "p"}));
    assert!(
        frames(&friend.link)
            .iter()
            .any(|f| f.starts_with(r#"431[{"ok":true,"channel":{"id":"p""#))
    );
    w.emit(
        &stranger,
        "join_channel",
        Some(1),
        json!({"channelId": "p"}),
    );
    w.emit(
        &stranger,
        "join_channel",
        Some(2),
        json!({"channelId": "nope"}),
    );
    w.emit(
        &stranger,
        "send_message",
        Some(3),
        json!({"channelId": "p", "content": "hi"}),
    );
    let f = frames(&stranger.link);
    assert!(
        f.iter()
            .any(|f| f.starts_with("431[") && f.contains("FORBIDDEN")),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|f| f.starts_with("432[") && f.contains("NOT_FOUND")),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|f| f.starts_with("433[") && f.contains("FORBIDDEN")),
        "not joined: {f:?}"
    );
}

#[test]
fn user_joined_and_left_follow_the_users_first_and_last_connection() {
    let mut w = World::new(2);
    w.channel("c", ChannelType::Public, "w", &[]);
    let watcher = w.connect(0, "w");
    w.emit(&watcher, "join_channel", None, json!({"channelId": "c"}));
    let (b1, b2) = (w.connect(0, "b"), w.connect(1, "b"));
    w.emit(&b1, "join_channel", None, json!({"channelId": "c"}));
    w.emit(&b2, "join_channel", None, json!({"channelId": "c"}));
    assert_eq!(
        events(&watcher.link, "user_joined"),
        vec![json!({"channelId": "c", "userId": "b"})]
    );
    w.emit(&b1, "leave_channel", None, json!({"channelId": "c"}));
    assert!(events(&watcher.link, "user_left").is_empty());
    w.chats[1].disconnect(
        b2.socket,
        crate::protocol::DisconnectReason::ClientDisconnect,
    );
    w.pump();
    let f = frames(&watcher.link);
    assert_eq!(
        f,
        vec![r#"42["user_left",{"channelId":"c","userId":"b"}]"#.to_owned()]
    );
    // b left explicitly from one connection while another stayed, and the
    // other disconnected: b is still a member, so its offline reaches the
    // channel once its last connection goes.
    w.chats[0].disconnect(
        b1.socket,
        crate::protocol::DisconnectReason::ClientDisconnect,
    );
    w.pump();
    let f = frames(&watcher.link);
    assert!(
        f.iter()
            .any(|f| f.starts_with(r#"42["presence_update",{"lastSeen":"#)
                && f.contains(r#""status":"offline","userId":"b""#)),
        "{f:?}"
    );
}

mod cache;
mod cluster;
mod gatrix;
mod recovery;
