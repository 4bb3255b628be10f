//! Chat: the commands of docs/protocol.md#client--server-events on top of
//! the protocol layer.
//!
//! One [`Chat`] per shard. It plays three roles, each for the keys it owns:
//! - connection side ([`conn`]): the shard's own connections, their
//!   subscriptions, limits, and delivery of broadcast frames to them;
//! - channel owner ([`owner`]): for channels with hash(channelId) % N == this
//!   shard: the channel cache, who may join and send, message ids,
//!   subscriber counts per shard, typing, fan-out of events, the hand-off
//!   of a send to the store writer (which dedupes and assigns seq and pos
//!   at commit: `store::writer`);
//! - user owner ([`presence`]): for users with hash(userId) % N == this
//!   shard: connection counts, channel memberships, presence updates.
//!
//! Roles talk only through [`Mail`] over the shard mailboxes, even on one
//! shard, so the code path is the same whatever the placement.

mod api;
pub(crate) mod commands;
pub(crate) mod commit;
mod conn;
mod error;
pub(crate) mod json;
mod load;
pub(crate) mod mail;
pub(crate) mod message;
mod owner;
mod presence;
pub(crate) mod recovery;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use api::RestSend;
pub(crate) use conn::ChatConn;
pub(crate) use error::{ChatError, ErrorCode};
pub(crate) use mail::Mail;

use crate::auth::Authenticator;
use crate::ids::IdGen;
use crate::mailbox::Mailbox;
use crate::metrics::ShardMetrics;
use crate::protocol::Link;
use crate::store::StoreHandle;

/// Limits applied by the chat layer (all configurable, docs/configuration.md).
#[derive(Debug, Clone)]
pub(crate) struct ChatLimits {
    pub max_message_length: usize,
    pub max_channels_per_connection: usize,
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// Commands refused in a row for rate before the connection is closed.
    pub rate_disconnect_after: u32,
    pub typing_timeout: Duration,
    /// At most one `presence_update` per user per this interval (coalesced).
    pub presence_interval: Duration,
    /// How long a dropped connection's session stays recoverable.
    pub recovery_window: Duration,
    /// An owner's cached channel not in use is evicted after this long
    /// without a command.
    pub channel_cache_idle: Duration,
    /// Channels an owner caches before it evicts the least recently used
    /// ones not in use.
    pub channel_cache_max: usize,
    /// Most messages one recovery replays, across its channels.
    pub recovery_max_replay: usize,
}

/// The store as chat uses it: messages answer to an [`mail::Origin`], and
/// carry when the send arrived (for the broadcast latency).
pub(crate) type ChatStore = StoreHandle<(mail::Origin, std::time::Instant)>;

pub(crate) struct Chat {
    mail: Rc<Mailbox<Mail>>,
    auth: Arc<Authenticator>,
    store: ChatStore,
    sessions: Arc<recovery::Sessions>,
    limits: ChatLimits,
    /// This shard's metric handles.
    metrics: ShardMetrics,
    /// The shard's id generator, shared with REST (`rest::Context`).
    ids: Rc<IdGen>,
    /// One clock for every connection's rate limiter: creating a clock
    /// calibrates it (cpuid, TSC), far too slow to do per connection.
    clock: governor::clock::DefaultClock,
    /// Connection side: this shard's authenticated connections.
    conns: RefCell<HashMap<u64, Rc<ChatConn>>>,
    /// Connection side: local subscribers per channel.
    subs: RefCell<HashMap<Arc<str>, Vec<Rc<Link>>>>,
    /// Connection side: the last seq this shard has seen committed per
    /// channel; a join ack's lastSeq is exact against it.
    seen: RefCell<HashMap<Arc<str>, u64>>,
    /// Connection side: the highest commit position seen, where a new
    /// session's replay would start.
    last_pos: Cell<u64>,
    /// Owner side: channels this shard owns (bounded: `load.rs`,
    /// `trim_cache`).
    channels: RefCell<HashMap<Arc<str>, owner::ChannelState>>,
    /// Owner side: the cache size at which a new entry trims the cache
    /// before the next tick does.
    cache_trim_at: Cell<usize>,
    /// Owner side: users this shard owns.
    users: RefCell<HashMap<Arc<str>, presence::UserState>>,
    /// Owner side: users with a presence change waiting for its interval.
    presence_pending: RefCell<Vec<Arc<str>>>,
}

