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

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Hub;
use super::mail::{ToChannelOwner, ToConnShard, ToUserOwner, shard_of_conn};
use super::message::{self, event_frame};

#[derive(Default)]
pub(super) struct UserState {
    conns: Vec<u64>,
    channels: HashSet<Arc<str>>,
    herald: Herald,
    /// When the status last changed (the `lastSeen` of its announcement).
    since: String,
}

/// What others were last told about one user's status, and when.
#[derive(Debug, Default)]
pub(super) struct Herald {
    /// The status last announced (offline before any).
    online: bool,
    /// When it was announced.
    at: Option<Instant>,
    /// A change waits for the interval after `at` to end.
    pending: bool,
}

impl Herald {
    /// The user's status changed to `online` at `now`: whether to announce
    /// it at once. If not, [`Herald::settle`] decides at the interval's end.
    fn changed(&mut self, online: bool, now: Instant, every: Duration) -> bool {
        if self.pending {
            return false;
        }
        if self.at.is_some_and(|at| now < at + every) {
            self.pending = true;
            return false;
        }
        self.announce(online, now)
    }

    /// At or after the end of the interval of a pending change: whether the
    /// status `online` (the user's status now) is to be announced; `None`
    /// while it is not time yet or nothing is pending.
    fn settle(&mut self, online: bool, now: Instant, every: Duration) -> Option<bool> {
        let due = self.at.map_or(now, |at| at + every);
        if !self.pending || now < due {
            return None;
        }
        self.pending = false;
        self.announce(online, now).then_some(online)
    }

    /// Records `online` as announced at `now`, unless it is what was last
    /// announced (the user flapped back): then there is nothing to say.
    fn announce(&mut self, online: bool, now: Instant) -> bool {
        if online == self.online {
            return false;
        }
        self.online = online;
        self.at = Some(now);
        true
    }
}

/// The user owner of one shard: presence of the users it owns.
///
/// The seam for presence across instances: the rest of chat reaches it
/// only through [`ToUserOwner`] mail (a connection came or went, a
/// membership changed), routed to [`UserOwner::online`],
/// [`UserOwner::offline`] and [`UserOwner::member`], and the tick's
/// [`UserOwner::settle`]; what it says goes out as `ChannelEmit` and
/// `Frame` mail. A shared (Redis) version would provide the same four
/// calls over state every instance sees: each user's connections counted
/// across instances (with a per-instance expiry, so that a dead instance's
/// connections go), the user's channel memberships, and one coalesced
/// announcement per user and interval whichever instance saw the change,
/// delivered to the channels' subscribers and the user's connections on
/// every instance.
pub(super) struct UserOwner {
    hub: Rc<Hub>,
    /// Users this shard owns.
    users: RefCell<HashMap<Arc<str>, UserState>>,
    /// Users with a presence change waiting for its interval.
    presence_pending: RefCell<Vec<Arc<str>>>,
}

impl UserOwner {
    pub(super) fn new(hub: Rc<Hub>) -> Self {
        Self {
            hub,
            users: RefCell::default(),
            presence_pending: RefCell::default(),
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
        }
    }

    /// A connection of `user` authenticated.
    pub(super) fn online(&self, user: Arc<str>, conn: u64) {
        let mut users = self.users.borrow_mut();
        let u = users.entry(user.clone()).or_default();
        u.conns.push(conn);
        if u.conns.len() == 1 {
            self.status_changed(&user, u);
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
        if before > 0 && u.conns.is_empty() {
            self.status_changed(&user, u);
            // Nobody is left to tell anything: a pending change goes too.
            if u.channels.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// `user` became (`added`) or stopped being a member of `channel`.
    pub(super) fn member(&self, user: Arc<str>, channel: Arc<str>, added: bool) {
        let mut users = self.users.borrow_mut();
        if added {
            users.entry(user).or_default().channels.insert(channel);
        } else if let Some(u) = users.get_mut(&user) {
            u.channels.remove(&channel);
            if u.channels.is_empty() && u.conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// The user's first connection came or last one went: announce it now,
    /// or when the coalescing interval ends.
    fn status_changed(&self, user: &Arc<str>, u: &mut UserState) {
        u.since = message::now();
        let online = !u.conns.is_empty();
        let every = self.hub.limits.presence_interval;
        let was_pending = u.herald.pending;
        if u.herald.changed(online, Instant::now(), every) {
            self.presence(user, u, online);
        } else if !was_pending && u.herald.pending {
            self.presence_pending.borrow_mut().push(user.clone());
        }
    }

    /// On the tick: announces the coalesced changes whose interval ended.
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
            let online = !u.conns.is_empty();
            if let Some(online) = u.herald.settle(online, now, every) {
                self.presence(user, u, online);
            }
            u.herald.pending
        });
    }

    /// Sends one `presence_update` to each of the user's channels (through
    /// their owners) and to the user's own connections.
    fn presence(&self, user: &str, u: &UserState, online: bool) {
        let status = if online { "online" } else { "offline" };
        let body = json!({"userId": user, "status": status, "lastSeen": u.since}).to_string();
        let frame: crate::protocol::Text = event_frame("presence_update", &body).into();
        for channel in &u.channels {
            let mail = ToChannelOwner::ChannelEmit {
                channel: channel.clone(),
                frame: frame.clone(),
            };
            self.hub.post(self.hub.owner_shard(channel), mail);
        }
        for &conn in &u.conns {
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

#[cfg(test)]
mod tests {
    use super::Herald;
    use std::time::{Duration, Instant};

    const EVERY: Duration = Duration::from_secs(1);

    #[test]
    fn first_change_is_announced_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY), "first online");
        // Offline 10 ms later: waits for the interval's end.
        assert!(!h.changed(false, t0 + EVERY / 100, EVERY));
        assert_eq!(h.settle(false, t0 + EVERY / 2, EVERY), None, "not yet");
        assert_eq!(h.settle(false, t0 + EVERY, EVERY), Some(false));
        assert!(!h.pending);
        // Long after: at once again.
        assert!(h.changed(true, t0 + 5 * EVERY, EVERY));
    }

    #[test]
    fn flapping_is_coalesced_into_the_final_status() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY));
        // Thousands of changes within the interval: none announced.
        let mut online = true;
        for i in 1..=2000u32 {
            online = !online;
            assert!(!h.changed(online, t0 + EVERY * i / 4000, EVERY));
        }
        // Ended online (an even count of flips), as announced: nothing to say.
        assert!(online);
        assert_eq!(h.settle(online, t0 + EVERY, EVERY), None);
        assert!(!h.pending);
        // Ending offline instead is announced once, at the interval's end.
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY));
        for i in 1..=2001u32 {
            online = i % 2 == 0;
            h.changed(online, t0 + EVERY * i / 4002, EVERY);
        }
        assert!(!online);
        assert_eq!(h.settle(online, t0 + EVERY, EVERY), Some(false));
    }

    #[test]
    fn zero_interval_announces_every_change() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        for i in 0..10u32 {
            assert!(h.changed(i % 2 == 0, t0, Duration::ZERO));
        }
    }
}
