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

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::protocol::Text;

use super::mail::{Publish, ReplyTo, ToChannelOwner, ToConnShard, ToUserOwner, shard_of_conn};
use super::message;
use super::owner_cluster::user_frame;
use super::typing::{Typists, typing_frame};
use super::{ChatError, ErrorCode, Hub};
use crate::store::{ChannelType, MessageRecord};

/// What the owner holds of a channel's record and members (`load.rs`).
pub(super) enum Cache {
    /// Not loaded: a new entry, or the last load failed (the store was
    /// down); the next command loads it.
    Absent,
    /// A load from the store is under way.
    Loading {
        /// Commands that arrived meanwhile, in order.
        waiting: Vec<ToChannelOwner>,
        /// The channel changed while the load was under way, so its answer
        /// may predate the change: it is dropped and the channel loaded
        /// again.
        stale: bool,
    },
    /// Loaded: commands run at once.
    Ready(ChannelInfo),
    /// The last load found no such channel (deleted while subscribed):
    /// commands are refused NOT_FOUND without asking the store again.
    Gone,
}

pub(super) struct ChannelState {
    pub(super) cache: Cache,
    /// The store's last seq at the first load (see `channel_loaded`).
    pub(super) base_seq: Option<u64>,
    /// Subscribed connections per shard: who gets a `Deliver`.
    pub(super) shard_subs: Vec<u32>,
    /// Subscribed connections per user: user_joined / user_left edges.
    pub(super) users: HashMap<Arc<str>, u32>,
    /// The connections counted in `shard_subs` and `users`: a join is
    /// counted once, and a leave undoes only a counted join (a refused
    /// join's connection also sends a leave when it closes).
    pub(super) conns: HashSet<u64>,
    /// Users typing.
    pub(super) typing: Typists,
    /// Several instances: the connection of each user whose first
    /// subscription here waits for the cluster's answer; it does not get
    /// its own user_joined (`owner_cluster.rs`).
    pub(super) joining: HashMap<Arc<str>, u64>,
    /// The last command on the channel: an entry not in use is evicted
    /// after `channel_cache_idle` without one (`load.rs`, `trim_cache`).
    pub(super) used: Instant,
}

pub(super) struct ChannelInfo {
    pub(super) kind: ChannelType,
    /// The channel's creator (the record's `owner_id`), whose membership
    /// only REST can end.
    pub(super) creator: Arc<str>,
    /// The record as clients see it in a join ack.
    pub(super) json: Arc<str>,
    pub(super) members: HashSet<Arc<str>>,
    /// The store's last seq when loaded; later ones are seen by shards.
    pub(super) last_seq: u64,
    /// The channel's number (`ChannelRecord::num`), for the Gatrix dialect.
    pub(super) num: u64,
    /// `ChannelRecord::max_members`: a join past it is refused.
    pub(super) max_members: Option<u32>,
}

impl ChannelState {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            cache: Cache::Absent,
            base_seq: None,
            shard_subs: Vec::new(),
            users: HashMap::new(),
            conns: HashSet::new(),
            typing: Typists::default(),
            joining: HashMap::new(),
            used: now,
        }
    }

    /// Holds state that dropping would lose: subscriptions, typing, a load
    /// and the commands waiting for it. Such an entry is never evicted.
    pub(super) fn in_use(&self) -> bool {
        matches!(self.cache, Cache::Loading { .. })
            || !self.conns.is_empty()
            || !self.typing.is_empty()
    }

    /// The channel's record and members, when loaded.
    pub(super) fn info(&self) -> Option<&ChannelInfo> {
        match &self.cache {
            Cache::Ready(info) => Some(info),
            _ => None,
        }
    }
}

/// The channel owner of one shard: the channels it owns, cached
/// (`load.rs`), and every command on them, in order.
pub(super) struct ChannelOwner {
    pub(super) hub: Rc<Hub>,
    /// Channels this shard owns (bounded: `load.rs`, `trim_cache`).
    pub(super) channels: RefCell<HashMap<Arc<str>, ChannelState>>,
    /// The cache size at which a new entry trims the cache before the next
    /// tick does.
    pub(super) cache_trim_at: Cell<usize>,
    /// Several instances: subscriptions (channel, user) whose count could
    /// not be queued for the presence thread; sent again on the tick.
    pub(super) unsent: RefCell<HashSet<(Arc<str>, Arc<str>)>>,
}

