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

#[test]
fn a_recovery_that_cannot_fit_is_not_offered_again() {
    let mut w = World::new(1);
    w.channel("c", ChannelType::Public, "b", &[]);
    let (a, b) = (w.connect(0, "a"), w.connect(0, "b"));
    w.emit(&a, "join_channel", None, json!({"channelId": "c"}));
    w.emit(&b, "join_channel", None, json!({"channelId": "c"}));
    let pid = w.chats[0].pid(&a.socket).unwrap();
    let dropped =
        crate::protocol::DisconnectReason::Closed(crate::protocol::CloseReason::TransportError);
    w.chats[0].disconnect(a.socket, dropped);
    // More than the 100 frames a test link holds.
    for i in 0..120 {
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
    assert_eq!(w.chats[0].pid(&a2.socket), Some(pid.clone()));
    assert_eq!(
        a2.link.closing(),
        Some(crate::protocol::CloseReason::SlowConsumer)
    );
    w.chats[0].disconnect(a2.socket, dropped);
    let a3 = w.connect_with(0, "a", json!({"pid": pid, "offset": "0"}));
    assert_ne!(
        w.chats[0].pid(&a3.socket),
        Some(pid),
        "fresh session, catch up by history"
    );
}
