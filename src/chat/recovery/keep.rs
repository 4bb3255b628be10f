//! Where sessions are kept: in the process ([`Sessions`], one instance), or
//! in Redis ([`Shared`], several instances), and what the connection side
//! writes to each and when.
//!
//! In the process a session is saved at disconnect. In Redis it is written
//! while the connection lives (CONNECT, join, leave) and kept alive by the
//! holder's refreshes, never written at disconnect: an instance that dies
//! leaves its sessions behind for the others.

use std::sync::Arc;
use std::time::Instant;

use super::entry;
use super::shared::{Request, Shared};
use super::{Recovery, Resumable, Sessions};
use crate::chat::conn::{ChatConn, ConnSide};

/// The sessions of the process or of all instances.
#[derive(Clone)]
pub(crate) enum SessionStore {
    /// No Redis: in memory, shared by the shards.
    Local(Arc<Sessions>),
    /// Redis: through its thread.
    Shared(Arc<Shared>),
}

impl ConnSide {
    fn shared(&self) -> Option<&Shared> {
        match &self.sessions {
            SessionStore::Shared(s) => Some(s),
            SessionStore::Local(_) => None,
        }
    }

    /// Redis: writes the connection's session as it is now (at CONNECT, a
    /// join, a leave, a restore). Not while a claim or a count is under
    /// way: the claimed channels are not yet the connection's, and the
    /// restore writes them all.
    pub(in crate::chat) fn write_session(&self, conn: &ChatConn) {
        let Some(shared) = self.shared() else {
            return;
        };
        // A Gatrix connection is never recovered: nothing to keep.
        if restoring(conn) || conn.gatrix {
            return;
        }
        let sent = shared.send(Request::Put {
            pid: conn.pid.borrow().as_str().into(),
            owner: conn.owner.clone(),
            value: Some(current(conn)),
        });
        if !sent {
            self.rewrite_due.set(true);
        }
    }

    /// Redis: deletes the session of `pid` if the connection still holds
    /// it (a `41`, a recovery that failed, a pid replaced).
    pub(in crate::chat) fn delete_session(&self, conn: &ChatConn, pid: &str) {
        if let Some(shared) = self.shared() {
            shared.send(Request::Put {
                pid: pid.into(),
                owner: conn.owner.clone(),
                value: None,
            });
        }
    }

    /// Redis: renews the TTLs of this shard's live sessions, once per
    /// refresh period (called on every tick); or writes them all again
    /// when that is due.
    pub(in crate::chat) fn refresh_sessions(&self) {
        let Some(shared) = self.shared() else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(self.refreshed.get()) < shared.period {
            return;
        }
        self.refreshed.set(now);
        if self.rewrite_due.replace(false) {
            let puts: Vec<_> = self
                .conns
                .borrow()
                .values()
                .filter(|c| c.resumable.get() && !restoring(c))
                .map(|c| (c.pid.borrow().as_str().into(), c.owner.clone(), current(c)))
                .collect();
            if !puts.is_empty() && !shared.send(Request::PutMany(puts)) {
                self.rewrite_due.set(true);
            }
            return;
        }
        let pids: Vec<Box<str>> = self
            .conns
            .borrow()
            .values()
            .filter(|c| c.resumable.get())
            .map(|c| c.pid.borrow().as_str().into())
            .collect();
        if !pids.is_empty() {
            shared.send(Request::Refresh(pids));
        }
    }

    /// Forgets expired in-process sessions (one shard does it for all;
    /// Redis expires its own).
    pub(in crate::chat) fn sweep_sessions(&self) {
        if let SessionStore::Local(s) = &self.sessions {
            s.sweep();
        }
    }

    /// At disconnect of a connection that may come back: keep the session
    /// for the recovery window, with the channels of a recovery still
    /// being counted. In the process: saved now. In Redis: already
    /// written (but for a claimed session not restored yet, settled now);
    /// the connection's end is counted against the cap.
    pub(in crate::chat) fn keep_session(&self, conn: &ChatConn, mut channels: Vec<Arc<str>>) {
        let counting = match &*conn.recovery.borrow() {
            Some(Recovery::Counting { channels: c, .. }) => {
                for ch in c.iter() {
                    if !channels.contains(ch) {
                        channels.push(ch.clone());
                    }
                }
                true
            }
            _ => false,
        };
        let sessions = match &self.sessions {
            SessionStore::Local(s) => s,
            SessionStore::Shared(shared) => {
                let pid: Box<str> = conn.pid.borrow().as_str().into();
                if counting {
                    let value = entry::encode(
                        &conn.owner,
                        &conn.user,
                        &conn.start_pos.borrow(),
                        channels.iter().map(|c| &**c),
                    );
                    shared.send(Request::Put {
                        pid: pid.clone(),
                        owner: conn.owner.clone(),
                        value: Some(value),
                    });
                }
                shared.send(Request::Dropped {
                    pid,
                    owner: conn.owner.clone(),
                });
                return;
            }
        };
        // A join parsed its own copy of each name: keep the shard's shared
        // one instead, so that a kept session allocates nothing per channel.
        {
            let (seen, subs) = (self.seen.borrow(), self.subs.borrow());
            for ch in &mut channels {
                let shared = seen
                    .get_key_value(&**ch)
                    .map(|(k, _)| k)
                    .or_else(|| subs.get_key_value(&**ch).map(|(k, _)| k));
                if let Some(k) = shared {
                    *ch = k.clone();
                }
            }
        }
        let session = Resumable {
            user: conn.user.clone(),
            channels: channels.into_boxed_slice(),
            start_pos: conn.start_pos.borrow().clone(),
            expires: Instant::now() + self.hub.limits.recovery_window,
        };
        sessions.save(&conn.pid.borrow(), session);
    }

    /// At disconnect of a connection that will not come back (a `41`, a
    /// recovery that failed): Redis forgets its session now.
    pub(in crate::chat) fn forget_session(&self, conn: &ChatConn) {
        let pid = conn.pid.borrow().clone();
        self.delete_session(conn, &pid);
    }
}

/// Whether a claim or a count is under way: the session is not the
/// connection's to write yet.
fn restoring(conn: &ChatConn) -> bool {
    matches!(
        &*conn.recovery.borrow(),
        Some(Recovery::Claiming { .. } | Recovery::Counting { .. })
    )
}

/// The connection's session as it is now, encoded.
fn current(conn: &ChatConn) -> Vec<u8> {
    let chans = conn.channels.borrow();
    entry::encode(
        &conn.owner,
        &conn.user,
        &conn.start_pos.borrow(),
        chans.keys().map(|c| &**c),
    )
}
