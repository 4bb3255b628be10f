//! The dropped sessions kept for recovery (small, few, and forgotten
//! oldest first), and the claim a reconnecting client makes on one.
//!
//! A flood of connections that join and drop must not grow memory for the
//! whole recovery window, so a kept session is one compact entry (the pid
//! inline, the channel names shared with the rest of the shard, no
//! per-connection buffer), and their number is capped
//! (`recovery_max_sessions`): saving one beyond the cap forgets the oldest.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::offset::{self, Positions};

/// Length of a pid the server makes (`random_token(15)`: 20 base64 chars).
/// A claimed pid of another length cannot name a session.
pub(super) const PID_LEN: usize = 20;

/// A pid as a key: inline bytes, no allocation per session.
type Pid = [u8; PID_LEN];

/// What a dropped connection leaves for its recovery.
pub(in crate::chat) struct Resumable {
    pub user: Arc<str>,
    /// The channels it had joined (or was joining).
    pub channels: Box<[Arc<str>]>,
    /// Where to replay from when the client sends no offset (it received
    /// no message): the positions when the session started.
    pub start_pos: Positions,
    pub expires: Instant,
}

struct Kept {
    session: Resumable,
    /// Which entry of `order` is this session's: a session taken and saved
    /// again under the same pid leaves a stale entry behind.
    generation: u64,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Pid, Kept>,
    /// Pids in the order saved (so also by expiry: every session gets the
    /// same window), with the generation saved.
    order: VecDeque<(Pid, u64)>,
    generation: u64,
}

impl Inner {
    /// Whether the oldest entry of `order` is still its session's.
    fn front_is_live(&self) -> Option<bool> {
        let (pid, generation) = self.order.front()?;
        Some(
            self.map
                .get(pid)
                .is_some_and(|k| k.generation == *generation),
        )
    }

    /// Forgets the oldest session.
    fn drop_oldest(&mut self) {
        while let Some(live) = self.front_is_live() {
            let Some((pid, _)) = self.order.pop_front() else {
                return;
            };
            if live {
                self.map.remove(&pid);
                return;
            }
        }
    }
}

/// The disconnected sessions of the process, by pid. Shards share it
/// (touched only at connect and disconnect).
///
/// The seam for recovery across instances: chat only [`Sessions::save`]s
/// a dropped connection's session, [`Sessions::take`]s one back at a
/// reconnect, and [`Sessions::sweep`]s the expired on a tick. A shared
/// (Redis) version would provide the same three calls, so that a client
/// may come back through any instance: `save` a key per pid with the
/// recovery window as its TTL (and the cap), `take` atomically (get and
/// delete, checked against the user, so that one reconnect wins and
/// another user's claim destroys nothing), and `sweep` left to the TTL.
pub(crate) struct Sessions {
    inner: Mutex<Inner>,
    max: usize,
}

impl Sessions {
    /// At most `max` sessions are kept; 0 keeps none.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::default(),
            max,
        })
    }

    pub(in crate::chat) fn save(&self, pid: &str, session: Resumable) {
        let Ok(key) = Pid::try_from(pid.as_bytes()) else {
            return; // not a pid this server made: nothing could claim it
        };
        if self.max == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        while inner.map.len() >= self.max && !inner.map.contains_key(&key) {
            inner.drop_oldest();
        }
        inner.generation += 1;
        let generation = inner.generation;
        inner.map.insert(
            key,
            Kept {
                session,
                generation,
            },
        );
        inner.order.push_back((key, generation));
        // Stale entries (sessions taken back) leave at the front or here:
        // `order` stays within twice the sessions kept.
        if inner.order.len() > 2 * inner.map.len() + 64 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(p, g)| map.get(p).is_some_and(|k| k.generation == *g));
        }
    }

    /// Takes a session back if it exists, is fresh, and is the user's.
    pub(in crate::chat) fn take(&self, pid: &str, user: &str) -> Option<Resumable> {
        let key = Pid::try_from(pid.as_bytes()).ok()?;
        let mut inner = self.inner.lock();
        // Another user presenting this pid must not destroy the session.
        if inner.map.get(&key).is_none_or(|k| &*k.session.user != user) {
            return None;
        }
        let kept = inner.map.remove(&key)?;
        (kept.session.expires > Instant::now()).then_some(kept.session)
    }

    /// Forgets expired sessions (the oldest are at the front).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        while let Some(&(pid, generation)) = inner.order.front() {
            let live = match inner.map.get(&pid) {
                Some(k) if k.generation == generation => k.session.expires > now,
                _ => false, // stale: its session was taken back
            };
            if live {
                break;
            }
            inner.order.pop_front();
            if inner
                .map
                .get(&pid)
                .is_some_and(|k| k.generation == generation)
            {
                inner.map.remove(&pid);
            }
        }
        // Give the storage back after a flood.
        let len = inner.map.len();
        if inner.map.capacity() > 4 * len + 1024 {
            inner.map.shrink_to(2 * len);
        }
        if inner.order.capacity() > 4 * inner.order.len() + 1024 {
            let keep = 2 * inner.order.len();
            inner.order.shrink_to(keep);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a reconnecting client presents: `{pid, offset}` in its auth.
pub(crate) struct Claim {
    pub pid: String,
    pub offset: Sent,
}

/// The offset of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// None sent (or not a string): the client received no message; the
    /// replay starts where the session did.
    Nothing,
    /// One position per sequencing partition ([`offset::parse`]).
    Usable(Positions),
    /// Something else (another partition count, garbage): no recovery,
    /// a fresh session.
    Unusable,
}

