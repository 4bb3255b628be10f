//! What shards (and store threads) say to shards about chat. Everything
//! here is `Send`: it crosses the mailbox rings. Frames are encoded once by
//! whoever produces them and shared (`Text` is reference-counted).

use std::sync::Arc;
use std::time::Instant;

use crate::protocol::Text;
use futures::channel::oneshot;

use super::ChatError;
use super::commands::SendMessage;
use crate::protocol::Frame;
use crate::store::{ChannelRecord, MessageRecord};

/// Where a connection command's answer goes: the connection (its shard is
/// in the id's high bits) and the client's ack id, if it asked for one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyTo {
    pub conn: u64,
    pub ack: Option<u64>,
}

/// The answer to a REST send: the message, or why not.
pub(crate) type RestReply = oneshot::Sender<Result<MessageRecord, ChatError>>;

/// Who sent a message, and so where its answer goes: a connection (the
/// reply path), or a REST request waiting on a oneshot.
#[derive(Debug)]
pub(crate) enum Requester {
    Conn(ReplyTo),
    Rest(RestReply),
}

/// A channel as the owner caches it.
#[derive(Debug)]
pub(crate) struct LoadedChannel {
    pub record: ChannelRecord,
    pub members: Vec<String>,
    pub last_seq: u64,
}

/// One committed (or refused) message, as every shard sees it.
#[derive(Debug)]
pub(crate) struct Committed {
    /// The message this outcome stored: none for a repeat of an earlier
    /// message (its sender only gets the ack) or a failed commit.
    pub stored: Option<Stored>,
    /// The sender's ack or error frame, for the shard of `conn`.
    pub reply: Option<(u64, Text)>,
    /// When the send arrived at the server (chat_broadcast_latency).
    pub received: Instant,
}

/// A newly stored message: where it goes, its place in the commit order,
/// and its `message` broadcast, encoded once.
#[derive(Debug)]
pub(crate) struct Stored {
    pub channel: Arc<str>,
    pub seq: u64,
    /// Its sequencing partition (0 with one).
    pub partition: u32,
    /// The commit position in its partition.
    pub pos: u64,
    pub frame: Frame,
    /// The same message for Gatrix connections (`gatrix/frames.rs`), built
    /// by the first shard that has one among the channel's subscribers and
    /// shared by every other: encoded once per dialect, never per
    /// connection, and not at all while no Gatrix client listens. A reply
    /// in a thread is two frames: `thread_message_created`, then
    /// `thread_updated`.
    pub gatrix: std::sync::OnceLock<(Text, Option<Text>)>,
}

impl Stored {
    /// The message as Gatrix connections are sent it.
    /// Every shard knows the channel's number (it has Gatrix subscribers),
    /// so whichever builds it builds the same frame.
    pub(crate) fn gatrix_frame(
        &self,
        nums: &super::gatrix::Nums,
        dir: &super::gatrix::Directory,
    ) -> &(Text, Option<Text>) {
        self.gatrix.get_or_init(|| {
            let native = match &self.frame {
                Frame::Text(t) => t.as_str(),
                Frame::Packed(p) => p.text.as_str(),
                Frame::Binary(_) => "",
            };
            let frames = super::gatrix::frames::translate(native, nums, dir);
            let thread = super::gatrix::frames::thread_updated(native, nums);
            (frames.into_owned().into(), thread.map(Text::from))
        })
    }
}

/// Everything a shard's chat receives, by the role it is for: each role
/// matches only its own mail ([`super::Chat::handle`] routes).
#[derive(Debug)]
pub(crate) enum Mail {
    ChannelOwner(ToChannelOwner),
    ConnShard(ToConnShard),
    UserOwner(ToUserOwner),
    /// Store writer → every shard, in commit order: delivered by the
    /// connection side ([`super::conn::ConnSide`]).
    Committed(Arc<Vec<Committed>>),
}

/// To a channel's owner shard: from connections' shards, REST, the user
/// owner (presence frames), and the store readers (a channel loaded).
#[derive(Debug)]
pub(crate) enum ToChannelOwner {
    /// A connection subscribes, or repeats a join for the ack (with
    /// lastSeq). The owner goes by its own count of the connection, which
    /// is also right when the first join was refused.
    Join {
        channel: Arc<str>,
        user: Arc<str>,
        reply: ReplyTo,
    },
    /// A connection unsubscribes: on `leave_channel` (`reply` set) or on
    /// disconnect.
    Leave {
        channel: Arc<str>,
        user: Arc<str>,
        conn: u64,
        reply: Option<ReplyTo>,
    },
    Publish(Box<Publish>),
    Typing {
        channel: Arc<str>,
        user: Arc<str>,
        typing: bool,
        /// In the thread of this message.
        thread: Option<u64>,
        reply: ReplyTo,
    },
    /// A frame for every subscriber of a channel (presence, edits).
    ChannelEmit {
        channel: Arc<str>,
        frame: Text,
    },
    /// The channel changed in the store (REST): reload before the next use.
    /// `done` is answered once later commands wait for the reload, so the
    /// REST answer comes after the owner stopped using the old state.
    Invalidate {
        channel: Arc<str>,
        done: oneshot::Sender<()>,
    },
    /// From a store reader: the channel's record, members and last seq.
    ChannelLoaded {
        channel: Arc<str>,
        result: Result<Option<LoadedChannel>, String>,
    },
    /// Several instances: `user`'s first subscription to the channel
    /// cluster-wide came (`joined`) or its last one went, by this
    /// instance's doing or a dead one's: announce user_joined / user_left.
    SubEdge {
        channel: Arc<str>,
        user: Arc<str>,
        joined: bool,
    },
    /// Several instances: another instance changed a member of a cached
    /// channel (a public channel joined or left).
    Member {
        channel: Arc<str>,
        user: Arc<str>,
        added: bool,
    },
    /// Several instances: Redis came back; invalidations may have been
    /// missed, so every cached channel is dropped or reloaded.
    Reconnected,
}

