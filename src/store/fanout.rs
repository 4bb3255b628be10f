//! The fan-out seam: where a committed batch leaves the writer.
//!
//! The writer ([`super::writer`]) decides the order of every message (its
//! `seq` and commit position `pos`); what happens to a batch once it is
//! committed is a [`Fanout`]'s business. In one process that is the
//! in-process mesh (`chat::commit::MeshFanout`: frames encoded once, acks,
//! one shared batch posted to every shard's queue). Across instances it is
//! a broker that publishes the batch to the others, whose shards apply it
//! in the same order.

use super::writer::Outcome;

/// "Here is a committed batch, in commit order: deliver it to every shard."
///
/// The store writer calls [`Fanout::send`] once per commit, on its own
/// thread, with every outcome of that commit. The contract, which every
/// implementation keeps:
///
/// - **Order.** Batches come in commit order, and within a batch the
///   outcomes are in the order their messages were appended; the
///   [`Outcome::Stored`] ones carry strictly growing `pos` per sequencing
///   partition, and per channel gapless `seq`. Each shard must apply the
///   batches in the order of the calls, with nothing of one batch
///   reordered: every subscriber sees a channel's `seq` in order, and the
///   last offset a connection got (one `pos` per partition) is a complete
///   recovery offset only because every shard sees one order.
/// - **Exactly once per shard.** Every shard applies every batch once:
///   also the shards without a subscriber of its channels (they keep the
///   last `seq` and `pos` seen, for join acks and recovery). A transport
///   that may deliver twice (a broker reconnecting) must drop, before the
///   shard, what was applied already (by `pos`); one that may lose must
///   find the batch again (in the store, by `pos`). It never drops one
///   silently: a subscriber would miss a `seq` with no gap to notice.
/// - **Every reply answered once.** Each outcome's `R` (where its answer
///   goes: a connection's ack, a REST request waiting) is answered, exactly
///   once, after its commit and not before: [`Outcome::Failed`] as "may not
///   have been stored, retry", a [`Outcome::Duplicate`] with the first
///   message, an [`Outcome::Refused`] with why.
/// - **No waiting on shards.** It runs between two commits: time spent
///   here is commit latency for every message queued behind. It must never
///   block on a shard's mailbox. The in-process mesh posts to each shard's
///   external queue, which is unbounded (`SegQueue`) and so is never full;
///   the writer's own bounded queue is the back-pressure (a full one is
///   UNAVAILABLE for new sends). A broker buffers or falls back while its
///   transport is away; it must not panic (that ends the writer thread).
///
/// The writer calls it once per batch, never per message, and the store
/// threads are generic over it (no dynamic dispatch). A closure taking the
/// batch is a `Fanout` too.
///
/// A toy implementation that only counts what was stored, on a SQLite
/// store in a temporary directory:
///
/// ```
/// use std::time::Duration;
///
/// use crossbeam_channel::{Sender, unbounded};
/// use gatrix_chat::metrics::StoreMetrics;
/// use gatrix_chat::store::sqlite::{SqliteStore, migrate};
/// use gatrix_chat::store::writer::{Outcome, WriterSettings};
/// use gatrix_chat::store::{Fanout, MessageRecord, Store, StoreSettings, handle};
///
/// /// Tells the test how many messages each commit stored, and their seqs.
/// struct Counter(Sender<Vec<u64>>);
///
/// impl Fanout<u32> for Counter {
///     fn send(&mut self, batch: Vec<(Outcome, u32)>) {
///         let seqs = batch
///             .into_iter()
///             .filter_map(|(outcome, _reply)| match outcome {
///                 Outcome::Stored(m) => Some(m.seq),
///                 Outcome::Duplicate(_) | Outcome::Failed(_) | Outcome::Refused(_) => None,
///             })
///             .collect();
///         let _ = self.0.send(seqs);
///     }
/// }
///
/// let dir = tempfile::tempdir().unwrap();
/// migrate(dir.path()).unwrap();
/// let path = dir.path().to_owned();
/// let settings = StoreSettings {
///     writer: WriterSettings { max_batch: 100, window: Duration::ZERO },
///     writer_queue: 100,
///     readers: 1,
///     reader_queue: 100,
///     metrics: StoreMetrics::detached(),
/// };
/// let (tx, rx) = unbounded();
/// let (store, threads) = handle::start(
///     &settings,
///     move || Ok(Box::new(SqliteStore::open(&path)?) as Box<dyn Store>),
///     Counter(tx),
/// )
/// .unwrap();
///
/// let message = |id: u64| MessageRecord {
///     id,
///     pos: 0,
///     channel_id: "general".into(),
///     seq: 0,
///     user_id: "alice".into(),
///     content: format!("hello {id}"),
///     kind: "text".into(),
///     client_message_id: None,
///     reply_to: None,
///     created_at: "2026-01-01T00:00:00.000Z".into(),
///     edited_at: None,
///     deleted_at: None,
///     pinned: None,
///     thread: Default::default(),
/// };
/// store.append(Box::new(message(1)), 1).unwrap();
/// store.append(Box::new(message(2)), 2).unwrap();
///
/// // One or two commits, depending on how the writer batched them: the
/// // seqs arrive gapless and in order either way.
/// let mut seqs = rx.recv_timeout(Duration::from_secs(10)).unwrap();
/// if seqs.len() < 2 {
///     seqs.extend(rx.recv_timeout(Duration::from_secs(10)).unwrap());
/// }
/// assert_eq!(seqs, [1, 2]);
///
/// drop(store); // the writer stops once every handle is gone
/// threads.join();
/// ```
pub trait Fanout<R> {
    /// One committed batch: every outcome of one commit, in commit order,
    /// each with where its answer goes.
    fn send(&mut self, batch: Vec<(Outcome, R)>);
}

/// A closure over the batch is a fan-out (tests, tools).
impl<R, F: FnMut(Vec<(Outcome, R)>)> Fanout<R> for F {
    fn send(&mut self, batch: Vec<(Outcome, R)>) {
        self(batch)
    }
}
