//! The Gatrix dialect beside the native one, on two shards: each message
//! encoded once per dialect, whatever the number of shards and connections.

use std::task::{Context, Poll};

use serde_json::{Value, json};

use super::*;
use crate::protocol::Frame;

/// A backend access token, as the Gatrix backend signs it.
fn backend_token(user: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"userId": user, "iss": "gatrix", "aud": "gatrix-users",
                        "iat": now, "exp": now + 60});
    let key = jsonwebtoken::EncodingKey::from_secret(GATRIX_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// The `message` frames queued on a link, as queued (shared bytes).
fn message_frames(link: &Link) -> Vec<crate::protocol::Text> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut out = Vec::new();
    while let Poll::Ready(f) = link.pop(&mut cx) {
        if let Frame::Text(t) = f
            && t.as_str().starts_with(r#"42["message""#)
        {
            out.push(t);
        }
    }
    out
}

fn body(frame: &str) -> Value {
    serde_json::from_str::<Value>(frame.strip_prefix("42").unwrap()).unwrap()[1].clone()
}

#[test]
fn each_dialect_is_encoded_once_for_every_shard() {
    let mut w = World::new(2);
    w.channel("c", ChannelType::Public, "n", &[]);
    let gx: Vec<Peer> = (0..2)
        .map(|shard| {
            let token = backend_token(&format!("g{shard}"));
            w.connect_with(shard, "", json!({ "token": token }))
        })
        .collect();
    let native = w.connect(1, "n");
    for p in gx.iter().chain([&native]) {
        w.emit(p, "join_channel", None, json!({"channelId": "c"}));
    }
    let joined = events(&gx[0].link, "channel_joined");
    let num = joined[0]["channelId"].as_u64().expect("a number");
    frames(&gx[1].link);
    frames(&native.link);
    w.emit(
        &native,
        "send_message",
        None,
        json!({"channelId": "c", "content": "hi"}),
    );

    let (g0, g1) = (message_frames(&gx[0].link), message_frames(&gx[1].link));
    assert_eq!((g0.len(), g1.len()), (1, 1));
    // One frame for both shards: the very same bytes.
    assert_eq!(g0[0].as_str().as_ptr(), g1[0].as_str().as_ptr());
    let m = body(g0[0].as_str());
    assert_eq!(
        (m["type"].as_str(), m["channelId"].as_u64()),
        (Some("message_created"), Some(num))
    );
    assert_eq!(m["data"]["content"], "hi");
    let n = message_frames(&native.link);
    assert_eq!(n.len(), 1);
    let nm = body(n[0].as_str());
    assert_eq!(nm["channelId"], "c", "the native frame is the native one");
    assert_eq!(
        m["data"]["id"].as_u64().map(|i| i.to_string()).as_deref(),
        nm["id"].as_str()
    );
}
