//! One WebSocket connection's Engine.IO session, from OPEN to close.
//!
//! A single task per connection does everything: it reads frames, runs the
//! heartbeat and connect deadlines, and moves queued frames from the
//! [`Link`] into the WebSocket sink, flushing once per batch. Reading and
//! writing share one poll loop (no split halves, no lock): a write that
//! cannot make progress (a slow reader) does not stop the loop from noticing
//! a close request, and dropping a poll never loses data because the socket's
//! state lives in the stream, not in the future.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures::{Sink, Stream};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::timer::Timer;
use serde_json::Value;
use tungstenite::Message;
use tungstenite::error::{CapacityError, Error as WsError};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;

use super::packet::{self, EngineType, Packet, PacketType};
use super::{
    CloseReason, DisconnectReason, Event, Frame, Handler, Handshake, Link, Options, Refusal,
};

/// Upper bound for sending the final close frame (and, on shutdown, what is
/// still queued) before the socket is dropped regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

enum Wake {
    Incoming(Message),
    Timer,
    Closed(CloseReason),
}

struct Session<'a, S, H: Handler> {
    ws: WebSocketStream<S>,
    link: Rc<Link>,
    handshake: Handshake,
    opts: &'a Options,
    handler: &'a H,
    sockets: Vec<(String, H::Socket)>,
    /// A binary packet waiting for its attachments.
    pending: Option<(Packet, Vec<Bytes>)>,
    /// Frames were handed to the sink and not yet flushed.
    unflushed: bool,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    connect_deadline: Option<Instant>,
    timer: Timer,
}

/// Runs a connection until it ends and returns why. The OPEN packet is sent
/// first; every namespace socket is disconnected from the handler before
/// this returns.
pub async fn drive<S, H>(
    ws: WebSocketStream<S>,
    link: Rc<Link>,
    handshake: Handshake,
    opts: &Options,
    handler: &H,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
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
        ws,
        link,
        handshake,
        opts,
        handler,
        sockets: Vec::new(),
        pending: None,
        unflushed: false,
        next_ping: now + opts.ping_interval,
        pong_deadline: None,
        connect_deadline: Some(now + opts.connect_timeout),
        timer: Timer::new(opts.ping_interval.min(opts.connect_timeout)),
    };
    let reason = s.run().await;
    for (_, socket) in s.sockets.drain(..) {
        s.handler
            .disconnect(socket, DisconnectReason::Closed(reason));
    }
    s.finish(reason).await;
    reason
}

