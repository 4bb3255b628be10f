//! What a Gatrix connection is sent (docs/protocol.md, "The Gatrix
//! dialect"): the native frames, translated. Every frame chat builds is
//! native; a shard with Gatrix subscribers translates each one once for
//! all of them (a committed message once for every shard: the lazily built
//! frame shared in [`crate::chat::mail::Stored`]), so native subscribers
//! are sent exactly what they were before.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Directory, Nums};
use crate::chat::message::event_frame;

/// The one event only Gatrix connections are sent: a native subscriber of
/// the same channel never sees it.
pub(crate) const STATUS_EVENT: &str = "user_status_changed";

/// Whether a channel frame is for Gatrix connections only.
pub(crate) fn gatrix_only(frame: &str) -> bool {
    frame.strip_prefix("42[\"").is_some_and(|rest| {
        rest.starts_with(STATUS_EVENT) && rest[STATUS_EVENT.len()..].starts_with('"')
    })
}

/// Ids the frontend compares with `===` against `parseInt` values: a
/// decimal id below 2^53 is sent as a number, anything else as it is.
pub(crate) fn id_value(id: &str) -> Value {
    const MAX_SAFE: u64 = (1 << 53) - 1;
    let canonical = !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && (id == "0" || !id.starts_with('0'));
    match id.parse::<u64>() {
        Ok(n) if canonical && n <= MAX_SAFE => Value::from(n),
        _ => Value::from(id),
    }
}

/// A channel id as the dialect shows it: its number when known, else
/// [`id_value`].
pub(crate) fn channel_value(id: &str, nums: &Nums) -> Value {
    nums.num_of(id).map_or_else(|| id_value(id), Value::from)
}

fn channel_of(v: Option<&Value>, nums: &Nums) -> Value {
    match v {
        Some(Value::String(s)) => channel_value(s, nums),
        other => id_of(other),
    }
}

