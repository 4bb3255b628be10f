//! User owner: presence. Counts each user's connections across shards and
//! remembers the channels the user is a member of, so that when the user's
//! first connection arrives or last one leaves, a `presence_update` reaches
//! the members of those channels and the user's own connections.
//!
//! Announcements are coalesced per user ([`Herald`]): at most one per
//! `presence_interval_ms`. A change within the interval after the last
//! announcement waits for its end, and is then announced only if the
//! user's status still differs from the last one announced. So a user whose
//! connections come and go thousands of times a second (a client cycling
//! `41`/`40`) costs the members of its channels one event per interval,
//! and everyone ends up told the user's real final status.
//!
//! Several instances (`presence_cluster.rs`): the first connection and
//! last disconnection are cluster-wide, answered by the presence thread
//! ([`super::cluster`]); the owner whose instance made the edge announces
//! it, here and (published) on the other instances.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::Hub;
use super::herald::Herald;
use super::mail::{ToChannelOwner, ToConnShard, ToUserOwner, shard_of_conn};
use super::message::{self, event_frame};

#[derive(Default)]
pub(super) struct UserState {
    pub(super) conns: Vec<u64>,
    pub(super) channels: HashSet<Arc<str>>,
    pub(super) herald: Herald,
    /// Several instances: the channels of the user's presence list kept
    /// in Redis (joins seen by other instances), as of the last edge;
    /// announced to along with `channels`.
    pub(super) shared: HashSet<Arc<str>>,
    /// When the status last changed (the `lastSeen` of its announcement).
    pub(super) since: String,
}

impl UserState {
    /// Nothing left to tell anyone here: the entry may go.
    pub(super) fn idle(&self) -> bool {
        self.conns.is_empty() && self.channels.is_empty() && !self.herald.pending
    }
}

/// The user owner of one shard: presence of the users it owns.
///
/// The rest of chat reaches it only through [`ToUserOwner`] mail (a
/// connection came or went, a membership changed, and with several
/// instances the presence thread's answers and the other instances'
/// announcements), and the tick's [`UserOwner::settle`]; what it says goes
/// out as `ChannelEmit` and `Frame` mail, and to the other instances.
pub(super) struct UserOwner {
    pub(super) hub: Rc<Hub>,
    /// Users this shard owns.
    pub(super) users: RefCell<HashMap<Arc<str>, UserState>>,
    /// Users with a presence change waiting for its interval.
    pub(super) presence_pending: RefCell<Vec<Arc<str>>>,
    /// Several instances: users whose connection count could not be
    /// queued for the presence thread; sent again on the tick.
    pub(super) unsent: RefCell<HashSet<Arc<str>>>,
    /// Several instances: users whose status is asked again after Redis
    /// came back; an answer that differs from the last announcement is a
    /// change.
    pub(super) rereading: RefCell<HashSet<Arc<str>>>,
}

impl UserOwner {
    pub(super) fn new(hub: Rc<Hub>) -> Self {
        Self {
            hub,
            users: RefCell::default(),
            presence_pending: RefCell::default(),
            unsent: RefCell::default(),
            rereading: RefCell::default(),
        }
    }

    /// Mail for the user owner.
    pub(super) fn handle(&self, mail: ToUserOwner) {
        match mail {
            ToUserOwner::Online { user, conn } => self.online(user, conn),
            ToUserOwner::Offline { user, conn } => self.offline(user, conn),
            ToUserOwner::Member {
                user,
                channel,
                added,
            } => self.member(user, channel, added),
            ToUserOwner::Cluster {
                user,
                online,
                edge,
                channels,
            } => self.cluster(user, online, edge, channels),
            ToUserOwner::Remote {
                user,
                online,
                frame,
                channels,
            } => self.remote(user, online, frame, channels),
            ToUserOwner::Reread => self.reread(),
        }
    }

    /// A connection of `user` authenticated.
    pub(super) fn online(&self, user: Arc<str>, conn: u64) {
        let mut users = self.users.borrow_mut();
        let u = users.entry(user.clone()).or_default();
        u.conns.push(conn);
        if self.hub.cluster.is_some() {
            let n = u.conns.len();
            drop(users);
            return self.send_count(&user, n);
        }
        if u.conns.len() == 1 {
            self.status_changed(&user, u, true);
        }
    }

