//! The publisher's queue: bounded in batches (`bus_queue_batches`) and in
//! bytes (`bus_queue_bytes`). It fills when Redis is slow or stuck, and a
//! batch may hold `commit_batch_max` messages of up to
//! `max_message_length` each, so a count alone bounds memory only at
//! count x the largest batch (1024 x 500 x 4 kB by default, 2 GB): the
//! bytes bound it for real. The writer never waits: what does not fit is
//! dropped (counted by the caller) and the gap fill reads it from the
//! database.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};

use super::batch::Batch;

/// The senders' side (the writer's fan-out, the applier's re-publishes).
#[derive(Clone)]
pub(crate) struct PublishTx {
    tx: Sender<Arc<Batch>>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The publisher's side.
pub(crate) struct PublishRx {
    rx: Receiver<Arc<Batch>>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `batches` batches and `bytes` bytes of frames (one
/// batch larger than `bytes` fits an empty queue, so that a large batch
/// still goes through the log when nothing else waits).
pub(crate) fn publish_queue(batches: usize, bytes: usize) -> (PublishTx, PublishRx) {
    let (tx, rx) = bounded(batches.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        PublishTx {
            tx,
            queued: queued.clone(),
            max_bytes: bytes,
        },
        PublishRx { rx, queued },
    )
}

impl PublishTx {
    /// Queues `batch` if it fits; false (nothing queued) otherwise.
    pub(crate) fn try_send(&self, batch: Arc<Batch>) -> bool {
        let size = batch.bytes();
        // Reserved before the send: there are several senders.
        let before = self.queued.fetch_add(size, Ordering::Relaxed);
        if before > 0 && before.saturating_add(size) > self.max_bytes {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        if self.tx.try_send(batch).is_err() {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl PublishRx {
    /// The batches, as they come, until every sender is gone.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Arc<Batch>> + '_ {
        self.rx.iter().inspect(|b| {
            self.queued.fetch_sub(b.bytes(), Ordering::Relaxed);
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::bus::batch::Item;
    use crate::protocol::Frame;

    fn batch(pos: u64, bytes: usize) -> Arc<Batch> {
        let item = Item {
            channel: Arc::from("c"),
            seq: pos,
            pos,
            frame: Frame::Text("x".repeat(bytes).into()),
            received: Instant::now(),
        };
        Arc::new(Batch::new(0, vec![item]).expect("one item"))
    }

    #[test]
    fn the_queue_is_bounded_in_batches_and_in_bytes() {
        let (tx, rx) = publish_queue(3, 100);
        assert!(tx.try_send(batch(1, 60)));
        assert!(tx.try_send(batch(2, 40)));
        assert!(!tx.try_send(batch(3, 1)), "101 bytes");
        let mut got = rx.iter();
        assert_eq!(got.next().map(|b| b.bytes()), Some(60));
        assert!(tx.try_send(batch(3, 50)), "room again once one is taken");
        let (tx, _rx) = publish_queue(2, 1_000);
        assert!(tx.try_send(batch(1, 1)));
        assert!(tx.try_send(batch(2, 1)));
        assert!(!tx.try_send(batch(3, 1)), "two batches at most");
    }

    #[test]
    fn a_batch_larger_than_the_budget_fits_an_empty_queue_only() {
        let (tx, rx) = publish_queue(8, 10);
        assert!(tx.try_send(batch(1, 50)));
        assert!(!tx.try_send(batch(2, 1)));
        drop(rx.iter().next());
        assert!(tx.try_send(batch(2, 1)));
    }
}
