//! Client commands: their payloads, parsed and validated on the
//! connection's shard before anything is sent to an owner.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{ChatError, ErrorCode};

/// Longest channel id, client message id or reply id accepted.
pub(crate) const MAX_ID_LEN: usize = 128;
/// Longest message `type`.
pub(crate) const MAX_TYPE_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Join {
        channel: Arc<str>,
    },
    Leave {
        channel: Arc<str>,
    },
    Send(SendMessage),
    /// `thread`: typing in the thread of that message (its id).
    Typing {
        channel: Arc<str>,
        typing: bool,
        thread: Option<u64>,
    },
}

/// A message to send, validated: the one payload of a socket's
/// `send_message`, a REST send ([`super::Chat::publish`]) and the mail to
/// the channel owner ([`super::mail::Publish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SendMessage {
    pub channel: Arc<str>,
    pub content: String,
    pub kind: String,
    pub client_message_id: Option<String>,
    pub reply_to: Option<String>,
    /// A reply in the thread of this message (its id): checked by the
    /// commit (same channel, not itself a thread message).
    pub thread_id: Option<u64>,
}

/// Parses an event into a command. `max_content` is the largest content in
/// bytes (PAYLOAD_TOO_LARGE above it).
pub(crate) fn parse(name: &str, args: &[Value], max_content: usize) -> Result<Command, ChatError> {
    let known = matches!(
        name,
        "join_channel" | "leave_channel" | "send_message" | "typing_start" | "typing_stop"
    );
    if !known {
        return Err(ChatError::new(
            ErrorCode::NotFound,
            format!("unknown event {name:?}"),
        ));
    }
    let Some(Value::Object(p)) = args.first() else {
        return Err(ChatError::invalid(format!(
            "{name} takes one object argument"
        )));
    };
    let channel = channel_id(p)?;
    Ok(match name {
        "join_channel" => Command::Join { channel },
        "leave_channel" => Command::Leave { channel },
        "typing_start" => Command::Typing {
            channel,
            typing: true,
            thread: thread_id(p)?,
        },
        "typing_stop" => Command::Typing {
            channel,
            typing: false,
            thread: thread_id(p)?,
        },
        _ => {
            let content = match p.get("content") {
                Some(Value::String(s)) if !s.trim().is_empty() => s,
                Some(Value::String(_)) | None => {
                    return Err(ChatError::invalid("content is required"));
                }
                Some(_) => return Err(ChatError::invalid("content must be a string")),
            };
            if content.len() > max_content {
                return Err(ChatError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "content is {} bytes; the limit is {max_content}",
                        content.len()
                    ),
                ));
            }
            let kind = match p.get("type") {
                None | Some(Value::Null) => "text".to_owned(),
                Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_TYPE_LEN => s.clone(),
                Some(_) => {
                    return Err(ChatError::invalid(format!(
                        "type must be a string of 1-{MAX_TYPE_LEN} bytes"
                    )));
                }
            };
            Command::Send(SendMessage {
                channel,
                content: content.clone(),
                kind,
                client_message_id: id_field(p, "clientMessageId")?,
                reply_to: id_field(p, "replyTo")?,
                thread_id: thread_id(p)?,
            })
        }
    })
}

/// The `channelId`, as [`id_field`] takes it, straight into the shared
/// form the shard keeps: one allocation, as for any id.
fn channel_id(p: &Map<String, Value>) -> Result<Arc<str>, ChatError> {
    match p.get("channelId") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(s.as_str().into()),
        // Rare: an integer id, taken as its decimal string.
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string().into()),
        // Missing or invalid: answered as for any id field.
        _ => Err(id_field(p, "channelId")
            .err()
            .unwrap_or_else(|| ChatError::invalid("channelId is required"))),
    }
}

/// An id field: a non-empty string of at most [`MAX_ID_LEN`] bytes, or an
/// integer (taken as its decimal string, for clients that send numbers).
fn id_field(p: &Map<String, Value>, key: &str) -> Result<Option<String>, ChatError> {
    match p.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(_) => Err(ChatError::invalid(format!(
            "{key} must be a string of 1-{MAX_ID_LEN} bytes"
        ))),
    }
}

/// Largest message id (`crate::ids`: below 2^53, a JSON number).
pub(crate) const MAX_MESSAGE_ID: u64 = (1 << 53) - 1;

