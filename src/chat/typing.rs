//! Typing indicators, on the channel owner: who types in which channel,
//! or in which thread of it ([`Typists`]), relayed to the channel's
//! subscribers, and expired when not repeated within `typing_timeout_ms`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::mail::ReplyTo;
use super::message::event_frame;
use super::owner::ChannelOwner;
use super::{ChatError, ErrorCode};

/// Who types in one channel (a user once in the channel and once per
/// thread: the thread's message id): until when, and from which connection
/// (which is not told about its own typing, not even when it expires).
///
/// The seam for typing across instances: the owner only starts, stops and
/// expires typists through these methods. A shared (Redis) version would
/// keep each channel's typists with their expiry (a hash per channel, or a
/// key per typist with a TTL), answer `start` and `stop` with whether the
/// status changed (so that one event goes out per change, whichever
/// instance saw it), and hand each expired typist to exactly one caller of
/// `expire`.
#[derive(Default)]
pub(super) struct Typists(HashMap<Typist, (Instant, u64)>);

/// A user, in the channel (`None`) or in a thread.
type Typist = (Arc<str>, Option<u64>);

impl Typists {
    /// `user` types from `conn` until `until`: whether that is a change
    /// (the user was not typing there).
    fn start(&mut self, who: Typist, conn: u64, until: Instant) -> bool {
        self.0.insert(who, (until, conn)).is_none()
    }

    /// `user` stopped typing there: the connection it typed from, if it
    /// did.
    fn stop(&mut self, who: &Typist) -> Option<u64> {
        self.0.remove(who).map(|(_, conn)| conn)
    }

    /// `user` stopped typing everywhere in the channel: where it typed
    /// (the channel or a thread) and from which connection.
    pub(super) fn stop_all(&mut self, user: &str) -> Vec<(Option<u64>, u64)> {
        let mut out = Vec::new();
        self.0.retain(|(u, thread), (_, conn)| {
            let this = &**u == user;
            if this {
                out.push((*thread, *conn));
            }
            !this
        });
        out
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes out the typists whose time is up at `now`, with the
    /// connections they typed from.
    fn expire(&mut self, now: Instant) -> Vec<(Typist, u64)> {
        let expired: Vec<(Typist, u64)> = self
            .0
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(who, (_, conn))| (who.clone(), *conn))
            .collect();
        for (who, _) in &expired {
            self.0.remove(who);
        }
        expired
    }
}

/// The `typing` event: `threadId` (the thread's message id, a string as
/// message ids are) only for typing in a thread.
pub(super) fn typing_frame(channel: &str, user: &str, typing: bool, thread: Option<u64>) -> String {
    let mut body = json!({"channelId": channel, "userId": user, "isTyping": typing});
    if let (Some(t), Some(b)) = (thread, body.as_object_mut()) {
        b.insert("threadId".into(), t.to_string().into());
    }
    event_frame("typing", &body.to_string())
}

impl ChannelOwner {
    /// `(typing, thread)`: started or stopped, in the channel or in the
    /// thread of that message.
    pub(super) fn typing(
        &self,
        channel: Arc<str>,
        user: Arc<str>,
        (typing, thread): (bool, Option<u64>),
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
        let who = (user.clone(), thread);
        let changed = if typing {
            let until = Instant::now() + self.hub.limits.typing_timeout;
            st.typing.start(who, reply.conn, until)
        } else {
            st.typing.stop(&who).is_some()
        };
        if changed {
            let frame = typing_frame(&channel, &user, typing, thread);
            self.broadcast(st, &channel, frame.into(), Some(reply.conn));
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
            for ((user, thread), conn) in st.typing.expire(now) {
                let frame = typing_frame(channel, &user, false, thread);
                self.broadcast(st, channel, frame.into(), Some(conn));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_user_types_in_the_channel_and_in_each_thread_apart() {
        let mut t = Typists::default();
        let now = Instant::now();
        let ann: Arc<str> = "ann".into();
        assert!(t.start((ann.clone(), None), 1, now + Duration::from_secs(1)));
        assert!(t.start((ann.clone(), Some(7)), 1, now + Duration::from_secs(3)));
        assert!(t.start((ann.clone(), Some(8)), 2, now + Duration::from_secs(3)));
        // A repeat in the same place is no change.
        assert!(!t.start((ann.clone(), Some(7)), 1, now + Duration::from_secs(3)));
        assert!(t.start(("bob".into(), Some(7)), 3, now + Duration::from_secs(1)));
        // Stopping in one thread leaves the others.
        assert_eq!(t.stop(&(ann.clone(), Some(8))), Some(2));
        assert_eq!(t.stop(&(ann.clone(), Some(8))), None);
        // Expiry takes each place on its own time.
        let mut gone = t.expire(now + Duration::from_secs(2));
        gone.sort();
        assert_eq!(
            gone,
            [((ann.clone(), None), 1), (("bob".into(), Some(7)), 3)]
        );
        // The last leave stops the user everywhere.
        assert!(t.start((ann.clone(), None), 4, now + Duration::from_secs(9)));
        let mut all = t.stop_all("ann");
        all.sort();
        assert_eq!(all, [(None, 4), (Some(7), 1)]);
        assert!(t.is_empty());
    }

    #[test]
    fn thread_typing_frames_carry_the_thread_as_a_string() {
        assert_eq!(
            typing_frame("c", "u", true, Some(299_067_162_755_136)),
            r#"42["typing",{"channelId":"c","isTyping":true,"threadId":"299067162755136","userId":"u"}]"#
        );
        assert_eq!(
            typing_frame("c", "u", false, None),
            r#"42["typing",{"channelId":"c","isTyping":false,"userId":"u"}]"#
        );
    }
}
