//! [`Link`]: one client connection as the rest of the server sees it, a
//! bounded outbound queue of ready-made frames plus a way to close it.
//!
//! Anything on the connection's shard may push a frame; the connection's
//! driver drains the whole queue into one batched write. The queue is bounded
//! in frames and in bytes: a push that would overflow it marks the link
//! closing with [`CloseReason::SlowConsumer`] instead of growing or silently
//! dropping (the client reconnects and recovers what it missed). The bytes
//! the driver holds outside the queue (encoded, not yet taken by the
//! socket; pong replies) count against the same byte bound
//! ([`Link::set_backlog`]).

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use super::CloseReason;
use super::pace::{Pace, Verdict};

/// A text frame's payload: UTF-8, and shared by reference (cloning it
/// copies a pointer, not the text), so a broadcast is encoded once and
/// queued on every recipient's link. It is tungstenite's `Utf8Bytes`;
/// layers above the protocol name it `Text`, so that only the protocol
/// depends on where it comes from.
///
/// ```
/// use gatrix_chat::protocol::{Frame, Text};
///
/// let text = Text::from("42[\"hello\"]".to_owned());
/// let frame = Frame::Text(text.clone()); // the same bytes, not a copy
/// assert_eq!(frame.text(), Some(text.as_str()));
/// ```
pub type Text = tungstenite::Utf8Bytes;

/// A frame ready for the wire. Text frames are shared by reference between
/// every recipient of a broadcast (encode once, fan out bytes).
#[derive(Debug, Clone)]
pub enum Frame {
    Text(Text),
    Binary(Bytes),
    /// A broadcast with its permessage-deflate form, both made once for
    /// every recipient (behind one `Arc`, so the queue's entries stay small).
    Packed(Arc<Packed>),
}

/// A text frame and its compressed payload (RFC 7692, no context takeover).
#[derive(Debug)]
pub struct Packed {
    pub text: Text,
    /// `None` when it is not worth compressing (below the threshold, or it
    /// does not shrink).
    pub deflated: Option<Bytes>,
}

impl Frame {
    /// Its length as queued: the plain payload's (what an uncompressed
    /// recipient is sent; the budget does not depend on the recipient).
    fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
            Frame::Packed(p) => p.text.len(),
        }
    }

    /// The text, for a text frame.
    pub fn text(&self) -> Option<&str> {
        match self {
            Frame::Text(t) => Some(t.as_str()),
            Frame::Packed(p) => Some(p.text.as_str()),
            Frame::Binary(_) => None,
        }
    }
}

