//! The write half of [`WsIo`]: every queued frame of the [`Link`] encoded
//! into the shard's shared write buffer and sent in one `send`; only what
//! the socket does not take is kept (`unsent`), and counted against the
//! link's byte budget.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use super::{WRITE_BATCH, WRITE_BUF, WsIo, take_buf};
use crate::protocol::CloseReason;
use crate::protocol::deflate::encode_frame;
use crate::protocol::link::Link;
use crate::protocol::ws::{self, Kind};

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Queues raw bytes (the 101 response) ahead of every frame.
    pub fn queue_raw(&mut self, bytes: &[u8]) {
        self.unsent.extend_from_slice(bytes);
    }

    /// Answers a ping: the pong leaves ahead of later frames. While the
    /// socket is full, only the latest ping is answered (RFC 6455 5.5.3)
    /// and every pong asked for counts against the outbound budget.
    pub fn queue_pong(&mut self, payload: &[u8]) {
        if self.blocked {
            self.pongs_owed = self.pongs_owed.saturating_add(2 + payload.len());
            self.pong = Some(payload.into());
        } else {
            ws::encode(&mut self.unsent, Kind::Pong, payload);
        }
    }

    /// Bytes held for the client outside the link's queue: what the socket
    /// has not taken, and the pongs owed while it is full.
    fn backlog(&self) -> usize {
        (self.unsent.len() - self.unsent_from).saturating_add(self.pongs_owed)
    }

    /// Moves every frame queued on `link` to the socket, many frames per
    /// send. Returns when the link is empty or the socket is full (the
    /// waker is registered either way). What is left over counts against
    /// the link's byte budget (`Link::set_backlog`): past it, the link is
    /// closing as a slow consumer.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, link: &Link) -> io::Result<()> {
        let r = self.poll_write_inner(cx, link);
        link.set_backlog(self.backlog());
        r
    }

    /// Hands what the link holds to the socket now, in one send (or keeps
    /// it unsent if the socket is full: later frames then join it). The
    /// task's next [`Self::poll_write`] registers its waker. A failed send
    /// closes the link, which the task sees after its read.
    pub fn write_now(&mut self, link: &Link) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        if self.poll_write(&mut cx, link).is_err() {
            link.close(CloseReason::TransportError);
        }
    }

    fn poll_write_inner(&mut self, cx: &mut Context<'_>, link: &Link) -> io::Result<()> {
        loop {
            if self.unsent_from < self.unsent.len() {
                // Frames queued meanwhile leave in the same send as what is
                // waiting (the 101 and the OPEN packet, a pong and replies),
                // up to a batch: the link's bounds still hold a slow reader.
                while self.unsent.len() - self.unsent_from < WRITE_BATCH {
                    match link.pop(cx) {
                        Poll::Ready(f) => encode_frame(&mut self.unsent, &f, self.compress_from),
                        Poll::Pending => break,
                    }
                }
                if self.poll_send_unsent(cx)?.is_pending() {
                    return Ok(());
                }
            }
            let mut buf = take_buf(&WRITE_BUF, 0);
            buf.clear();
            // The socket took everything: the pong kept while it was full
            // goes first.
            if let Some(p) = self.pong.take() {
                ws::encode(&mut buf, Kind::Pong, &p);
            }
            let mut drained = false;
            while buf.len() < WRITE_BATCH {
                match link.pop(cx) {
                    Poll::Ready(f) => encode_frame(&mut buf, &f, self.compress_from),
                    Poll::Pending => {
                        drained = true; // the link is empty and has our waker
                        break;
                    }
                }
            }
            let r = self.send_batch(cx, &buf);
            if buf.capacity() > 4 * WRITE_BATCH {
                buf = Vec::new(); // one huge frame: do not keep its buffer
            }
            WRITE_BUF.with(|c| c.set(buf));
            if r? || drained {
                return Ok(());
            }
        }
    }

    /// Sends `buf`; what the socket does not take goes to `unsent`.
    /// `Ok(true)` when the socket is full.
    fn send_batch(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> io::Result<bool> {
        let mut at = 0;
        while at < buf.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &buf[at..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => at += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    self.unsent.extend_from_slice(&buf[at..]);
                    self.blocked = true;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Sends what is left in `unsent`, freeing it once empty.
    pub(super) fn poll_send_unsent(&mut self, cx: &mut Context<'_>) -> io::Result<Poll<()>> {
        while self.unsent_from < self.unsent.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.unsent[self.unsent_from..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => self.unsent_from += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {
                    self.blocked = true;
                    return Ok(Poll::Pending);
                }
            }
        }
        if self.unsent.capacity() > 0 {
            self.unsent = Vec::new();
            self.unsent_from = 0;
        }
        self.blocked = false;
        self.pongs_owed = 0;
        Ok(Poll::Ready(()))
    }
}
