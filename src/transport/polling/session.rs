//! One long-polling session on its shard: what its HTTP requests share
//! with its driver task ([`PollSession`]), and the driver ([`drive`]),
//! which feeds POSTed packets to the same Engine.IO state as the
//! WebSocket driver ([`crate::protocol::engine::State`]), answers the
//! pending GET with what the [`Link`] holds, and carries the session over
//! to a WebSocket when the client upgrades.
//!
//! Outbound frames stay in the link's bounded queue until a GET takes them
//! (the `OUTBOUND_QUEUE_*` limits hold a client that does not poll: it is
//! closed as a slow consumer like a WebSocket one that does not read).

use std::any::Any;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures_lite::{AsyncRead, AsyncWrite};

use super::payload::{self, Inbound};
use crate::protocol::engine::{State, Wire};
use crate::protocol::ws::Msg;
use crate::protocol::wsio::{ReadEnd, WsIo};
use crate::protocol::{CloseReason, Frame, Handler, Link, Options};

/// What a session's requests and its driver share (all on its shard).
pub(crate) struct PollSession<S> {
    pub(crate) link: Rc<Link>,
    /// Packets POSTed and not yet handled, in order.
    inbox: RefCell<VecDeque<Inbound>>,
    /// The GET waiting for packets (at most one).
    get: RefCell<Option<oneshot::Sender<String>>>,
    /// A POST is reading its body.
    pub(crate) posting: Cell<bool>,
    /// When a GET last came or was answered (an abandoned session ends).
    last_get: Cell<Instant>,
    /// The largest POST body accepted now: the Engine.IO payload limit
    /// (`MAX_PAYLOAD`), smaller while no namespace is connected.
    pub(crate) body_limit: Cell<usize>,
    /// A WebSocket that answered the upgrade, until the driver takes it.
    probe: RefCell<Option<WsIo<S>>>,
    /// A WebSocket took the session (or tries to): a second one is refused.
    pub(crate) upgrading: Cell<bool>,
    /// The upgrade is done: the session is on WebSocket.
    upgraded: Cell<bool>,
    driver: RefCell<Option<Waker>>,
    /// The session's place in the connection limits.
    _ticket: Box<dyn Any>,
}

impl<S> PollSession<S> {
    pub(crate) fn new(link: Rc<Link>, body_limit: usize, ticket: Box<dyn Any>) -> Self {
        Self {
            link,
            inbox: RefCell::default(),
            get: RefCell::default(),
            posting: Cell::new(false),
            last_get: Cell::new(Instant::now()),
            body_limit: Cell::new(body_limit),
            probe: RefCell::default(),
            upgrading: Cell::new(false),
            upgraded: Cell::new(false),
            driver: RefCell::default(),
            _ticket: ticket,
        }
    }

    /// On WebSocket now: polling requests are refused.
    pub(crate) fn upgraded(&self) -> bool {
        self.upgraded.get()
    }

    fn wake(&self) {
        if let Some(w) = self.driver.borrow_mut().take() {
            w.wake();
        }
    }

    /// A GET: waits for the payload. `None` when a GET is already waiting
    /// (the reference closes the session for the overlap) or the session
    /// is gone.
    pub(crate) async fn poll_request(&self) -> Option<String> {
        if self.get.borrow().is_some() {
            self.link.close(CloseReason::Malformed);
            return None;
        }
        let (tx, rx) = oneshot::channel();
        *self.get.borrow_mut() = Some(tx);
        self.last_get.set(Instant::now());
        self.wake();
        rx.await.ok()
    }

    /// A POST's packets, for the driver.
    pub(crate) fn deliver(&self, packets: Vec<Inbound>) {
        self.inbox.borrow_mut().extend(packets);
        self.wake();
    }

    /// The 101 was queued on `io`: the driver answers the probe from now.
    pub(crate) fn offer_upgrade(&self, io: WsIo<S>) {
        self.upgrading.set(true);
        *self.probe.borrow_mut() = Some(io);
        self.wake();
    }

    /// Answers the waiting GET, if any, with `body`.
    fn answer(&self, body: String) {
        if let Some(tx) = self.get.borrow_mut().take() {
            let _ = tx.send(body);
            self.last_get.set(Instant::now());
        }
    }

    fn get_waiting(&self) -> bool {
        self.get
            .borrow()
            .as_ref()
            .is_some_and(|tx| !tx.is_canceled())
    }
}