impl From<String> for Frame {
    fn from(s: String) -> Self {
        Frame::Text(s.into())
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The link is already closing; the frame was dropped with it.
    Closed,
    /// The queue was full: the link is now closing as a slow consumer.
    Overflow,
}

/// Bounds of one link's outbound queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

/// One connection's outbound side and identity. Owned by its shard (`Rc`).
///
/// Anything on the shard pushes frames; the connection's driver takes them
/// out and writes them. A push past [`QueueLimits`] is refused and closes
/// the link as a slow consumer (the driver then closes the connection with
/// 4008); after that every push is refused:
///
/// ```
/// use gatrix_chat::protocol::{CloseReason, Frame, Link, PushError, QueueLimits};
///
/// let limits = QueueLimits { max_frames: 3, max_bytes: 10 };
/// let link = Link::new(1, "sid".into(), "127.0.0.1:4000".parse().unwrap(), limits);
/// link.push_text("hello".into()).unwrap();
/// link.push(Frame::Text("world".into())).unwrap();
/// assert_eq!(link.queued_frames(), 2);
///
/// // 10 bytes are queued: one more byte is past `max_bytes`.
/// assert_eq!(link.push_text("!".into()), Err(PushError::Overflow));
/// assert_eq!(link.closing(), Some(CloseReason::SlowConsumer));
/// assert_eq!(link.push_text("?".into()), Err(PushError::Closed));
/// ```
///
/// The first close reason wins, whoever asks:
///
/// ```
/// use gatrix_chat::protocol::{CloseReason, Link, QueueLimits};
///
/// let limits = QueueLimits { max_frames: 8, max_bytes: 1 << 10 };
/// let link = Link::new(2, "sid".into(), "127.0.0.1:4000".parse().unwrap(), limits);
/// link.close(CloseReason::ServerShutdown);
/// link.close(CloseReason::RateLimited);
/// assert_eq!(link.closing(), Some(CloseReason::ServerShutdown));
/// ```
///
/// Recovery replays missed frames ahead of live ones: frames pushed after
/// [`Link::hold`] wait until [`Link::release`] puts the replay in front.
///
/// ```
/// use gatrix_chat::protocol::{Frame, Link, QueueLimits};
///
/// let limits = QueueLimits { max_frames: 8, max_bytes: 1 << 10 };
/// let link = Link::new(3, "sid".into(), "127.0.0.1:4000".parse().unwrap(), limits);
/// link.hold();
/// link.push_text("live".into()).unwrap();
/// link.release(vec![Frame::Text("missed 1".into()), Frame::Text("missed 2".into())]);
/// assert_eq!(link.queued_frames(), 3); // the driver sends "missed 1", "missed 2", "live"
/// ```
pub struct Link {
    /// Process-unique connection id (shard in the high bits).
    pub id: u64,
    /// Engine.IO session id sent in the OPEN packet.
    pub sid: String,
    pub peer: SocketAddr,
    limits: QueueLimits,
    queue: RefCell<VecDeque<Frame>>,
    queued_bytes: Cell<usize>,
    /// Bytes the driver holds for the client outside the queue.
    backlog: Cell<usize>,
    closing: Cell<Option<CloseReason>>,
    /// While set, the driver sends only the frames before this queue index:
    /// later ones wait until [`Link::release`] puts frames in front of them
    /// (recovery replays missed messages ahead of live ones).
    hold: Cell<Option<usize>>,
    /// The driver's waker, registered while it waits for frames or a close.
    waker: RefCell<Option<Waker>>,
    /// The connection's command rate limiter, set by the application at the
    /// first CONNECT; until then nothing is limited.
    pace: OnceCell<Pace>,
}

impl Link {
    pub fn new(id: u64, sid: String, peer: SocketAddr, limits: QueueLimits) -> Self {
        Self {
            id,
            sid,
            peer,
            limits,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            backlog: Cell::new(0),
            closing: Cell::new(None),
            hold: Cell::new(None),
            waker: RefCell::new(None),
            pace: OnceCell::new(),
        }
    }

    /// The connection's rate limiter, created by `init` on first use.
    pub fn pace_or_init(&self, init: impl FnOnce() -> Pace) -> &Pace {
        self.pace.get_or_init(init)
    }

    /// Takes a token for one packet from the connection's rate limiter;
    /// [`Verdict::Allowed`] while none is set.
    pub fn pace_check(&self) -> Verdict {
        self.pace.get().map_or(Verdict::Allowed, Pace::check)
    }

