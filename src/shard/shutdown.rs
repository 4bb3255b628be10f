//! The shutdown signal: set once by the main thread (SIGTERM/SIGINT),
//! awaited by every shard.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures::task::AtomicWaker;

pub struct Shutdown {
    flag: AtomicBool,
    wakers: Vec<AtomicWaker>,
}

impl Shutdown {
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Self {
            flag: AtomicBool::new(false),
            wakers: (0..shards).map(|_| AtomicWaker::new()).collect(),
        })
    }

    /// Starts the drain on every shard.
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        for w in &self.wakers {
            w.wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once shutdown has been triggered.
    pub async fn wait(&self, shard: usize) {
        poll_fn(|cx| {
            if self.is_triggered() {
                return Poll::Ready(());
            }
            self.wakers[shard].register(cx.waker());
            if self.is_triggered() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
