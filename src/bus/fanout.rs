//! The writer's side of the bus: [`BusFanout`], the store writer's
//! [`Fanout`] when Redis is configured.
//!
//! Per commit, on the writer thread: the outcomes are encoded once
//! ([`encode`]: frames and acks), and the stored messages, one shared
//! [`Batch`], go to this instance's applier (the fast path, with the
//! senders' acks) and to the publisher, both over bounded channels that are
//! never waited on: a full one drops the batch, and the gap fill reads it
//! from the store. An ack never waits for Redis or another instance: the
//! applier sends it after the batch's messages when it can apply the batch
//! at once, alone and at once otherwise.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::batch::{Batch, Item};
use super::queue::PublishTx;
use crate::chat::commit::{MeshFanout, encode};
use crate::chat::mail::{Committed, Mail, Requester, shard_of_conn};
use crate::mailbox::Mesh;
use crate::metrics::BusMetrics;
use crate::protocol::deflate::Settings;
use crate::store::Fanout;
use crate::store::sequencing::partition_of;
use crate::store::writer::Outcome;

/// What the writer's outcomes carry (chat's requester, the arrival).
type Reply = (Requester, Instant);

/// The server's fan-out: the in-process mesh (one instance, no Redis: as
/// before), or the bus. One branch per batch.
pub(crate) enum ServerFanout {
    Mesh(MeshFanout),
    Bus(BusFanout),
}

impl Fanout<Reply> for ServerFanout {
    fn send(&mut self, batch: Vec<(Outcome, Reply)>) {
        match self {
            Self::Mesh(m) => m.send(batch),
            Self::Bus(b) => b.send(batch),
        }
    }
}

pub(crate) struct BusFanout {
    pub(super) mesh: Arc<Mesh<Mail>>,
    pub(super) compression: Settings,
    /// SEQUENCER_PARTITIONS: each partition's messages go to its own
    /// stream (one with Redis today: see `bus::partitions`).
    pub(super) partitions: u32,
    pub(super) local: Sender<Local>,
    pub(super) publish: PublishTx,
    pub(super) metrics: BusMetrics,
    /// Test only (debug builds): the batch number whose hand-off is left
    /// out, as if the writer died between commit and append.
    pub(super) skip: Option<u64>,
    pub(super) batches: u64,
}

impl Fanout<Reply> for BusFanout {
    fn send(&mut self, outcomes: Vec<(Outcome, Reply)>) {
        // With one partition a message's offset is its own pos (a batch's
        // positions only grow); with several the applier renders each
        // frame's offset when it applies it (and compresses it then).
        let mut positions = [0];
        let compression = Settings {
            enabled: self.compression.enabled && self.partitions <= 1,
            ..self.compression
        };
        let committed = encode(outcomes, compression, &mut positions);
        let mut acks = Vec::new();
        let mut items = Vec::with_capacity(committed.len());
        for c in committed {
            if let Some(s) = c.stored {
                items.push(Item {
                    channel: s.channel,
                    seq: s.seq,
                    pos: s.pos,
                    frame: s.frame,
                    received: c.received,
                });
            }
            if c.reply.is_some() {
                acks.push(Committed {
                    stored: None,
                    reply: c.reply,
                    received: c.received,
                });
            }
        }
        if items.is_empty() {
            post_acks(&self.mesh, acks);
            return;
        }
        self.batches += 1;
        if self.skip == Some(self.batches) {
            tracing::warn!(batch = self.batches, "bus: test hook: batch not handed on");
            post_acks(&self.mesh, acks);
            return;
        }
        if self.partitions <= 1 {
            self.hand_on(Batch::new(0, items), acks);
            return;
        }
        post_acks(&self.mesh, acks);
        // A commit may hold several partitions' messages, each partition's
        // in its own pos order: one batch (one stream entry) per partition.
        let mut by_partition: Vec<Vec<Item>> = vec![Vec::new(); self.partitions as usize];
        for item in items {
            let p = partition_of(&item.channel, self.partitions) as usize;
            by_partition[p].push(item);
        }
        for (p, items) in by_partition.into_iter().enumerate() {
            self.hand_on(Batch::new(p as u32, items), Vec::new());
        }
    }
}

impl BusFanout {
    /// To the publisher and this instance's applier (with the batch's
    /// acks), never waiting.
    fn hand_on(&self, batch: Option<Batch>, acks: Vec<Committed>) {
        let Some(batch) = batch else {
            post_acks(&self.mesh, acks);
            return;
        };
        let batch = Arc::new(batch);
        if !self.publish.try_send(batch.clone()) {
            self.metrics.publishes_dropped.inc();
        }
        // Full: the applier is behind; it reads this batch from the log or
        // the store, and the acks go now.
        if let Err(e) = self.local.try_send(Local { batch, acks }) {
            post_acks(&self.mesh, e.into_inner().acks);
        }
    }
}

/// This instance's commit, for its applier: the batch and its senders'
/// acks, which follow the batch's messages when the applier can apply it
/// at once (a delivering sender sees its `message` before its ack, as in
/// one process) and go alone, at once, when it cannot.
pub(super) struct Local {
    pub batch: Arc<Batch>,
    pub acks: Vec<Committed>,
}

/// `acks` (answers to connections, no message), to the shards of their
/// connections only.
pub(super) fn post_acks(mesh: &Mesh<Mail>, acks: Vec<Committed>) {
    if acks.is_empty() {
        return;
    }
    let mut shards = vec![false; mesh.shards()];
    for a in &acks {
        if let Some((conn, _)) = &a.reply
            && let Some(s) = shards.get_mut(shard_of_conn(*conn))
        {
            *s = true;
        }
    }
    let acks = Arc::new(acks);
    for (shard, _) in shards.iter().enumerate().filter(|(_, has)| **has) {
        mesh.post_external(shard, Mail::Committed(acks.clone()));
    }
}
