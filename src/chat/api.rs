//! What the REST layer asks of chat on its shard (through
//! `rest::context::ChatApi`): commands that must pass through a channel's
//! owner shard (sends, cache invalidation, broadcasts of edits and
//! deletions).

use std::sync::Arc;

use futures::channel::oneshot;

use super::commands::SendMessage;
use super::mail::{Publish, Requester, ToChannelOwner};
use super::message::event_frame;
use super::{Chat, ChatError};
use crate::store::MessageRecord;

impl Chat {
    /// Sends `message` from `user` as `send_message` does (membership
    /// checked by the channel owner, stored, broadcast); resolves once it
    /// is durable or refused.
    pub(crate) fn publish(
        &self,
        user: &str,
        message: SendMessage,
    ) -> oneshot::Receiver<Result<MessageRecord, ChatError>> {
        let (tx, rx) = oneshot::channel();
        let shard = self.hub.owner_shard(&message.channel);
        let publish = Publish {
            message,
            user: user.into(),
            requester: Requester::Rest(tx),
            received: std::time::Instant::now(),
        };
        self.hub
            .post(shard, ToChannelOwner::Publish(Box::new(publish)));
        rx
    }

    /// The channel changed in the store: its owner reloads it. Resolves
    /// once commands that reach the owner after it wait for the reload, so
    /// that a REST answer awaiting it is not followed by a send or typing
    /// checked against the old channel (e.g. after a DELETE's 204).
    pub(crate) fn invalidate_channel(&self, channel: &str) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        self.hub.publish(|| super::cluster::Event::Invalidate {
            channel: channel.to_owned(),
        });
        let channel: Arc<str> = channel.into();
        let shard = self.hub.owner_shard(&channel);
        self.hub
            .post(shard, ToChannelOwner::Invalidate { channel, done });
        rx
    }

    /// A user of the directory changed here: the other instances forget
    /// their copy (at most once, as every cluster event).
    pub(crate) fn user_changed(&self, user: &str) {
        self.hub.publish(|| super::cluster::Event::User {
            user: user.to_owned(),
        });
    }

    /// Broadcasts `42["<event>",<body>]` to the channel's subscribers, on
    /// every instance (at most once on the others).
    pub(crate) fn emit_to_channel(&self, channel: &str, event: &str, body_json: &str) {
        let frame = event_frame(event, body_json);
        self.hub.publish(|| super::cluster::Event::Emit {
            channel: channel.to_owned(),
            frame: frame.clone(),
        });
        let channel: Arc<str> = channel.into();
        let frame = frame.into();
        let shard = self.hub.owner_shard(&channel);
        self.hub
            .post(shard, ToChannelOwner::ChannelEmit { channel, frame });
    }
}
