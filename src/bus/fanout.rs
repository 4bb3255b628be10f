//! The writer's side of the bus: [`BusFanout`], the store writer's
//! [`Fanout`] when Redis is configured.
//!
//! Per commit, on the writer thread: the outcomes are encoded once
//! ([`encode`]: frames and acks), the senders' acks are posted to their
//! shards at once (never waiting for Redis or another instance), and the
//! stored messages, one shared [`Batch`], go to this instance's applier
//! (the fast path) and to the publisher, both over bounded channels that
//! are never waited on: a full one drops the batch, and the gap fill reads
//! it from the store.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::batch::{Batch, Item};
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
    pub(super) local: Sender<Arc<Batch>>,
    pub(super) publish: Sender<Arc<Batch>>,
    pub(super) metrics: BusMetrics,
    /// Test only (debug builds): the batch number whose hand-off is left
    /// out, as if the writer died between commit and append.
    pub(super) skip: Option<u64>,
    pub(super) batches: u64,
}

impl Fanout<Reply> for BusFanout {
    fn send(&mut self, outcomes: Vec<(Outcome, Reply)>) {
        let committed = encode(outcomes, self.compression);
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
        self.post_acks(acks);
        if items.is_empty() {
            return;
        }
        self.batches += 1;
        if self.skip == Some(self.batches) {
            tracing::warn!(batch = self.batches, "bus: test hook: batch not handed on");
            return;
        }
        if self.partitions <= 1 {
            self.hand_on(Batch::new(0, items));
            return;
        }
        // A commit may hold several partitions' messages, each partition's
        // in its own pos order: one batch (one stream entry) per partition.
        let mut by_partition: Vec<Vec<Item>> = vec![Vec::new(); self.partitions as usize];
        for item in items {
            let p = partition_of(&item.channel, self.partitions) as usize;
            by_partition[p].push(item);
        }
        for (p, items) in by_partition.into_iter().enumerate() {
            self.hand_on(Batch::new(p as u32, items));
        }
    }
}

impl BusFanout {
    /// To the publisher and this instance's applier, never waiting.
    fn hand_on(&self, batch: Option<Batch>) {
        let Some(batch) = batch else { return };
        let batch = Arc::new(batch);
        if self.publish.try_send(batch.clone()).is_err() {
            self.metrics.publishes_dropped.inc();
        }
        // Full: the applier is behind; it reads this batch from the log or
        // the store.
        let _ = self.local.try_send(batch);
    }

    /// The acks, to the shards of their connections only.
    fn post_acks(&self, acks: Vec<Committed>) {
        if acks.is_empty() {
            return;
        }
        let mut shards = vec![false; self.mesh.shards()];
        for a in &acks {
            if let Some((conn, _)) = &a.reply
                && let Some(s) = shards.get_mut(shard_of_conn(*conn))
            {
                *s = true;
            }
        }
        let acks = Arc::new(acks);
        for (shard, _) in shards.iter().enumerate().filter(|(_, has)| **has) {
            self.mesh
                .post_external(shard, Mail::Committed(acks.clone()));
        }
    }
}
