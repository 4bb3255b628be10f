//! Mailboxes between threads-per-core executors ("shards"): per ordered
//! pair of shards a bounded lock-free ring (crossbeam `ArrayQueue`)
//! carrying batches, plus one `AtomicWaker` per receiving shard. Generic
//! over the message: the chat's shards exchange `Mail` on one [`Mesh`],
//! and hand connections over on another. It names no shard, chat or
//! protocol type, so any layer may use it without an import cycle.
//!
//! Senders never await on the message path: [`Mailbox::post`] appends to a
//! local per-peer batch and a flusher task ([`Mailbox::run_flusher`])
//! pushes whole batches into the rings (one atomic push and at most one
//! cross-thread wake per batch). A full ring is back-pressure: the flusher
//! retries shortly, while posts keep collecting locally. Posting to one's
//! own shard skips the ring entirely. Threads that are not shards post
//! through [`Mesh::post_external`].
//!
//! (glommio's own channel mesh was tried first; it corrupted the heap at
//! executor exit on this glommio version, so the rings are ours.)
//!
//! ```
//! use gatrix_chat::mailbox::{Mailbox, Mesh};
//!
//! // Two shards, rings of 16 batches each way. Each shard builds its end
//! // on its own executor; here both live on one, for brevity.
//! let mesh = Mesh::<String>::new(2, 16);
//! glommio::LocalExecutorBuilder::default()
//!     .io_memory(256 << 10)
//!     .spawn(move || async move {
//!         let (a, b) = (Mailbox::new(mesh.clone(), 0), Mailbox::new(mesh, 1));
//!         // Shard 0's flusher moves what it posts into the rings.
//!         let flusher = glommio::spawn_local({
//!             let a = a.clone();
//!             async move { a.run_flusher().await }
//!         });
//!         a.post(1, "hello".into());
//!         a.post(1, "world".into());
//!         let mut got = Vec::new();
//!         b.recv(&mut got).await; // one batch, in order
//!         assert_eq!(got, ["hello", "world"]);
//!
//!         // To one's own shard: no ring, no flusher.
//!         a.post(0, "to myself".into());
//!         // From a thread that is no shard (the store's, say).
//!         let mesh = a.mesh().clone();
//!         std::thread::spawn(move || mesh.post_external(0, "from a thread".into()))
//!             .join()
//!             .unwrap();
//!         let mut mine = Vec::new();
//!         a.recv(&mut mine).await; // local posts first
//!         assert_eq!(mine, ["to myself", "from a thread"]);
//!         flusher.cancel().await;
//!     })
//!     .unwrap()
//!     .join()
//!     .unwrap();
//! ```

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use crossbeam_queue::{ArrayQueue, SegQueue};
use futures::task::AtomicWaker;

/// The rings between all shards, built once at start-up.
pub struct Mesh<T> {
    /// `rings[to][from]`.
    rings: Vec<Vec<ArrayQueue<Vec<T>>>>,
    /// Per shard, messages from threads that are not shards (the store's
    /// writer and readers). Their volume is bounded by the store's own
    /// bounded queues.
    external: Vec<SegQueue<T>>,
    wakers: Vec<AtomicWaker>,
}

impl<T: Send> Mesh<T> {
    /// `capacity` is in batches per ordered pair of shards.
    pub fn new(shards: usize, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            rings: (0..shards)
                .map(|_| {
                    (0..shards)
                        .map(|_| ArrayQueue::new(capacity.max(1)))
                        .collect()
                })
                .collect(),
            external: (0..shards).map(|_| SegQueue::new()).collect(),
            wakers: (0..shards).map(|_| AtomicWaker::new()).collect(),
        })
    }

    /// How many shards the mesh connects.
    pub fn shards(&self) -> usize {
        self.wakers.len()
    }

    /// Sends `msg` to shard `to` from any thread (store threads). The
    /// queue is unbounded: the caller bounds what it sends. Panics if `to`
    /// is not a shard of the mesh.
    pub fn post_external(&self, to: usize, msg: T) {
        self.external[to].push(msg);
        self.wakers[to].wake();
    }
}

/// One shard's end of the mesh: its outgoing batches and its inbox.
pub struct Mailbox<T> {
    mesh: Arc<Mesh<T>>,
    me: usize,
    /// Batches being collected per destination shard.
    pending: RefCell<Vec<Vec<T>>>,
    /// Messages to this very shard, handled without crossing a ring.
    local: RefCell<VecDeque<T>>,
    /// The flusher has work; its waker.
    dirty: Cell<bool>,
    flusher: RefCell<Option<Waker>>,
    /// The receiver task's waker, for local posts.
    receiver: RefCell<Option<Waker>>,
}

