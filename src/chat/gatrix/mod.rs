//! The Gatrix dialect on the connection side (docs/protocol.md, "The
//! Gatrix dialect"): a connection whose CONNECT carried the Gatrix
//! backend's token speaks the original server's events, so the unchanged
//! Gatrix web frontend works, while native connections on the same server
//! keep the native protocol. Its events in are mapped onto the native
//! commands here; what it is sent is the native frames translated
//! (`frames.rs`), once per shard (a committed message once in all).

pub(crate) mod frames;

use std::rc::Rc;

use serde_json::{Map, Value, json};

use super::commands::{self, Command};
use super::conn::{ChatConn, ConnSide, JoinState, answer};
use super::mail::ToChannelOwner;
use super::message::event_frame;
use super::{ChatError, ErrorCode};
use crate::protocol::Event;

/// Longest `customStatus` accepted, in bytes.
const MAX_CUSTOM_STATUS: usize = 256;

/// `connected {serverId, socketId, timestamp}`, right after the CONNECT
/// reply, as the original sends it.
pub(super) fn connected_frame(server_id: &str, sid: &str) -> String {
    let body = json!({"serverId": server_id, "socketId": sid, "timestamp": frames::now_ms()});
    event_frame("connected", &body.to_string())
}

/// `channel_joined` / `channel_left` `{channelId}` to the connection.
pub(super) fn channel_frame(event: &str, channel: &str) -> String {
    let body = json!({"channelId": frames::id_value(channel)});
    event_frame(event, &body.to_string())
}

impl ConnSide {
    /// An event from a Gatrix connection (its rate already counted).
    pub(super) fn gatrix_event(&self, conn: &Rc<ChatConn>, ev: Event) {
        let result = self.gatrix_command(conn, &ev);
        if let Err(e) = result {
            answer(conn, ev.ack_id, Err(&e));
        }
    }

    fn gatrix_command(&self, conn: &Rc<ChatConn>, ev: &Event) -> Result<(), ChatError> {
        let max = self.hub.limits.max_message_length;
        let ok = |conn: &ChatConn| answer(conn, ev.ack_id, Ok(r#"{"ok":true}"#));
        match ev.name.as_str() {
            "join_channel" | "send_message" => {
                let args = with_native_type(&ev.args);
                let cmd = commands::parse(&ev.name, &args, max)?;
                self.command(conn, cmd, ev.ack_id)
            }
            "leave_channel" => {
                let cmd = commands::parse(&ev.name, &ev.args, max)?;
                if let Command::Leave { channel } = &cmd {
                    // The leave takes effect here and now (deliveries stop
                    // before the owner hears of it), so it is said now.
                    let frame = channel_frame("channel_left", channel);
                    let _ = conn.link.push_text(frame);
                }
                self.command(conn, cmd, ev.ack_id)
            }
            "start_typing" | "stop_typing" => {
                // No threads exist here: typing in a thread is accepted and
                // not relayed (the channel's typing would be wrong).
                let thread = object(&ev.args).and_then(|p| p.get("threadId"));
                if thread.is_some_and(|t| !t.is_null()) {
                    ok(conn);
                    return Ok(());
                }
                let native = if ev.name == "start_typing" {
                    "typing_start"
                } else {
                    "typing_stop"
                };
                let cmd = commands::parse(native, &ev.args, max)?;
                self.command(conn, cmd, ev.ack_id)
            }
            "update_status" => {
                self.update_status(conn, object(&ev.args))?;
                ok(conn);
                Ok(())
            }
            // The original keeps these for its own bookkeeping; the frontend
            // needs nothing back (read state is the REST task's).
            "activity" | "mark_read" => {
                ok(conn);
                Ok(())
            }
            other => Err(ChatError::new(
                ErrorCode::NotFound,
                format!("unknown event {other:?}"),
            )),
        }
    }

    /// `update_status {status, customStatus}`: `user_status_changed` to the
    /// Gatrix subscribers of each channel the connection is in, on every
    /// instance (the sender's own connection included).
    fn update_status(
        &self,
        conn: &ChatConn,
        p: Option<&Map<String, Value>>,
    ) -> Result<(), ChatError> {
        let p = p.ok_or_else(|| ChatError::invalid("update_status takes one object argument"))?;
        let status = match p.get("status") {
            Some(Value::String(s))
                if matches!(s.as_str(), "online" | "away" | "busy" | "offline") =>
            {
                s
            }
            _ => {
                return Err(ChatError::invalid(
                    "status must be online, away, busy or offline",
                ));
            }
        };
        let custom = match p.get("customStatus") {
            None | Some(Value::Null) => Value::Null,
            Some(Value::String(s)) if s.len() <= MAX_CUSTOM_STATUS => Value::from(s.as_str()),
            Some(_) => {
                return Err(ChatError::invalid(format!(
                    "customStatus must be a string of at most {MAX_CUSTOM_STATUS} bytes"
                )));
            }
        };
        let body = json!({"userId": &*conn.user, "status": status, "customStatus": custom,
                          "timestamp": frames::now_ms()});
        let frame = event_frame(frames::STATUS_EVENT, &body.to_string());
        let channels: Vec<_> = conn
            .channels
            .borrow()
            .iter()
            .filter(|(_, s)| **s == JoinState::Delivering)
            .map(|(c, _)| c.clone())
            .collect();
        for channel in channels {
            self.hub.publish(|| super::cluster::Event::Emit {
                channel: channel.to_string(),
                frame: frame.clone(),
            });
            let shard = self.hub.owner_shard(&channel);
            let frame = frame.clone().into();
            self.hub
                .post(shard, ToChannelOwner::ChannelEmit { channel, frame });
        }
        Ok(())
    }
}

fn object(args: &[Value]) -> Option<&Map<String, Value>> {
    args.first().and_then(Value::as_object)
}

/// The frontend names a message's type `contentType`; the native command
/// reads `type`.
fn with_native_type(args: &[Value]) -> Vec<Value> {
    let mut args = args.to_vec();
    if let Some(Value::Object(p)) = args.first_mut()
        && !p.contains_key("type")
        && let Some(kind) = p.remove("contentType")
    {
        p.insert("type".into(), kind);
    }
    args
}
