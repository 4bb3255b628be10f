//! After the store: what the writer's outcomes become.
//!
//! [`MeshFanout`], the store writer's [`Fanout`] in one process, runs on
//! the writer thread, in commit order. It encodes each new message's
//! broadcast once (`42["message",{…},"<offset>"]`, the last element being
//! the recovery offset) and its sender's ack, answers REST senders directly
//! ([`encode`]), and sends the whole batch, shared, to every shard.
//!
//! The offset is where the order is decided, here: the positions of every
//! sequencing partition applied so far (`recovery::offset`), kept over the
//! batches, message i of partition p carrying the positions after messages
//! 0..=i. With one partition that is the message's own `pos`.
//!
//! A broadcast frame at least `WS_COMPRESSION_THRESHOLD` long is also
//! compressed here, once (permessage-deflate without context takeover, so
//! the same bytes suit every subscriber that negotiated it). Here rather
//! than on the shards: the writer sees each message exactly once, while
//! every shard with a subscriber would otherwise compress it again (or
//! race to share one copy); and it is off the shards' event loops, whose
//! latency every connection feels. Each shard then delivers to its own
//! subscribers ([`ConnSide::committed`]), so every connection sees
//! messages in commit order, which is what makes the last offset a
//! connection was sent enough for recovery.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::protocol::Text;

use super::conn::ConnSide;
use super::json;
use super::mail::{Committed, Mail, Requester, Stored, shard_of_conn};
use super::message::{message_frame_of, reply_frame};
use super::{ChatError, ErrorCode};
use crate::mailbox::Mesh;
use crate::protocol::deflate::{self, Settings};
use crate::protocol::{Frame, Packed};
use crate::store::Fanout;
use crate::store::sequencing::partition_of;
use crate::store::writer::Outcome;

/// The store writer's [`Fanout`] in one process: the in-process mesh.
/// Each commit's outcomes become one shared batch ([`encode`]), posted to
/// every shard's external queue (unbounded and FIFO: never refused, never
/// reordered), once per batch.
pub(crate) struct MeshFanout {
    mesh: Arc<Mesh<Mail>>,
    compression: Settings,
    /// The last position committed in each sequencing partition: the
    /// offsets ([`encode`]). Empty until the first commit, which takes
    /// `start`.
    applied: Vec<u64>,
    /// What the store had when the process started (set once it is
    /// migrated, before any commit); zeros if unset.
    start: Arc<OnceLock<Vec<u64>>>,
    partitions: usize,
}

impl MeshFanout {
    /// `partitions`: SEQUENCER_PARTITIONS; `start`: see [`MeshFanout`].
    pub(crate) fn new(
        mesh: Arc<Mesh<Mail>>,
        compression: Settings,
        partitions: u32,
        start: Arc<OnceLock<Vec<u64>>>,
    ) -> Self {
        Self {
            mesh,
            compression,
            applied: Vec::new(),
            start,
            partitions: partitions.max(1) as usize,
        }
    }
}

impl Fanout<(Requester, Instant)> for MeshFanout {
    fn send(&mut self, outcomes: Vec<(Outcome, (Requester, Instant))>) {
        if self.applied.len() != self.partitions {
            self.applied = match self.start.get() {
                Some(s) if s.len() == self.partitions => s.clone(),
                _ => vec![0; self.partitions],
            };
        }
        let batch = Arc::new(encode(outcomes, self.compression, &mut self.applied));
        for shard in 0..self.mesh.shards() {
            self.mesh
                .post_external(shard, Mail::Committed(batch.clone()));
        }
    }
}

