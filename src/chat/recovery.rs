//! Socket.IO connection state recovery.
//!
//! Every connection gets a private session id (`pid`) in its CONNECT reply,
//! and every `message` event carries, as a last string argument, the
//! offset: how far in each sequencing partition the connection has been
//! sent everything ([`offset`]; with one partition the message's commit
//! position). When a connection drops (anything but an
//! explicit namespace disconnect), its session (user and channels) is kept
//! for RECOVERY_WINDOW_MS ([`sessions`]). A client reconnecting with
//! `{pid, offset}` in its auth gets the same pid back (socket.io-client then
//! reports `socket.recovered`), its subscriptions restored, and every
//! message of those channels committed after `offset` (each channel after
//! its partition's position) replayed from the store, in commit order per
//! partition, ahead of anything live. An offset of another length than
//! the partition count, or garbage, is a fresh session.
//!
//! Bounded: the CONNECT reply is held while the store counts the gap (up
//! to RECOVERY_MAX_REPLAY + 1, reading no message). A larger gap is refused
//! before anything is read: the reply goes out with a new pid (a fresh
//! session, `recovered: false`) and the client catches up by seq. A gap
//! within the cap is read in pages of [`REPLAY_PAGE`], each queued ahead
//! of the held live frames as it arrives; the outbound queue bounds what
//! waits for the client.
//!
//! Exactness: the restored subscriptions all start delivering at one
//! instant on the shard, when the owners have confirmed every channel; the
//! replay covers, per channel, exactly the seqs this shard had seen by then.
//! Every shard sees commits in one order, so nothing falls between replay
//! and live, and nothing comes twice. A replay is never partial: one that
//! cannot complete closes the connection, and its session is not kept.
//!
//! Without Redis, sessions live in memory, shared by the shards (touched
//! only at connect and disconnect): a restart of the server is not
//! recoverable; clients then catch up through history by seq
//! (docs/protocol.md). With Redis they live there ([`shared`], [`keep`]),
//! so a client may come back through any instance, even after the one
//! that held it died: the reconnect claims the session from the Redis
//! thread first (the CONNECT reply held meanwhile), then the gap is
//! counted and replayed from the store as above.

pub(crate) mod entry;
mod floor;
mod keep;
pub(crate) mod offset;
mod reclaim;
mod replay;
mod sessions;
mod shared;

use std::collections::HashSet;
use std::sync::Arc;

use super::ChatConn;
use super::conn::{ConnSide, JoinState};
use super::mail::ReplayStep;
use crate::protocol::Frame;
use crate::store::sequencing::partition_of;
pub(crate) use entry::{Entry, new_owner};
pub(crate) use floor::Floors;
pub(crate) use keep::SessionStore;
use offset::Positions;
use sessions::Resumable;
pub(crate) use sessions::Sessions;
pub(crate) use sessions::{Claim, Sent};
pub(crate) use shared::{Settings as SharedSettings, Shared};

/// Messages one store read of a replay returns at most (each channel reads
/// at most this many rows): what a replay holds in memory besides the
/// frames already queued for the client.
pub(crate) const REPLAY_PAGE: usize = 64;

/// A recovery under way on one connection.
pub(super) enum Recovery {
    /// Redis: the session is being claimed; the CONNECT reply is held.
    Claiming { offset: Option<Positions> },
    /// The store counts the gap; the CONNECT reply is held meanwhile.
    Counting {
        channels: Box<[Arc<str>]>,
        after_pos: Positions,
    },
    /// The owners confirm the channels again.
    Joining {
        /// Channels the owners have not answered yet.
        waiting: HashSet<Arc<str>>,
        after_pos: Positions,
        /// Channels confirmed, with the owner's last seq at load.
        confirmed: Vec<(Arc<str>, u64)>,
    },
    /// Pages of missed messages are read and queued.
    Replaying {
        /// Each channel up to the seq where live delivery started, with
        /// its sequencing partition.
        upto: Arc<[(String, u64, usize)]>,
        /// And, per partition, no further than the last position this
        /// shard had applied then: every later one arrives live. With
        /// several instances the database (and so the owner's seq at load)
        /// can be ahead of what this instance's bus has applied; what lies
        /// beyond is delivered when applied, so replaying it too would
        /// deliver it twice.
        upto_pos: Positions,
        /// The replay's offset: the client's, each partition raised to the
        /// last position replayed in it. Each replayed message carries it,
        /// so a client dropped mid-replay holds an exact offset; the next
        /// page starts after it.
        cursor: Vec<u64>,
    },
}

/// Each channel with how far it is replayed from: its partition's entry
/// of `after` (the store's count and replay take one bound per channel).
pub(super) fn channel_bounds(channels: &[Arc<str>], after: &[u64]) -> Vec<(String, u64)> {
    let n = after.len() as u32;
    channels
        .iter()
        .map(|c| {
            let p = partition_of(c, n) as usize;
            (c.to_string(), after.get(p).copied().unwrap_or(0))
        })
        .collect()
}

impl ConnSide {
    /// The store answered a recovery step.
    pub(super) fn replayed(&self, conn: u64, step: ReplayStep) {
        let Some(conn) = self.conns.borrow().get(&conn).cloned() else {
            return;
        };
        match step {
            ReplayStep::Counted(result) => self.counted(&conn, result),
            ReplayStep::Page(result) => self.page(&conn, result),
            ReplayStep::Claimed { owner, entry } => {
                // An answer to an earlier CONNECT of the link is not this
                // one's.
                if owner == conn.owner {
                    self.claimed(&conn, entry);
                }
            }
        }
    }

