//! Socket.IO connection state recovery.
//!
//! Every connection gets a private session id (`pid`) in its CONNECT reply,
//! and every `message` event carries its commit position as a last,
//! string argument: the offset. When a connection drops (anything but an
//! explicit namespace disconnect), its session (user and channels) is kept
//! for RECOVERY_WINDOW_MS. A client reconnecting with `{pid, offset}` in
//! its auth gets the same pid back (socket.io-client then reports
//! `socket.recovered`), its subscriptions restored, and every message of
//! those channels committed after `offset` replayed from the store, in
//! commit order, ahead of anything live.
//!
//! Exactness: the restored subscriptions all start delivering at one
//! instant on the shard, when the owners have confirmed every channel; the
//! replay covers, per channel, exactly the seqs this shard had seen by then.
//! Every shard sees commits in one order, so nothing falls between replay
//! and live, and nothing comes twice.
//!
//! Sessions live in memory, shared by the shards (touched only at connect
//! and disconnect): a restart of the server is not recoverable; clients
//! then catch up through history by seq (docs/protocol.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::commit::message_frame;
use super::mail::Mail;
use super::{Chat, ChatConn};
use crate::protocol::{CloseReason, Frame};
use crate::store::MessageRecord;

/// Most messages one recovery replays. Beyond it the connection is closed
/// (internal error) rather than recovered with a gap; the client then
/// reconnects and, if still over, catches up through history.
pub const MAX_REPLAY: usize = 100_000;

struct Session {
    user: Arc<str>,
    channels: Vec<Arc<str>>,
    /// Where to replay from when the client sends no offset (it received
    /// no message): the position when the session started.
    start_pos: u64,
    expires: Instant,
}

/// The disconnected sessions of the process, by pid.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn save(&self, pid: String, s: Session) {
        self.map.lock().insert(pid, s);
    }

    /// Takes a session back if it exists, is fresh, and is the user's.
    fn take(&self, pid: &str, user: &str) -> Option<Session> {
        let mut map = self.map.lock();
        // Another user presenting this pid must not destroy the session.
        if map.get(pid).is_none_or(|s| &*s.user != user) {
            return None;
        }
        map.remove(pid).filter(|s| s.expires > Instant::now())
    }

    /// Forgets expired sessions.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.map.lock().retain(|_, s| s.expires > now);
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A recovery under way on one connection.
pub(super) struct Recovery {
    /// Channels the owners have not answered yet.
    waiting: HashSet<Arc<str>>,
    /// Replay messages committed after this position.
    after_pos: u64,
    /// Channels confirmed, with the owner's last seq at load.
    confirmed: Vec<(Arc<str>, u64)>,
}

/// What a reconnecting client presents: `{pid, offset}` in its auth.
pub(crate) struct Claim {
    pub pid: String,
    pub offset: Option<u64>,
}

impl Claim {
    pub fn from_auth(auth: Option<&serde_json::Value>) -> Option<Self> {
        let a = auth?;
        let pid = a.get("pid")?.as_str()?.to_owned();
        let offset = a
            .get("offset")
            .and_then(|o| o.as_str())
            .and_then(|o| o.parse().ok());
        Some(Self { pid, offset })
    }
}

impl Chat {
    /// At CONNECT: the session to restore, as (channels, replay-from).
    pub(super) fn reclaim(&self, claim: &Claim, user: &str) -> Option<(Vec<Arc<str>>, u64)> {
        let s = self.sessions.take(&claim.pid, user)?;
        Some((s.channels, claim.offset.unwrap_or(s.start_pos)))
    }

    /// After the CONNECT reply: hold live frames and re-join every channel.
    pub(super) fn start_recovery(&self, conn: &ChatConn) {
        let channels: Vec<Arc<str>> = conn.channels.borrow().keys().cloned().collect();
        {
            let mut r = conn.recovery.borrow_mut();
            let Some(r) = r.as_mut() else { return };
            r.waiting = channels.iter().cloned().collect();
        }
        conn.link.hold();
        if channels.is_empty() {
            return self.finish_joins(conn);
        }
        for channel in channels {
            let reply = super::mail::ReplyTo {
                conn: conn.link.id,
                ack: None,
            };
            self.send_join(conn, channel, reply, false);
        }
    }

