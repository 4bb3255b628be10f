//! Chat state without sockets: two shards' `Chat`s on one thread, links
//! whose queues we read, and the mailboxes pumped by hand.

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::{Value, json};

use super::{Chat, ChatLimits, Mail};
use crate::auth::{Authenticator, mint_hs256};
use crate::config::Config;
use crate::protocol::{Event, Frame, Handler, Handshake, Link, QueueLimits};
use crate::shard::mailbox::{Mailbox, Mesh};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

struct World {
    chats: Vec<Rc<Chat>>,
    boxes: Vec<Rc<Mailbox<Mail>>>,
    next_conn: u64,
}

struct Peer {
    link: Rc<Link>,
    socket: Rc<super::ChatConn>,
    shard: usize,
}

impl World {
    fn new(shards: usize) -> Self {
        let config = Config {
            jwt_secret: Some(SECRET.into()),
            ..Config::default()
        };
        let auth = Arc::new(Authenticator::from_config(&config).unwrap());
        let mesh = Mesh::new(shards, 64);
        let limits = ChatLimits {
            max_message_length: 100,
            max_channels_per_connection: 10,
            rate_per_sec: 1000,
            rate_burst: 1000,
            rate_disconnect_after: 10,
            typing_timeout: std::time::Duration::from_secs(5),
            dedupe_per_channel: 2,
        };
        let boxes: Vec<_> = (0..shards).map(|i| Mailbox::new(mesh.clone(), i)).collect();
        let chats = boxes
            .iter()
            .map(|b| Chat::new(b.clone(), auth.clone(), limits.clone()))
            .collect();
        World {
            chats,
            boxes,
            next_conn: 0,
        }
    }

    /// Delivers every pending mail, on every shard, until quiet. Remote
    /// batches wait in the per-peer buffers (no flusher runs here), so they
    /// are moved by hand.
    fn pump(&self) {
        loop {
            let mut moved = false;
            for (from, b) in self.boxes.iter().enumerate() {
                for (to, mail) in b.take_pending_for_tests() {
                    debug_assert_ne!(from, to);
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
            if !moved {
                return;
            }
        }
    }

    fn connect(&mut self, shard: usize, user: &str) -> Peer {
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
        let token = mint_hs256(SECRET, user, None, 60, None, None).unwrap();
        let socket = self.chats[shard]
            .connect(&link, &hs, "/", Some(json!({"token": token})))
            .ok()
            .unwrap();
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
        if let Frame::Text(t) = f {
            out.push(t.as_str().to_owned());
        }
    }
    out
}

fn events(link: &Link, name: &str) -> Vec<Value> {
    let prefix = format!("42[\"{name}\",");
    frames(link)
        .iter()
        .filter_map(|f| f.strip_prefix(&prefix))
        .map(|rest| serde_json::from_str(&rest[..rest.len() - 1]).unwrap())
        .collect()
}

#[test]
fn messages_are_sequenced_once_and_fanned_out_to_both_shards() {
    let mut w = World::new(2);
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
    assert!(
        frames(&b.link)
            .contains(&r#"437[{"channel":{"id":"c"},"lastSeq":1,"ok":true}]"#.to_owned())
    );
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
fn dedupe_window_is_bounded_per_channel() {
    let mut w = World::new(1);
    let a = w.connect(0, "a");
    w.emit(&a, "join_channel", None, json!({"channelId": "c"}));
    for id in ["x", "y", "x"] {
        w.emit(
            &a,
            "send_message",
            None,
            json!({"channelId": "c", "content": "m", "clientMessageId": id}),
        );
    }
    assert_eq!(
        events(&a.link, "message").len(),
        2,
        "the repeat of x is answered, not broadcast"
    );
    // The window holds 2 ids: after z, x is forgotten and becomes new again.
    for id in ["z", "x"] {
        w.emit(
            &a,
            "send_message",
            None,
            json!({"channelId": "c", "content": "m", "clientMessageId": id}),
        );
    }
    assert_eq!(events(&a.link, "message").len(), 2);
}

#[test]
fn user_joined_and_left_follow_the_users_first_and_last_connection() {
    let mut w = World::new(2);
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