/// To the shard of a connection: from channel owners, the user owner, the
/// store readers (a recovery's replay) and the Redis sessions thread.
#[derive(Debug)]
pub(crate) enum ToConnShard {
    /// The owner counted the subscription: start delivering to it.
    /// `last_seq` is the store's at load time; the shard knows later ones.
    Joined {
        channel: Arc<str>,
        channel_json: Arc<str>,
        last_seq: u64,
        /// The channel's number, for the Gatrix dialect (0: none).
        num: u64,
        reply: ReplyTo,
    },
    /// The owner refused the join: forget the pending subscription.
    JoinFailed {
        channel: Arc<str>,
        error: ChatError,
        reply: ReplyTo,
    },
    /// A broadcast frame for the shard's subscribers of `channel`, except
    /// the connection `except`.
    Deliver {
        channel: Arc<str>,
        frame: Text,
        except: Option<u64>,
    },
    /// A ready frame for one connection (an ack, an error, a presence
    /// update for the user's own connections).
    Frame { conn: u64, frame: Text },
    /// From a store reader: a recovering connection's gap size or a page
    /// of its missed messages.
    Replayed { conn: u64, step: ReplayStep },
    /// From the Redis sessions thread, after Redis came back: write every
    /// live session of the shard again.
    RewriteSessions,
    /// From a store reader: the channel numbered `num` (the Gatrix
    /// dialect's id), for a Gatrix connection's join.
    GatrixJoin {
        reply: ReplyTo,
        num: u64,
        channel: Result<Option<String>, String>,
    },
    /// From a store reader: whether the user of a Gatrix CONNECT held for
    /// `gatrix_require_known_users` is in the directory (`Err`: the store
    /// failed).
    GatrixKnown {
        conn: u64,
        found: Result<bool, String>,
    },
}

/// To a user's owner shard (presence): from connections' shards and
/// channel owners.
#[derive(Debug)]
pub(crate) enum ToUserOwner {
    Online {
        user: Arc<str>,
        conn: u64,
    },
    Offline {
        user: Arc<str>,
        conn: u64,
    },
    /// Channel membership changed (joined, or left for good).
    Member {
        user: Arc<str>,
        channel: Arc<str>,
        added: bool,
    },
    /// Several instances: `user`'s cluster-wide status (`online`: counted
    /// on some live instance) after this instance's count changed or was
    /// queried; `edge` when that change was the cluster-wide first
    /// connection (`true`) or last disconnection (`false`).
    Cluster {
        user: Arc<str>,
        online: bool,
        edge: Option<bool>,
        /// On an edge: the user's presence list as kept in Redis.
        channels: Vec<Arc<str>>,
    },
    /// Several instances: another instance announced `user`'s presence.
    Remote {
        user: Arc<str>,
        online: bool,
        frame: Text,
        channels: Vec<Arc<str>>,
    },
    /// Several instances: Redis came back; the users' statuses are asked
    /// again, so announcements missed meanwhile are made.
    Reread,
}

impl From<ToChannelOwner> for Mail {
    fn from(m: ToChannelOwner) -> Self {
        Mail::ChannelOwner(m)
    }
}

impl From<ToConnShard> for Mail {
    fn from(m: ToConnShard) -> Self {
        Mail::ConnShard(m)
    }
}

impl From<ToUserOwner> for Mail {
    fn from(m: ToUserOwner) -> Self {
        Mail::UserOwner(m)
    }
}

/// What the store answers a recovery, step by step.
#[derive(Debug)]
pub(crate) enum ReplayStep {
    /// How many messages the gap holds, counted up to the cap (+1).
    Counted(Result<usize, String>),
    /// The next page of missed messages, in commit order.
    Page(Result<Vec<MessageRecord>, String>),
    /// From the Redis thread: the claimed session, or None (none, another
    /// user's, Redis unreachable), for the claim made under `owner` (a
    /// `41` and a new CONNECT on the same link make another claim).
    Claimed {
        owner: Box<str>,
        entry: Option<super::recovery::Entry>,
    },
}

/// A send on its way to the channel owner: the message, who sends it, and
/// where the answer goes.
#[derive(Debug)]
pub(crate) struct Publish {
    pub message: SendMessage,
    pub user: Arc<str>,
    pub requester: Requester,
    /// When the send arrived at the server (chat_broadcast_latency).
    pub received: Instant,
}

/// The shard that owns a connection id.
pub(crate) fn shard_of_conn(conn: u64) -> usize {
    (conn >> 48) as usize
}

/// A process-unique connection id: shard in the high 16 bits.
pub(crate) fn conn_id(shard: usize, counter: u64) -> u64 {
    ((shard as u64) << 48) | (counter & ((1 << 48) - 1))
}