    /// A connection of `user` went.
    pub(super) fn offline(&self, user: Arc<str>, conn: u64) {
        let mut users = self.users.borrow_mut();
        let Some(u) = users.get_mut(&user) else {
            return;
        };
        let before = u.conns.len();
        u.conns.retain(|c| *c != conn);
        if self.hub.cluster.is_some() {
            // The entry stays for the answer (`cluster`), which removes it.
            let n = u.conns.len();
            drop(users);
            if n != before {
                self.send_count(&user, n);
            }
            return;
        }
        if before > 0 && u.conns.is_empty() {
            self.status_changed(&user, u, false);
            // Nobody is left to tell anything: a pending change goes too.
            if u.channels.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// `user` became (`added`) or stopped being a member of `channel`.
    pub(super) fn member(&self, user: Arc<str>, channel: Arc<str>, added: bool) {
        if let Some(c) = &self.hub.cluster {
            c.member(&user, &channel, added);
        }
        let mut users = self.users.borrow_mut();
        if added {
            users.entry(user).or_default().channels.insert(channel);
        } else if let Some(u) = users.get_mut(&user) {
            u.channels.remove(&channel);
            u.shared.remove(&channel);
            if u.channels.is_empty() && u.conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// The user's first connection came or last one went (here, or with
    /// several instances cluster-wide): announce it now, or when the
    /// coalescing interval ends.
    pub(super) fn status_changed(&self, user: &Arc<str>, u: &mut UserState, online: bool) {
        u.since = message::now();
        let every = self.hub.limits.presence_interval;
        let was_pending = u.herald.pending;
        if u.herald.changed(online, Instant::now(), every) {
            self.presence(user, u, online);
        } else if !was_pending && u.herald.pending {
            self.presence_pending.borrow_mut().push(user.clone());
        }
    }

    /// On the tick: announces the coalesced changes whose interval ended.
    /// With several instances, it asks for the user's cluster-wide status
    /// first (another instance may have changed it): the answer settles.
    pub(super) fn settle(&self) {
        if self.presence_pending.borrow().is_empty() {
            return;
        }
        let now = Instant::now();
        let every = self.hub.limits.presence_interval;
        let mut users = self.users.borrow_mut();
        self.presence_pending.borrow_mut().retain(|user| {
            let Some(u) = users.get_mut(user) else {
                return false; // gone, with nobody left to tell
            };
            if let Some(c) = &self.hub.cluster {
                if u.herald.due(now, every) {
                    // Full queue: asked again on the next tick.
                    c.query(user);
                }
                return u.herald.pending;
            }
            let online = !u.conns.is_empty();
            if let Some(online) = u.herald.settle(online, now, every) {
                self.presence(user, u, online);
            }
            u.herald.pending
        });
    }

    /// Sends one `presence_update` to each of the user's channels (through
    /// their owners) and to the user's own connections, and with several
    /// instances to theirs.
    pub(super) fn presence(&self, user: &str, u: &UserState, online: bool) {
        let status = if online { "online" } else { "offline" };
        let body = json!({"userId": user, "status": status, "lastSeen": u.since}).to_string();
        let frame: crate::protocol::Text = event_frame("presence_update", &body).into();
        let shared = u.shared.iter().filter(|c| !u.channels.contains(*c));
        let channels: Vec<&Arc<str>> = u.channels.iter().chain(shared).collect();
        self.hub.publish(|| super::cluster::Event::Presence {
            user: user.to_owned(),
            online,
            frame: frame.as_str().to_owned(),
            channels: channels.iter().map(|c| c.to_string()).collect(),
        });
        self.deliver(frame, channels.into_iter(), &u.conns);
    }

    /// A `presence_update` frame to the subscribers of `channels` on this
    /// instance and to `conns`.
    pub(super) fn deliver<'a>(
        &self,
        frame: crate::protocol::Text,
        channels: impl Iterator<Item = &'a Arc<str>>,
        conns: &[u64],
    ) {
        for channel in channels {
            let mail = ToChannelOwner::ChannelEmit {
                channel: channel.clone(),
                frame: frame.clone(),
            };
            self.hub.post(self.hub.owner_shard(channel), mail);
        }
        for &conn in conns {
            self.hub.post(
                shard_of_conn(conn),
                ToConnShard::Frame {
                    conn,
                    frame: frame.clone(),
                },
            );
        }
    }
}
