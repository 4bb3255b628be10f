//! One WebSocket connection's Engine.IO session, from OPEN to close.
//!
//! A single task per connection does everything: it reads and handles
//! messages, runs the heartbeat and connect deadlines, and moves queued
//! frames from the [`Link`] to the socket, many per send ([`WsIo`]).
//! Reading and writing share one poll loop (no split halves, no lock): a
//! write that cannot make progress (a slow reader) does not stop the loop
//! from noticing a close request, and dropping a poll never loses data
//! because the connection's state lives in [`WsIo`], not in the future.

use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};

use super::engine::State;
use super::packet;
use super::ws::Msg;
use super::wsio::{ReadEnd, WsIo};
use super::{CloseReason, Handler, Handshake, Link, Options};

/// Upper bound for sending the final close frame (and, on shutdown, what is
/// still queued) before the socket is dropped regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// One WebSocket connection's Engine.IO session: its socket I/O and its
/// state apart from the transport (the same `State` a long-polling
/// session has; see `transport::polling::session::PollSession`).
struct WsSession<'a, S, H: Handler> {
    io: WsIo<S>,
    st: State<'a, H>,
}

/// Runs a connection until it ends and returns why. The OPEN packet is sent
/// first; every namespace socket is disconnected from the handler before
/// this returns.
///
/// Not an `async fn`: that would keep its arguments in the future next to
/// the session built from them, for the connection's whole life. The
/// returned future holds the session only.
pub fn drive<'a, S, H>(
    io: WsIo<S>,
    link: Rc<Link>,
    handshake: Handshake,
    opts: &'a Options,
    handler: &'a H,
) -> impl Future<Output = CloseReason> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
    H: Handler,
{
    let open = packet::encode_open(
        &link.sid,
        opts.ping_interval.as_millis() as u64,
        opts.ping_timeout.as_millis() as u64,
        opts.max_payload,
        false,
    );
    let _ = link.push_text(open);
    run_ws(io, State::new(link, handshake, opts, handler))
}

/// Runs a WebSocket session to its end from `st`: a new session
/// ([`drive`]) or one upgraded from long-polling, whose state goes on.
pub(crate) fn run_ws<'a, S, H>(
    io: WsIo<S>,
    st: State<'a, H>,
) -> impl Future<Output = CloseReason> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
    H: Handler,
{
    let mut s = WsSession { io, st };
    async move {
        let reason = s.run().await;
        s.st.end(reason);
        s.finish(reason).await;
        reason
    }
}

impl<S, H> WsSession<'_, S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    async fn run(&mut self) -> CloseReason {
        loop {
            match poll_fn(|cx| self.poll_wake(cx)).await {
                Ok(()) => {
                    if let Err(reason) = self.st.on_timer() {
                        return reason;
                    }
                }
                Err(reason) => return reason,
            }
        }
    }

    /// The one poll: close request, reads (each complete message handled
    /// at once), then writes (so replies leave with the same send), then
    /// timers. `Ok(())` means a timer fired.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CloseReason>> {
        if let Poll::Ready(r) = self.st.link.poll_closing(cx) {
            return Poll::Ready(Err(r));
        }
        let st = &mut self.st;
        let read = self.io.read(cx, |io, msg| match msg {
            Msg::Ping(p) => {
                io.queue_pong(p);
                Ok(())
            }
            msg => {
                let r = st.on_message(io, msg);
                // MAX_PAYLOAD once a namespace is connected, the smaller
                // limit before (and after a DISCONNECT that left none).
                io.set_max_message(st.opts.frame_limit(!st.sockets.is_empty()));
                r
            }
        });
        match read {
            ReadEnd::Pending | ReadEnd::Yielded => {}
            ReadEnd::Eof => return Poll::Ready(Err(CloseReason::ClientClosed)),
            ReadEnd::Stopped(reason) => return Poll::Ready(Err(reason)),
            ReadEnd::Failed(failure) => return Poll::Ready(Err(failure.close_reason())),
        }
        // Polled (not just read) again: a CONNECT's write_now registered a
        // no-op waker on the link, and this one must be there instead.
        if let Poll::Ready(r) = self.st.link.poll_closing(cx) {
            return Poll::Ready(Err(r));
        }
        if self.io.poll_write(cx, &self.st.link).is_err() {
            return Poll::Ready(Err(CloseReason::TransportError));
        }
        self.st.poll_timer(cx).map(Ok)
    }

    /// Sends what is appropriate before the socket goes: the queued frames
    /// (unless the client cannot or will not read them), then the close
    /// frame, all within [`CLOSE_GRACE`].
    async fn finish(&mut self, reason: CloseReason) {
        if reason == CloseReason::TransportError {
            return;
        }
        let (code, text) = reason.code_and_reason();
        // A slow consumer would not read the backlog; a client that closed
        // does not want it. Anyone else gets what was queued for them.
        let keep_queue = !matches!(
            reason,
            CloseReason::SlowConsumer | CloseReason::ClientClosed
        );
        if keep_queue {
            let waker = futures::task::noop_waker();
            let mut cx = Context::from_waker(&waker);
            while let Poll::Ready(frame) = self.st.link.pop(&mut cx) {
                self.io.queue_frame(&frame);
            }
        }
        self.io.queue_close(code, text);
        let io = &mut self.io;
        // Send the close frame; then, unless the client's close frame came
        // already, wait for it before the socket is closed.
        let wait_for_client = reason != CloseReason::ClientClosed;
        let send = async {
            if poll_fn(|cx| io.poll_flush_unsent(cx)).await.is_ok() && wait_for_client {
                poll_fn(|cx| io.poll_until_client_close(cx)).await;
            }
        };
        crate::within::within(CLOSE_GRACE, send).await;
    }
}