/// `threadId`: a message id, as a decimal string (the native form) or a
/// JSON integer (the Gatrix dialect's), 1 to 2^53 - 1; absent or null is
/// none.
fn thread_id(p: &Map<String, Value>) -> Result<Option<u64>, ChatError> {
    let id = match p.get("threadId") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s))
            if (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse::<u64>().ok()
        }
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
    };
    match id {
        Some(id @ 1..=MAX_MESSAGE_ID) => Ok(Some(id)),
        _ => Err(ChatError::invalid(
            "threadId must be a message id (a decimal string or an integer, 1 to 2^53 - 1)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(name: &str, v: Value) -> Result<Command, ChatError> {
        parse(name, &[v], 10)
    }

    #[test]
    fn join_leave_typing() {
        assert_eq!(
            p("join_channel", json!({"channelId": "7"})),
            Ok(Command::Join {
                channel: "7".into()
            })
        );
        assert_eq!(
            p("leave_channel", json!({"channelId": 7})),
            Ok(Command::Leave {
                channel: "7".into()
            })
        );
        assert_eq!(
            p("typing_stop", json!({"channelId": "a"})),
            Ok(Command::Typing {
                channel: "a".into(),
                typing: false,
                thread: None
            })
        );
    }

    #[test]
    fn thread_ids_as_strings_or_integers_below_2_53() {
        let thread = |v: Value| match p("typing_start", json!({"channelId": "a", "threadId": v})) {
            Ok(Command::Typing { thread, .. }) => Ok(thread),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.code),
        };
        assert_eq!(thread(json!(12)), Ok(Some(12)));
        assert_eq!(
            thread(json!("299067162755136")),
            Ok(Some(299_067_162_755_136))
        );
        assert_eq!(thread(json!(null)), Ok(None));
        assert_eq!(thread(json!(MAX_MESSAGE_ID)), Ok(Some(MAX_MESSAGE_ID)));
        for bad in [
            json!(0),
            json!("0"),
            json!(-1),
            json!(1.5),
            json!(""),
            json!("12a"),
            json!(MAX_MESSAGE_ID + 1),
            json!((MAX_MESSAGE_ID + 1).to_string()),
            json!("00000000000000001"),
            json!({}),
        ] {
            assert_eq!(thread(bad.clone()), Err(ErrorCode::InvalidPayload), "{bad}");
        }
        let Ok(Command::Send(m)) = p(
            "send_message",
            json!({"channelId": "7", "content": "hi", "threadId": "5"}),
        ) else {
            panic!()
        };
        assert_eq!(m.thread_id, Some(5));
    }

    #[test]
    fn channel_ids_as_strings_or_integers_with_the_id_field_errors() {
        let channel = |v: Value| match p("join_channel", json!({"channelId": v})) {
            Ok(Command::Join { channel }) => Ok(channel.to_string()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.message),
        };
        assert_eq!(channel(json!(-12)), Ok("-12".to_owned()));
        assert_eq!(channel(json!(u64::MAX)), Ok(u64::MAX.to_string()));
        assert_eq!(channel(json!(i64::MIN)), Ok(i64::MIN.to_string()));
        assert_eq!(
            channel(json!(null)),
            Err("channelId is required".to_owned())
        );
        assert_eq!(
            channel(json!(1.5)),
            Err("channelId must be a string of 1-128 bytes".to_owned())
        );
    }

    #[test]
    fn send_defaults_and_fields() {
        let Ok(Command::Send(m)) = p(
            "send_message",
            json!({"channelId": "7", "content": "hi", "clientMessageId": "c1"}),
        ) else {
            panic!()
        };
        assert_eq!(
            (m.kind.as_str(), m.client_message_id.as_deref(), m.reply_to),
            ("text", Some("c1"), None)
        );
    }

    #[test]
    fn refusals_have_codes() {
        let code = |r: Result<Command, ChatError>| r.unwrap_err().code;
        assert_eq!(
            code(p(
                "send_message",
                json!({"channelId": "7", "content": "01234567890"})
            )),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            code(p(
                "send_message",
                json!({"channelId": "7", "content": "  "})
            )),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(p("send_message", json!({"channelId": "7", "content": 5}))),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(p(
                "send_message",
                json!({"channelId": "7", "content": "x", "type": 1})
            )),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(p("join_channel", json!({}))),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(p("join_channel", json!({"channelId": ""}))),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(p("join_channel", json!({"channelId": "x".repeat(129)}))),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(p("join_channel", json!({"channelId": 1.5}))),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(parse("join_channel", &[], 10)),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(parse("join_channel", &[json!("7")], 10)),
            ErrorCode::InvalidPayload
        );
        assert_eq!(code(p("dance", json!({}))), ErrorCode::NotFound);
    }
}
