//! Channel owner: the one shard through which every command on a channel
//! passes, in order.
//!
//! It caches the channel record and its members (loaded from the store on
//! first use, reloaded when REST changes it), decides who may join and
//! send, counts subscriptions per shard and per user (user_joined /
//! user_left), relays typing, and hands new messages to the store writer.
//! The writer assigns `seq` at commit and broadcasts to every shard in
//! commit order ([`super::commit`]); that is the seam the Redis broker
//! takes over for several instances.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::Text as Utf8Bytes;
use serde_json::json;

use super::mail::{Mail, Publish, ReplyTo, shard_of_conn};
use super::message::{self, event_frame, reply_frame};
use super::{Chat, ChatError, ErrorCode};
use crate::store::{ChannelType, MessageRecord};

pub(super) struct ChannelState {
    /// The cached record and members; `None` while (re)loading.
    pub(super) info: Option<ChannelInfo>,
    /// The store's last seq at the first load (see `channel_loaded`).
    pub(super) base_seq: Option<u64>,
    /// A load from the store is under way.
    pub(super) loading: bool,
    /// The channel changed while that load was under way, so its answer
    /// may predate the change: it is dropped and the channel loaded again.
    pub(super) stale: bool,
    /// The last load found no such channel (deleted while subscribed):
    /// commands are refused NOT_FOUND without asking the store again.
    pub(super) gone: bool,
    /// Commands that arrived while loading, in order.
    pub(super) waiting: Vec<Mail>,
    /// Subscribed connections per shard: who gets a `Deliver`.
    pub(super) shard_subs: Vec<u32>,
    /// Subscribed connections per user: user_joined / user_left edges.
    pub(super) users: HashMap<Arc<str>, u32>,
    /// The connections counted in `shard_subs` and `users`: a join is
    /// counted once, and a leave undoes only a counted join (a refused
    /// join's connection also sends a leave when it closes).
    pub(super) conns: HashSet<u64>,
    /// Users typing: until when, and from which connection (which is not
    /// told about its own typing, not even when it expires).
    pub(super) typing: HashMap<Arc<str>, (Instant, u64)>,
    /// The last command on the channel: an entry not in use is evicted
    /// after `channel_cache_idle` without one (`load.rs`, `trim_cache`).
    pub(super) used: Instant,
}

pub(super) struct ChannelInfo {
    pub(super) kind: ChannelType,
    /// The channel's owner, whose membership only REST can end.
    pub(super) owner: Arc<str>,
    /// The record as clients see it in a join ack.
    pub(super) json: Arc<str>,
    pub(super) members: HashSet<Arc<str>>,
    /// The store's last seq when loaded; later ones are seen by shards.
    pub(super) last_seq: u64,
}

impl ChannelState {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            info: None,
            base_seq: None,
            loading: false,
            stale: false,
            gone: false,
            waiting: Vec::new(),
            shard_subs: Vec::new(),
            users: HashMap::new(),
            conns: HashSet::new(),
            typing: HashMap::new(),
            used: now,
        }
    }

    /// Holds state that dropping would lose: subscriptions, typing, a load
    /// and the commands waiting for it. Such an entry is never evicted.
    pub(super) fn in_use(&self) -> bool {
        self.loading
            || !self.waiting.is_empty()
            || !self.conns.is_empty()
            || !self.typing.is_empty()
    }
}

