//! Typing indicators, on the channel owner: who types in which channel,
//! relayed to the channel's subscribers, and expired when not repeated
//! within `typing_timeout_ms`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::mail::ReplyTo;
use super::message::event_frame;
use super::owner::ChannelOwner;
use super::{ChatError, ErrorCode};

impl ChannelOwner {
    pub(super) fn owner_typing(
        &self,
        channel: Arc<str>,
        user: Arc<str>,
        typing: bool,
        reply: ReplyTo,
    ) {
        let mut channels = self.channels.borrow_mut();
        // `when_loaded` ran first: the channel is loaded and live.
        let Some(st) = channels.get_mut(&channel) else {
            return;
        };
        let Some(info) = st.info() else { return };
        // As for a send: the connection's view may be stale (its join not
        // yet answered, or refused), so the owner checks its own.
        let refused = if !st.conns.contains(&reply.conn) {
            Some("join the channel first")
        } else if !info.members.contains(&user) {
            Some("only members may type in this channel")
        } else {
            None
        };
        if let Some(why) = refused {
            drop(channels);
            let e = ChatError::new(ErrorCode::Forbidden, why);
            return self.hub.send_reply(reply, Err(&e));
        }
        let changed = if typing {
            let until = Instant::now() + self.hub.limits.typing_timeout;
            st.typing
                .insert(user.clone(), (until, reply.conn))
                .is_none()
        } else {
            st.typing.remove(&user).is_some()
        };
        if changed {
            let body =
                json!({"channelId": &*channel, "userId": &*user, "isTyping": typing}).to_string();
            self.fan_out(
                st,
                &channel,
                event_frame("typing", &body).into(),
                Some(reply.conn),
            );
        }
        drop(channels);
        self.hub.send_reply(reply, Ok(r#"{"ok":true}"#));
    }

    /// Typing that was not repeated within the timeout stops by itself.
    pub(super) fn expire_typing(&self) {
        let now = Instant::now();
        let mut channels = self.channels.borrow_mut();
        for (channel, st) in channels.iter_mut() {
            if st.typing.is_empty() {
                continue;
            }
            let expired: Vec<(Arc<str>, u64)> = st
                .typing
                .iter()
                .filter(|(_, (until, _))| *until <= now)
                .map(|(u, (_, conn))| (u.clone(), *conn))
                .collect();
            for (user, conn) in expired {
                st.typing.remove(&user);
                let body = json!({"channelId": &**channel, "userId": &*user, "isTyping": false})
                    .to_string();
                self.fan_out(st, channel, event_frame("typing", &body).into(), Some(conn));
            }
        }
    }
}