impl ChannelOwner {
    pub(super) fn new(hub: Rc<Hub>) -> Self {
        let cache_trim_at = Cell::new(hub.limits.channel_cache_max);
        Self {
            hub,
            channels: RefCell::default(),
            cache_trim_at,
            unsent: RefCell::default(),
        }
    }

    /// Number of channels cached, for logs and the gauge.
    pub(super) fn len(&self) -> usize {
        self.channels.borrow().len()
    }

    /// Mail for the channel owner: run now, or queued behind a load of
    /// its channel.
    pub(super) fn handle(&self, mail: ToChannelOwner) {
        let Some(mail) = self.when_loaded(mail) else {
            return;
        };
        match mail {
            ToChannelOwner::Join {
                channel,
                user,
                reply,
            } => self.join(channel, user, reply),
            ToChannelOwner::Leave {
                channel,
                user,
                conn,
                reply,
            } => self.leave(channel, user, conn, reply),
            ToChannelOwner::Publish(p) => self.publish(*p),
            ToChannelOwner::Typing {
                channel,
                user,
                typing,
                thread,
                reply,
            } => self.typing(channel, user, (typing, thread), reply),
            ToChannelOwner::ChannelEmit { channel, frame } => self.emit(&channel, frame),
            ToChannelOwner::Invalidate { channel, done } => {
                self.invalidate(channel);
                let _ = done.send(());
            }
            ToChannelOwner::ChannelLoaded { channel, result } => {
                self.channel_loaded(channel, result)
            }
            ToChannelOwner::SubEdge {
                channel,
                user,
                joined,
            } => self.sub_edge(channel, user, joined),
            ToChannelOwner::Member {
                channel,
                user,
                added,
            } => self.member_changed(channel, user, added),
            ToChannelOwner::Reconnected => self.reconnected(),
        }
    }

    /// One `Deliver` per shard with subscribers; the frame is shared.
    pub(super) fn fan_out(
        &self,
        st: &ChannelState,
        channel: &Arc<str>,
        frame: Text,
        except: Option<u64>,
    ) {
        for (shard, &n) in st.shard_subs.iter().enumerate() {
            if n > 0 {
                let mail = ToConnShard::Deliver {
                    channel: channel.clone(),
                    frame: frame.clone(),
                    except,
                };
                self.hub.post(shard, mail);
            }
        }
    }