impl<T: Send> Mailbox<T> {
    pub fn new(mesh: Arc<Mesh<T>>, me: usize) -> Rc<Self> {
        let n = mesh.shards();
        Rc::new(Self {
            mesh,
            me,
            pending: RefCell::new((0..n).map(|_| Vec::new()).collect()),
            local: RefCell::new(VecDeque::new()),
            dirty: Cell::new(false),
            flusher: RefCell::new(None),
            receiver: RefCell::new(None),
        })
    }

    /// This end's shard.
    pub fn shard(&self) -> usize {
        self.me
    }

    /// How many shards the mesh connects.
    pub fn shards(&self) -> usize {
        self.mesh.shards()
    }

    /// The mesh, for handing to other threads ([`Mesh::post_external`]).
    pub fn mesh(&self) -> &Arc<Mesh<T>> {
        &self.mesh
    }

    /// Sends `msg` to shard `to`. Never blocks; messages to one shard keep
    /// their order. They leave with the next batch of the flusher
    /// ([`Mailbox::run_flusher`]), or at once to this very shard. Panics if
    /// `to` is not a shard of the mesh.
    pub fn post(&self, to: usize, msg: T) {
        if to == self.me {
            self.local.borrow_mut().push_back(msg);
            if let Some(w) = self.receiver.borrow_mut().take() {
                w.wake();
            }
            return;
        }
        self.pending.borrow_mut()[to].push(msg);
        if !self.dirty.replace(true)
            && let Some(w) = self.flusher.borrow_mut().take()
        {
            w.wake();
        }
    }

    /// Waits for messages and moves every available one into `out`, local
    /// ones first, then each peer's batches.
    pub async fn recv(&self, out: &mut Vec<T>) {
        poll_fn(|cx| {
            self.drain(out);
            if !out.is_empty() {
                return Poll::Ready(());
            }
            *self.receiver.borrow_mut() = Some(cx.waker().clone());
            self.mesh.wakers[self.me].register(cx.waker());
            // Re-check after registering, or a wake between could be lost.
            self.drain(out);
            if out.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Tests without executors: the batches waiting for the flusher, as
    /// (destination, message).
    #[cfg(test)]
    pub(crate) fn take_pending_for_tests(&self) -> Vec<(usize, T)> {
        let mut pending = self.pending.borrow_mut();
        let mut out = Vec::new();
        for (to, batch) in pending.iter_mut().enumerate() {
            out.extend(batch.drain(..).map(|m| (to, m)));
        }
        self.dirty.set(false);
        out
    }

    #[cfg(test)]
    pub(crate) fn drain_for_tests(&self, out: &mut Vec<T>) {
        self.drain(out);
    }

    fn drain(&self, out: &mut Vec<T>) {
        out.extend(self.local.borrow_mut().drain(..));
        while let Some(m) = self.mesh.external[self.me].pop() {
            out.push(m);
        }
        for ring in &self.mesh.rings[self.me] {
            while let Some(batch) = ring.pop() {
                out.extend(batch);
            }
        }
    }

    /// The flusher task: moves collected batches into the rings. Runs for
    /// the shard's life.
    pub async fn run_flusher(&self) {
        loop {
            poll_fn(|cx| {
                if self.dirty.get() {
                    Poll::Ready(())
                } else {
                    *self.flusher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .await;
            self.dirty.set(false);
            let mut blocked = false;
            for to in 0..self.shards() {
                let batch = std::mem::take(&mut self.pending.borrow_mut()[to]);
                if batch.is_empty() {
                    continue;
                }
                match self.mesh.rings[to][self.me].push(batch) {
                    Ok(()) => self.mesh.wakers[to].wake(),
                    Err(batch) => {
                        // Ring full: put the batch back in front of anything
                        // posted since, and retry shortly.
                        let mut pending = self.pending.borrow_mut();
                        let newer = std::mem::replace(&mut pending[to], batch);
                        pending[to].extend(newer);
                        blocked = true;
                    }
                }
            }
            if blocked {
                self.dirty.set(true);
                glommio::timer::sleep(Duration::from_micros(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_posts_arrive_in_order() {
        let mesh = Mesh::<u32>::new(2, 1);
        glommio::LocalExecutorBuilder::default()
            .io_memory(256 << 10)
            .spawn(move || async move {
                let (a, b) = (Mailbox::new(mesh.clone(), 0), Mailbox::new(mesh, 1));
                let fa = glommio::spawn_local({
                    let a = a.clone();
                    async move { a.run_flusher().await }
                })
                .detach();
                for i in 0..100 {
                    a.post(1, i); // ring of capacity 1: exercises the retry path
                    glommio::yield_if_needed().await;
                }
                a.post(0, 7);
                let mut got = Vec::new();
                while got.len() < 100 {
                    b.recv(&mut got).await;
                }
                assert_eq!(got, (0..100).collect::<Vec<_>>());
                let mut mine = Vec::new();
                a.recv(&mut mine).await;
                assert_eq!(mine, vec![7]);
                fa.cancel();
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
