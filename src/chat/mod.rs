//! Chat: the client commands of docs/protocol.md (join, leave, send,
//! typing, presence) on top of the protocol layer, as its [`Handler`].
//!
//! One [`Chat`] per shard: the shared handles ([`Hub`]: mailbox, store,
//! authenticator, id generator, metrics, limits) and three roles, each for
//! the keys it owns. [`Chat::handle`] routes each [`Mail`] to its role:
//! - [`ConnSide`] (`conn.rs`, `deliver.rs`, `recovery.rs`, and
//!   [`ConnSide::committed`] in `commit.rs`): the shard's own connections,
//!   their commands checked and sent on, their subscriptions and
//!   [`conn::JoinState`], delivery of committed messages and other frames
//!   to them, and connection state recovery; its mail is
//!   [`mail::ToConnShard`] and the store writer's [`Mail::Committed`].
//! - [`ChannelOwner`] (`owner.rs`, `load.rs`, `typing.rs`): for channels
//!   with `hash(channelId) % N` == this shard ([`Hub::owner_shard`]): the
//!   channel cache ([`owner::Cache`]), who may join and send, subscriber
//!   counts per shard and per user, typing, and the hand-off of each new
//!   message to the store writer; its mail is [`mail::ToChannelOwner`].
//! - [`UserOwner`] (`presence.rs`): for users with `hash(userId) % N` ==
//!   this shard: connection counts, channel memberships, coalesced
//!   presence updates; its mail is [`mail::ToUserOwner`].
//!
//! The channel owner neither numbers nor dedupes messages: the store
//! writer does, at commit (`store/writer.rs`: `seq` per channel, the
//! `clientMessageId` lookup), and its [`crate::store::Fanout`] ([`commit::MeshFanout`] in one process) sends each
//! committed batch, in commit order, to every shard.
//!
//! Roles talk only through [`Mail`] over the shard mailboxes, even on one
//! shard, so the code path is the same whatever the placement. REST reaches
//! chat through `api.rs` (`Chat::publish`, `Chat::invalidate_channel`,
//! `Chat::emit_to_channel`).

mod api;
pub(crate) mod cluster;
pub(crate) mod commands;
pub(crate) mod commit;
mod conn;
mod deliver;
mod error;
mod forward;
pub(crate) mod gatrix;
mod herald;
pub(crate) mod json;
mod load;
pub(crate) mod mail;
pub(crate) mod message;
mod owner;
mod owner_cluster;
mod presence;
mod presence_cluster;
pub(crate) mod recovery;
mod typing;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use conn::ChatConn;
use conn::ConnSide;
pub(crate) use error::{ChatError, ErrorCode};
pub(crate) use mail::Mail;
use owner::ChannelOwner;
use presence::UserOwner;

use crate::auth::Authenticator;
use crate::mailbox::Mailbox;
use crate::metrics::ShardMetrics;
use crate::protocol::{CloseReason, DisconnectReason, Event, Handler, Handshake, Link, Refusal};
use crate::store::StoreHandle;
use serde_json::Value;

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
    /// This instance's name (`SERVER_ID`, or host and port): the Gatrix
    /// dialect's `connected` says it.
    pub server_id: Arc<str>,
    /// Where recovery sessions start before the first commit is applied:
    /// one position per sequencing partition (so also their number). With
    /// Redis, what the database had when the bus started; else zeros.
    pub start_positions: recovery::offset::Positions,
    /// The user directory the Gatrix frames name authors from, one for
    /// the process (shared with REST, which fills it).
    pub directory: Arc<gatrix::Directory>,
    /// `gatrix_require_known_users` (with `gatrix_compat`): a Gatrix
    /// CONNECT waits for the directory to know its user
    /// (`gatrix/known.rs`).
    pub require_known_users: bool,
}

/// The store as chat uses it: messages answer to a [`mail::Requester`], and
/// carry when the send arrived (for the broadcast latency).
pub(crate) type ChatStore = StoreHandle<(mail::Requester, std::time::Instant)>;

/// One shard's chat: the shared handles, and the three roles it plays,
/// each for the keys it owns. Mail is routed to the role it is for.
pub(crate) struct Chat {
    hub: Rc<Hub>,
    /// This shard's connections, their subscriptions, and delivery.
    conns: ConnSide,
    /// The channels this shard owns.
    channels: ChannelOwner,
    /// The users this shard owns: presence.
    users: UserOwner,
}