fn id_of(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => id_value(s),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// Milliseconds since the epoch (the original's `Date.now()` timestamps).
pub(crate) fn now_ms() -> i64 {
    let ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

/// A native message object in the shape of the frontend's `Message`
/// (its `types/chat.ts`, the original server's `MessageModel`).
pub(crate) fn message(native: &Map<String, Value>, nums: &Nums, dir: &Directory) -> Value {
    let user_id = native.get("userId").cloned().unwrap_or(Value::Null);
    let kind = native.get("type").cloned().unwrap_or_else(|| "text".into());
    let created = native.get("createdAt").cloned().unwrap_or(Value::Null);
    let edited = native.get("editedAt").cloned();
    // The author as the directory knows them (`directory.rs`).
    let (user, author) = dir.author_json(&user_id);
    let mut m = json!({
        "id": id_of(native.get("id")),
        "channelId": channel_of(native.get("channelId"), nums),
        "userId": user_id,
        "content": native.get("content").cloned().unwrap_or_else(|| "".into()),
        "type": kind,
        "contentType": kind,
        "replyToId": id_of(native.get("replyTo")),
        "replyToMessageId": id_of(native.get("replyTo")),
        "threadId": id_of(native.get("threadId")),
        "isEdited": edited.is_some(),
        "isDeleted": false,
        "isPinned": native.contains_key("pinnedAt"),
        "createdAt": created,
        "updatedAt": edited.clone().unwrap_or_else(|| created.clone()),
        "user": user,
        "reactions": [],
        "attachments": [],
        "mentions": [],
        "hashtags": [],
    });
    let extra = m.as_object_mut().expect("built as an object");
    for key in ["seq", "clientMessageId", "pinnedAt", "pinnedBy"] {
        if let Some(v) = native.get(key) {
            extra.insert(key.into(), v.clone());
        }
    }
    if let Some(e) = edited {
        extra.insert("editedAt".into(), e);
    }
    // A head's thread, as the original's listings show it on every
    // message (0 and null without replies). A reply's own `threadCount`
    // is its thread's: it goes in `thread_updated`, not here.
    let (count, last) = match native.get("threadId") {
        Some(_) => (Value::from(0), Value::Null),
        None => (
            native
                .get("threadCount")
                .cloned()
                .unwrap_or_else(|| 0.into()),
            native
                .get("lastThreadMessageAt")
                .cloned()
                .unwrap_or(Value::Null),
        ),
    };
    extra.insert("threadCount".into(), count);
    extra.insert("lastThreadMessageAt".into(), last);
    if let Some(a) = author {
        extra.insert("userName".into(), a.name.into());
        extra.insert("userAvatarUrl".into(), a.avatar.into());
    }
    m
}

/// `message` `{type, data, channelId, userId}`: how the original broadcasts
/// message changes.
fn envelope(kind: &str, data: Value, channel: Value, user: Option<Value>) -> String {
    let mut body = json!({ "type": kind, "data": data, "channelId": channel });
    if let (Some(u), Some(b)) = (user, body.as_object_mut()) {
        b.insert("userId".into(), u);
    }
    event_frame("message", &body.to_string())
}

/// A native frame as a Gatrix connection is sent it: the same text for
/// what both dialects share (acks, `error`, frames already in the
/// dialect).
pub(crate) fn translate<'a>(frame: &'a str, nums: &Nums, dir: &Directory) -> Cow<'a, str> {
    let Some(args) = frame.strip_prefix("42") else {
        return Cow::Borrowed(frame); // acks and other packets
    };
    let Ok(Value::Array(args)) = serde_json::from_str::<Value>(args) else {
        return Cow::Borrowed(frame);
    };
    let (Some(Value::String(name)), Some(Value::Object(body))) = (args.first(), args.get(1)) else {
        return Cow::Borrowed(frame);
    };
    let channel = || channel_of(body.get("channelId"), nums);
    let user = || body.get("userId").cloned().unwrap_or(Value::Null);
    let out = match name.as_str() {
        "message" if body.contains_key("threadId") => {
            // A reply in a thread: its own event, with the thread's id.
            let b = json!({"type": "thread_message_created", "data": message(body, nums, dir),
                               "threadId": id_of(body.get("threadId")), "channelId": channel(),
                               "userId": user()});
            event_frame("message", &b.to_string())
        }
        "message" => envelope(
            "message_created",
            message(body, nums, dir),
            channel(),
            Some(user()),
        ),
        "message_updated" => envelope(
            "message_updated",
            message(body, nums, dir),
            channel(),
            Some(user()),
        ),
        "message_deleted" => envelope(
            "message_deleted",
            json!({"messageId": id_of(body.get("id")), "channelId": channel()}),
            channel(),
            None,
        ),
        "typing" => {
            let typing = body
                .get("isTyping")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // Typing in a thread has events of its own.
            let thread = id_of(body.get("threadId"));
            let event = match (typing, thread.is_null()) {
                (true, true) => "user_typing",
                (false, true) => "user_stop_typing",
                (true, false) => "user_typing_thread",
                (false, false) => "user_stop_typing_thread",
            };
            let b = json!({"userId": user(), "channelId": channel(), "threadId": thread,
                           "timestamp": now_ms()});
            event_frame(event, &b.to_string())
        }
        "user_joined" | "user_left" => {
            let b = json!({"userId": user(), "channelId": channel(), "timestamp": now_ms()});
            event_frame(name, &b.to_string())
        }
        "presence_update" => {
            let b = json!({"userId": user(), "status": body.get("status").cloned().unwrap_or(Value::Null),
                           "timestamp": now_ms()});
            event_frame(STATUS_EVENT, &b.to_string())
        }
        _ => return Cow::Borrowed(frame),
    };
    Cow::Owned(out)
}

