//! The owner's channel cache and the typing checks, on the chat state:
//! what is kept for which channel, and when it goes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Peer, World, events, frames};
use crate::protocol::{DisconnectReason, Event, Handler};
use crate::store::sqlite::SqliteStore;
use crate::store::{ChannelType, Store};

/// Hands the events to the connection's shard one after the other, as one
/// socket read would, and only then lets the mail flow.
fn emit_together(w: &World, p: &Peer, events: &[(&str, Option<u64>, Value)]) {
    for (name, ack, payload) in events {
        let ev = Event {
            name: (*name).into(),
            args: vec![payload.clone()],
            ack_id: *ack,
            attachments: vec![],
        };
        w.chats[p.shard].event(&p.socket, ev);
    }
    w.pump();
}

/// Cached channels, over every owner.
fn cached(w: &World) -> usize {
    w.chats
        .iter()
        .map(|c| c.channels.channels.borrow().len())
        .sum()
}

fn is_cached(w: &World, channel: &str) -> bool {
    w.chats
        .iter()
        .any(|c| c.channels.channels.borrow().contains_key(channel))
}

/// The ack `43<id>[…]` among `frames`, parsed.
fn ack(frames: &[String], id: u64) -> Value {
    let prefix = format!("43{id}");
    let f = frames
        .iter()
        .find(|f| f.starts_with(&format!("{prefix}[")))
        .unwrap_or_else(|| panic!("no ack {id} in {frames:?}"));
    serde_json::from_str::<Value>(&f[prefix.len()..]).unwrap()[0].clone()
}

#[test]
fn made_up_channel_ids_leave_no_entry() {
    let mut w = World::new(2);
    let a = w.connect(0, "a");
    for i in 0..50u64 {
        let data = json!({"channelId": format!("nope-{i}")});
        emit_together(
            &w,
            &a,
            &[
                ("join_channel", Some(2 * i), data.clone()),
                ("typing_start", Some(2 * i + 1), data),
            ],
        );
        let f = frames(&a.link);
        assert_eq!(ack(&f, 2 * i)["error"]["code"], "NOT_FOUND", "{f:?}");
        assert_eq!(ack(&f, 2 * i + 1)["ok"], false, "{f:?}");
    }
    assert_eq!(cached(&w), 0, "entries for channels that do not exist");
    // A typing after the refusal reached the connection: refused there.
    w.emit(&a, "typing_start", Some(9), json!({"channelId": "nope-0"}));
    assert_eq!(ack(&frames(&a.link), 9)["error"]["code"], "FORBIDDEN");
    assert_eq!(cached(&w), 0);
}

#[test]
fn typing_is_refused_without_an_accepted_join_or_on_a_deleted_channel() {
    let mut w = World::new(2);
    w.channel("p", ChannelType::Private, "owner", &["friend"]);
    let friend = w.connect(0, "friend");
    w.emit(&friend, "join_channel", None, json!({"channelId": "p"}));
    frames(&friend.link);
    // Join and typing in one read: the join is still pending when the
    // typing is sent, and is then refused.
    let stranger = w.connect(1, "stranger");
    let data = json!({"channelId": "p"});
    emit_together(
        &w,
        &stranger,
        &[
            ("join_channel", Some(1), data.clone()),
            ("typing_start", Some(2), data.clone()),
        ],
    );
    let f = frames(&stranger.link);
    assert_eq!(ack(&f, 1)["error"]["code"], "FORBIDDEN", "{f:?}");
    assert_eq!(
        ack(&f, 2)["error"],
        json!({"code": "FORBIDDEN", "message": "join the channel first"})
    );
    assert!(events(&friend.link, "typing").is_empty());

    // A member's join and typing in one read are relayed.
    let owner = w.connect(1, "owner");
    emit_together(
        &w,
        &owner,
        &[
            ("join_channel", Some(1), data.clone()),
            ("typing_start", Some(2), data.clone()),
        ],
    );
    assert_eq!(ack(&frames(&owner.link), 2), json!({"ok": true}));
    assert_eq!(
        events(&friend.link, "typing"),
        vec![json!({"channelId": "p", "userId": "owner", "isTyping": true})]
    );

    // Deleted while subscribed: NOT_FOUND, relayed to no one, and the
    // store is not asked again for each command.
    let mut s = SqliteStore::open(w.dir.path()).unwrap();
    assert!(s.delete_channel("p", "2026-01-02T00:00:00.000Z").unwrap());
    let mut done = w.chats[0].invalidate_channel("p");
    w.pump();
    assert_eq!(done.try_recv(), Ok(Some(())), "the invalidation answered");
    w.emit(&friend, "typing_start", Some(3), data.clone());
    w.emit(
        &friend,
        "send_message",
        Some(4),
        json!({"channelId": "p", "content": "x"}),
    );
    let f = frames(&friend.link);
    assert_eq!(ack(&f, 3)["error"]["code"], "NOT_FOUND", "{f:?}");
    assert_eq!(ack(&f, 4)["error"]["code"], "NOT_FOUND", "{f:?}");
    assert!(events(&owner.link, "typing").is_empty());
    // The subscribers' leaves still count; then nothing is kept.
    assert!(is_cached(&w, "p"));
    w.emit(&friend, "leave_channel", None, data.clone());
    w.emit(&owner, "leave_channel", None, data);
    assert_eq!(
        events(&owner.link, "user_left"),
        vec![json!({"channelId": "p", "userId": "friend"})]
    );
    assert!(!is_cached(&w, "p"), "a deleted channel nobody holds");
}