/// What every role of a shard's chat uses: the shard's mailbox and the
/// process-wide handles.
pub(super) struct Hub {
    mail: Rc<Mailbox<Mail>>,
    auth: Arc<Authenticator>,
    store: ChatStore,
    limits: ChatLimits,
    /// This shard's metric handles.
    metrics: ShardMetrics,
    /// Several instances (Redis configured): the presence threads.
    cluster: Option<Arc<cluster::Cluster>>,
}

/// Fixed seeds: every shard must map a key to the same owner shard.
const OWNER_HASH: ahash::RandomState = ahash::RandomState::with_seeds(
    0x9e37_79b9_7f4a_7c15,
    0xbf58_476d_1ce4_e5b9,
    0x94d0_49bb_1331_11eb,
    0x2545_f491_4f6c_dd1d,
);

/// The shard owning a channel or user id among `shards`: its channel owner
/// or user owner.
pub(crate) fn owner_of(key: &str, shards: usize) -> usize {
    (OWNER_HASH.hash_one(key) % shards as u64) as usize
}

impl Hub {
    /// The shard owning a channel or user id: its channel owner or user
    /// owner.
    fn owner_shard(&self, key: &str) -> usize {
        owner_of(key, self.mail.shards())
    }

    /// Publishes `event` to the other instances, if there are any.
    fn publish(&self, event: impl FnOnce() -> cluster::Event) {
        if let Some(c) = &self.cluster {
            c.publish(event());
        }
    }

    fn post(&self, to: usize, mail: impl Into<Mail>) {
        self.mail.post(to, mail.into());
    }
}

impl Chat {
    pub(crate) fn new(
        mail: Rc<Mailbox<Mail>>,
        auth: Arc<Authenticator>,
        store: ChatStore,
        sessions: recovery::SessionStore,
        limits: ChatLimits,
        metrics: ShardMetrics,
        cluster: Option<Arc<cluster::Cluster>>,
    ) -> Rc<Self> {
        let hub = Rc::new(Hub {
            mail,
            auth,
            store,
            limits,
            metrics,
            cluster,
        });
        Rc::new(Self {
            conns: ConnSide::new(hub.clone(), sessions),
            channels: ChannelOwner::new(hub.clone()),
            users: UserOwner::new(hub.clone()),
            hub,
        })
    }

    /// Handles one message from the mailbox: hands it to its role.
    pub(crate) fn handle(&self, mail: Mail) {
        match mail {
            Mail::ChannelOwner(m) => self.channels.handle(m),
            Mail::ConnShard(m) => self.conns.handle(m),
            Mail::UserOwner(m) => self.users.handle(m),
            Mail::Committed(batch) => self.conns.committed(&batch),
        }
    }

    /// Periodic work: typing indicators that expired, coalesced presence
    /// changes due, idle cached channels, expired recovery sessions, and
    /// (Redis) the TTLs of this shard's live sessions.
    pub(crate) fn tick(&self) {
        self.channels.expire_typing();
        self.users.settle();
        self.users.resend();
        self.channels.resend();
        self.channels.trim_cache(std::time::Instant::now());
        let channels = self.channels.len();
        self.hub.metrics.channels.set(channels as i64);
        if self.hub.mail.shard() == 0 {
            self.conns.sweep_sessions();
        }
        self.conns.refresh_sessions();
    }

    /// This shard's metric handles.
    pub(crate) fn metrics(&self) -> &ShardMetrics {
        &self.hub.metrics
    }

    /// Number of connections and owned channels, for logs.
    pub(crate) fn stats(&self) -> (usize, usize) {
        (self.conns.len(), self.channels.len())
    }
}

/// The protocol layer talks to the connection side.
impl Handler for Chat {
    type Socket = Rc<ChatConn>;

    fn connect(
        &self,
        link: &Rc<Link>,
        hs: &Handshake,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<Rc<ChatConn>, Refusal> {
        self.conns.connect(link, hs, nsp, auth)
    }

    fn event(&self, conn: &Rc<ChatConn>, ev: Event) {
        self.conns.event(conn, ev);
    }

    fn rate_limited(&self) -> Refusal {
        self.conns.rate_limited()
    }

    fn pid(&self, conn: &Rc<ChatConn>) -> Option<String> {
        self.conns.pid(conn)
    }

    fn connected(&self, conn: &Rc<ChatConn>, sid: &str) {
        self.conns.connected(conn, sid);
    }

    fn disconnect(&self, conn: Rc<ChatConn>, reason: DisconnectReason) {
        self.conns.disconnect(conn, reason);
    }

    fn closed(&self, reason: CloseReason) {
        self.conns.closed(reason);
    }
}

#[cfg(test)]
mod tests;
