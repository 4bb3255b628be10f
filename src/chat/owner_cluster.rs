//! The channel owner with several instances: frames for every instance's
//! subscribers (`broadcast`), user_joined / user_left on the cluster-wide
//! first subscription and last unsubscription of a user (answered by the
//! presence thread, [`super::cluster`]), members changed here published
//! and by another instance applied, and the cache dropped after Redis came
//! back.

use std::sync::Arc;

use serde_json::json;

use super::cluster::Kind;
use super::message::event_frame;
use super::owner::{Cache, ChannelOwner, ChannelState};
use crate::protocol::Text;

impl ChannelOwner {
    /// A frame for every subscriber, here and (published) on the other
    /// instances.
    pub(super) fn broadcast(
        &self,
        st: &ChannelState,
        channel: &Arc<str>,
        frame: Text,
        except: Option<u64>,
    ) {
        self.hub.publish(|| super::cluster::Event::Emit {
            channel: channel.to_string(),
            frame: frame.as_str().to_owned(),
        });
        self.fan_out(st, channel, frame, except);
    }

    /// A member this instance added or removed, for the other instances'
    /// caches.
    pub(super) fn member_published(&self, channel: &str, user: &str, added: bool) {
        self.hub.publish(|| super::cluster::Event::Member {
            channel: channel.to_owned(),
            user: user.to_owned(),
            added,
        });
    }

    /// `user`'s first subscription to `channel` on this instance came
    /// (`subscribed`) or its last went: told to the presence thread as a
    /// count of 1 or 0. A full queue leaves it for the tick.
    pub(super) fn send_sub(&self, channel: &Arc<str>, user: &Arc<str>, subscribed: bool) {
        let Some(c) = &self.hub.cluster else { return };
        let key = (channel.clone(), user.clone());
        if c.count(Kind::Subs, user, Some(channel), subscribed.into()) {
            self.unsent.borrow_mut().remove(&key);
        } else {
            self.unsent.borrow_mut().insert(key);
        }
    }

    /// On the tick: subscriptions a full queue refused, sent again as they
    /// are now.
    pub(super) fn resend(&self) {
        if self.unsent.borrow().is_empty() {
            return;
        }
        let keys: Vec<(Arc<str>, Arc<str>)> = self.unsent.borrow().iter().cloned().collect();
        for (channel, user) in keys {
            let subscribed = self
                .channels
                .borrow()
                .get(&channel)
                .is_some_and(|st| st.users.contains_key(&user));
            self.send_sub(&channel, &user, subscribed);
        }
    }

    /// The cluster's answer: `user`'s first subscription to `channel`
    /// (`joined`) or its last is gone, on any instance, or on a dead one
    /// reaped here. Told to this instance's subscribers (not the joining
    /// connection) and the other instances'.
    pub(super) fn sub_edge(&self, channel: Arc<str>, user: Arc<str>, joined: bool) {
        let event = if joined { "user_joined" } else { "user_left" };
        let frame = user_frame(&channel, event, &user);
        self.hub.publish(|| super::cluster::Event::Emit {
            channel: channel.to_string(),
            frame: frame.as_str().to_owned(),
        });
        let mut channels = self.channels.borrow_mut();
        if let Some(st) = channels.get_mut(&channel) {
            let except = st.joining.remove(&user);
            self.fan_out(st, &channel, frame, except);
        }
    }

    /// Another instance added or removed a member of `channel` (a public
    /// channel joined, or left for good): the cache follows, so that sends
    /// here see the membership at once.
    pub(super) fn member_changed(&self, channel: Arc<str>, user: Arc<str>, added: bool) {
        let mut channels = self.channels.borrow_mut();
        let Some(st) = channels.get_mut(&channel) else {
            return;
        };
        match &mut st.cache {
            Cache::Ready(info) => {
                if added {
                    info.members.insert(user);
                } else {
                    info.members.remove(&user);
                }
            }
            // A load under way may predate the change: load again.
            Cache::Loading { stale, .. } => *stale = true,
            Cache::Absent | Cache::Gone => {}
        }
    }

    /// Redis came back: invalidations from other instances may have been
    /// missed. Channels in use are reloaded, the others dropped.
    pub(super) fn reconnected(&self) {
        let mut reload = Vec::new();
        self.channels.borrow_mut().retain(|channel, st| {
            if !matches!(st.cache, Cache::Ready(_)) {
                return true;
            }
            if st.in_use() {
                reload.push(channel.clone());
                return true;
            }
            false
        });
        for channel in reload {
            self.invalidate(channel);
        }
    }
}

/// A `user_joined` or `user_left` frame.
pub(super) fn user_frame(channel: &str, event: &str, user: &str) -> Text {
    let body = json!({"channelId": channel, "userId": user}).to_string();
    event_frame(event, &body).into()
}