#[test]
fn a_refused_joins_leave_does_not_uncount_a_subscriber() {
    let mut w = World::new(2);
    w.channel("p", ChannelType::Private, "owner", &["friend"]);
    // Both on shard 1: the owner counts subscribers per shard.
    let friend = w.connect(1, "friend");
    w.emit(&friend, "join_channel", None, json!({"channelId": "p"}));
    let stranger = w.connect(1, "stranger");
    // The stranger closes before its refusal comes back: its shard sends a
    // leave for the pending join, which the owner never counted.
    let ev = Event {
        name: "join_channel".into(),
        args: vec![json!({"channelId": "p"})],
        ack_id: None,
        attachments: vec![],
    };
    w.chats[1].event(&stranger.socket, ev);
    w.chats[1].disconnect(stranger.socket, DisconnectReason::ClientDisconnect);
    w.pump();
    frames(&friend.link);
    // Events the owner fans out (not messages, which every shard gets)
    // still reach the friend's shard.
    let owner = w.connect(0, "owner");
    w.emit(&owner, "join_channel", None, json!({"channelId": "p"}));
    assert_eq!(
        events(&friend.link, "user_joined"),
        vec![json!({"channelId": "p", "userId": "owner"})],
        "the subscriber's shard was uncounted"
    );
}

#[test]
fn idle_channels_are_evicted_and_reload_exactly() {
    let idle = Duration::from_secs(30);
    let mut w = World::with_cache(2, idle, 1000);
    w.channel("c", ChannelType::Public, "a", &[]);
    let (a, b) = (w.connect(0, "a"), w.connect(1, "b"));
    for p in [&a, &b] {
        w.emit(p, "join_channel", None, json!({"channelId": "c"}));
    }
    w.emit(
        &a,
        "send_message",
        None,
        json!({"channelId": "c", "content": "1"}),
    );
    w.emit(&a, "typing_start", None, json!({"channelId": "c"}));
    let later = Instant::now() + 2 * idle;
    // In use (subscribers, typing): kept however long it is idle.
    for c in &w.chats {
        c.channels.trim_cache(later);
    }
    assert!(is_cached(&w, "c"));
    w.emit(&a, "leave_channel", None, json!({"channelId": "c"}));
    w.emit(&b, "leave_channel", None, json!({"channelId": "c"}));
    // Not in use, but used recently: kept.
    for c in &w.chats {
        c.channels.trim_cache(Instant::now());
    }
    assert!(is_cached(&w, "c"));
    for c in &w.chats {
        c.channels.trim_cache(later);
    }
    assert_eq!(cached(&w), 0, "idle for longer than channel_cache_idle");
    // Loaded again on the next use, with the seq the store has.
    frames(&b.link);
    w.emit(&b, "join_channel", Some(5), json!({"channelId": "c"}));
    let f = frames(&b.link);
    assert_eq!(ack(&f, 5)["lastSeq"], 1, "{f:?}");
    w.emit(
        &b,
        "send_message",
        None,
        json!({"channelId": "c", "content": "2"}),
    );
    let seqs: Vec<Value> = events(&b.link, "message")
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(2)]);
}

