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
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use serde_json::Value;

use super::packet::{self, EngineType, Packet, PacketType};
use super::ws::Msg;
use super::wsio::{ReadEnd, WsIo};
use super::{
    CloseReason, DisconnectReason, Event, Handler, Handshake, Link, Options, Refusal, Verdict,
};

/// Upper bound for sending the final close frame (and, on shutdown, what is
/// still queued) before the socket is dropped regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The connection's state apart from its socket, so that the socket can
/// hand messages to it while reading.
struct State<'a, H: Handler> {
    link: Rc<Link>,
    handshake: Handshake,
    opts: &'a Options,
    handler: &'a H,
    sockets: Vec<(String, H::Socket)>,
    /// A binary packet waiting for its attachments (boxed: rare, and the
    /// state lives as long as the connection).
    pending: Option<Box<(Packet, Vec<Bytes>)>>,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    timer: Timer,
    /// When `timer` fires, and whether it has been polled (registered with
    /// the reactor) since it was armed: polling a glommio timer re-inserts
    /// it into the reactor's B-tree every time, so it is polled once, and
    /// later wakes only compare the clock (glommio fires a timer at or
    /// after its instant, which is at or after `timer_at`).
    timer_at: Instant,
    timer_registered: bool,
}

struct Session<'a, S, H: Handler> {
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
    let now = Instant::now();
    let open = packet::encode_open(
        &link.sid,
        opts.ping_interval.as_millis() as u64,
        opts.ping_timeout.as_millis() as u64,
        opts.max_payload,
    );
    let _ = link.push_text(open);
    let mut s = Session {
        io,
        st: State {
            link,
            handshake,
            opts,
            handler,
            sockets: Vec::new(),
            pending: None,
            next_ping: now + opts.ping_interval,
            pong_deadline: None,
            connect_deadline: Some(now + opts.connect_timeout),
            timer: Timer::new(opts.ping_interval.min(opts.connect_timeout)),
            timer_at: now + opts.ping_interval.min(opts.connect_timeout),
            timer_registered: false,
        },
    };
    async move {
        let reason = s.run().await;
        for (_, socket) in s.st.sockets.drain(..) {
            s.st.handler
                .disconnect(socket, DisconnectReason::Closed(reason));
        }
        s.finish(reason).await;
        reason
    }
}

impl<S, H> Session<'_, S, H>
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
            Ok(ReadEnd::Pending | ReadEnd::Yielded) => {}
            Ok(ReadEnd::Eof) => return Poll::Ready(Err(CloseReason::ClientClosed)),
            Err(Err(reason)) => return Poll::Ready(Err(reason)),
            Err(Ok(failure)) => return Poll::Ready(Err(failure.close_reason())),
        }
        // Polled (not just read) again: a CONNECT's write_now registered a
        // no-op waker on the link, and this one must be there instead.
        if let Poll::Ready(r) = self.st.link.poll_closing(cx) {
            return Poll::Ready(Err(r));
        }
        if self.io.poll_write(cx, &self.st.link).is_err() {
            return Poll::Ready(Err(CloseReason::TransportError));
        }
        let st = &mut self.st;
        if !st.timer_registered || Instant::now() >= st.timer_at {
            if Pin::new(&mut st.timer).poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            st.timer_registered = true;
        }
        Poll::Pending
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
        futures_lite::future::or(send, glommio::timer::sleep(CLOSE_GRACE)).await;
    }
}

