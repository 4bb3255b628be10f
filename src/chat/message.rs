//! The frames chat builds (a stored message's `message` event, other
//! events, acks and errors) and the helpers that send a command's answer
//! to where it came from.

use time::OffsetDateTime;
use time::macros::format_description;

use super::mail::{ReplyTo, Requester, ToConnShard, shard_of_conn};
use super::{ChatError, Hub};
use crate::protocol::packet;
use crate::store::MessageRecord;

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-24T03:53:38.123Z`.
pub(crate) fn timestamp(t: OffsetDateTime) -> String {
    let fmt =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Now, as [`timestamp`] formats it. Formatting is a visible cost per
/// message at high send rates, so each thread reuses the text within the
/// same millisecond.
pub(crate) fn now() -> String {
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

/// The `message` event of a stored message, with `offset` (the recovery
/// replay's frames: the replay's cursor).
pub(crate) fn message_frame(m: &MessageRecord, offset: &[u64]) -> String {
    message_frame_of(&super::json::message(m), offset)
}

/// The `message` event of a stored message whose JSON is already encoded
/// (the broadcast, built once by the writer's fan-out): the message, then
/// the recovery offset (`recovery::offset`: with one sequencing partition
/// the message's commit position).
pub(super) fn message_frame_of(json: &str, offset: &[u64]) -> String {
    let mut f = String::with_capacity(json.len() + 20 + offset.len() * 8);
    f.push_str(r#"42["message","#);
    f.push_str(json);
    f.push_str(r#",""#);
    super::recovery::offset::write_to(&mut f, offset);
    f.push_str(r#""]"#);
    f
}

/// `frame` (a `message` event as [`message_frame_of`] makes it) with its
/// offset replaced by `offset`: the bus's applier renders each message's
/// offset at apply time with several sequencing partitions. None if the
/// frame does not end with a string of digits and dots.
pub(crate) fn with_offset(frame: &str, offset: &[u64]) -> Option<String> {
    let body = frame.strip_suffix(r#""]"#)?;
    let quote = body.rfind('"')?;
    let old = &body[quote + 1..];
    if !old.bytes().all(|b| b.is_ascii_digit() || b == b'.') || !body[..quote].ends_with(',') {
        return None;
    }
    let mut f = String::with_capacity(quote + 3 + offset.len() * 8);
    f.push_str(&body[..=quote]);
    super::recovery::offset::write_to(&mut f, offset);
    f.push_str(r#""]"#);
    Some(f)
}

/// `42["<event>",<body>]` on the main namespace.
pub(crate) fn event_frame(event: &str, body_json: &str) -> String {
    packet::encode_event("/", None, event, body_json)
}

/// The reply to a command: an ack when the client asked for one, otherwise
/// an `error` event for a failure and nothing for a success.
pub(crate) fn reply_frame(ack: Option<u64>, result: Result<&str, &ChatError>) -> Option<String> {
    match (ack, result) {
        (Some(id), Ok(body)) => Some(packet::encode_ack("/", id, body)),
        (Some(id), Err(e)) => Some(packet::encode_ack("/", id, &e.ack_json())),
        (None, Ok(_)) => None,
        (None, Err(e)) => Some(event_frame("error", &e.body_json())),
    }
}

impl Hub {
    /// Sends a command's reply to its connection, on the connection's
    /// shard.
    pub(super) fn send_reply(&self, reply: ReplyTo, result: Result<&str, &ChatError>) {
        if let Some(frame) = reply_frame(reply.ack, result) {
            let mail = ToConnShard::Frame {
                conn: reply.conn,
                frame: frame.into(),
            };
            self.post(shard_of_conn(reply.conn), mail);
        }
    }

    /// Answers a send where it came from: its connection, or the REST
    /// request waiting for it.
    pub(super) fn answer_requester(
        &self,
        requester: Requester,
        result: Result<MessageRecord, ChatError>,
    ) {
        match requester {
            Requester::Rest(tx) => {
                let _ = tx.send(result);
            }
            Requester::Conn(r) => match result {
                Ok(m) => self.send_reply(
                    r,
                    Ok(&format!(
                        r#"{{"ok":true,"message":{}}}"#,
                        super::json::message(&m)
                    )),
                ),
                Err(e) => self.send_reply(r, Err(&e)),
            },
        }
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

    #[test]
    fn an_offset_is_spliced_into_a_message_frame() {
        let json = r#"{"content":"a \",\"9\"]","seq":1}"#;
        let f = message_frame_of(json, &[7]);
        assert_eq!(f, format!(r#"42["message",{json},"7"]"#));
        let g = with_offset(&f, &[120, 98, 140, 77]).unwrap();
        assert_eq!(g, format!(r#"42["message",{json},"120.98.140.77"]"#));
        assert_eq!(
            with_offset(&g, &[1]).unwrap(),
            f.replace("\"7\"]", "\"1\"]")
        );
        assert_eq!(with_offset(r#"42["typing",{}]"#, &[1]), None);
        assert_eq!(with_offset(r#"42["message",{},"x"]"#, &[1]), None);
        assert_eq!(with_offset("", &[1]), None);
    }
}