#[test]
fn the_tick_evicts_after_channel_cache_idle() {
    let mut w = World::with_cache(1, Duration::from_millis(1), 1000);
    w.channel("c", ChannelType::Public, "a", &[]);
    let a = w.connect(0, "a");
    w.emit(&a, "join_channel", None, json!({"channelId": "c"}));
    w.chats[0].tick();
    assert!(is_cached(&w, "c"), "subscribed");
    w.emit(&a, "leave_channel", None, json!({"channelId": "c"}));
    // Well past the 1 ms idle time.
    std::thread::sleep(Duration::from_millis(20));
    w.chats[0].tick();
    assert_eq!(cached(&w), 0);
}

#[test]
fn the_cache_keeps_at_most_channel_cache_max_entries_not_in_use() {
    let max = 8;
    let mut w = World::with_cache(1, Duration::from_secs(60), max);
    for i in 0..40 {
        w.channel(&format!("c{i}"), ChannelType::Public, "a", &[]);
    }
    let (a, b) = (w.connect(0, "a"), w.connect(0, "b"));
    for i in 0..4 {
        w.emit(
            &a,
            "join_channel",
            None,
            json!({"channelId": format!("c{i}")}),
        );
    }
    for i in 10..40 {
        let data = json!({"channelId": format!("c{i}")});
        w.emit(&b, "join_channel", None, data.clone());
        w.emit(&b, "leave_channel", None, data);
        assert!(cached(&w) <= max, "{} cached", cached(&w));
    }
    // The ones in use and the most recently used are kept.
    for c in ["c0", "c1", "c2", "c3", "c39"] {
        assert!(is_cached(&w, c), "{c}");
    }
    assert!(!is_cached(&w, "c10"));
    // Channels in use are never evicted, even over the maximum.
    for i in 4..10 {
        w.emit(
            &a,
            "join_channel",
            None,
            json!({"channelId": format!("c{i}")}),
        );
    }
    w.chats[0].tick();
    for i in 0..10 {
        assert!(is_cached(&w, &format!("c{i}")), "c{i} is in use");
    }
    frames(&a.link);
    w.emit(&b, "join_channel", None, json!({"channelId": "c0"}));
    w.emit(
        &b,
        "send_message",
        None,
        json!({"channelId": "c0", "content": "hi"}),
    );
    assert_eq!(events(&a.link, "message").len(), 1);
}

#[test]
fn a_load_answer_older_than_an_invalidation_is_dropped_for_a_new_load() {
    let w = World::new(1);
    w.channel("p", ChannelType::Private, "owner", &["friend"]);
    let chat = &w.chats[0];
    // A load under way (as a join starts one) read the channel while
    // "friend" was still a member ...
    let before = {
        let mut s = SqliteStore::open(w.dir.path()).unwrap();
        crate::chat::mail::LoadedChannel {
            record: s.channel("p").unwrap().unwrap(),
            members: s.member_ids("p").unwrap(),
            last_seq: 0,
        }
    };
    let mut st = crate::chat::owner::ChannelState::new(Instant::now());
    st.cache = crate::chat::owner::Cache::Loading {
        waiting: Vec::new(),
        stale: false,
    };
    chat.channels.channels.borrow_mut().insert("p".into(), st);
    // ... then REST deleted it and invalidated the channel before the
    // load's answer came back.
    let mut s = SqliteStore::open(w.dir.path()).unwrap();
    assert!(s.delete_channel("p", "2026-01-02T00:00:00.000Z").unwrap());
    let mut done = chat.invalidate_channel("p");
    w.pump();
    assert_eq!(done.try_recv(), Ok(Some(())), "the invalidation answered");
    assert!(matches!(
        chat.channels.channels.borrow()["p"].cache,
        crate::chat::owner::Cache::Loading { stale: true, .. }
    ));
    // The old answer is not taken: the channel is loaded again, and the
    // new load finds it deleted.
    chat.channels.channel_loaded("p".into(), Ok(Some(before)));
    assert!(
        chat.channels
            .channels
            .borrow()
            .get("p")
            .is_none_or(|st| st.info().is_none())
    );
    w.pump();
    assert!(!is_cached(&w, "p"), "the second load found no channel");
}