impl Claim {
    /// The claim in a CONNECT's auth, its offset read for `partitions`
    /// sequencing partitions.
    pub(crate) fn from_auth(auth: Option<&serde_json::Value>, partitions: usize) -> Option<Self> {
        let a = auth?;
        let pid = a.get("pid")?.as_str()?.to_owned();
        let offset = match a.get("offset").and_then(|o| o.as_str()) {
            None => Sent::Nothing,
            Some(o) => offset::parse(o, partitions).map_or(Sent::Unusable, Sent::Usable),
        };
        Some(Self { pid, offset })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(user: &str, ttl: Duration) -> Resumable {
        Resumable {
            user: user.into(),
            channels: Box::new([]),
            start_pos: Positions::from([0]),
            expires: Instant::now() + ttl,
        }
    }

    fn pid(n: usize) -> String {
        format!("{n:0>20}")
    }

    #[test]
    fn beyond_the_cap_the_oldest_is_forgotten() {
        let s = Sessions::new(3);
        let hour = Duration::from_secs(3600);
        for n in 0..5 {
            s.save(&pid(n), session("u", hour));
        }
        assert_eq!(s.len(), 3);
        assert!(s.take(&pid(0), "u").is_none());
        assert!(s.take(&pid(1), "u").is_none());
        assert!(s.take(&pid(2), "u").is_some());
        // Taken and saved again: now the newest, 3 the oldest.
        s.save(&pid(4), session("u", hour));
        s.save(&pid(5), session("u", hour));
        s.save(&pid(6), session("u", hour));
        assert!(s.take(&pid(3), "u").is_none());
        for n in [4, 5, 6] {
            assert!(s.take(&pid(n), "u").is_some(), "{n}");
        }
        assert!(s.is_empty());
    }

    #[test]
    fn another_user_or_a_foreign_pid_takes_nothing() {
        let s = Sessions::new(10);
        s.save(&pid(1), session("alice", Duration::from_secs(60)));
        assert!(s.take(&pid(1), "eve").is_none());
        assert!(s.take("short", "alice").is_none());
        s.save(
            "not a pid of ours",
            session("alice", Duration::from_secs(60)),
        );
        assert_eq!(s.len(), 1);
        assert!(s.take(&pid(1), "alice").is_some());
    }

    #[test]
    fn sweep_forgets_the_expired_and_keeps_the_rest() {
        let s = Sessions::new(10);
        s.save(&pid(1), session("u", Duration::ZERO));
        s.save(&pid(2), session("u", Duration::from_secs(60)));
        s.sweep();
        assert_eq!(s.len(), 1);
        assert!(s.take(&pid(2), "u").is_some());
        assert!(Sessions::new(0).is_empty());
        // After a flood has expired, the storage goes back.
        let flood = Sessions::new(100_000);
        for n in 0..20_000 {
            flood.save(&pid(n), session("u", Duration::ZERO));
        }
        flood.sweep();
        assert!(flood.is_empty());
        let inner = flood.inner.lock();
        assert!(inner.map.capacity() <= 1024 && inner.order.capacity() <= 1024);
        drop(inner);
        let none = Sessions::new(0);
        none.save(&pid(1), session("u", Duration::from_secs(60)));
        assert!(none.is_empty());
    }

    #[test]
    fn a_kept_session_is_small() {
        // Entry and key inline: 92 bytes, plus 16 per channel in one
        // allocation (the names are shared), plus the order entry; the
        // start positions are the shard's snapshot, shared.
        assert!(std::mem::size_of::<Kept>() <= 72);
        assert_eq!(std::mem::size_of::<Pid>(), 20);
        assert!(std::mem::size_of::<(Pid, u64)>() <= 32);
    }

    #[test]
    fn stale_order_entries_stay_bounded() {
        let s = Sessions::new(1_000);
        for _ in 0..10_000 {
            s.save(&pid(7), session("u", Duration::from_secs(60)));
            assert!(s.take(&pid(7), "u").is_some());
        }
        assert!(s.inner.lock().order.len() <= 64 + 2);
    }
}
