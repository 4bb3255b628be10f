//! The socket as hyper sees it: [`Rewind`] adapts a futures-io stream (the
//! glommio `TcpStream`) to `hyper::rt::Read`/`Write`.
//!
//! Two things beyond the adaptation. The transport has already read the
//! first request head (to tell REST from a WebSocket upgrade), so those
//! bytes are served again before the socket's. And every byte moved marks
//! the connection as active ([`Activity`]), which is what the keep-alive
//! idle timeout in [`super::serve`] measures: hyper's own timers need a
//! `Send` timer, and glommio's are per thread.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use futures_lite::{AsyncRead, AsyncWrite};
use hyper::rt::ReadBufCursor;

/// Most bytes copied per read. hyper asks for at most its buffer's free
/// space; a bounded stack buffer keeps this adapter free of `unsafe` (hyper
/// hands out uninitialised memory) at the price of one copy, which REST
/// bodies of a few KiB do not notice.
const READ_CHUNK: usize = 8 * 1024;

/// When a connection last moved a byte, how many requests it is
/// answering, and since when the next request's head has been arriving;
/// shared by the adapter, the service and the idle watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    last: Cell<Instant>,
    in_flight: Cell<u32>,
    /// The first byte read while no request was being answered: the start
    /// of the next request's head. Bytes trickled into a head keep `last`
    /// fresh, so the head has a deadline of its own from here.
    head_since: Cell<Option<Instant>>,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            last: Cell::new(Instant::now()),
            in_flight: Cell::new(0),
            head_since: Cell::new(None),
        }
    }

    fn touch(&self) {
        self.last.set(Instant::now());
    }

    fn read_some(&self) {
        let now = Instant::now();
        self.last.set(now);
        if !self.busy() && self.head_since.get().is_none() {
            self.head_since.set(Some(now));
        }
    }

    /// How long the head of the next request has been arriving, if it has
    /// begun.
    pub(crate) fn head_for(&self) -> Option<std::time::Duration> {
        self.head_since.get().map(|t| t.elapsed())
    }

    /// Time since the last byte moved.
    pub(crate) fn idle_for(&self) -> std::time::Duration {
        self.last.get().elapsed()
    }

    /// Is a request being answered? An idle timeout never cuts one short:
    /// a handler waiting on the store moves no bytes.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight.get() > 0
    }

    /// Marks a request as in flight until the guard drops.
    pub(crate) fn request(&self) -> InFlight<'_> {
        // Its head is complete.
        self.head_since.set(None);
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(self)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) struct InFlight<'a>(&'a Activity);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .in_flight
            .set(self.0.in_flight.get().saturating_sub(1));
        self.0.touch();
    }
}

/// A stream with bytes already read from it put back in front.
///
/// It also gives the connection back for a Socket.IO request: browsers
/// reuse a kept-alive connection for whatever goes to the same origin, so
/// a long-polling request (or a WebSocket upgrade) may follow REST calls on
/// one connection. The first bytes of each later request are looked at
/// (`sniff`) before hyper sees them; a `/socket.io` request is kept
/// (`diverted`) and hyper is told the stream ended, between two requests,
/// so that [`super::serve`] can hand the stream and those bytes back to
/// the transport.
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
    activity: std::rc::Rc<Activity>,
    /// The first bytes of a request, until it is known whose it is.
    sniff: Vec<u8>,
    diverted: Option<Vec<u8>>,
}

/// The request lines a Socket.IO request starts with (origin-form).
const SOCKET_IO: [&[u8]; 3] = [b"GET /socket.io", b"POST /socket.io", b"OPTIONS /socket.io"];

/// Is a request starting with `bytes` for the Socket.IO endpoint? `None`
/// while too few bytes have come to tell.
fn socket_io_request(bytes: &[u8]) -> Option<bool> {
    let mut maybe = false;
    for line in SOCKET_IO {
        if bytes.len() > line.len() && bytes.starts_with(line) {
            return Some(matches!(bytes[line.len()], b'/' | b'?' | b' '));
        }
        maybe |= line.starts_with(bytes);
    }
    if maybe { None } else { Some(false) }
}

