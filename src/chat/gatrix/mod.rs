//! The Gatrix dialect on the connection side (docs/protocol.md, "The
//! Gatrix dialect"): a connection whose CONNECT carried the Gatrix
//! backend's token speaks the original server's events, so the unchanged
//! Gatrix web frontend works, while native connections on the same server
//! keep the native protocol. Its events in are mapped onto the native
//! commands here; what it is sent is the native frames translated
//! (`frames.rs`), once per shard (a committed message once in all).

mod directory;
pub(crate) mod frames;
pub(crate) mod known;
mod nums;

pub(crate) use directory::Directory;
pub(crate) use nums::Nums;

use std::rc::Rc;

use serde_json::{Map, Value, json};

use super::commands::{self, Command};
use super::conn::{ChatConn, ConnSide, JoinState, answer};
use super::mail::{ReplyTo, ToChannelOwner, ToConnShard};
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
pub(super) fn channel_frame(event: &str, channel: &str, nums: &Nums) -> String {
    let body = json!({"channelId": frames::channel_value(channel, nums)});
    event_frame(event, &body.to_string())
}

impl ConnSide {
    /// An event from a Gatrix connection (its rate already counted).
    pub(super) fn gatrix_event(&self, conn: &Rc<ChatConn>, mut ev: Event) {
        // A channel given by its number, as the dialect shows it, is named
        // by its id from here on (when this shard knows the number).
        self.native_ids(&mut ev.args);
        let result = self.gatrix_command(conn, &mut ev);
        if let Err(e) = result {
            answer(conn, ev.ack_id, Err(&e));
        }
    }

    fn gatrix_command(&self, conn: &Rc<ChatConn>, ev: &mut Event) -> Result<(), ChatError> {
        let max = self.hub.limits.max_message_length;
        let ok = |conn: &ChatConn| answer(conn, ev.ack_id, Ok(r#"{"ok":true}"#));
        let args = &mut ev.args;
        match ev.name.as_str() {
            "join_channel" => {
                if let Some(num) = unknown_number(args) {
                    return self.gatrix_join_by_number(conn, num, ev.ack_id);
                }
                let cmd = commands::parse(&ev.name, args, max)?;
                self.command(conn, cmd, ev.ack_id)
            }
            "send_message" => {
                with_native_type(args);
                let cmd = commands::parse(&ev.name, args, max)?;
                self.command(conn, cmd, ev.ack_id)
            }
            "leave_channel" => {
                let cmd = commands::parse(&ev.name, args, max)?;
                if let Command::Leave { channel } = &cmd {
                    // The leave takes effect here and now (deliveries stop
                    // before the owner hears of it), so it is said now.
                    let frame = channel_frame("channel_left", channel, &self.nums.borrow());
                    let _ = conn.link.push_text(frame);
                }
                self.command(conn, cmd, ev.ack_id)
            }
            "start_typing" | "stop_typing" => {
                // `threadId` as the native command reads it: typing in a
                // thread is relayed as `user_typing_thread` (`frames.rs`).
                let native = if ev.name == "start_typing" {
                    "typing_start"
                } else {
                    "typing_stop"
                };
                let cmd = commands::parse(native, args, max)?;
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
            // Invisible is shown to others as offline (the original told
            // them "invisible", which says the user is there).
            Some(Value::String(s)) if s == "invisible" => "offline",
            Some(Value::String(s))
                if matches!(s.as_str(), "online" | "away" | "busy" | "offline") =>
            {
                s.as_str()
            }
            _ => {
                return Err(ChatError::invalid(
                    "status must be online, away, busy, offline or invisible",
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

impl ConnSide {
    /// `args` with a known channel number replaced by the channel's id.
    fn native_ids(&self, args: &mut [Value]) {
        if let Some(Value::Object(p)) = args.first_mut()
            && let Some(num) = p.get("channelId").and_then(Value::as_u64)
            && let Some(id) = self.nums.borrow().id_of(num)
        {
            p.insert("channelId".into(), Value::from(&*id));
        }
    }

    /// A join by a number this shard does not know: the store says which
    /// channel it is (one read per such join), then the join goes on.
    fn gatrix_join_by_number(
        &self,
        conn: &ChatConn,
        num: u64,
        ack: Option<u64>,
    ) -> Result<(), ChatError> {
        let (mesh, me) = (self.hub.mail.mesh().clone(), self.hub.mail.shard());
        let reply = ReplyTo {
            conn: conn.link.id,
            ack,
        };
        let started = self.hub.store.read_then(move |s| {
            let channel = s.channel_id_by_num(num).map_err(|e| e.to_string());
            let mail = ToConnShard::GatrixJoin {
                reply,
                num,
                channel,
            };
            mesh.post_external(me, mail.into());
        });
        started.map_err(|_| ChatError::new(ErrorCode::Unavailable, "the store is busy; retry"))
    }

    /// The store answered which channel a number is: join it.
    pub(super) fn gatrix_join_found(
        &self,
        reply: ReplyTo,
        num: u64,
        channel: Result<Option<String>, String>,
    ) {
        let Some(conn) = self.conns.borrow().get(&reply.conn).cloned() else {
            return; // gone meanwhile
        };
        let result = match channel {
            Ok(Some(id)) => {
                let id: std::sync::Arc<str> = id.into();
                self.nums.borrow_mut().insert(&id, num);
                self.command(&conn, Command::Join { channel: id }, reply.ack)
            }
            Ok(None) => Err(ChatError::new(
                ErrorCode::NotFound,
                format!("no channel numbered {num}"),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "store: channel by number");
                Err(ChatError::new(
                    ErrorCode::Unavailable,
                    "the store is down; retry",
                ))
            }
        };
        if let Err(e) = result {
            answer(&conn, reply.ack, Err(&e));
        }
    }
}

/// The channel number of a join this shard could not name (still a JSON
/// number after [`ConnSide::native_ids`]).
fn unknown_number(args: &[Value]) -> Option<u64> {
    object(args)?.get("channelId")?.as_u64()
}

fn object(args: &[Value]) -> Option<&Map<String, Value>> {
    args.first().and_then(Value::as_object)
}

/// The frontend names a message's type `contentType`; the native command
/// reads `type`.
fn with_native_type(args: &mut [Value]) {
    if let Some(Value::Object(p)) = args.first_mut()
        && !p.contains_key("type")
        && let Some(kind) = p.remove("contentType")
    {
        p.insert("type".into(), kind);
    }
}