/// Polling needs no write of its own for the CONNECT reply: it leaves with
/// the next GET, as every packet does.
struct NoWire;

impl Wire for NoWire {
    fn write_now(&mut self, _link: &Link) {}
}

/// A WebSocket between its 101 and the upgrade packet.
struct Probe<S> {
    io: WsIo<S>,
    probed: bool,
    since: Instant,
}

enum Wake<S> {
    Timer,
    End(CloseReason),
    Upgraded(WsIo<S>),
}

/// Why a probing WebSocket read stopped.
enum ProbeStop {
    /// Anything but `2probe` then `5`: the WebSocket goes, polling stays.
    Abort,
    Session(CloseReason),
}

/// Runs a polling session to its end, on WebSocket if it upgrades, and
/// returns why it ended. The OPEN packet was the handshake's answer. A
/// WebSocket that does not send the upgrade packet (`5`) within
/// `upgrade_timeout` of its 101 is dropped and the session stays on
/// polling (the reference server's `upgradeTimeout`, 10 s; here
/// `HANDSHAKE_TIMEOUT_MS`, the same 10 s by default).
pub(crate) async fn drive<S, H>(
    ps: Rc<PollSession<S>>,
    mut st: State<'_, H>,
    opts: &Options,
    upgrade_timeout: Duration,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let mut probe: Option<Probe<S>> = None;
    loop {
        match poll_fn(|cx| poll_once(&ps, &mut st, &mut probe, opts, cx)).await {
            Wake::Timer => {
                let now = Instant::now();
                // No GET for a ping cycle: the client is gone (it pongs
                // without reading, or not at all).
                if !ps.get_waiting()
                    && now.duration_since(ps.last_get.get())
                        > opts.ping_interval + opts.ping_timeout
                {
                    return end(&ps, &mut st, CloseReason::PingTimeout);
                }
                if probe
                    .as_ref()
                    .is_some_and(|p| now.duration_since(p.since) > upgrade_timeout)
                {
                    probe = None;
                    ps.upgrading.set(false);
                }
                if let Err(reason) = st.on_timer() {
                    return end(&ps, &mut st, reason);
                }
            }
            Wake::End(reason) => return end(&ps, &mut st, reason),
            Wake::Upgraded(mut io) => {
                // The client paused polling before it sent `5`; a GET still
                // waiting gets a NOOP, and every frame from here on leaves
                // on the WebSocket, in order.
                ps.upgraded.set(true);
                ps.answer("6".to_owned());
                io.set_max_message(opts.frame_limit(!st.sockets.is_empty()));
                return crate::protocol::driver::run_ws(io, st).await;
            }
        }
    }
}

/// The session ended on polling: the namespaces are told, and a waiting
/// GET gets what was queued and the close packet (a NOOP when the client
/// closed, as the reference answers).
fn end<S, H: Handler>(
    ps: &PollSession<S>,
    st: &mut State<'_, H>,
    reason: CloseReason,
) -> CloseReason {
    st.end(reason);
    let mut body = String::new();
    if !matches!(
        reason,
        CloseReason::SlowConsumer | CloseReason::ClientClosed
    ) {
        take_frames(&ps.link, &mut body);
    }
    let last = if reason == CloseReason::ClientClosed {
        "6"
    } else {
        "1"
    };
    payload::encode_into(&mut body, &Frame::Text(last.into()));
    ps.answer(body);
    reason
}

/// Moves what the link lets go into `body`; registers `cx`'s waker when
/// it is empty.
fn take_frames_cx(link: &Link, body: &mut String, cx: &mut Context<'_>) {
    while let Poll::Ready(frame) = link.pop(cx) {
        payload::encode_into(body, &frame);
    }
}

fn take_frames(link: &Link, body: &mut String) {
    let waker = futures::task::noop_waker();
    take_frames_cx(link, body, &mut Context::from_waker(&waker));
}