impl<H: Handler> State<'_, H> {
    fn on_message<S>(&mut self, io: &mut WsIo<S>, msg: Msg<'_>) -> Result<(), CloseReason>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match msg {
            Msg::Text(text) => {
                let (kind, data) =
                    packet::parse_engine(&text).map_err(|_| CloseReason::Malformed)?;
                match kind {
                    EngineType::Message if self.pending.is_none() => {
                        let p = packet::parse_packet(data).map_err(|_| CloseReason::Malformed)?;
                        self.on_packet(io, p)
                    }
                    EngineType::Pong => {
                        self.pong_deadline = None;
                        self.next_ping = Instant::now() + self.opts.ping_interval;
                        self.reset_timer();
                        Ok(())
                    }
                    // A client ping (probe or older clients): answer in kind.
                    EngineType::Ping => {
                        let _ = self.link.push_text(format!("3{data}"));
                        Ok(())
                    }
                    EngineType::Close => Err(CloseReason::ClientClosed),
                    EngineType::Noop => Ok(()),
                    _ => Err(CloseReason::Malformed),
                }
            }
            Msg::Binary(bin) => {
                let Some((_, parts)) = self.pending.as_deref_mut() else {
                    return Err(CloseReason::Malformed);
                };
                parts.push(Bytes::from(bin.into_owned()));
                let total: usize = parts.iter().map(Bytes::len).sum();
                if total > self.opts.max_payload {
                    return Err(CloseReason::TooLarge);
                }
                if let Some(done) = self.pending.take_if(|b| b.1.len() == b.0.attachments) {
                    let (p, parts) = *done;
                    self.dispatch(p, parts);
                }
                Ok(())
            }
            Msg::Close(_) => Err(CloseReason::ClientClosed),
            // Pings are answered by the socket layer; pongs need nothing.
            Msg::Ping(_) | Msg::Pong => Ok(()),
        }
    }

    /// Routes a packet. As in the reference server (socket.io `Client`
    /// `ondecoded`), a CONNECT for a namespace already connected, or any
    /// other packet for a namespace not connected, is an invalid state and
    /// closes the connection.
    fn on_packet<S>(&mut self, io: &mut WsIo<S>, p: Packet) -> Result<(), CloseReason>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let connected = self.sockets.iter().position(|(n, _)| *n == p.nsp);
        if matches!(p.kind, PacketType::Connect | PacketType::Disconnect) {
            // Namespace changes count against the connection's rate, like
            // events (checked first, as for events): each one costs a token
            // check at least and may change what others are told.
            match self.link.pace_check() {
                Verdict::Allowed => {}
                Verdict::Refused => {
                    let refusal = self.handler.rate_limited();
                    match (p.kind, connected) {
                        (PacketType::Connect, _) => self.refuse_connect(&p.nsp, refusal),
                        // The client leaves whatever we answer: let it, so
                        // that both sides agree on what is connected.
                        (_, Some(i)) => self.disconnect(i),
                        _ => {}
                    }
                    return Ok(());
                }
                Verdict::Exceeded => {
                    self.handler.rate_limited();
                    return Err(CloseReason::RateLimited);
                }
            }
        }
        match (p.kind, connected) {
            (PacketType::Connect, None) => self.on_connect(io, p),
            (PacketType::Disconnect, Some(i)) => self.disconnect(i),
            (
                PacketType::Event
                | PacketType::BinaryEvent
                | PacketType::Ack
                | PacketType::BinaryAck,
                Some(_),
            ) => {
                if p.attachments > 0 {
                    self.pending = Some(Box::new((p, Vec::new())));
                } else {
                    self.dispatch(p, Vec::new());
                }
            }
            _ => return Err(CloseReason::Malformed),
        }
        Ok(())
    }

    /// Ends the namespace socket at `i` at the client's request.
    fn disconnect(&mut self, i: usize) {
        let (_, socket) = self.sockets.swap_remove(i);
        self.handler
            .disconnect(socket, DisconnectReason::ClientDisconnect);
        if self.sockets.is_empty() {
            // No namespace left: the connect timeout applies again.
            self.connect_deadline = Some(Instant::now() + self.opts.connect_timeout);
            self.reset_timer();
        }
    }

    fn refuse_connect(&self, nsp: &str, refusal: Refusal) {
        let frame = match refusal {
            Refusal::InvalidNamespace => {
                packet::encode_connect_error(nsp, "Invalid namespace", None)
            }
            Refusal::Refused { message, data } => {
                packet::encode_connect_error(nsp, &message, data.as_ref())
            }
        };
        let _ = self.link.push_text(frame);
    }

    /// A namespace CONNECT. The CONNECT reply leaves in a write of its own,
    /// after what was queued before it and before what the handler queues
    /// next (the reference server writes each packet of the handshake
    /// separately; clients such as the protocol suite's read one frame per
    /// read there). Everything later is batched again.
    fn on_connect<S>(&mut self, io: &mut WsIo<S>, p: Packet)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self
            .handler
            .connect(&self.link, &self.handshake, &p.nsp, p.data)
        {
            Ok(socket) => {
                let sid = crate::ids::random_token(15);
                let pid = self.handler.pid(&socket);
                let reply = packet::encode_connect(&p.nsp, &sid, pid.as_deref());
                io.write_now(&self.link);
                let _ = self.link.push_text(reply);
                io.write_now(&self.link);
                self.handler.connected(&socket);
                self.sockets.push((p.nsp, socket));
                self.connect_deadline = None;
                self.reset_timer();
            }
            Err(refusal) => self.refuse_connect(&p.nsp, refusal),
        }
    }

    /// Hands a complete event to the handler. Acks from the client are not
    /// used by any server emit yet and are dropped here.
    fn dispatch(&mut self, p: Packet, attachments: Vec<Bytes>) {
        if !matches!(p.kind, PacketType::Event | PacketType::BinaryEvent) {
            return;
        }
        let Some((_, socket)) = self.sockets.iter().find(|(n, _)| *n == p.nsp) else {
            return; // the namespace was checked when the packet arrived
        };
        let Some(Value::Array(mut args)) = p.data else {
            return;
        };
        let name = match args.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        self.handler.event(
            socket,
            Event {
                name,
                args,
                ack_id: p.ack_id,
                attachments,
            },
        );
    }

    fn on_timer(&mut self) -> Result<(), CloseReason> {
        let now = Instant::now();
        if self.pong_deadline.is_some_and(|d| now >= d) {
            return Err(CloseReason::PingTimeout);
        }
        if self.connect_deadline.is_some_and(|d| now >= d) {
            return Err(CloseReason::ConnectTimeout);
        }
        if self.pong_deadline.is_none() && now >= self.next_ping {
            let _ = self.link.push_text("2".to_owned());
            self.pong_deadline = Some(now + self.opts.ping_timeout);
        }
        self.reset_timer();
        Ok(())
    }

    /// Arms the timer for the earliest pending deadline.
    fn reset_timer(&mut self) {
        let next = match self.pong_deadline {
            Some(d) => d,
            None => self.next_ping,
        };
        let next = self.connect_deadline.map_or(next, |c| c.min(next));
        self.timer = Timer::new(next.saturating_duration_since(Instant::now()));
        self.timer_at = next;
        self.timer_registered = false;
    }
}
