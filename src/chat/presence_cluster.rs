//! The user owner with several instances: its connection counts go to the
//! presence thread ([`super::cluster`]), whose answers say when a change
//! was the user's first connection or last disconnection cluster-wide, and
//! the other instances' announcements reach this instance's recipients.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::cluster::Kind;
use super::presence::UserOwner;
use crate::protocol::Text;

impl UserOwner {
    /// Queues this instance's count of `user`'s connections; a full queue
    /// leaves it for the tick ([`UserOwner::resend`]).
    pub(super) fn send_count(&self, user: &Arc<str>, n: usize) {
        let Some(c) = &self.hub.cluster else { return };
        if c.count(Kind::Users, user, None, n as u32) {
            self.unsent.borrow_mut().remove(user);
        } else {
            self.unsent.borrow_mut().insert(user.clone());
        }
    }

    /// On the tick: counts a full queue refused, sent again (the current
    /// ones: a count is absolute, so the last one is all that matters).
    pub(super) fn resend(&self) {
        if self.unsent.borrow().is_empty() {
            return;
        }
        let users: Vec<Arc<str>> = self.unsent.borrow().iter().cloned().collect();
        for user in users {
            let n = self.users.borrow().get(&user).map_or(0, |u| u.conns.len());
            self.send_count(&user, n);
        }
    }

    /// The presence thread's answer: `user`'s cluster-wide status, and
    /// whether this instance's change made an edge.
    pub(super) fn cluster(
        &self,
        user: Arc<str>,
        online: bool,
        edge: Option<bool>,
        channels: Vec<Arc<str>>,
    ) {
        let now = Instant::now();
        let every = self.hub.limits.presence_interval;
        let mut users = self.users.borrow_mut();
        let reread = self.rereading.borrow_mut().remove(&user);
        // An edge is announced even when nothing is known here of the user
        // (a dead instance's, reaped here): the other instances add the
        // channels they know.
        let u = match edge {
            Some(_) => users.entry(user.clone()).or_default(),
            None => match users.get_mut(&user) {
                Some(u) => u,
                None => return,
            },
        };
        match edge {
            Some(e) => {
                u.shared = channels.into_iter().collect();
                self.status_changed(&user, u, e)
            }
            // Redis came back: what the recipients were last told may be
            // stale.
            None if reread && !u.herald.pending && u.herald.online != online => {
                self.status_changed(&user, u, online)
            }
            None => {
                if u.herald.due(now, every)
                    && let Some(online) = u.herald.settle(online, now, every)
                {
                    self.presence(&user, u, online);
                }
            }
        }
        if u.idle() && !self.unsent.borrow().contains(&user) {
            users.remove(&user);
        }
    }

    /// Another instance announced `user`'s status: delivered to this
    /// instance's subscribers of the announced channels and of the user's
    /// presence list here (one copy per channel), and to the user's
    /// connections here.
    pub(super) fn remote(
        &self,
        user: Arc<str>,
        online: bool,
        frame: Text,
        channels: Vec<Arc<str>>,
    ) {
        let mut users = self.users.borrow_mut();
        let mut targets: HashSet<Arc<str>> = channels.into_iter().collect();
        let conns = match users.get_mut(&user) {
            Some(u) => {
                u.herald.heard(online, Instant::now());
                targets.extend(u.channels.iter().cloned());
                u.conns.clone()
            }
            None => Vec::new(),
        };
        drop(users);
        self.deliver(frame, targets.iter(), &conns);
    }

    /// Redis came back: every user's status is asked again.
    pub(super) fn reread(&self) {
        let Some(c) = &self.hub.cluster else { return };
        let users: Vec<Arc<str>> = self.users.borrow().keys().cloned().collect();
        let mut rereading = self.rereading.borrow_mut();
        for user in users {
            if c.query(&user) {
                rereading.insert(user);
            }
        }
    }
}
