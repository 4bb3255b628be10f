//! What shards (and the REST layer) hold to reach the store threads:
//! bounded queues to the writer and to the readers. Nothing here blocks: a
//! full queue is an immediate error, which callers answer as UNAVAILABLE.

use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError, bounded};
use futures::channel::oneshot;

use super::writer::{self, Job, WriterSettings};
use super::{Fanout, MessageRecord, Store, StoreError};

use super::writer::StoreJob as ReadJob;

/// Queue lengths and thread counts of the store.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub writer: WriterSettings,
    /// Messages and writes waiting for the writer before sends are refused.
    pub writer_queue: usize,
    pub readers: usize,
    pub reader_queue: usize,
    /// Batch sizes, commit latencies and queue depth of the writer.
    pub metrics: crate::metrics::StoreMetrics,
}

pub struct StoreHandle<R> {
    writer: Sender<Job<R>>,
    readers: Sender<ReadJob>,
}

impl<R> Clone for StoreHandle<R> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            readers: self.readers.clone(),
        }
    }
}

/// The store's threads; joined after every handle is dropped.
pub struct StoreThreads(Vec<JoinHandle<()>>);

impl StoreThreads {
    pub fn join(self) {
        for t in self.0 {
            let _ = t.join();
        }
    }
}

/// Opens one store connection per thread with `open` and starts the writer
/// and the readers. The writer hands each commit's outcomes, in commit
/// order, to `fanout`, on the writer thread.
pub fn start<R, O, F>(
    settings: &StoreSettings,
    open: O,
    fanout: F,
) -> Result<(StoreHandle<R>, StoreThreads), StoreError>
where
    R: Send + 'static,
    O: Fn() -> Result<Box<dyn Store>, StoreError>,
    F: Fanout<R> + Send + 'static,
{
    let (wtx, wrx) = bounded::<Job<R>>(settings.writer_queue.max(1));
    let (rtx, rrx) = bounded::<ReadJob>(settings.reader_queue.max(1));
    let mut threads = Vec::new();
    let mut store = open()?;
    let ws = settings.writer;
    let metrics = settings.metrics.clone();
    threads.push(
        std::thread::Builder::new()
            .name("gatrix-store-writer".into())
            .spawn(move || writer::run(store.as_mut(), wrx, ws, &metrics, fanout))
            .map_err(|e| StoreError::Other(e.to_string()))?,
    );
    for i in 0..settings.readers.max(1) {
        let mut store = open()?;
        let rrx = rrx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("gatrix-store-reader-{i}"))
                .spawn(move || {
                    while let Ok(job) = rrx.recv() {
                        job(store.as_mut());
                    }
                })
                .map_err(|e| StoreError::Other(e.to_string()))?,
        );
    }
    Ok((
        StoreHandle {
            writer: wtx,
            readers: rtx,
        },
        StoreThreads(threads),
    ))
}

/// The queue was full (or the store is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl<R: Send + 'static> StoreHandle<R> {
    /// Queues a new message for the writer; gives `reply` back when full.
    pub fn append(&self, message: Box<MessageRecord>, reply: R) -> Result<(), R> {
        self.writer
            .try_send(Job::Append(message, reply))
            .map_err(|e| match e {
                TrySendError::Full(Job::Append(_, r))
                | TrySendError::Disconnected(Job::Append(_, r)) => r,
                _ => unreachable!("we sent an Append"),
            })
    }

    /// Runs `f` on the writer thread, in queue order with messages.
    pub fn write<T, F>(&self, f: F) -> Result<oneshot::Receiver<T>, Busy>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |s: &mut dyn Store| {
            let _ = tx.send(f(s));
        }));
        self.writer.try_send(job).map_err(|_| Busy)?;
        Ok(rx)
    }

    /// Runs `f` on a reader thread.
    pub fn read<T, F>(&self, f: F) -> Result<oneshot::Receiver<T>, Busy>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store) -> T + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.read_then(move |s| {
            let _ = tx.send(f(s));
        })?;
        Ok(rx)
    }

    /// Runs `f` on a reader thread; `f` delivers its own result.
    pub fn read_then(&self, f: impl FnOnce(&mut dyn Store) + Send + 'static) -> Result<(), Busy> {
        self.readers.try_send(Box::new(f)).map_err(|_| Busy)
    }
}