    pub(super) fn join(&self, channel: Arc<str>, user: Arc<str>, reply: ReplyTo) {
        let mut channels = self.channels.borrow_mut();
        let Some(st) = channels.get_mut(&channel) else {
            return;
        };
        let Cache::Ready(info) = &mut st.cache else {
            return;
        };
        let member = info.members.contains(&user);
        if !member && info.kind != ChannelType::Public {
            drop(channels);
            let error =
                ChatError::new(ErrorCode::Forbidden, "this channel is for its members only");
            return self.hub.post(
                shard_of_conn(reply.conn),
                ToConnShard::JoinFailed {
                    channel,
                    error,
                    reply,
                },
            );
        }
        if let Some(max) = info.max_members
            && !member
            && info.members.len() >= max as usize
        {
            drop(channels);
            let error = ChatError::channel_full(max);
            return self.hub.post(
                shard_of_conn(reply.conn),
                ToConnShard::JoinFailed {
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
                .hub
                .store
                .write(move |s| s.add_member(&c, &u, &at))
                .is_err()
            {
                tracing::warn!(%channel, %user, "store queue full: membership not written");
            }
            self.member_published(&channel, &user, true);
        }
        let (last_seq, channel_json, num) = (info.last_seq, info.json.clone(), info.num);
        // Counted by connection rather than by the connection's `repeat`:
        // a repeat whose first join was refused is a first join here.
        if st.conns.insert(reply.conn) {
            st.shard_subs.resize(self.hub.mail.shards(), 0);
            st.shard_subs[shard_of_conn(reply.conn)] += 1;
            let n = st.users.entry(user.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                if self.hub.cluster.is_some() {
                    // user_joined when the cluster says it is the first.
                    st.joining.insert(user.clone(), reply.conn);
                    self.send_sub(&channel, &user, true);
                } else {
                    // The joining connection is not delivering yet, so it
                    // does not hear its own user_joined.
                    let frame = user_frame(&channel, "user_joined", &user);
                    self.fan_out(st, &channel, frame, None);
                }
                let member = ToUserOwner::Member {
                    user: user.clone(),
                    channel: channel.clone(),
                    added: true,
                };
                self.hub.post(self.hub.owner_shard(&user), member);
            }
        }
        drop(channels);
        let joined = ToConnShard::Joined {
            channel,
            channel_json,
            last_seq,
            num,
            reply,
        };
        self.hub.post(shard_of_conn(reply.conn), joined);
    }

    pub(super) fn leave(
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
                for (thread, typist) in st.typing.stop_all(&user) {
                    let frame = typing_frame(&channel, &user, false, thread);
                    self.broadcast(st, &channel, frame.into(), Some(typist));
                }
                if self.hub.cluster.is_some() {
                    // user_left when the cluster says it was the last.
                    st.joining.remove(&user);
                    self.send_sub(&channel, &user, false);
                } else {
                    let frame = user_frame(&channel, "user_left", &user);
                    self.fan_out(st, &channel, frame, None);
                }
                // An explicit leave by the user's last connection ends a
                // public channel's membership; a disconnect keeps it, and
                // private memberships are managed by the channel's creator.
                let public = st
                    .info()
                    .is_some_and(|i| i.kind == ChannelType::Public && i.creator != user);
                if reply.is_some() && public {
                    if let Cache::Ready(info) = &mut st.cache {
                        info.members.remove(&user);
                    }
                    let (c, u) = (channel.to_string(), user.to_string());
                    if self
                        .hub
                        .store
                        .write(move |s| s.remove_member(&c, &u))
                        .is_err()
                    {
                        tracing::warn!(%channel, %user, "store queue full: membership not removed");
                    }
                    self.member_published(&channel, &user, false);
                    let member = ToUserOwner::Member {
                        user: user.clone(),
                        channel: channel.clone(),
                        added: false,
                    };
                    self.hub.post(self.hub.owner_shard(&user), member);
                }
            }
            // A deleted channel is kept only for its subscribers' leaves.
            if matches!(st.cache, Cache::Gone) && !st.in_use() {
                channels.remove(&channel);
            }
        }
        drop(channels);
        if let Some(r) = reply {
            self.hub.send_reply(r, Ok(r#"{"ok":true}"#));
        }
    }

    /// Checks the sender's membership and hands the message to the store
    /// writer, which sequences, commits and broadcasts it.
    pub(super) fn publish(&self, p: Publish) {
        let Publish {
            message: m,
            user,
            requester,
            received,
        } = p;
        let member = {
            let channels = self.channels.borrow();
            channels
                .get(&m.channel)
                .and_then(ChannelState::info)
                .is_some_and(|i| i.members.contains(&user))
        };
        if !member {
            let e = ChatError::new(
                ErrorCode::Forbidden,
                "only members may send to this channel",
            );
            return self.hub.answer_requester(requester, Err(e));
        }
        let record = Box::new(MessageRecord {
            // Given by the commit, from the partition's counters.
            id: 0,
            pos: 0,
            channel_id: m.channel.to_string(),
            seq: 0,
            user_id: user.to_string(),
            content: m.content,
            kind: m.kind,
            client_message_id: m.client_message_id,
            reply_to: m.reply_to,
            created_at: message::now(),
            edited_at: None,
            deleted_at: None,
            pinned: None,
            // Checked and counted by the commit (`store::append`).
            thread: crate::store::Thread {
                parent: m.thread_id,
                ..Default::default()
            },
        });
        if let Err((requester, _)) = self.hub.store.append(record, (requester, received)) {
            let e = ChatError::new(
                ErrorCode::Unavailable,
                "the store is busy or down; retry with the same clientMessageId",
            );
            self.hub.answer_requester(requester, Err(e));
        }
    }

    pub(super) fn emit(&self, channel: &Arc<str>, frame: Text) {
        if let Some(st) = self.channels.borrow().get(channel) {
            self.fan_out(st, channel, frame, None);
        }
    }
}