/// Fixed seeds: every shard must map a key to the same owner.
const OWNER_HASH: ahash::RandomState = ahash::RandomState::with_seeds(
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0x2545_f491_4f6c_dd1d,
);

impl Chat {
    pub(crate) fn new(
        mail: Rc<Mailbox<Mail>>,
        auth: Arc<Authenticator>,
        store: ChatStore,
        sessions: Arc<recovery::Sessions>,
        limits: ChatLimits,
        metrics: ShardMetrics,
        ids: Rc<IdGen>,
    ) -> Rc<Self> {
        let cache_trim_at = Cell::new(limits.channel_cache_max);
        Rc::new(Self {
            mail,
            auth,
            store,
            sessions,
            limits,
            metrics,
            ids,
            clock: governor::clock::DefaultClock::default(),
            conns: RefCell::default(),
            subs: RefCell::default(),
            seen: RefCell::default(),
            last_pos: Cell::new(0),
            channels: RefCell::default(),
            cache_trim_at,
            users: RefCell::default(),
            presence_pending: RefCell::default(),
        })
    }

    /// The shard owning a channel or user id.
    fn owner(&self, key: &str) -> usize {
        (OWNER_HASH.hash_one(key) % self.mail.shards() as u64) as usize
    }

    fn post(&self, to: usize, mail: Mail) {
        self.mail.post(to, mail);
    }

    /// Handles one message from the mailbox.
    pub(crate) fn handle(&self, mail: Mail) {
        let Some(mail) = self.when_loaded(mail) else {
            return;
        };
        match mail {
            Mail::Join {
                channel,
                user,
                reply,
            } => self.owner_join(channel, user, reply),
            Mail::Leave {
                channel,
                user,
                conn,
                reply,
            } => self.owner_leave(channel, user, conn, reply),
            Mail::Publish(p) => self.owner_publish(*p),
            Mail::Typing {
                channel,
                user,
                typing,
                reply,
            } => self.owner_typing(channel, user, typing, reply),
            Mail::ChannelEmit { channel, frame } => self.owner_emit(&channel, frame),
            Mail::Invalidate { channel, done } => {
                self.owner_invalidate(channel);
                let _ = done.send(());
            }
            Mail::ChannelLoaded { channel, result } => self.channel_loaded(channel, result),
            Mail::Committed(batch) => self.committed(&batch),
            Mail::Replayed { conn, step } => self.replayed(conn, step),
            Mail::Joined {
                channel,
                channel_json,
                last_seq,
                reply,
            } => self.conn_joined(channel, &channel_json, last_seq, reply),
            Mail::JoinFailed {
                channel,
                error,
                reply,
            } => self.conn_join_failed(channel, error, reply),
            Mail::Deliver {
                channel,
                frame,
                except,
            } => self.deliver(&channel, frame, except),
            Mail::ToConn { conn, frame } => self.to_conn(conn, frame),
            Mail::Online { user, conn } => self.user_online(user, conn),
            Mail::Offline { user, conn } => self.user_offline(user, conn),
            Mail::Member {
                user,
                channel,
                added,
            } => self.user_member(user, channel, added),
        }
    }

    /// Periodic work: typing indicators that expired, coalesced presence
    /// changes due, idle cached channels.
    pub(crate) fn tick(&self) {
        self.expire_typing();
        self.settle_presence();
        self.trim_cache(std::time::Instant::now());
        let channels = self.channels.borrow().len();
        self.metrics.channels.set(channels as i64);
        if self.mail.shard() == 0 {
            self.sessions.sweep();
        }
    }

    /// This shard's metric handles.
    pub(crate) fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// Number of connections and owned channels, for logs.
    pub(crate) fn stats(&self) -> (usize, usize) {
        (self.conns.borrow().len(), self.channels.borrow().len())
    }
}

#[cfg(test)]
mod tests;