    /// Queues a frame for the client.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        if self.closing.get().is_some() {
            return Err(PushError::Closed);
        }
        let len = frame.len();
        let frames = self.queue.borrow().len();
        if frames >= self.limits.max_frames || self.held_bytes() + len > self.limits.max_bytes {
            self.close(CloseReason::SlowConsumer);
            return Err(PushError::Overflow);
        }
        self.queue.borrow_mut().push_back(frame);
        self.queued_bytes.set(self.queued_bytes.get() + len);
        if frames == 0 {
            self.wake();
        }
        Ok(())
    }

    /// Queues a text frame built from a string.
    pub fn push_text(&self, text: String) -> Result<(), PushError> {
        self.push(Frame::Text(text.into()))
    }

    /// Asks the driver to close the connection. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.get().is_none() {
            self.closing.set(Some(reason));
            self.wake();
        }
    }

    pub fn closing(&self) -> Option<CloseReason> {
        self.closing.get()
    }

    pub fn queued_frames(&self) -> usize {
        self.queue.borrow().len()
    }

    /// Bytes held for the client: queued, and the driver's backlog.
    fn held_bytes(&self) -> usize {
        self.queued_bytes.get().saturating_add(self.backlog.get())
    }

    /// Driver side: the bytes it holds for the client outside the queue
    /// (what the socket has not taken, pongs owed). They count against the
    /// queue's byte limit: past it, the link closes as a slow consumer, the
    /// same as when a push overflows.
    pub(crate) fn set_backlog(&self, bytes: usize) {
        self.backlog.set(bytes);
        if self.held_bytes() > self.limits.max_bytes {
            self.close(CloseReason::SlowConsumer);
        }
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Holds back every frame queued from now on until [`Link::release`].
    pub fn hold(&self) {
        if self.hold.get().is_none() {
            self.hold.set(Some(self.queue.borrow().len()));
        }
    }

    /// Puts `first` ahead of the frames held since [`Link::hold`] and lets
    /// everything go. `first` counts against the queue's byte limit only
    /// as far as it must: a replay larger than the queue closes the link as
    /// a slow consumer, like any overflow.
    pub fn release(&self, first: Vec<Frame>) {
        let Some(at) = self.hold.take() else { return };
        let mut queue = self.queue.borrow_mut();
        let at = at.min(queue.len());
        let bytes: usize = first.iter().map(Frame::len).sum();
        let frames = queue.len() + first.len();
        let tail: Vec<Frame> = queue.drain(at..).collect();
        queue.extend(first);
        queue.extend(tail);
        drop(queue);
        self.queued_bytes.set(self.queued_bytes.get() + bytes);
        if frames > self.limits.max_frames || self.held_bytes() > self.limits.max_bytes {
            self.close(CloseReason::SlowConsumer);
        }
        self.wake();
    }

    /// Lets the first `n` held frames go and keeps holding the ones after
    /// them (a recovery holds its CONNECT reply until it knows whether the
    /// session is restored, then lets the reply go ahead of the replay).
    pub fn pass_held(&self, n: usize) {
        if let Some(at) = self.hold.get() {
            self.hold.set(Some((at + n).min(self.queue.borrow().len())));
            self.wake();
        }
    }

    /// Queues `frames` ahead of the held ones, which stay held (a replay
    /// page). They count against the queue's limits like any push: if they
    /// do not fit, none is queued and the link closes as a slow consumer.
    /// Without a hold, they are plainly queued.
    pub fn push_ahead(&self, frames: Vec<Frame>) -> Result<(), PushError> {
        if self.closing.get().is_some() {
            return Err(PushError::Closed);
        }
        let bytes: usize = frames.iter().map(Frame::len).sum();
        let mut queue = self.queue.borrow_mut();
        if queue.len() + frames.len() > self.limits.max_frames
            || self.queued_bytes.get() + bytes > self.limits.max_bytes
        {
            drop(queue);
            self.close(CloseReason::SlowConsumer);
            return Err(PushError::Overflow);
        }
        let n = frames.len();
        match self.hold.get() {
            Some(at) => {
                let at = at.min(queue.len());
                let tail: Vec<Frame> = queue.drain(at..).collect();
                queue.extend(frames);
                queue.extend(tail);
                self.hold.set(Some(at + n));
            }
            None => queue.extend(frames),
        }
        drop(queue);
        self.queued_bytes.set(self.queued_bytes.get() + bytes);
        self.wake();
        Ok(())
    }

    /// Rewrites the first held frame in place (a held CONNECT reply whose
    /// pid changes when the recovery is refused).
    pub fn map_first_held(&self, f: impl FnOnce(&Frame) -> Frame) {
        let Some(at) = self.hold.get() else { return };
        let mut queue = self.queue.borrow_mut();
        if let Some(frame) = queue.get_mut(at) {
            let new = f(frame);
            let bytes = self.queued_bytes.get() - frame.len() + new.len();
            *frame = new;
            self.queued_bytes.set(bytes);
        }
    }

    /// Driver side: takes the next queued frame, registering the waker when
    /// there is none (or the next one is held).
    pub(crate) fn pop(&self, cx: &mut Context<'_>) -> Poll<Frame> {
        if let Some(at) = self.hold.get() {
            if at == 0 {
                self.register(cx);
                return Poll::Pending;
            }
            self.hold.set(Some(at - 1));
        }
        let mut queue = self.queue.borrow_mut();
        match queue.pop_front() {
            Some(f) => {
                self.queued_bytes.set(self.queued_bytes.get() - f.len());
                Poll::Ready(f)
            }
            None => {
                // The driver is about to sleep: an idle connection keeps no
                // queue storage (one allocation per burst, not per frame).
                if queue.capacity() > 0 {
                    *queue = VecDeque::new();
                }
                drop(queue);
                if let Some(at) = self.hold.get() {
                    self.hold.set(Some(at + 1)); // undo: nothing was taken
                }
                self.register(cx);
                Poll::Pending
            }
        }
    }

    /// Driver side: waits for a close request.
    pub(crate) fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        match self.closing.get() {
            Some(r) => Poll::Ready(r),
            None => {
                self.register(cx);
                Poll::Pending
            }
        }
    }

    fn register(&self, cx: &mut Context<'_>) {
        let mut w = self.waker.borrow_mut();
        match &*w {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *w = Some(cx.waker().clone()),
        }
    }
}

#[cfg(test)]
mod tests;
