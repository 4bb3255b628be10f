//! Connection state recovery against the chat state, without sockets.

use serde_json::{Value, json};

use super::{World, events, frames};
use crate::protocol::{Event, Handler};
use crate::store::ChannelType;

#[test]
fn a_recovered_session_gets_every_missed_message_once_in_order() {
    let mut w = World::new(2);
    w.channel("c", ChannelType::Public, "b", &[]);
    w.channel("d", ChannelType::Public, "b", &[]);
    let a = w.connect(0, "a");
    let b = w.connect(1, "b");
    for ch in ["c", "d"] {
        w.emit(&a, "join_channel", None, json!({"channelId": ch}));
        w.emit(&b, "join_channel", None, json!({"channelId": ch}));
    }
    let send = |w: &World, ch: &str, text: &str| {
        w.emit(
            &b,
            "send_message",
            None,
            json!({"channelId": ch, "content": text}),
        );
    };
    send(&w, "c", "seen");
    let f = frames(&a.link);
    let last = f
        .iter()
        .rfind(|f| f.starts_with(r#"42["message""#))
        .unwrap();
    let offset = serde_json::from_str::<Value>(&last[2..]).unwrap()[2]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = w.chats[0].pid(&a.socket).unwrap();
    w.chats[0].disconnect(
        a.socket,
        crate::protocol::DisconnectReason::Closed(crate::protocol::CloseReason::TransportError),
    );
    w.pump();
    send(&w, "c", "missed-1");
    send(&w, "d", "missed-2");
    // Another user presenting the pid gets a fresh session and does not
    // destroy alice's.
    let e = w.connect_with(0, "eve", json!({"pid": pid, "offset": offset}));
    assert_ne!(w.chats[0].pid(&e.socket), Some(pid.clone()));
    let a2 = w.connect_with(1, "a", json!({"pid": pid, "offset": offset}));
    assert_eq!(
        w.chats[1].pid(&a2.socket),
        Some(pid.clone()),
        "same pid: recovered"
    );
    send(&w, "d", "live");
    let got: Vec<String> = events(&a2.link, "message")
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, ["missed-1", "missed-2", "live"]);
}

/// Alice in `c` drops; bob sends `n` messages; alice comes back with
/// offset "0". Returns her new peer and the pid she claimed.
fn gap_of(n: usize) -> (World, super::Peer, String) {
    let mut w = World::new(1);
    w.channel("c", ChannelType::Public, "b", &[]);
    let (a, b) = (w.connect(0, "a"), w.connect(0, "b"));
    w.emit(&a, "join_channel", None, json!({"channelId": "c"}));
    w.emit(&b, "join_channel", None, json!({"channelId": "c"}));
    let pid = w.chats[0].pid(&a.socket).unwrap();
    let dropped =
        crate::protocol::DisconnectReason::Closed(crate::protocol::CloseReason::TransportError);
    w.chats[0].disconnect(a.socket, dropped);
    for i in 0..n {
        let ev = Event {
            name: "send_message".into(),
            args: vec![json!({"channelId": "c", "content": format!("m{i}")})],
            ack_id: None,
            attachments: vec![],
        };
        w.chats[0].event(&b.socket, ev);
    }
    w.pump();
    let a2 = w.connect_with(0, "a", json!({"pid": pid, "offset": "0"}));
    (w, a2, pid)
}

/// The pid of the CONNECT reply queued on the link.
fn reply_pid(frames: &[String]) -> String {
    let reply = frames.iter().find(|f| f.starts_with("40")).unwrap();
    serde_json::from_str::<Value>(&reply[2..]).unwrap()["pid"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_gap_at_the_cap_is_replayed_whole_over_several_pages() {
    // 90 (the test cap) is more than one page of 64.
    let (w, a2, pid) = gap_of(90);
    let f = frames(&a2.link);
    assert_eq!(reply_pid(&f), pid, "recovered");
    assert_eq!(w.chats[0].pid(&a2.socket), Some(pid));
    let got: Vec<String> = f
        .iter()
        .filter(|f| f.starts_with(r#"42["message""#))
        .map(|f| {
            serde_json::from_str::<Value>(&f[2..]).unwrap()[1]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let want: Vec<String> = (0..90).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want, "every missed message once, in order");
    assert!(f[0].starts_with("40"), "the CONNECT reply first");
}

#[test]
fn a_gap_over_the_cap_is_refused_up_front_with_a_fresh_session() {
    let (mut w, a2, pid) = gap_of(91);
    let f = frames(&a2.link);
    let new = reply_pid(&f);
    assert_ne!(new, pid, "not recovered: the reply names a new pid");
    assert_eq!(w.chats[0].pid(&a2.socket), Some(new.clone()));
    assert!(
        !f.iter().any(|f| f.starts_with(r#"42["message""#)),
        "nothing replayed: {f:?}"
    );
    assert_eq!(a2.link.closing(), None, "the fresh session stays connected");
    // The new session is the one kept now; the old pid is gone.
    let dropped =
        crate::protocol::DisconnectReason::Closed(crate::protocol::CloseReason::TransportError);
    w.chats[0].disconnect(a2.socket, dropped);
    let a3 = w.connect_with(0, "a", json!({"pid": pid, "offset": "0"}));
    assert_ne!(w.chats[0].pid(&a3.socket), Some(pid));
    let a4 = w.connect_with(0, "a", json!({"pid": new, "offset": "0"}));
    assert_eq!(
        w.chats[0].pid(&a4.socket),
        Some(new),
        "the fresh one recovers"
    );
}
