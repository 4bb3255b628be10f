//! The chat message as clients see it, and the frames built from it once
//! per broadcast.

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::protocol::packet;

/// A stored/broadcast message (PROTOCOL.md §3, `message`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message<'a> {
    /// Snowflake id, as a string: it exceeds 2^53.
    pub id: String,
    pub channel_id: &'a str,
    pub seq: u64,
    pub user_id: &'a str,
    pub content: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<&'a str>,
    pub created_at: String,
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-24T03:53:38.123Z`.
pub fn timestamp(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Now, as [`timestamp`] formats it. Formatting is a visible cost per
/// message at high send rates, so each thread reuses the text within the
/// same millisecond.
pub fn now() -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i128, String)> = const { std::cell::RefCell::new((i128::MIN, String::new())) };
    }
    let t = OffsetDateTime::now_utc();
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != ms {
            *last = (ms, timestamp(t));
        }
        last.1.clone()
    })
}

/// `42["<event>",<body>]` on the main namespace.
pub fn event_frame(event: &str, body_json: &str) -> String {
    packet::encode_event("/", None, event, body_json)
}

/// The reply to a command: an ack when the client asked for one, otherwise
/// an `error` event for a failure and nothing for a success.
pub fn reply_frame(ack: Option<u64>, result: Result<&str, &super::ChatError>) -> Option<String> {
    match (ack, result) {
        (Some(id), Ok(body)) => Some(packet::encode_ack("/", id, body)),
        (Some(id), Err(e)) => Some(packet::encode_ack("/", id, &e.ack_json())),
        (None, Ok(_)) => None,
        (None, Err(e)) => Some(event_frame("error", &e.body_json())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{ChatError, ErrorCode};

    #[test]
    fn timestamps_have_milliseconds_and_z() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2025-11-24T16:00:00.123Z");
    }

    #[test]
    fn message_json_shape() {
        let m = Message {
            id: "123".into(),
            channel_id: "7",
            seq: 1,
            user_id: "u",
            content: "hi",
            kind: "text",
            client_message_id: None,
            reply_to: Some("9"),
            created_at: "x".into(),
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":"123","channelId":"7","seq":1,"userId":"u","content":"hi","type":"text","replyTo":"9","createdAt":"x"}"#
        );
    }

    #[test]
    fn replies() {
        let e = ChatError::new(ErrorCode::Forbidden, "no");
        assert_eq!(
            reply_frame(Some(3), Err(&e)).unwrap(),
            r#"433[{"ok":false,"error":{"code":"FORBIDDEN","message":"no"}}]"#
        );
        assert_eq!(reply_frame(None, Ok("{}")), None);
        assert_eq!(
            reply_frame(None, Err(&e)).unwrap(),
            r#"42["error",{"code":"FORBIDDEN","message":"no"}]"#
        );
        assert_eq!(
            reply_frame(Some(1), Ok(r#"{"ok":true}"#)).unwrap(),
            r#"431[{"ok":true}]"#
        );
    }
}
