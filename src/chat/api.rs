//! What the REST layer asks of chat on its shard (through
//! `rest::context::ChatApi`): commands that must pass through a channel's
//! owner (sends, cache invalidation, broadcasts of edits and deletions).

use std::sync::Arc;

use futures::channel::oneshot;

use super::mail::{Mail, Origin, Publish};
use super::message::event_frame;
use super::{Chat, ChatError};
use crate::store::MessageRecord;

/// A message to send through REST, validated like `send_message`.
pub(crate) struct RestSend {
    pub channel: String,
    pub user: String,
    pub content: String,
    pub kind: String,
    pub client_message_id: Option<String>,
    pub reply_to: Option<String>,
}

impl Chat {
    /// Sends a message as `send_message` does (membership checked by the
    /// owner, stored, broadcast); resolves once it is durable or refused.
    pub(crate) fn publish(
        &self,
        m: RestSend,
    ) -> oneshot::Receiver<Result<MessageRecord, ChatError>> {
        let (tx, rx) = oneshot::channel();
        let channel: Arc<str> = m.channel.into();
        let publish = Publish {
            channel: channel.clone(),
            user: m.user.into(),
            content: m.content,
            kind: m.kind,
            client_message_id: m.client_message_id,
            reply_to: m.reply_to,
            origin: Origin::Rest(tx),
            received: std::time::Instant::now(),
        };
        self.post(self.owner(&channel), Mail::Publish(Box::new(publish)));
        rx
    }

    /// The channel changed in the store: its owner reloads it. Resolves
    /// once commands that reach the owner after it wait for the reload, so
    /// that a REST answer awaiting it is not followed by a send or typing
    /// checked against the old channel (e.g. after a DELETE's 204).
    pub(crate) fn invalidate_channel(&self, channel: &str) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let channel: Arc<str> = channel.into();
        self.post(self.owner(&channel), Mail::Invalidate { channel, done });
        rx
    }

    /// Broadcasts `42["<event>",<body>]` to the channel's subscribers.
    pub(crate) fn emit_to_channel(&self, channel: &str, event: &str, body_json: &str) {
        let channel: Arc<str> = channel.into();
        let frame = event_frame(event, body_json).into();
        self.post(self.owner(&channel), Mail::ChannelEmit { channel, frame });
    }
}
