//! What REST requests on one shard are answered with ([`Context`]): REST's
//! own handles on the authenticator, the store, the shard's id generator
//! and its metrics, and [`ChatApi`], the narrow handle on chat for the
//! commands that must pass through a channel's owner. Built once per shard
//! (`shard::run`), shared by every REST connection of the shard.

use std::rc::Rc;
use std::sync::Arc;

use futures::channel::oneshot;

use crate::auth::Authenticator;
use crate::chat::commands::SendMessage;
use crate::chat::{Chat, ChatError, ChatStore};
use crate::metrics::ShardMetrics;
use crate::store::MessageRecord;

pub(crate) struct Context {
    /// Verifies the bearer tokens (the same keys as a Socket.IO CONNECT).
    pub auth: Arc<Authenticator>,
    /// The store threads' queues, the ones chat uses.
    pub store: ChatStore,
    /// This shard's metric handles.
    pub metrics: ShardMetrics,
    /// The content limit shared by `send_message` and REST sends and edits.
    pub max_message_length: usize,
    pub chat: ChatApi,
    /// The Gatrix REST dialect, with `gatrix_compat` on.
    pub gatrix: Option<super::GatrixRest>,
}

/// What REST asks of chat on its shard: only the commands that go through
/// a channel's owner, so that they are ordered with the Socket.IO ones
/// (sends, cache invalidation, broadcasts of edits and deletions).
pub(crate) struct ChatApi(Rc<Chat>);

impl ChatApi {
    pub(crate) fn new(chat: Rc<Chat>) -> Self {
        Self(chat)
    }

    /// Sends `message` from `user` as `send_message` does; resolves once
    /// it is durable or refused ([`Chat::publish`]).
    pub(crate) fn publish(
        &self,
        user: &str,
        message: SendMessage,
    ) -> oneshot::Receiver<Result<MessageRecord, ChatError>> {
        self.0.publish(user, message)
    }

    /// The channel changed in the store: its owner reloads it
    /// ([`Chat::invalidate_channel`]).
    pub(crate) fn invalidate_channel(&self, channel: &str) -> oneshot::Receiver<()> {
        self.0.invalidate_channel(channel)
    }

    /// A user of the directory changed: other instances forget their copy
    /// ([`Chat::user_changed`]).
    pub(crate) fn user_changed(&self, user: &str) {
        self.0.user_changed(user);
    }

    /// Broadcasts `42["<event>",<body>]` to the channel's subscribers.
    pub(crate) fn emit_to_channel(&self, channel: &str, event: &str, body_json: &str) {
        self.0.emit_to_channel(channel, event, body_json);
    }
}
