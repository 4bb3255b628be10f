//! The Engine.IO / Socket.IO state of one session, apart from its
//! transport: packets in (heartbeats, namespace CONNECT and DISCONNECT,
//! events and binary attachments), the deadlines (ping, pong, connect),
//! and what goes out through the [`Link`]. The WebSocket driver
//! ([`super::driver`]) and the long-polling transport
//! (`crate::transport::polling`) feed it the same way, so the [`Handler`]
//! never knows which transport a session uses.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use serde_json::Value;

use super::packet::{self, EngineType, Packet, PacketType};
use super::ws::Msg;
use super::wsio::WsIo;
use super::{
    CloseReason, DisconnectReason, Event, Handler, Handshake, Link, Options, Refusal, Verdict,
};

/// What the state asks of its transport: to send what the link holds now,
/// in a write of its own (the CONNECT reply; see [`State::on_connect`]).
pub(crate) trait Wire {
    fn write_now(&mut self, link: &Link);
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire for WsIo<S> {
    fn write_now(&mut self, link: &Link) {
        WsIo::write_now(self, link);
    }
}

/// The connection's state apart from its socket, so that the socket can
/// hand messages to it while reading.
pub(crate) struct State<'a, H: Handler> {
    pub(crate) link: Rc<Link>,
    pub(crate) handshake: Handshake,
    pub(crate) opts: &'a Options,
    pub(crate) handler: &'a H,
    pub(crate) sockets: Vec<(String, H::Socket)>,
    /// A binary packet waiting for its attachments (boxed: rare, and the
    /// state lives as long as the connection).
    pub(crate) pending: Option<Box<(Packet, Vec<Bytes>)>>,
    pub(crate) next_ping: Instant,
    pub(crate) pong_deadline: Option<Instant>,
    pub(crate) connect_deadline: Option<Instant>,
    pub(crate) timer: Timer,
    /// When `timer` fires, and whether it has been polled (registered with
    /// the reactor) since it was armed: polling a glommio timer re-inserts
    /// it into the reactor's B-tree every time, so it is polled once, and
    /// later wakes only compare the clock (glommio fires a timer at or
    /// after its instant, which is at or after `timer_at`).
    pub(crate) timer_at: Instant,
    pub(crate) timer_registered: bool,
}

impl<'a, H: Handler> State<'a, H> {
    /// A new session's state: the ping and connect deadlines start now.
    pub(crate) fn new(
        link: Rc<Link>,
        handshake: Handshake,
        opts: &'a Options,
        handler: &'a H,
    ) -> Self {
        let now = Instant::now();
        let first = opts.ping_interval.min(opts.connect_timeout);
        State {
            link,
            handshake,
            opts,
            handler,
            sockets: Vec::new(),
            pending: None,
            next_ping: now + opts.ping_interval,
            pong_deadline: None,
            connect_deadline: Some(now + opts.connect_timeout),
            timer: Timer::new(first),
            timer_at: now + first,
            timer_registered: false,
        }
    }

    /// Ready when the timer fired (then call [`Self::on_timer`]).
    pub(crate) fn poll_timer(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.timer_registered || Instant::now() >= self.timer_at {
            if Pin::new(&mut self.timer).poll(cx).is_ready() {
                return Poll::Ready(());
            }
            self.timer_registered = true;
        }
        Poll::Pending
    }

    /// The session ended: every namespace socket is disconnected.
    pub(crate) fn end(&mut self, reason: CloseReason) {
        for (_, socket) in self.sockets.drain(..) {
            self.handler
                .disconnect(socket, DisconnectReason::Closed(reason));
        }
    }

    pub(crate) fn on_message(
        &mut self,
        io: &mut impl Wire,
        msg: Msg<'_>,
    ) -> Result<(), CloseReason> {
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
    fn on_packet(&mut self, io: &mut impl Wire, p: Packet) -> Result<(), CloseReason> {
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
    fn on_connect(&mut self, io: &mut impl Wire, p: Packet) {
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
                self.handler.connected(&socket, &sid);
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

    pub(crate) fn on_timer(&mut self) -> Result<(), CloseReason> {
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
    pub(crate) fn reset_timer(&mut self) {
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
