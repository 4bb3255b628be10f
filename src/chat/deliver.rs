//! Connection side: what owners and the store tell a shard about its
//! connections (joins confirmed or refused, frames to deliver, recovery
//! steps). Committed messages are delivered by [`ConnSide::committed`]
//! (`commit.rs`).

use std::sync::Arc;

use crate::protocol::Text;

use super::ChatError;
use super::conn::{ConnSide, JoinState, answer};
use super::mail::{ReplyTo, ToConnShard, shard_of_conn};
use crate::protocol::Frame;

impl ConnSide {
    /// Mail for the connection side.
    pub(super) fn handle(&self, mail: ToConnShard) {
        match mail {
            ToConnShard::Joined {
                channel,
                channel_json,
                last_seq,
                reply,
            } => self.conn_joined(channel, &channel_json, last_seq, reply),
            ToConnShard::JoinFailed {
                channel,
                error,
                reply,
            } => self.conn_join_failed(channel, error, reply),
            ToConnShard::Deliver {
                channel,
                frame,
                except,
            } => self.deliver(&channel, frame, except),
            ToConnShard::Frame { conn, frame } => self.to_conn(conn, frame),
            ToConnShard::Replayed { conn, step } => self.replayed(conn, step),
            ToConnShard::RewriteSessions => self.rewrite_due.set(true),
        }
    }

    pub(super) fn unsubscribe_local(&self, channel: &str, conn: u64) {
        let mut subs = self.subs.borrow_mut();
        if let Some(list) = subs.get_mut(channel) {
            list.retain(|l| l.id != conn);
            if list.is_empty() {
                subs.remove(channel);
            }
        }
    }

    /// The owner confirmed a subscription: deliver from now on, and ack.
    fn conn_joined(&self, channel: Arc<str>, channel_json: &str, last_seq: u64, reply: ReplyTo) {
        let Some(conn) = self.conns.borrow().get(&reply.conn).cloned() else {
            return; // gone meanwhile; its disconnect already sent the Leave
        };
        if self.recovery_joined(&conn, &channel, Some(last_seq)) {
            return;
        }
        let newly = match conn.channels.borrow_mut().get_mut(&channel) {
            Some(state @ JoinState::Joining) => {
                *state = JoinState::Delivering;
                true
            }
            _ => false,
        };
        if newly {
            self.subs
                .borrow_mut()
                .entry(channel.clone())
                .or_default()
                .push(conn.link.clone());
        }
        // Every message with a higher seq reaches this shard after now, and
        // so the connection; every lower one already passed.
        let seen = self.seen.borrow().get(&channel).copied().unwrap_or(0);
        let last_seq = last_seq.max(seen);
        let body = format!(r#"{{"ok":true,"channel":{channel_json},"lastSeq":{last_seq}}}"#);
        answer(&conn, reply.ack, Ok(&body));
    }

    /// The owner refused a join: drop the pending subscription, answer.
    fn conn_join_failed(&self, channel: Arc<str>, error: ChatError, reply: ReplyTo) {
        let Some(conn) = self.conns.borrow().get(&reply.conn).cloned() else {
            return;
        };
        {
            let mut chans = conn.channels.borrow_mut();
            if chans.get(&channel) == Some(&JoinState::Joining) {
                chans.remove(&channel);
            }
        }
        if self.recovery_joined(&conn, &channel, None) {
            return;
        }
        answer(&conn, reply.ack, Err(&error));
    }

    /// A broadcast frame for this shard's subscribers of a channel. The
    /// same bytes go to every recipient.
    fn deliver(&self, channel: &str, frame: Text, except: Option<u64>) {
        let subs = self.subs.borrow();
        let Some(list) = subs.get(channel) else {
            return;
        };
        for link in list {
            if Some(link.id) != except {
                // On overflow the link closes itself as a slow consumer.
                let _ = link.push(Frame::Text(frame.clone()));
            }
        }
    }

    fn to_conn(&self, conn: u64, frame: Text) {
        debug_assert_eq!(shard_of_conn(conn), self.hub.mail.shard());
        if let Some(c) = self.conns.borrow().get(&conn) {
            let _ = c.link.push(Frame::Text(frame));
        }
    }
}
