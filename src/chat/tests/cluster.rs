//! The shards' side of several instances, with a presence handle whose
//! requests the test reads (no thread, no Redis) and answers by hand as
//! the worker would: counts sent and sent again after a full queue, edges
//! announced here and published once, other instances' events delivered
//! to this instance's subscribers only.

use serde_json::json;

use super::super::cluster::{Cluster, Event, Kind, Request};
use super::super::mail::{ToChannelOwner, ToUserOwner};
use super::super::owner_of;
use super::{World, events, frames};
use crate::chat::Mail;
use crate::store::ChannelType;

/// Hands `mail` to the shard owning `key`, as the threads do.
fn from_thread(w: &World, key: &str, mail: Mail) {
    let shard = owner_of(key, w.boxes.len());
    w.boxes[shard].post(shard, mail);
    w.pump();
}

fn counts(rx: &crossbeam_channel::Receiver<Request>) -> Vec<(Kind, String, Option<String>, u32)> {
    rx.try_iter()
        .filter_map(|r| match r {
            Request::Count {
                kind,
                user,
                channel,
                count,
            } => Some((
                kind,
                user.to_string(),
                channel.map(|c| c.to_string()),
                count,
            )),
            _ => None,
        })
        .collect()
}

fn published(rx: &crossbeam_channel::Receiver<Request>) -> Vec<Event> {
    rx.try_iter()
        .filter_map(|r| match r {
            Request::Publish(e) => Some(e),
            _ => None,
        })
        .collect()
}

#[test]
fn a_count_a_full_queue_refused_is_sent_again_as_it_is_now() {
    let (cluster, rx) = Cluster::detached(1);
    let mut w = World::with_cluster(1, cluster.clone());
    let _first = w.connect(0, "alice");
    let _second = w.connect(0, "alice");
    assert_eq!(cluster.metrics.deferred.get(), 1, "the second did not fit");
    assert_eq!(counts(&rx), [(Kind::Users, "alice".into(), None, 1)]);
    w.chats[0].tick();
    assert_eq!(counts(&rx), [(Kind::Users, "alice".into(), None, 2)]);
    w.chats[0].tick();
    assert!(counts(&rx).is_empty(), "sent once");
    // An event that does not fit is dropped (at most once), and counted.
    let _third = w.connect(0, "alice");
    w.chats[0].emit_to_channel("c", "message_updated", "{}");
    assert_eq!(cluster.metrics.dropped.get(), 1);
    assert_eq!(counts(&rx), [(Kind::Users, "alice".into(), None, 3)]);
}

#[test]
fn an_edge_is_announced_here_and_published_once_and_a_remote_one_delivered() {
    let (cluster, rx) = Cluster::detached(64);
    let mut w = World::with_cluster(2, cluster);
    w.channel("c", ChannelType::Public, "obs", &[]);
    let obs = w.connect(0, "obs");
    w.emit(&obs, "join_channel", Some(1), json!({"channelId": "c"}));
    let alice = w.connect(1, "alice");
    // No presence without the cluster's answer.
    assert!(events(&obs.link, "presence_update").is_empty());
    assert_eq!(
        counts(&rx),
        [
            (Kind::Users, "obs".into(), None, 1),
            (Kind::Subs, "obs".into(), Some("c".into()), 1),
            (Kind::Users, "alice".into(), None, 1),
        ]
    );
    frames(&alice.link);
    // Alice's first connection cluster-wide; her list (in Redis) holds c,
    // joined on another instance.
    let edge = ToUserOwner::Cluster {
        user: "alice".into(),
        online: true,
        edge: Some(true),
        channels: vec!["c".into()],
    };
    from_thread(&w, "alice", edge.into());
    let seen = events(&obs.link, "presence_update");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (&seen[0]["userId"], &seen[0]["status"]),
        (&json!("alice"), &json!("online"))
    );
    assert_eq!(
        events(&alice.link, "presence_update").len(),
        1,
        "her own connection"
    );
    let out = published(&rx);
    assert_eq!(out.len(), 1, "{out:?}");
    let Event::Presence {
        user,
        online,
        channels,
        ..
    } = &out[0]
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        (user.as_str(), *online, channels.as_slice()),
        ("alice", true, &["c".to_owned()][..])
    );

    // Another instance announces bob offline for c: delivered here, not
    // published again.
    let frame = r#"42["presence_update",{"userId":"bob","status":"offline","lastSeen":"x"}]"#;
    let remote = ToUserOwner::Remote {
        user: "bob".into(),
        online: false,
        frame: frame.to_owned().into(),
        channels: vec!["c".into()],
    };
    from_thread(&w, "bob", remote.into());
    let seen = events(&obs.link, "presence_update");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["userId"], "bob");
    assert!(published(&rx).is_empty());
}

#[test]
fn user_joined_waits_for_the_cluster_and_skips_the_joining_connection() {
    let (cluster, rx) = Cluster::detached(64);
    let mut w = World::with_cluster(2, cluster);
    w.channel("c", ChannelType::Public, "obs", &[]);
    let obs = w.connect(0, "obs");
    w.emit(&obs, "join_channel", Some(1), json!({"channelId": "c"}));
    let alice = w.connect(1, "alice");
    w.emit(&alice, "join_channel", Some(1), json!({"channelId": "c"}));
    assert!(
        events(&obs.link, "user_joined").is_empty(),
        "not before the answer"
    );
    frames(&alice.link);
    let subs: Vec<_> = counts(&rx)
        .into_iter()
        .filter(|c| c.0 == Kind::Subs)
        .collect();
    assert_eq!(
        subs,
        [
            (Kind::Subs, "obs".into(), Some("c".into()), 1),
            (Kind::Subs, "alice".into(), Some("c".into()), 1),
        ]
    );
    // Her first subscription cluster-wide.
    let edge = ToChannelOwner::SubEdge {
        channel: "c".into(),
        user: "alice".into(),
        joined: true,
    };
    from_thread(&w, "c", edge.into());
    let seen = events(&obs.link, "user_joined");
    assert_eq!(seen, [json!({"channelId": "c", "userId": "alice"})]);
    assert!(
        events(&alice.link, "user_joined").is_empty(),
        "the joining connection"
    );
    let out = published(&rx);
    assert!(
        matches!(&out[..], [Event::Emit { channel, frame }] if channel == "c" && frame.contains("user_joined")),
        "{out:?}"
    );
    // Typing here reaches the other instances too.
    w.emit(&alice, "typing_start", None, json!({"channelId": "c"}));
    assert_eq!(events(&obs.link, "typing").len(), 1);
    let out = published(&rx);
    assert!(
        matches!(&out[..], [Event::Emit { channel, frame }] if channel == "c" && frame.contains("typing")),
        "{out:?}"
    );
    // Her last one leaves: a count of 0, and user_left only on the answer.
    w.emit(&alice, "leave_channel", Some(2), json!({"channelId": "c"}));
    let subs: Vec<_> = counts(&rx)
        .into_iter()
        .filter(|c| c.0 == Kind::Subs)
        .collect();
    assert_eq!(subs, [(Kind::Subs, "alice".into(), Some("c".into()), 0)]);
    assert!(events(&obs.link, "user_left").is_empty());
}