    /// The gap is counted: restore the session if it fits, else refuse it.
    fn counted(&self, conn: &ChatConn, result: Result<usize, String>) {
        let (channels, after_pos) = match conn.recovery.borrow_mut().take() {
            Some(Recovery::Counting {
                channels,
                after_pos,
            }) => (channels, after_pos),
            other => {
                *conn.recovery.borrow_mut() = other;
                return;
            }
        };
        let max = self.hub.limits.recovery_max_replay;
        match result {
            Ok(n) if n <= max => {}
            outcome => {
                match outcome {
                    Ok(n) => tracing::info!(
                        conn = conn.link.id,
                        "recovery gap over {max} messages ({n} counted); fresh session"
                    ),
                    Err(e) => tracing::warn!(
                        conn = conn.link.id, error = %e,
                        "recovery count failed; fresh session"
                    ),
                }
                return self.refuse_recovery(conn);
            }
        }
        // The CONNECT reply goes; what was queued after it waits for the
        // replay.
        conn.link.pass_held(1);
        let mut waiting = HashSet::new();
        {
            let mut chans = conn.channels.borrow_mut();
            for channel in channels {
                // A channel the client joined meanwhile is its own join.
                if !chans.contains_key(&channel) {
                    chans.insert(channel.clone(), JoinState::Joining);
                    waiting.insert(channel);
                }
            }
        }
        let joins: Vec<Arc<str>> = waiting.iter().cloned().collect();
        *conn.recovery.borrow_mut() = Some(Recovery::Joining {
            waiting,
            after_pos,
            confirmed: Vec::new(),
        });
        // Redis: the restored channels and those joined meanwhile.
        self.write_session(conn);
        if joins.is_empty() {
            return self.finish_joins(conn);
        }
        for channel in joins {
            let reply = super::mail::ReplyTo {
                conn: conn.link.id,
                ack: None,
            };
            self.send_join(conn, channel, reply);
        }
    }

    /// A refused recovery: the held CONNECT reply names a new pid, so the
    /// client knows it did not recover (`socket.recovered` is false) and
    /// catches up by seq. The old session is gone; the new one is fresh.
    fn refuse_recovery(&self, conn: &ChatConn) {
        let old = conn.pid.borrow().clone();
        let new = crate::ids::random_token(15);
        conn.link.map_first_held(|f| match f {
            Frame::Text(t) => Frame::Text(
                t.as_str()
                    .replacen(
                        &format!(r#""pid":"{old}""#),
                        &format!(r#""pid":"{new}""#),
                        1,
                    )
                    .into(),
            ),
            other => other.clone(),
        });
        *conn.pid.borrow_mut() = new;
        *conn.start_pos.borrow_mut() = self.positions();
        conn.link.release(Vec::new());
        // Redis: the claimed session goes (if this connection won it), the
        // fresh one is written.
        self.delete_session(conn, &old);
        self.write_session(conn);
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
            let Some(Recovery::Joining {
                waiting, confirmed, ..
            }) = r.as_mut()
            else {
                return false;
            };
            if !waiting.remove(channel) {
                return false; // a join the client asked for meanwhile
            }
            if let Some(seq) = last_seq {
                confirmed.push((channel.clone(), seq));
            }
            waiting.is_empty()
        };
        if done {
            self.finish_joins(conn);
        }
        true
    }

    /// Every owner answered: start delivering all channels at this one
    /// instant and replay what was missed up to it.
    fn finish_joins(&self, conn: &ChatConn) {
        let (after_pos, confirmed) = match conn.recovery.borrow_mut().take() {
            Some(Recovery::Joining {
                after_pos,
                confirmed,
                ..
            }) => (after_pos, confirmed),
            other => {
                *conn.recovery.borrow_mut() = other;
                return;
            }
        };
        let mut upto = Vec::with_capacity(confirmed.len());
        let n = self.partitions() as u32;
        {
            let seen = self.seen.borrow();
            let mut subs = self.subs.borrow_mut();
            let mut chans = conn.channels.borrow_mut();
            for (channel, owner_seq) in confirmed {
                if let Some(state) = chans.get_mut(&channel) {
                    *state = JoinState::Delivering;
                    subs.entry(channel.clone())
                        .or_default()
                        .push(conn.link.clone());
                    let last = owner_seq.max(seen.get(&channel).copied().unwrap_or(0));
                    upto.push((
                        channel.to_string(),
                        last,
                        partition_of(&channel, n) as usize,
                    ));
                }
            }
        }
        let upto_pos = self.positions();
        self.set_floor(
            conn.link.id,
            &after_pos,
            &upto_pos,
            upto.iter().map(|(c, _, _)| Arc::from(c.as_str())),
        );
        *conn.recovery.borrow_mut() = Some(Recovery::Replaying {
            upto: upto.into(),
            upto_pos,
            cursor: after_pos.to_vec(),
        });
        self.read_page(conn);
    }

    /// At disconnect: a recovery under way stops, and its hold on the link
    /// goes (after a `41` the WebSocket stays open for a new CONNECT, whose
    /// reply must not wait behind it). Its store answers find no recovery.
    pub(super) fn end_recovery(&self, conn: &ChatConn) {
        if conn.recovery.borrow_mut().take().is_some() {
            conn.link.release(Vec::new());
        }
    }
}