impl Chat {
    pub(super) fn send_reply(&self, reply: ReplyTo, result: Result<&str, &ChatError>) {
        if let Some(frame) = reply_frame(reply.ack, result) {
            let mail = Mail::ToConn {
                conn: reply.conn,
                frame: frame.into(),
            };
            self.post(shard_of_conn(reply.conn), mail);
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
                let mail = Mail::Deliver {
                    channel: channel.clone(),
                    frame: frame.clone(),
                    except,
                };
                self.post(shard, mail);
            }
        }
    }

    fn user_event(&self, st: &ChannelState, channel: &Arc<str>, event: &str, user: &str) {
        let body = json!({"channelId": &**channel, "userId": user}).to_string();
        self.fan_out(st, channel, event_frame(event, &body).into(), None);
    }

    pub(super) fn owner_join(&self, channel: Arc<str>, user: Arc<str>, reply: ReplyTo) {
        let mut channels = self.channels.borrow_mut();
        let Some(st) = channels.get_mut(&channel) else {
            return;
        };
        let Some(info) = st.info.as_mut() else { return };
        let member = info.members.contains(&user);
        if !member && info.kind != ChannelType::Public {
            drop(channels);
            let error =
                ChatError::new(ErrorCode::Forbidden, "this channel is for its members only");
            return self.post(
                shard_of_conn(reply.conn),
                Mail::JoinFailed {
                    channel,
                    error,
                    reply,
                },
            );
        }
        if !member {
            // Joining a public channel makes the user a member. Written
            // behind the ack: a crash may forget it; the user joins again.
            info.members.insert(user.clone());
            let (c, u, at) = (channel.to_string(), user.to_string(), message::now());
            if self
                .store
                .write(move |s| s.add_member(&c, &u, &at))
                .is_err()
            {
                tracing::warn!(%channel, %user, "store queue full: membership not written");
            }
        }
        let (last_seq, channel_json) = (info.last_seq, info.json.clone());
        // Counted by connection rather than by the connection's `repeat`:
        // a repeat whose first join was refused is a first join here.
        if st.conns.insert(reply.conn) {
            st.shard_subs.resize(self.mail.shards(), 0);
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
        drop(channels);
        let joined = Mail::Joined {
            channel,
            channel_json,
            last_seq,
            reply,
        };
        self.post(shard_of_conn(reply.conn), joined);
    }

    pub(super) fn owner_leave(
        &self,
        channel: Arc<str>,
        user: Arc<str>,
        conn: u64,
        reply: Option<ReplyTo>,
    ) {
        let mut channels = self.channels.borrow_mut();
        // A connection whose join was refused (or never reached here) was
        // not counted: its leave changes nothing.
        if let Some(st) = channels.get_mut(&channel)
            && st.conns.remove(&conn)
        {
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
                // An explicit leave by the user's last connection ends a
                // public channel's membership; a disconnect keeps it, and
                // private memberships are managed by the channel's owner.
                let public = st
                    .info
                    .as_ref()
                    .is_some_and(|i| i.kind == ChannelType::Public && i.owner != user);
                if reply.is_some() && public {
                    if let Some(info) = st.info.as_mut() {
                        info.members.remove(&user);
                    }
                    let (c, u) = (channel.to_string(), user.to_string());
                    if self.store.write(move |s| s.remove_member(&c, &u)).is_err() {
                        tracing::warn!(%channel, %user, "store queue full: membership not removed");
                    }
                    let member = Mail::Member {
                        user: user.clone(),
                        channel: channel.clone(),
                        added: false,
                    };
                    self.post(self.owner(&user), member);
                }
            }
            // A deleted channel is kept only for its subscribers' leaves.
            if st.gone && !st.in_use() {
                channels.remove(&channel);
            }
        }
        drop(channels);
        if let Some(r) = reply {
            self.send_reply(r, Ok(r#"{"ok":true}"#));
        }
    }

    /// Checks the sender's membership and hands the message to the store
    /// writer, which sequences, commits and broadcasts it.
    pub(super) fn owner_publish(&self, p: Publish) {
        let member = {
            let channels = self.channels.borrow();
            channels
                .get(&p.channel)
                .and_then(|st| st.info.as_ref())
                .is_some_and(|i| i.members.contains(&p.user))
        };
        if !member {
            let e = ChatError::new(
                ErrorCode::Forbidden,
                "only members may send to this channel",
            );
            return self.answer_origin(p.origin, Err(e));
        }
        let record = Box::new(MessageRecord {
            id: self.ids.next(),
            pos: 0,
            channel_id: p.channel.to_string(),
            seq: 0,
            user_id: p.user.to_string(),
            content: p.content,
            kind: p.kind,
            client_message_id: p.client_message_id,
            reply_to: p.reply_to,
            created_at: message::now(),
            edited_at: None,
            deleted_at: None,
        });
        if let Err((origin, _)) = self.store.append(record, (p.origin, p.received)) {
            let e = ChatError::new(
                ErrorCode::Unavailable,
                "the store is busy or down; retry with the same clientMessageId",
            );
            self.answer_origin(origin, Err(e));
        }
    }

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
        let Some(info) = st.info.as_ref() else { return };
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
            return self.send_reply(reply, Err(&e));
        }
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