impl<S, H> Session<'_, S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    async fn run(&mut self) -> CloseReason {
        loop {
            let wake = poll_fn(|cx| self.poll_wake(cx)).await;
            let result = match wake {
                Ok(Wake::Incoming(msg)) => self.on_message(msg),
                Ok(Wake::Timer) => self.on_timer(),
                Ok(Wake::Closed(r)) | Err(r) => Err(r),
            };
            if let Err(reason) = result {
                return reason;
            }
        }
    }

    /// The one poll: close request, then writes, then reads, then timers.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<Result<Wake, CloseReason>> {
        if let Poll::Ready(r) = self.link.poll_closing(cx) {
            return Poll::Ready(Ok(Wake::Closed(r)));
        }
        if let Err(r) = self.poll_write(cx) {
            return Poll::Ready(Err(r));
        }
        match Pin::new(&mut self.ws).poll_next(cx) {
            Poll::Ready(Some(Ok(msg))) => return Poll::Ready(Ok(Wake::Incoming(msg))),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(read_error(&e))),
            Poll::Ready(None) => return Poll::Ready(Err(CloseReason::ClientClosed)),
            Poll::Pending => {}
        }
        if Pin::new(&mut self.timer).poll(cx).is_ready() {
            return Poll::Ready(Ok(Wake::Timer));
        }
        Poll::Pending
    }

    /// Moves every queued frame into the sink, then flushes once: many
    /// frames, one write.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), CloseReason> {
        loop {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Err(CloseReason::TransportError),
                Poll::Pending => return Ok(()),
            }
            let Poll::Ready(frame) = self.link.pop(cx) else {
                break;
            };
            let msg = match frame {
                Frame::Text(t) => Message::Text(t),
                Frame::Binary(b) => Message::Binary(b),
            };
            if Pin::new(&mut self.ws).start_send(msg).is_err() {
                return Err(CloseReason::TransportError);
            }
            self.unflushed = true;
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(_)) => return Err(CloseReason::TransportError),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    fn on_message(&mut self, msg: Message) -> Result<(), CloseReason> {
        match msg {
            Message::Text(text) => {
                let (kind, data) =
                    packet::parse_engine(text.as_str()).map_err(|_| CloseReason::Malformed)?;
                match kind {
                    EngineType::Message if self.pending.is_none() => {
                        let p = packet::parse_packet(data).map_err(|_| CloseReason::Malformed)?;
                        self.on_packet(p)
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
            Message::Binary(bin) => {
                let Some((_, parts)) = self.pending.as_mut() else {
                    return Err(CloseReason::Malformed);
                };
                parts.push(bin);
                let total: usize = parts.iter().map(Bytes::len).sum();
                if total > self.opts.max_payload {
                    return Err(CloseReason::TooLarge);
                }
                if let Some((p, parts)) = self
                    .pending
                    .take_if(|(p, parts)| parts.len() == p.attachments)
                {
                    self.dispatch(p, parts);
                }
                Ok(())
            }
            Message::Close(_) => Err(CloseReason::ClientClosed),
            // WebSocket-level ping/pong are answered by tungstenite itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    /// Routes a packet. As in the reference server (socket.io `Client`
    /// `ondecoded`), a CONNECT for a namespace already connected, or any
    /// other packet for a namespace not connected, is an invalid state and
    /// closes the connection.
    fn on_packet(&mut self, p: Packet) -> Result<(), CloseReason> {
        let connected = self.sockets.iter().position(|(n, _)| *n == p.nsp);
        match (p.kind, connected) {
            (PacketType::Connect, None) => self.on_connect(p),
            (PacketType::Disconnect, Some(i)) => {
                let (_, socket) = self.sockets.swap_remove(i);
                self.handler
                    .disconnect(socket, DisconnectReason::ClientDisconnect);
                if self.sockets.is_empty() {
                    // No namespace left: the connect timeout applies again.
                    self.connect_deadline = Some(Instant::now() + self.opts.connect_timeout);
                    self.reset_timer();
                }
            }
            (
                PacketType::Event
                | PacketType::BinaryEvent
                | PacketType::Ack
                | PacketType::BinaryAck,
                Some(_),
            ) => {
                if p.attachments > 0 {
                    self.pending = Some((p, Vec::new()));
                } else {
                    self.dispatch(p, Vec::new());
                }
            }
            _ => return Err(CloseReason::Malformed),
        }
        Ok(())
    }

    fn on_connect(&mut self, p: Packet) {
        match self
            .handler
            .connect(&self.link, &self.handshake, &p.nsp, p.data)
        {
            Ok(socket) => {
                let sid = crate::ids::random_token(15);
                let pid = self.handler.pid(&socket);
                let reply = packet::encode_connect(&p.nsp, &sid, pid.as_deref());
                let _ = self.link.push_text(reply);
                self.handler.connected(&socket);
                self.sockets.push((p.nsp, socket));
                self.connect_deadline = None;
                self.reset_timer();
            }
            Err(Refusal::InvalidNamespace) => {
                let _ = self.link.push_text(packet::encode_connect_error(
                    &p.nsp,
                    "Invalid namespace",
                    None,
                ));
            }
            Err(Refusal::Refused { message, data }) => {
                let _ = self.link.push_text(packet::encode_connect_error(
                    &p.nsp,
                    &message,
                    data.as_ref(),
                ));
            }
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
    }

    /// Sends what is appropriate before the socket goes: the queued frames
    /// (unless the client cannot or will not read them), then the close
    /// frame (or tungstenite's reply to the client's), all within
    /// [`CLOSE_GRACE`].
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
        let link = self.link.clone();
        let ws = &mut self.ws;
        let send = async {
            if keep_queue {
                let waker = futures::task::noop_waker();
                let mut cx = Context::from_waker(&waker);
                while let Poll::Ready(frame) = link.pop(&mut cx) {
                    let msg = match frame {
                        Frame::Text(t) => Message::Text(t),
                        Frame::Binary(b) => Message::Binary(b),
                    };
                    if futures::SinkExt::feed(ws, msg).await.is_err() {
                        return;
                    }
                }
            }
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: text.into(),
            };
            // After the client's own close frame tungstenite refuses a new
            // one but has queued its reply: flushing sends that.
            if futures::SinkExt::send(&mut *ws, Message::Close(Some(frame)))
                .await
                .is_err()
            {
                let _ = futures::SinkExt::flush(ws).await;
            }
        };
        futures_lite::future::or(send, glommio::timer::sleep(CLOSE_GRACE)).await;
    }
}

fn read_error(e: &WsError) -> CloseReason {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::TooLarge,
        WsError::Capacity(_) => CloseReason::TooLarge,
        // The peer dropped the socket without a close frame: gone, not malformed.
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            CloseReason::TransportError
        }
        WsError::Protocol(_) | WsError::Utf8(_) => CloseReason::Malformed,
        WsError::ConnectionClosed | WsError::AlreadyClosed => CloseReason::ClientClosed,
        _ => CloseReason::TransportError,
    }
}
