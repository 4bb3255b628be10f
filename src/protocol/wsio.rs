//! A WebSocket connection's socket I/O with no buffer of its own while idle.
//!
//! Reads go into the shard's one shared read buffer and are decoded there
//! ([`super::ws`]); only the bytes of an incomplete frame are copied into
//! the connection (`partial`), and that buffer is freed once the frame is
//! complete. Writes encode every queued frame of the [`Link`](super::Link) into the
//! shard's shared write buffer and hand it to the socket in one `send`;
//! only what the socket does not take (a slow reader) is kept in the
//! connection (`unsent`), and freed once sent. So an idle connection holds
//! two empty `Vec`s, and a busy one costs one syscall per batch of frames.
//!
//! Bounds against a client that does not play along: an incomplete frame
//! is held as it arrives (its header alone reserves nothing); the bytes the
//! socket has not taken count against the [`Link`](super::Link)'s byte budget, so a
//! client that does not read is closed as a slow consumer (4008) like one
//! whose queue overflows; and while the socket is full, pings are answered
//! with one pong for the latest (RFC 6455 5.5.3), each still counted
//! against the budget.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use super::CloseReason;
use super::deflate::encode_frame;
use super::ws::{self, Decoder, Msg, WsError};

/// Size of each shard's shared read buffer: one read takes at most this.
const READ_CHUNK: usize = 64 * 1024;
/// A batch of frames is encoded up to about this many bytes per send.
const WRITE_BATCH: usize = 64 * 1024;
/// Reads per wake before yielding to other connections.
const READS_PER_WAKE: usize = 4;

thread_local! {
    // Taken out while in use (and put back after), so a nested use could
    // never alias: it would simply allocate its own.
    static READ_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static WRITE_BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn take_buf(cell: &'static std::thread::LocalKey<Cell<Vec<u8>>>, size: usize) -> Vec<u8> {
    let mut b = cell.with(Cell::take);
    if b.len() < size {
        b.resize(size, 0);
    }
    b
}

/// What reading ended with: for now (`Pending`, `Yielded`), or for good.
/// `E` is what the message callback stops the connection with.
#[derive(Debug)]
pub enum ReadEnd<E> {
    /// The socket has no more bytes for now (the waker is registered).
    Pending,
    /// Several reads were made; the task was woken to continue later.
    Yielded,
    /// The client closed the TCP stream.
    Eof,
    /// The socket failed, or sent what cannot be decoded.
    Failed(IoFailure),
    /// The message callback returned this error.
    Stopped(E),
}

/// Why reading stopped before the socket had no more for now (inside
/// [`WsIo::read`]; its caller sees the [`ReadEnd`]).
enum Stop<E> {
    Failed(IoFailure),
    Stopped(E),
}

impl<E> From<Stop<E>> for ReadEnd<E> {
    fn from(stop: Stop<E>) -> Self {
        match stop {
            Stop::Failed(f) => ReadEnd::Failed(f),
            Stop::Stopped(e) => ReadEnd::Stopped(e),
        }
    }
}

/// Why the connection cannot go on.
#[derive(Debug)]
pub enum IoFailure {
    Ws(WsError),
    Io(io::Error),
}

impl IoFailure {
    /// How the connection ends for it.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            Self::Ws(e) => {
                if let WsError::Protocol(what) = e {
                    tracing::debug!(error = what, "WebSocket protocol error");
                }
                e.close_reason()
            }
            Self::Io(_) => CloseReason::TransportError,
        }
    }
}

/// One WebSocket connection's socket and framing state.
pub struct WsIo<S> {
    stream: S,
    dec: Decoder,
    /// An incomplete frame carried over between reads (usually empty).
    partial: Vec<u8>,
    /// Encoded bytes the socket has not accepted yet (usually empty).
    unsent: Vec<u8>,
    unsent_from: usize,
    /// The socket refused bytes and has not taken all of `unsent` since.
    blocked: bool,
    /// While blocked: the latest ping's payload, answered once the socket
    /// takes bytes again (earlier ones are not answered).
    pong: Option<Box<[u8]>>,
    /// While blocked: the bytes of the pongs asked for, answered or not.
    /// They count against the outbound budget, so that pinging a server
    /// without reading is a slow consumer like any other.
    pongs_owed: usize,
    /// A frame could not be decoded: what follows cannot be framed.
    out_of_sync: bool,
    /// Our side of the TCP stream is shut (after our close frame).
    write_shut: bool,
    /// Frames of at least this many bytes leave compressed
    /// (permessage-deflate); `usize::MAX` when none do.
    compress_from: usize,
    /// Counted among the connections broadcasts are compressed for, while
    /// `compress_from` is set (a zero-sized guard: no per-connection cost
    /// but the flag's byte).
    receiver: Option<super::deflate::Receiver>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// `early` holds bytes that arrived with the upgrade request.
    pub fn new(stream: S, early: Vec<u8>, max_message: usize) -> Self {
        Self {
            stream,
            dec: Decoder::new(max_message),
            partial: early,
            unsent: Vec::new(),
            unsent_from: 0,
            blocked: false,
            pong: None,
            pongs_owed: 0,
            out_of_sync: false,
            write_shut: false,
            compress_from: usize::MAX,
            receiver: None,
        }
    }

    /// permessage-deflate was negotiated: compressed messages are read
    /// from now on, and frames of at least `compress_from` bytes are sent
    /// compressed (`None`: none are, the client limited our window).
    pub fn enable_deflate(&mut self, compress_from: Option<usize>) {
        self.dec.set_inflate(true);
        self.compress_from = compress_from.unwrap_or(usize::MAX);
        if compress_from.is_some() && self.receiver.is_none() {
            self.receiver = Some(super::deflate::Receiver::counted());
        }
    }