/// One commit's outcomes as every shard applies them: each new message's
/// broadcast and each connection sender's ack encoded once; a REST sender
/// is answered here, directly. `applied` (one position per sequencing
/// partition) is raised by each stored message, whose offset it then is.
pub(crate) fn encode(
    outcomes: Vec<(Outcome, (Requester, Instant))>,
    compression: Settings,
    applied: &mut [u64],
) -> Vec<Committed> {
    let partitions = applied.len() as u32;
    let mut batch = Vec::with_capacity(outcomes.len());
    for (outcome, (requester, received)) in outcomes {
        // A stored message's JSON is encoded once, for its broadcast and
        // its sender's ack.
        let (json, result) = match outcome {
            Outcome::Stored(m) => (Some(json::message(&m)), Ok(m)),
            Outcome::Duplicate(m) => (None, Ok(m)),
            Outcome::Failed(_) => {
                let e = ChatError::new(
                    ErrorCode::Unavailable,
                    "the message may not have been stored; retry with the same clientMessageId",
                );
                (None, Err(e))
            }
            Outcome::Refused(why) => (None, Err(ChatError::invalid(why))),
        };
        let stored = match (&json, &result) {
            (Some(j), Ok(m)) => {
                let partition = match partitions {
                    0 | 1 => 0,
                    n => partition_of(&m.channel_id, n),
                };
                if let Some(p) = applied.get_mut(partition as usize) {
                    *p = (*p).max(m.pos);
                }
                Some(Stored {
                    channel: Arc::from(m.channel_id.as_str()),
                    partition,
                    seq: m.seq,
                    pos: m.pos,
                    frame: broadcast(message_frame_of(j, applied), compression),
                    gatrix: Default::default(),
                })
            }
            _ => None,
        };
        let reply = match requester {
            Requester::Rest(tx) => {
                let _ = tx.send(result);
                None
            }
            Requester::Conn(r) => {
                let body = result.as_ref().map(|m| match &json {
                    Some(j) => format!(r#"{{"ok":true,"message":{j}}}"#),
                    None => format!(r#"{{"ok":true,"message":{}}}"#, json::message(m)),
                });
                reply_frame(r.ack, body.as_deref().map_err(|e| *e)).map(|f| (r.conn, Text::from(f)))
            }
        };
        batch.push(Committed {
            stored,
            reply,
            received,
        });
    }
    batch
}

/// A stored message's broadcast frame, encoded as [`encode`] does with one
/// partition: for a message read back from the store (the bus's gap fill
/// and polling; with several partitions the applier puts in the offset).
pub(crate) fn stored_frame(m: &crate::store::MessageRecord, compression: Settings) -> Frame {
    broadcast(message_frame_of(&json::message(m), &[m.pos]), compression)
}

/// A broadcast frame, with its compressed form when it is worth one.
pub(crate) fn broadcast(text: String, compression: Settings) -> Frame {
    // Only while some connection is sent compressed frames.
    let deflated = (compression.enabled && deflate::any_receivers())
        .then(|| deflate::compress_shared(text.as_bytes(), compression.threshold))
        .flatten();
    match deflated {
        Some(d) => Frame::Packed(Arc::new(Packed {
            text: text.into(),
            deflated: Some(d),
        })),
        None => Frame::Text(text.into()),
    }
}

impl ConnSide {
    /// A committed batch arrives: deliver to local subscribers, remember the
    /// last seq of each channel (for join acks), and hand local acks over.
    pub(super) fn committed(&self, batch: &[Committed]) {
        let me = self.hub.mail.shard();
        let subs = self.subs.borrow();
        let gx_subs = self.gx_subs.borrow();
        let mut seen = self.seen.borrow_mut();
        let floors = self.floors.borrow();
        // Metrics: one clock read and at most two atomic adds per batch.
        let (now, mut owned, mut queued) = (Instant::now(), 0u64, 0u64);
        for c in batch {
            if let Some(m) = &c.stored {
                self.applied(m.partition, m.pos);
                match seen.get_mut(&m.channel) {
                    Some(s) => *s = (*s).max(m.seq),
                    None => {
                        seen.insert(m.channel.clone(), m.seq);
                    }
                }
                owned += u64::from(self.hub.owner_shard(&m.channel) == me);
                if let Some(list) = subs.get(&m.channel) {
                    for link in list {
                        let frame = if floors.is_empty() {
                            m.frame.clone()
                        } else {
                            let applied = self.last_pos.borrow();
                            match Self::floored(&floors, link.id, m, &applied) {
                                Some(f) => f,
                                None => continue,
                            }
                        };
                        // On overflow the link closes itself as a slow consumer.
                        queued += u64::from(link.push(frame).is_ok());
                    }
                    let latency = now.saturating_duration_since(c.received);
                    self.hub.metrics.broadcast_latency.observe_duration(latency);
                }
                if let Some(list) = gx_subs.get(&m.channel) {
                    // Gatrix connections: the same message in their
                    // dialect, encoded once (`Stored::gatrix_frame`).
                    let (frame, thread) =
                        m.gatrix_frame(&self.nums.borrow(), &self.hub.limits.directory);
                    for link in list {
                        queued += u64::from(link.push(Frame::Text(frame.clone())).is_ok());
                        if let Some(t) = thread {
                            let _ = link.push(Frame::Text(t.clone()));
                        }
                    }
                    // Authors the frame missed, read once for later ones.
                    self.hub.limits.directory.load_wanted(&self.hub.store);
                }
            }
            if let Some((conn, frame)) = &c.reply
                && shard_of_conn(*conn) == me
                && let Some(cc) = self.conns.borrow().get(conn)
            {
                let _ = cc.link.push(Frame::Text(frame.clone()));
            }
        }
        if owned > 0 {
            self.hub.metrics.messages.inc_by(owned);
        }
        if queued > 0 {
            self.hub.metrics.deliveries.inc_by(queued);
        }
        if !floors.is_empty() {
            drop(floors);
            self.lift_floors();
        }
    }
}
