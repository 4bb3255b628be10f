//! Typing indicators, on the channel owner: who types in which channel
//! ([`Typists`]), relayed to the channel's subscribers, and expired when
//! not repeated within `typing_timeout_ms`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::mail::ReplyTo;
use super::message::event_frame;
use super::owner::ChannelOwner;
use super::{ChatError, ErrorCode};

/// Who types in one channel: until when, and from which connection (which
/// is not told about its own typing, not even when it expires).
///
/// The seam for typing across instances: the owner only starts, stops and
/// expires typists through these methods. A shared (Redis) version would
/// keep each channel's typists with their expiry (a hash per channel, or a
/// key per typist with a TTL), answer `start` and `stop` with whether the
/// status changed (so that one event goes out per change, whichever
/// instance saw it), and hand each expired typist to exactly one caller of
/// `expire`.
#[derive(Default)]
pub(super) struct Typists(HashMap<Arc<str>, (Instant, u64)>);

impl Typists {
    /// `user` types from `conn` until `until`: whether that is a change
    /// (the user was not typing).
    fn start(&mut self, user: Arc<str>, conn: u64, until: Instant) -> bool {
        self.0.insert(user, (until, conn)).is_none()
    }

    /// `user` stopped typing: the connection it typed from, if it did.
    pub(super) fn stop(&mut self, user: &str) -> Option<u64> {
        self.0.remove(user).map(|(_, conn)| conn)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes out the typists whose time is up at `now`, with the
    /// connections they typed from.
    fn expire(&mut self, now: Instant) -> Vec<(Arc<str>, u64)> {
        let expired: Vec<(Arc<str>, u64)> = self
            .0
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(u, (_, conn))| (u.clone(), *conn))
            .collect();
        for (user, _) in &expired {
            self.0.remove(user);
        }
        expired
    }
}

impl ChannelOwner {
    pub(super) fn typing(&self, channel: Arc<str>, user: Arc<str>, typing: bool, reply: ReplyTo) {
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
            st.typing.start(user.clone(), reply.conn, until)
        } else {
            st.typing.stop(&user).is_some()
        };
        if changed {
            let body =
                json!({"channelId": &*channel, "userId": &*user, "isTyping": typing}).to_string();
            self.broadcast(
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
            for (user, conn) in st.typing.expire(now) {
                let body = json!({"channelId": &**channel, "userId": &*user, "isTyping": false})
                    .to_string();
                self.broadcast(st, channel, event_frame("typing", &body).into(), Some(conn));
            }
        }
    }
}