fn poll_once<S, H>(
    ps: &PollSession<S>,
    st: &mut State<'_, H>,
    probe: &mut Option<Probe<S>>,
    opts: &Options,
    cx: &mut Context<'_>,
) -> Poll<Wake<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    *ps.driver.borrow_mut() = Some(cx.waker().clone());
    if let Poll::Ready(r) = st.link.poll_closing(cx) {
        return Poll::Ready(Wake::End(r));
    }
    // No GET for a ping cycle: the client is gone, or pongs without
    // reading (its pongs push the ping, and so the timer, back: this is
    // checked on every wake, its POSTs' included). Not while upgrading:
    // the client stops polling for the probe.
    if probe.is_none()
        && !ps.get_waiting()
        && ps.last_get.get().elapsed() > opts.ping_interval + opts.ping_timeout
    {
        return Poll::Ready(Wake::End(CloseReason::PingTimeout));
    }
    loop {
        let Some(packet) = ps.inbox.borrow_mut().pop_front() else {
            break;
        };
        let msg = match packet {
            Inbound::Text(t) => Msg::Text(Cow::Owned(t)),
            Inbound::Binary(b) => Msg::Binary(Cow::Owned(b)),
        };
        let r = st.on_message(&mut NoWire, msg);
        ps.body_limit.set(opts.frame_limit(!st.sockets.is_empty()));
        if let Err(reason) = r {
            return Poll::Ready(Wake::End(reason));
        }
    }
    if let Some(io) = ps.probe.borrow_mut().take() {
        *probe = Some(Probe {
            io,
            probed: false,
            since: Instant::now(),
        });
    }
    if let Some(p) = probe {
        match poll_probe(p, st, opts, cx) {
            Ok(false) => {}
            Ok(true) => {
                let p = probe.take().map(|p| p.io);
                return match p {
                    Some(io) => Poll::Ready(Wake::Upgraded(io)),
                    None => Poll::Pending,
                };
            }
            Err(ProbeStop::Abort) => {
                *probe = None;
                ps.upgrading.set(false);
            }
            Err(ProbeStop::Session(reason)) => return Poll::Ready(Wake::End(reason)),
        }
    }
    if ps.get_waiting() {
        let mut body = String::new();
        take_frames_cx(&st.link, &mut body, cx);
        if body.is_empty() && probe.as_ref().is_some_and(|p| p.probed) {
            // Probed: the client waits for this GET to return before it
            // sends `5` on the WebSocket.
            body.push('6');
        }
        if !body.is_empty() {
            ps.answer(body);
        }
    }
    if let Poll::Ready(r) = st.link.poll_closing(cx) {
        return Poll::Ready(Wake::End(r));
    }
    st.poll_timer(cx).map(|()| Wake::Timer)
}

/// Reads the probing WebSocket: `2probe` is answered `3probe` on it;
/// `5` after that completes the upgrade (`Ok(true)`), and the packets
/// read with it go to the session at once, so none is lost.
fn poll_probe<S, H>(
    p: &mut Probe<S>,
    st: &mut State<'_, H>,
    opts: &Options,
    cx: &mut Context<'_>,
) -> Result<bool, ProbeStop>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let mut upgraded = false;
    let probed = &mut p.probed;
    let read = p.io.read(cx, |io, msg| match msg {
        Msg::Ping(payload) => {
            io.queue_pong(payload);
            Ok(())
        }
        Msg::Pong => Ok(()),
        msg if upgraded => {
            let r = st.on_message(io, msg).map_err(ProbeStop::Session);
            io.set_max_message(opts.frame_limit(!st.sockets.is_empty()));
            r
        }
        Msg::Text(t) if t == "2probe" => {
            io.queue_frame(&Frame::Text("3probe".into()));
            *probed = true;
            Ok(())
        }
        Msg::Text(t) if t == "5" && *probed => {
            upgraded = true;
            // The session's own limit from the next frame on.
            io.set_max_message(opts.frame_limit(!st.sockets.is_empty()));
            Ok(())
        }
        _ => Err(ProbeStop::Abort),
    });
    match read {
        ReadEnd::Pending | ReadEnd::Yielded => {}
        ReadEnd::Eof | ReadEnd::Failed(_) if !upgraded => return Err(ProbeStop::Abort),
        ReadEnd::Eof => return Err(ProbeStop::Session(CloseReason::ClientClosed)),
        ReadEnd::Failed(failure) => return Err(ProbeStop::Session(failure.close_reason())),
        ReadEnd::Stopped(stop) => return Err(stop),
    }
    if upgraded {
        return Ok(true);
    }
    match p.io.poll_flush_unsent(cx) {
        Poll::Ready(Err(_)) => Err(ProbeStop::Abort),
        _ => Ok(false),
    }
}
