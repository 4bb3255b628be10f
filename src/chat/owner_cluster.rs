//! The channel owner with several instances: user_joined / user_left on
//! the cluster-wide first subscription and last unsubscription of a user
//! (answered by the presence thread, [`super::cluster`]), members changed
//! by another instance, and the cache dropped after Redis came back.

use std::sync::Arc;

use super::cluster::Kind;
use super::owner::{Cache, ChannelOwner, user_frame};

impl ChannelOwner {
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
