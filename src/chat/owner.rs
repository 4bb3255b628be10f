//! Channel owner: the one shard that sequences a channel.
//!
//! It counts subscriptions per shard and per user, assigns each message the
//! next `seq` and a unique id, answers a repeated clientMessageId with the
//! first message, encodes each broadcast once and sends one `Deliver` per
//! shard that has subscribers.
//!
//! Seam for the store and the broker (later issues): [`Chat::owner_publish`]
//! is the "assign seq, persist, fan out" step. Persisting goes between
//! assigning and fanning out; the ack is sent only after it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tungstenite::Utf8Bytes;

use super::mail::{Mail, Publish, ReplyTo, shard_of_conn};
use super::message::{self, Message, event_frame, reply_frame};
use super::{Chat, ChatError};

#[derive(Default)]
pub(super) struct ChannelState {
    /// Last assigned seq; the next message gets `seq + 1`.
    seq: u64,
    /// Subscribed connections per shard: who gets a `Deliver`.
    shard_subs: Vec<u32>,
    /// Subscribed connections per user: user_joined / user_left edges.
    users: HashMap<Arc<str>, u32>,
    /// Users typing: until when, and from which connection (which is not
    /// told about its own typing, not even when it expires).
    typing: HashMap<Arc<str>, (Instant, u64)>,
    /// (user, clientMessageId) → the first message's JSON.
    dedupe: HashMap<(Arc<str>, String), Arc<str>>,
    dedupe_order: VecDeque<(Arc<str>, String)>,
}

impl Chat {
    fn send_reply(&self, reply: ReplyTo, result: Result<&str, &ChatError>) {
        if let Some(frame) = reply_frame(reply.ack, result) {
            self.post(
                shard_of_conn(reply.conn),
                Mail::ToConn {
                    conn: reply.conn,
                    frame: frame.into(),
                },
            );
        }
    }

    /// One `Deliver` per shard with subscribers; the frame is shared.
    fn fan_out(
        &self,
        st: &ChannelState,
        channel: &Arc<str>,
        frame: Utf8Bytes,
        except: Option<u64>,
    ) {
        for (shard, &n) in st.shard_subs.iter().enumerate() {
            if n > 0 {
                self.post(
                    shard,
                    Mail::Deliver {
                        channel: channel.clone(),
                        frame: frame.clone(),
                        except,
                    },
                );
            }
        }
    }

    fn user_event(&self, st: &ChannelState, channel: &Arc<str>, event: &str, user: &str) {
        let body = json!({"channelId": &**channel, "userId": user}).to_string();
        self.fan_out(st, channel, event_frame(event, &body).into(), None);
    }

    pub(super) fn owner_join(
        &self,
        channel: Arc<str>,
        user: Arc<str>,
        reply: ReplyTo,
        repeat: bool,
    ) {
        let mut channels = self.channels.borrow_mut();
        let st = channels.entry(channel.clone()).or_default();
        if !repeat {
            let shards = self.mail.shards();
            st.shard_subs.resize(shards, 0);
            st.shard_subs[shard_of_conn(reply.conn)] += 1;
            let n = st.users.entry(user.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                // The joining connection is not delivering yet, so it does
                // not hear its own user_joined.
                self.user_event(st, &channel, "user_joined", &user);
                let member = Mail::Member {
                    user: user.clone(),
                    channel: channel.clone(),
                    added: true,
                };
                self.post(self.owner(&user), member);
            }
        }
        let last_seq = st.seq;
        drop(channels);
        self.post(
            shard_of_conn(reply.conn),
            Mail::Joined {
                channel,
                last_seq,
                reply,
            },
        );
    }

    pub(super) fn owner_leave(
        &self,
        channel: Arc<str>,
        user: Arc<str>,
        conn: u64,
        reply: Option<ReplyTo>,
    ) {
        let mut channels = self.channels.borrow_mut();
        if let Some(st) = channels.get_mut(&channel) {
            if let Some(n) = st.shard_subs.get_mut(shard_of_conn(conn)) {
                *n = n.saturating_sub(1);
            }
            let last = match st.users.get_mut(&user) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    st.users.remove(&user);
                    true
                }
                None => false,
            };
            if last {
                if let Some((_, typist)) = st.typing.remove(&user) {
                    let body = json!({"channelId": &*channel, "userId": &*user, "isTyping": false})
                        .to_string();
                    self.fan_out(
                        st,
                        &channel,
                        event_frame("typing", &body).into(),
                        Some(typist),
                    );
                }
                self.user_event(st, &channel, "user_left", &user);
                if reply.is_some() {
                    // An explicit leave by the user's last connection ends
                    // the membership; a disconnect keeps it.
                    let member = Mail::Member {
                        user: user.clone(),
                        channel: channel.clone(),
                        added: false,
                    };
                    self.post(self.owner(&user), member);
                }
            }
        }
        drop(channels);
        if let Some(r) = reply {
            self.send_reply(r, Ok(r#"{"ok":true}"#));
        }
    }

    pub(super) fn owner_publish(&self, p: Publish) {
        let mut channels = self.channels.borrow_mut();
        let st = channels.entry(p.channel.clone()).or_default();
        let key = p
            .client_message_id
            .as_ref()
            .map(|c| (p.user.clone(), c.clone()));
        if let Some(first) = key.as_ref().and_then(|k| st.dedupe.get(k)).cloned() {
            drop(channels);
            let body = format!(r#"{{"ok":true,"message":{first}}}"#);
            return self.send_reply(p.reply, Ok(&body));
        }
        st.seq += 1;
        let msg = Message {
            id: self.ids.next().to_string(),
            channel_id: &p.channel,
            seq: st.seq,
            user_id: &p.user,
            content: &p.content,
            kind: &p.kind,
            client_message_id: p.client_message_id.as_deref(),
            reply_to: p.reply_to.as_deref(),
            created_at: message::now(),
        };
        let json: Arc<str> = match serde_json::to_string(&msg) {
            Ok(j) => j.into(),
            Err(_) => {
                st.seq -= 1;
                drop(channels);
                let e = ChatError::new(super::ErrorCode::Internal, "could not encode the message");
                return self.send_reply(p.reply, Err(&e));
            }
        };
        // Encode once: every subscriber on every shard gets these bytes.
        self.fan_out(st, &p.channel, event_frame("message", &json).into(), None);
        if let Some(k) = key {
            st.dedupe.insert(k.clone(), json.clone());
            st.dedupe_order.push_back(k);
            while st.dedupe_order.len() > self.limits.dedupe_per_channel {
                if let Some(old) = st.dedupe_order.pop_front() {
                    st.dedupe.remove(&old);
                }
            }
        }
        drop(channels);
        let body = format!(r#"{{"ok":true,"message":{json}}}"#);
        self.send_reply(p.reply, Ok(&body));
    }

    pub(super) fn owner_typing(
        &self,
        channel: Arc<str>,
        user: Arc<str>,
        typing: bool,
        reply: ReplyTo,
    ) {
        let mut channels = self.channels.borrow_mut();
        let st = channels.entry(channel.clone()).or_default();
        let changed = if typing {
            let until = Instant::now() + self.limits.typing_timeout;
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
        self.send_reply(reply, Ok(r#"{"ok":true}"#));
    }

    pub(super) fn owner_emit(&self, channel: &Arc<str>, frame: Utf8Bytes) {
        if let Some(st) = self.channels.borrow().get(channel) {
            self.fan_out(st, channel, frame, None);
        }
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
