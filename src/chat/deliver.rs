//! Connection side: what owners and the store tell a shard about its
//! connections (joins confirmed or refused, frames to deliver, recovery
//! steps). Committed messages are delivered by [`ConnSide::committed`]
//! (`commit.rs`).

use std::sync::Arc;

use crate::protocol::Text;

use super::ChatError;
use super::conn::{ConnSide, JoinState, answer};
use super::gatrix::frames;
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
                num,
                reply,
            } => {
                if num > 0 {
                    self.nums.borrow_mut().insert(&channel, num);
                }
                self.conn_joined(channel, &channel_json, last_seq, reply)
            }
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
            ToConnShard::GatrixJoin {
                reply,
                num,
                channel,
            } => self.gatrix_join_found(reply, num, channel),
            ToConnShard::GatrixKnown { conn, found } => self.gatrix_known(conn, found),
        }
    }

    pub(super) fn unsubscribe_local(&self, channel: &str, conn: u64) {
        // The connection is in one of the two lists, whichever its dialect.
        for (subs, gatrix) in [(&self.subs, false), (&self.gx_subs, true)] {
            let mut subs = subs.borrow_mut();
            if let Some(list) = subs.get_mut(channel) {
                list.retain(|l| l.id != conn);
                if list.is_empty() {
                    subs.remove(channel);
                    if gatrix {
                        // No Gatrix subscriber left: its number is not needed.
                        self.nums.borrow_mut().forget(channel);
                    }
                }
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
            let subs = if conn.gatrix {
                &self.gx_subs
            } else {
                &self.subs
            };
            subs.borrow_mut()
                .entry(channel.clone())
                .or_default()
                .push(conn.link.clone());
        }
        // Every message with a higher seq reaches this shard after now, and
        // so the connection; every lower one already passed.
        let seen = self.seen.borrow().get(&channel).copied().unwrap_or(0);
        let last_seq = last_seq.max(seen);
        if conn.gatrix {
            let frame =
                super::gatrix::channel_frame("channel_joined", &channel, &self.nums.borrow());
            let _ = conn.link.push_text(frame);
        }
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
    /// Gatrix subscribers are sent it translated, once for all of them; a
    /// Gatrix-only frame (`user_status_changed`) reaches only them.
    fn deliver(&self, channel: &str, frame: Text, except: Option<u64>) {
        if let Some(list) = self.gx_subs.borrow().get(channel) {
            let dir = &self.hub.limits.directory;
            let translated = frames::translate(frame.as_str(), &self.nums.borrow(), dir);
            let translated: Text = translated.into_owned().into();
            push_all(list, &translated, except);
            dir.load_wanted(&self.hub.store);
        }
        if frames::gatrix_only(frame.as_str()) {
            return;
        }
        if let Some(list) = self.subs.borrow().get(channel) {
            push_all(list, &frame, except);
        }
    }

    fn to_conn(&self, conn: u64, frame: Text) {
        debug_assert_eq!(shard_of_conn(conn), self.hub.mail.shard());
        if let Some(c) = self.conns.borrow().get(&conn) {
            let frame = match c.gatrix {
                true => frames::translate(
                    frame.as_str(),
                    &self.nums.borrow(),
                    &self.hub.limits.directory,
                )
                .into_owned()
                .into(),
                false => frame,
            };
            let _ = c.link.push(Frame::Text(frame));
            if c.gatrix {
                self.hub.limits.directory.load_wanted(&self.hub.store);
            }
        }
    }
}

fn push_all(list: &[std::rc::Rc<crate::protocol::Link>], frame: &Text, except: Option<u64>) {
    for link in list {
        if Some(link.id) != except {
            // On overflow the link closes itself as a slow consumer.
            let _ = link.push(Frame::Text(frame.clone()));
        }
    }
}