impl<S> Rewind<S> {
    pub(crate) fn new(inner: S, prefix: Vec<u8>, activity: std::rc::Rc<Activity>) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
            activity,
            sniff: Vec::new(),
            diverted: None,
        }
    }

    /// The bytes of a Socket.IO request read instead of hyper, if one came.
    pub(crate) fn diverted(&mut self) -> Option<Vec<u8>> {
        self.diverted.take()
    }

    /// The stream itself (any rewound bytes not yet served are dropped).
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        if this.diverted.is_some() {
            return Poll::Ready(Ok(())); // the end, as hyper sees it
        }
        // The first bytes of a new request (none of it read yet, none in
        // flight), or more of them.
        let boundary = !this.activity.busy() && this.activity.head_for().is_none();
        let mut chunk = [0u8; READ_CHUNK];
        let want = buf.remaining().min(READ_CHUNK);
        let n = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk[..want]))?;
        if n > 0 {
            this.activity.read_some();
        }
        if boundary || !this.sniff.is_empty() {
            this.sniff.extend_from_slice(&chunk[..n]);
            match socket_io_request(&this.sniff) {
                Some(true) => {
                    this.diverted = Some(std::mem::take(&mut this.sniff));
                    return Poll::Ready(Ok(()));
                }
                None if n > 0 => {
                    // Too short to tell: read on (the next poll reads the
                    // socket, registering the waker if nothing came).
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                _ => {
                    this.prefix = std::mem::take(&mut this.sniff);
                    let n = buf.remaining().min(this.prefix.len());
                    buf.put_slice(&this.prefix[..n]);
                    this.at = n;
                    if this.at == this.prefix.len() {
                        this.prefix = Vec::new();
                        this.at = 0;
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
        buf.put_slice(&chunk[..n]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 {
            this.activity.touch();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn serves_the_prefix_then_the_stream() {
        use http_body_util::BodyExt;
        // Drive hyper itself over a rewound in-memory stream: the request
        // head is split between the prefix and the stream.
        let raw = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        let (head, rest) = raw.split_at(20);
        let io = Rewind::new(
            Duplex::new(rest.to_vec()),
            head.to_vec(),
            Rc::new(Activity::new()),
        );
        let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| {
            let path = req.uri().path().to_owned();
            async move {
                let body = req.into_body().collect().await?.to_bytes();
                assert!(body.is_empty());
                Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(path),
                )))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .half_close(true)
            .serve_connection(io, service);
        let mut conn = conn.without_shutdown();
        let parts = futures_lite::future::block_on(&mut conn).unwrap();
        let out = String::from_utf8(parts.io.into_inner().written).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n/x"), "{out}");
    }

    #[test]
    fn a_socket_io_request_is_told_from_its_first_bytes() {
        for yes in [
            &b"GET /socket.io/?EIO=4"[..],
            b"POST /socket.io?x",
            b"OPTIONS /socket.io/ H",
        ] {
            assert_eq!(socket_io_request(yes), Some(true), "{yes:?}");
        }
        for no in [
            &b"GET /health"[..],
            b"POST /api/v1/messages",
            b"GET /socket.iox",
            b"PUT /socket.io/",
        ] {
            assert_eq!(socket_io_request(no), Some(false), "{no:?}");
        }
        for maybe in [&b"G"[..], b"GET /sock", b"OPTIONS", b"GET /socket.io"] {
            assert_eq!(socket_io_request(maybe), None, "{maybe:?}");
        }
    }

    /// Reads from a fixed buffer, keeps what is written.
    struct Duplex {
        input: futures_lite::io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Duplex {
        fn new(input: Vec<u8>) -> Self {
            Self {
                input: futures_lite::io::Cursor::new(input),
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Duplex {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.input).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Duplex {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
}