    /// Changes the message (and frame) size limit from the next frame on.
    pub fn set_max_message(&mut self, max_message: usize) {
        self.dec.set_max_message(max_message);
    }

    /// Reads what the socket has and hands every complete message to `on`
    /// (which may stop the connection by returning an error).
    pub fn read<E>(
        &mut self,
        cx: &mut Context<'_>,
        on: impl FnMut(&mut Self, Msg<'_>) -> Result<(), E>,
    ) -> ReadEnd<E> {
        let r = self.read_messages(cx, on);
        if let ReadEnd::Failed(IoFailure::Ws(_)) = r {
            self.out_of_sync = true;
        }
        r
    }

    fn read_messages<E>(
        &mut self,
        cx: &mut Context<'_>,
        mut on: impl FnMut(&mut Self, Msg<'_>) -> Result<(), E>,
    ) -> ReadEnd<E> {
        // Bytes that came with the upgrade request, before any read.
        if !self.partial.is_empty()
            && let Err(stop) = self.decode_partial(&mut on)
        {
            return stop.into();
        }
        for _ in 0..READS_PER_WAKE {
            let r = if self.partial.is_empty() {
                self.read_shared(cx, &mut on)
            } else {
                self.read_partial(cx, &mut on)
            };
            match r {
                Poll::Ready(Ok(true)) => {}
                Poll::Ready(Ok(false)) => return ReadEnd::Eof,
                Poll::Ready(Err(stop)) => return stop.into(),
                Poll::Pending => return ReadEnd::Pending,
            }
        }
        cx.waker().wake_by_ref();
        ReadEnd::Yielded
    }

    /// One read into the shared buffer; complete messages are decoded in
    /// place, an incomplete tail moves to `partial`. `Ok(false)` on EOF.
    fn read_shared<E>(
        &mut self,
        cx: &mut Context<'_>,
        on: &mut impl FnMut(&mut Self, Msg<'_>) -> Result<(), E>,
    ) -> Poll<Result<bool, Stop<E>>> {
        let mut buf = take_buf(&READ_BUF, READ_CHUNK);
        let r = self.read_shared_with(cx, on, &mut buf);
        READ_BUF.with(|c| c.set(buf));
        r
    }

    fn read_shared_with<E>(
        &mut self,
        cx: &mut Context<'_>,
        on: &mut impl FnMut(&mut Self, Msg<'_>) -> Result<(), E>,
        buf: &mut [u8],
    ) -> Poll<Result<bool, Stop<E>>> {
        let n = match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Stop::Failed(IoFailure::Io(e)))),
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(false)),
            Poll::Ready(Ok(n)) => n,
        };
        let mut at = 0;
        loop {
            match self.dec.next(&mut buf[at..n]) {
                Ok(Some((msg, used))) => {
                    at += used;
                    if let Some(m) = msg {
                        on(self, m).map_err(Stop::Stopped)?;
                    }
                }
                Ok(None) => break,
                Err(e) => return Poll::Ready(Err(Stop::Failed(IoFailure::Ws(e)))),
            }
        }
        if at < n {
            self.append_partial(&buf[at..n]);
        }
        Poll::Ready(Ok(true))
    }

    /// Appends bytes that arrived to `partial`. It grows with what arrived
    /// (doubling, so a large frame costs few copies), never beyond the frame
    /// its header announces: the announcement alone reserves nothing.
    fn append_partial(&mut self, bytes: &[u8]) {
        let need = self.partial.len() + bytes.len();
        if need > self.partial.capacity() {
            let frame = Decoder::frame_len(&self.partial).unwrap_or(0);
            let target = (self.partial.capacity() * 2).min(frame).max(need);
            self.partial.reserve_exact(target - self.partial.len());
        }
        self.partial.extend_from_slice(bytes);
    }

    /// One read (into the shared buffer) appended to `partial`: a frame
    /// larger than one read, or split across reads. Then decoding from it.
    fn read_partial<E>(
        &mut self,
        cx: &mut Context<'_>,
        on: &mut impl FnMut(&mut Self, Msg<'_>) -> Result<(), E>,
    ) -> Poll<Result<bool, Stop<E>>> {
        let mut buf = take_buf(&READ_BUF, READ_CHUNK);
        let r = Pin::new(&mut self.stream).poll_read(cx, &mut buf);
        if let Poll::Ready(Ok(n)) = r {
            self.append_partial(&buf[..n]);
        }
        READ_BUF.with(|c| c.set(buf));
        match r {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Stop::Failed(IoFailure::Io(e)))),
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(false)),
            Poll::Ready(Ok(_)) => {}
        }
        self.decode_partial(on)?;
        Poll::Ready(Ok(true))
    }

    /// Decodes the complete messages in `partial`; frees it when emptied.
    fn decode_partial<E>(
        &mut self,
        on: &mut impl FnMut(&mut Self, Msg<'_>) -> Result<(), E>,
    ) -> Result<(), Stop<E>> {
        let mut buf = std::mem::take(&mut self.partial);
        let mut at = 0;
        let r = loop {
            match self.dec.next(&mut buf[at..]) {
                Ok(Some((msg, used))) => {
                    at += used;
                    if let Some(m) = msg
                        && let Err(e) = on(self, m)
                    {
                        break Err(Stop::Stopped(e));
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(Stop::Failed(IoFailure::Ws(e))),
            }
        };
        if at < buf.len() {
            buf.drain(..at);
            // What is left is the start of the next frame: do not keep the
            // room of a large one that is done.
            if buf.capacity() > READ_CHUNK && buf.capacity() > 2 * buf.len() {
                buf.shrink_to(buf.len());
            }
            self.partial = buf;
        }
        r
    }
}

mod close;
#[cfg(test)]
mod tests;
mod write;