    /// An owner answered one of a recovering connection's joins
    /// (`last_seq` is None when it refused). Returns whether the
    /// connection is recovering (and so handled here).
    pub(super) fn recovery_joined(
        &self,
        conn: &ChatConn,
        channel: &Arc<str>,
        last_seq: Option<u64>,
    ) -> bool {
        let done = {
            let mut r = conn.recovery.borrow_mut();
            let Some(r) = r.as_mut() else { return false };
            if !r.waiting.remove(channel) {
                return false; // a join the client asked for meanwhile
            }
            if let Some(seq) = last_seq {
                r.confirmed.push((channel.clone(), seq));
            }
            r.waiting.is_empty()
        };
        if done {
            self.finish_joins(conn);
        }
        true
    }

    /// Every owner answered: start delivering all channels at this one
    /// instant and replay what was missed up to it.
    fn finish_joins(&self, conn: &ChatConn) {
        let Some(r) = conn
            .recovery
            .borrow()
            .as_ref()
            .map(|r| (r.after_pos, r.confirmed.clone()))
        else {
            return;
        };
        let (after_pos, confirmed) = r;
        let mut upto = Vec::with_capacity(confirmed.len());
        {
            let seen = self.seen.borrow();
            let mut subs = self.subs.borrow_mut();
            let mut chans = conn.channels.borrow_mut();
            for (channel, owner_seq) in confirmed {
                if let Some(delivering) = chans.get_mut(&channel) {
                    *delivering = true;
                    subs.entry(channel.clone())
                        .or_default()
                        .push(conn.link.clone());
                    let last = owner_seq.max(seen.get(&channel).copied().unwrap_or(0));
                    upto.push((channel.to_string(), last));
                }
            }
        }
        let (mesh, me, id) = (self.mail.mesh().clone(), self.mail.shard(), conn.link.id);
        let started = self.store.read_then(move |s| {
            let result = s
                .replay(&upto, after_pos, MAX_REPLAY + 1)
                .map_err(|e| e.to_string());
            mesh.post_external(me, Mail::Replayed { conn: id, result });
        });
        if started.is_err() {
            conn.link.close(CloseReason::Internal);
        }
    }

    /// The store answered the replay: missed messages go out ahead of
    /// everything held since the CONNECT reply.
    pub(super) fn replayed(&self, conn: u64, result: Result<Vec<MessageRecord>, String>) {
        let Some(conn) = self.conns.borrow().get(&conn).cloned() else {
            return;
        };
        conn.recovery.borrow_mut().take();
        // A session whose recovery fails is not kept again: the client
        // would retry the same failing recovery forever. It starts fresh
        // and catches up through history instead.
        conn.resumable.set(false);
        match result {
            Ok(msgs) if msgs.len() <= MAX_REPLAY => {
                let frames = msgs
                    .iter()
                    .map(|m| Frame::Text(message_frame(m).into()))
                    .collect();
                conn.link.release(frames);
                // More missed than the outbound queue holds closes the link
                // as a slow consumer: then, too, the session is not kept.
                conn.resumable.set(conn.link.closing().is_none());
            }
            Ok(_) => {
                tracing::warn!(
                    conn = conn.link.id,
                    "recovery over {MAX_REPLAY} messages; closing instead"
                );
                conn.link.close(CloseReason::Internal);
            }
            Err(e) => {
                tracing::warn!(conn = conn.link.id, error = %e, "recovery replay failed; closing");
                conn.link.close(CloseReason::Internal);
            }
        }
    }

    /// At disconnect: keep the session for the recovery window.
    pub(super) fn keep_session(&self, conn: &ChatConn, channels: Vec<Arc<str>>) {
        let session = Session {
            user: conn.user.clone(),
            channels,
            start_pos: conn.start_pos,
            expires: Instant::now() + self.limits.recovery_window,
        };
        self.sessions.save(conn.pid.clone(), session);
    }

    pub(super) fn new_recovery(after_pos: u64) -> Recovery {
        Recovery {
            waiting: HashSet::new(),
            after_pos,
            confirmed: Vec::new(),
        }
    }
}
