//! A reconnect's claim at CONNECT: the session taken back (in the process)
//! or claimed from Redis through its thread, then the gap counted by the
//! store, the CONNECT reply held meanwhile.

use std::sync::Arc;

use super::offset::Positions;
use super::{Claim, Entry, Recovery, Sent, SessionStore, channel_bounds, sessions, shared};
use crate::chat::ChatConn;
use crate::chat::conn::ConnSide;
use crate::chat::mail::{ReplayStep, ToConnShard};
use crate::protocol::Link;

impl ConnSide {
    /// At CONNECT, before the reply is queued: takes back the claimed
    /// session and asks the store how large its gap is (in Redis: asks
    /// its thread for the session first), holding the link (so the
    /// CONNECT reply) until it answers. Returns the recovery and where its
    /// replay starts, or None for a fresh session (no such session, an
    /// offset that is no usable one, or a store or Redis queue too busy).
    pub(in crate::chat) fn reclaim(
        &self,
        claim: &Claim,
        user: &str,
        owner: &str,
        link: &Link,
    ) -> Option<(Recovery, Positions)> {
        let offset = match &claim.offset {
            Sent::Nothing => None,
            Sent::Usable(v) => Some(v.clone()),
            Sent::Unusable => return None,
        };
        let s = match &self.sessions {
            SessionStore::Local(sessions) => sessions.take(&claim.pid, user)?,
            SessionStore::Shared(shared) => {
                if claim.pid.len() != sessions::PID_LEN {
                    return None; // not a pid this server made
                }
                let sent = shared.send(shared::Request::Claim {
                    pid: claim.pid.as_str().into(),
                    user: user.into(),
                    owner: owner.into(),
                    conn: link.id,
                });
                if !sent {
                    return None;
                }
                link.hold();
                let after = offset.clone().unwrap_or_else(|| self.positions());
                return Some((Recovery::Claiming { offset }, after));
            }
        };
        let after_pos = offset.unwrap_or(s.start_pos);
        if after_pos.len() != self.partitions() {
            return None; // kept before a change of SEQUENCER_PARTITIONS
        }
        if !self.count_gap(link.id, &s.channels, &after_pos) {
            return None;
        }
        link.hold();
        let recovery = Recovery::Counting {
            channels: s.channels,
            after_pos: after_pos.clone(),
        };
        Some((recovery, after_pos))
    }

    /// Asks the store how many messages of `channels` were committed after
    /// `after_pos` (each channel after its partition's position; up to the
    /// cap + 1); false if the store is too busy.
    fn count_gap(&self, id: u64, channels: &[Arc<str>], after_pos: &[u64]) -> bool {
        let channels = channel_bounds(channels, after_pos);
        let (mesh, me) = (self.hub.mail.mesh().clone(), self.hub.mail.shard());
        // One more than the cap tells "over" from "at".
        let limit = self.hub.limits.recovery_max_replay.saturating_add(1);
        let started = self.hub.store.read_then(move |s| {
            let result = s.replay_count(&channels, limit).map_err(|e| e.to_string());
            let step = ReplayStep::Counted(result);
            mesh.post_external(me, ToConnShard::Replayed { conn: id, step }.into());
        });
        if started.is_err() {
            tracing::warn!(conn = id, "store busy: recovery refused, fresh session");
        }
        started.is_ok()
    }

    /// Redis answered a claim: count the gap of the session, or start a
    /// fresh one.
    pub(super) fn claimed(&self, conn: &ChatConn, got: Option<Entry>) {
        let offset = match conn.recovery.borrow_mut().take() {
            Some(Recovery::Claiming { offset }) => offset,
            other => {
                *conn.recovery.borrow_mut() = other;
                return;
            }
        };
        let Some(e) = got else {
            return self.refuse_recovery(conn);
        };
        let after_pos = offset.unwrap_or(e.start_pos);
        if after_pos.len() != self.partitions() {
            // Written before a change of SEQUENCER_PARTITIONS.
            return self.refuse_recovery(conn);
        }
        *conn.start_pos.borrow_mut() = after_pos.clone();
        let channels: Box<[Arc<str>]> = e.channels.into_iter().map(Arc::from).collect();
        if !self.count_gap(conn.link.id, &channels, &after_pos) {
            return self.refuse_recovery(conn);
        }
        *conn.recovery.borrow_mut() = Some(Recovery::Counting {
            channels,
            after_pos,
        });
    }
}
