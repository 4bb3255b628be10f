//! The close path of a connection's socket I/O: the close frame (echoing
//! the client's code), what is sent before it, and the lingering close
//! after it.

use super::*;
use crate::protocol::Frame;

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Queues the close frame. When it answers the client's close frame,
    /// it echoes the client's status code instead of `code` (RFC 6455
    /// 5.5.1); a client close without a code gets `code`.
    pub fn queue_close(&mut self, code: u16, reason: &str) {
        let code = self.dec.peer_close().unwrap_or(code);
        ws::encode_close(&mut self.unsent, code, reason);
    }

    /// Encodes `frame` behind whatever is unsent (the close path).
    pub fn queue_frame(&mut self, frame: &Frame) {
        encode_frame(&mut self.unsent, frame, self.compress_from);
    }

    /// Sends everything still unsent (the close path).
    pub fn poll_flush_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_send_unsent(cx) {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// After our close frame (flushed): shuts our side of the stream, so
    /// the client sees its end once it has read everything before it (RFC
    /// 6455 7.1.1: the server closes the TCP connection first), then reads
    /// and discards until the client's close frame, or its end of the
    /// stream. Closing a socket with unread bytes makes the kernel answer
    /// with a reset, which can destroy the close frame in flight (and the
    /// frames before it) and fails the client's writes. After a frame that
    /// could not be decoded nothing can be framed any more: bytes are
    /// dropped until the client closes.
    pub fn poll_until_client_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.dec.peer_closed() {
            return Poll::Ready(()); // it came already (maybe the frame refused)
        }
        if !self.write_shut {
            if Pin::new(&mut self.stream).poll_close(cx).is_pending() {
                return Poll::Pending; // TLS: close_notify on its way
            }
            self.write_shut = true;
        }
        if !self.out_of_sync {
            let mut seen_close = false;
            let r = self.read(cx, |_, msg| {
                if matches!(msg, Msg::Close(_)) {
                    seen_close = true;
                    return Err(());
                }
                Ok(())
            });
            match r {
                ReadEnd::Pending => return Poll::Pending,
                ReadEnd::Yielded if !seen_close => return Poll::Pending, // woken again
                ReadEnd::Failed(IoFailure::Ws(_)) => {}                  // now out of sync
                _ => return Poll::Ready(()),
            }
        }
        self.partial = Vec::new();
        let mut buf = take_buf(&READ_BUF, READ_CHUNK);
        let r = self.poll_discard_until_eof(cx, &mut buf);
        READ_BUF.with(|c| c.set(buf));
        r
    }

    fn poll_discard_until_eof(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<()> {
        for _ in 0..READS_PER_WAKE {
            match Pin::new(&mut self.stream).poll_read(cx, buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(_)) => {}
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
