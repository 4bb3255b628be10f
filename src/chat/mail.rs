//! What shards say to each other about chat. Everything here is `Send`: it
//! crosses the mailbox rings. Frames are encoded once by whoever produces
//! them and shared (`Utf8Bytes` is reference-counted).

use std::sync::Arc;

use tungstenite::Utf8Bytes;

/// Where a command's answer goes: the connection (its shard is in the id's
/// high bits) and the client's ack id, if it asked for one.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub conn: u64,
    pub ack: Option<u64>,
}

#[derive(Debug)]
pub enum Mail {
    // ---- connection's shard → channel owner
    /// A connection subscribes. `repeat`: it was subscribed already and only
    /// wants the ack (with lastSeq).
    Join {
        channel: Arc<str>,
        user: Arc<str>,
        reply: ReplyTo,
        repeat: bool,
    },
    /// A connection unsubscribes: on `leave_channel` (`reply` set, membership
    /// ends once the user's last connection leaves) or on disconnect.
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
        reply: ReplyTo,
    },
    /// A frame for every subscriber of a channel (presence updates).
    ChannelEmit {
        channel: Arc<str>,
        frame: Utf8Bytes,
    },

    // ---- channel owner → connection's shard
    /// The owner counted the subscription: start delivering to it.
    Joined {
        channel: Arc<str>,
        last_seq: u64,
        reply: ReplyTo,
    },
    /// A broadcast frame for the shard's subscribers of `channel`, except
    /// the connection `except`.
    Deliver {
        channel: Arc<str>,
        frame: Utf8Bytes,
        except: Option<u64>,
    },
    /// A ready frame for one connection (an ack, an error, a presence
    /// update for the user's own connections).
    ToConn {
        conn: u64,
        frame: Utf8Bytes,
    },

    // ---- → user owner (presence)
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
}

#[derive(Debug)]
pub struct Publish {
    pub channel: Arc<str>,
    pub user: Arc<str>,
    pub content: String,
    pub kind: String,
    pub client_message_id: Option<String>,
    pub reply_to: Option<String>,
    pub reply: ReplyTo,
}

/// The shard that owns a connection id.
pub fn shard_of_conn(conn: u64) -> usize {
    (conn >> 48) as usize
}

/// A process-unique connection id: shard in the high 16 bits.
pub fn conn_id(shard: usize, counter: u64) -> u64 {
    ((shard as u64) << 48) | (counter & ((1 << 48) - 1))
}