/// After a reply's `thread_message_created`: `thread_updated` with its
/// thread's count and latest reply time, as the reply's commit left them
/// (`None` for any other frame).
pub(crate) fn thread_updated(frame: &str, nums: &Nums) -> Option<String> {
    let args = frame.strip_prefix("42[\"message\",")?;
    // The body is the first element; the offset follows.
    let mut de = serde_json::Deserializer::from_str(args);
    let body = Map::<String, Value>::deserialize(&mut de).ok()?;
    let thread = body.get("threadId")?;
    let b = json!({
        "type": "thread_updated",
        "data": {
            "messageId": id_of(Some(thread)),
            "threadCount": body.get("threadCount").cloned().unwrap_or(Value::Null),
            "lastThreadMessageAt": body.get("createdAt").cloned().unwrap_or(Value::Null),
        },
        "channelId": channel_of(body.get("channelId"), nums),
    });
    Some(event_frame("message", &b.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &str) -> (String, Value) {
        let v: Value = serde_json::from_str(frame.strip_prefix("42").unwrap()).unwrap();
        (v[0].as_str().unwrap().to_owned(), v[1].clone())
    }

    #[test]
    fn ids_below_2_53_become_numbers() {
        assert_eq!(
            id_value("383483762333192192"),
            Value::from("383483762333192192")
        );
        assert_eq!(
            id_value("299067162755136"),
            Value::from(299_067_162_755_136u64)
        );
        assert_eq!(id_value("42"), Value::from(42));
        assert_eq!(id_value("042"), Value::from("042"));
        assert_eq!(
            id_value("3q2-7wX0v9LmQk8aZp1b2w"),
            Value::from("3q2-7wX0v9LmQk8aZp1b2w")
        );
        assert_eq!(id_value(""), Value::from(""));
    }

    #[test]
    fn a_message_becomes_message_created() {
        let native = r#"42["message",{"id":"299067162755136","channelId":"7","seq":2,"userId":"u1","content":"hi","type":"text","createdAt":"2026-11-24T05:06:50.058Z"},"9"]"#;
        let (name, b) = body(&translate(native, &Nums::default(), &Directory::new(0)));
        assert_eq!(name, "message");
        assert_eq!(b["type"], "message_created");
        assert_eq!(b["channelId"], 7);
        assert_eq!(b["userId"], "u1");
        let d = &b["data"];
        assert_eq!(d["id"], 299_067_162_755_136u64);
        assert_eq!(d["channelId"], 7);
        assert_eq!(d["content"], "hi");
        assert_eq!(
            d["user"],
            json!({"id": "u1"}),
            "not in the directory: the id alone"
        );
        assert!(d.get("userName").is_none());
        assert_eq!(d["isEdited"], false);
        assert_eq!(d["updatedAt"], d["createdAt"]);
    }

    #[test]
    fn a_known_author_has_name_email_and_avatar() {
        let dir = Directory::new(10);
        dir.put(&crate::store::UserRecord {
            id: "u1".into(),
            username: "ann@example.com".into(),
            name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
            avatar_url: Some("https://cdn/ann.png".into()),
            status: None,
            custom_status: None,
            created_at: String::new(),
            updated_at: String::new(),
        });
        let native = r#"42["message",{"id":"5","channelId":"7","seq":1,"userId":"u1","content":"x","type":"text","createdAt":"t"}]"#;
        let (_, b) = body(&translate(native, &Nums::default(), &dir));
        let d = &b["data"];
        assert_eq!(
            d["user"],
            json!({"id": "u1", "name": "Ann", "email": "ann@example.com", "avatar": "https://cdn/ann.png"})
        );
        assert_eq!(d["userName"], "Ann");
        assert_eq!(d["userAvatarUrl"], "https://cdn/ann.png");
    }

    #[test]
    fn deletions_typing_and_presence() {
        let (_, b) = body(&translate(
            r#"42["message_deleted",{"channelId":"7","id":"5","seq":2}]"#,
            &Nums::default(),
            &Directory::new(0),
        ));
        assert_eq!(
            (b["type"].as_str(), &b["data"]["messageId"]),
            (Some("message_deleted"), &Value::from(5))
        );
        let (name, b) = body(&translate(
            r#"42["typing",{"channelId":"7","isTyping":false,"userId":"u"}]"#,
            &Nums::default(),
            &Directory::new(0),
        ));
        assert_eq!(
            (name.as_str(), &b["channelId"], &b["userId"]),
            ("user_stop_typing", &Value::from(7), &Value::from("u"))
        );
        assert!(b["timestamp"].as_i64().unwrap() > 0);
        let (name, b) = body(&translate(
            r#"42["presence_update",{"lastSeen":"x","status":"online","userId":"u"}]"#,
            &Nums::default(),
            &Directory::new(0),
        ));
        assert_eq!(
            (name.as_str(), b["status"].as_str()),
            (STATUS_EVENT, Some("online"))
        );
        let ack = r#"431[{"ok":true}]"#;
        assert_eq!(translate(ack, &Nums::default(), &Directory::new(0)), ack);
        let err = r#"42["error",{"code":"FORBIDDEN","message":"no"}]"#;
        assert_eq!(translate(err, &Nums::default(), &Directory::new(0)), err);
    }

    #[test]
    fn a_numbered_channel_is_shown_by_its_number() {
        let mut nums = Nums::default();
        nums.insert(&"3q2-7wX0v9LmQk8aZp1b2w".into(), 12);
        let native = r#"42["message",{"id":"5","channelId":"3q2-7wX0v9LmQk8aZp1b2w","seq":1,"userId":"u","content":"x","type":"text","createdAt":"t"},"1"]"#;
        let (_, b) = body(&translate(native, &nums, &Directory::new(0)));
        assert_eq!(
            (&b["channelId"], &b["data"]["channelId"]),
            (&Value::from(12), &Value::from(12))
        );
        let typing =
            r#"42["typing",{"channelId":"3q2-7wX0v9LmQk8aZp1b2w","isTyping":true,"userId":"u"}]"#;
        let (_, b) = body(&translate(typing, &nums, &Directory::new(0)));
        assert_eq!(b["channelId"], 12);
        let thread = r#"42["typing",{"channelId":"3q2-7wX0v9LmQk8aZp1b2w","isTyping":true,"userId":"u","threadId":"299067162755136"}]"#;
        let (name, b) = body(&translate(thread, &nums, &Directory::new(0)));
        assert_eq!(name, "user_typing_thread");
        assert_eq!(
            (&b["channelId"], &b["threadId"]),
            (&Value::from(12), &Value::from(299_067_162_755_136u64))
        );
        let (name, _) = body(&translate(
            &thread.replace("true", "false"),
            &nums,
            &Directory::new(0),
        ));
        assert_eq!(name, "user_stop_typing_thread");
        let unknown = r#"42["typing",{"channelId":"other","isTyping":true,"userId":"u"}]"#;
        let (_, b) = body(&translate(unknown, &nums, &Directory::new(0)));
        assert_eq!(b["channelId"], "other");
    }

    #[test]
    fn a_reply_becomes_thread_message_created_then_thread_updated() {
        let mut nums = Nums::default();
        nums.insert(&"c".into(), 3);
        let dir = Directory::new(0);
        let reply = r#"42["message",{"id":"299067162755168","channelId":"c","seq":5,"userId":"u","content":"re","type":"text","createdAt":"2026-12-05T10:00:00.000Z","threadId":"299067162755136","threadCount":2},"17"]"#;
        let (name, b) = body(&translate(reply, &nums, &dir));
        assert_eq!(
            (name.as_str(), b["type"].as_str()),
            ("message", Some("thread_message_created"))
        );
        assert_eq!(b["threadId"], 299_067_162_755_136u64);
        assert_eq!(
            (&b["channelId"], &b["userId"]),
            (&Value::from(3), &Value::from("u"))
        );
        let d = &b["data"];
        assert_eq!(
            (&d["threadId"], &d["seq"]),
            (&Value::from(299_067_162_755_136u64), &Value::from(5))
        );
        assert_eq!(
            (&d["threadCount"], &d["lastThreadMessageAt"]),
            (&Value::from(0), &Value::Null)
        );
        let (name, b) = body(&thread_updated(reply, &nums).unwrap());
        assert_eq!(name, "message");
        assert_eq!(
            b,
            json!({"type": "thread_updated", "channelId": 3, "data": {
                "messageId": 299_067_162_755_136u64, "threadCount": 2,
                "lastThreadMessageAt": "2026-12-05T10:00:00.000Z"}})
        );
        // A head: its thread on the message, no thread_updated.
        let head = r#"42["message_updated",{"id":"299067162755136","channelId":"c","seq":4,"userId":"u","content":"q","type":"text","createdAt":"t","editedAt":"t2","threadCount":2,"lastThreadMessageAt":"2026-12-05T10:00:00.000Z"}]"#;
        let (_, b) = body(&translate(head, &nums, &dir));
        let d = &b["data"];
        assert_eq!(
            (&d["threadId"], &d["threadCount"]),
            (&Value::Null, &Value::from(2))
        );
        assert_eq!(d["lastThreadMessageAt"], "2026-12-05T10:00:00.000Z");
        assert_eq!(thread_updated(head, &nums), None);
        let plain = r#"42["message",{"id":"5","channelId":"c","seq":1,"userId":"u","content":"x","type":"text","createdAt":"t"},"1"]"#;
        assert_eq!(thread_updated(plain, &nums), None);
        let (_, b) = body(&translate(plain, &nums, &dir));
        assert_eq!(
            (&b["type"], &b["data"]["threadCount"]),
            (&Value::from("message_created"), &Value::from(0))
        );
    }

    #[test]
    fn status_frames_are_gatrix_only() {
        assert!(gatrix_only(r#"42["user_status_changed",{}]"#));
        assert!(!gatrix_only(r#"42["user_status_changed_x",{}]"#));
        assert!(!gatrix_only(r#"42["presence_update",{}]"#));
    }
}
