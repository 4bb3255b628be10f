//! [`Links`]: the live links of one shard, so that a drain can close
//! every one and wake the keep-alive connections waiting for a request.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::Shared;

use crate::protocol::{CloseReason, Link};

/// The live links of one shard, so shutdown can close every one.
pub struct Links {
    pub(super) map: RefCell<HashMap<u64, Rc<Link>>>,
    /// Set by [`Links::close_all`]: a link registered later (its upgrade was
    /// under way) is closed at once.
    closing: Cell<Option<CloseReason>>,
    /// Completed by [`Links::close_all`]: keep-alive polling connections
    /// waiting for their next request stop waiting.
    drain: RefCell<Option<oneshot::Sender<()>>>,
    drained: Shared<oneshot::Receiver<()>>,
}

impl Default for Links {
    fn default() -> Self {
        let (tx, rx) = oneshot::channel();
        Self {
            map: RefCell::default(),
            closing: Cell::new(None),
            drain: RefCell::new(Some(tx)),
            drained: rx.shared(),
        }
    }
}

impl Links {
    /// Resolves once [`Links::close_all`] was called.
    pub(super) fn draining(&self) -> impl std::future::Future<Output = ()> + use<> {
        let drained = self.drained.clone();
        async move {
            let _ = drained.await;
        }
    }

    pub(super) fn register(&self, link: Rc<Link>) {
        if let Some(reason) = self.closing.get() {
            link.close(reason);
        }
        self.map.borrow_mut().insert(link.id, link);
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Asks every link to close with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        self.closing.set(Some(reason));
        self.drain.borrow_mut().take();
        let links: Vec<Rc<Link>> = self.map.borrow().values().cloned().collect();
        for l in links {
            l.close(reason);
        }
    }
}
