//! Engine.IO v4 + Socket.IO v5, independent of chat (long-polling, the
//! other transport, is `crate::transport::polling`, on the same state).
//!
//! - [`packet`]: the wire forms (parse and encode).
//! - `link`: a connection's bounded outbound queue, shared with the shard.
//! - `pace`: a connection's command rate limiter (on its link).
//! - [`ws`], [`wsio`]: WebSocket framing by hand, and a connection's
//!   socket I/O through its shard's shared buffers.
//! - `deflate`: permessage-deflate, its negotiation and codec.
//! - `engine`: a session's state apart from its transport: heartbeats,
//!   namespace CONNECT, events and binary attachments.
//! - `driver`: one WebSocket connection's life: OPEN, reads into the
//!   state, batched writes, close codes.
//!
//! The application plugs in through [`Handler`]; the chat server is one, the
//! conformance example (`examples/socketio_conformance.rs`) another.

pub(crate) mod deflate;
pub(crate) mod driver;
pub(crate) mod engine;
pub(crate) mod link;
pub(crate) mod pace;
pub mod packet;
pub mod ws;
pub mod wsio;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

pub use driver::drive;
pub use link::{Frame, Link, Packed, PushError, QueueLimits, Text};
pub use pace::{Pace, PaceLimits, Verdict};

/// Engine.IO session parameters, announced in the OPEN packet.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the server pings; the client answers each ping.
    pub ping_interval: Duration,
    /// How long the server waits for the pong before closing.
    pub ping_timeout: Duration,
    /// How long a connection may stay without any namespace CONNECT.
    pub connect_timeout: Duration,
    /// Largest Engine.IO packet (= WebSocket message) accepted, in bytes.
    pub max_payload: usize,
    /// The same limit while no namespace is connected (before the first
    /// CONNECT succeeds, and after a DISCONNECT left none): an
    /// unauthenticated client may only send small frames. Capped at
    /// `max_payload`.
    pub max_payload_before_connect: usize,
}

impl Options {
    /// The message size limit for a connection with or without a
    /// connected namespace.
    pub fn frame_limit(&self, connected: bool) -> usize {
        if connected {
            self.max_payload
        } else {
            self.max_payload_before_connect.min(self.max_payload)
        }
    }
}

/// Why a connection ended. Each has a WebSocket close code and reason that
/// clients can tell apart (docs/protocol.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent an Engine.IO or WebSocket close.
    ClientClosed,
    /// The server is shutting down or draining: reconnect elsewhere.
    ServerShutdown,
    /// No pong within pingTimeout.
    PingTimeout,
    /// No namespace CONNECT within connectTimeout.
    ConnectTimeout,
    /// The outbound queue overflowed: the client reads too slowly.
    SlowConsumer,
    /// Sustained command rate above the limit.
    RateLimited,
    /// A packet that cannot be decoded.
    Malformed,
    /// Text (a message or a close reason) that is not UTF-8.
    InvalidUtf8,
    /// A message or frame above maxPayload.
    TooLarge,
    /// The socket failed (reset, broken pipe): no close frame can be sent.
    TransportError,
    /// The server could not keep a promise to this connection (e.g. a
    /// recovery replay failed): reconnect.
    Internal,
    /// A CONNECT the application accepted, then refused once it knew more
    /// (a Gatrix user the directory does not know): after the
    /// CONNECT_ERROR.
    Refused,
}

impl CloseReason {
    /// Every reason, in declaration order (`reason as usize` indexes it):
    /// the bounded label set of the disconnect metrics.
    pub const ALL: [CloseReason; 12] = [
        Self::ClientClosed,
        Self::ServerShutdown,
        Self::PingTimeout,
        Self::ConnectTimeout,
        Self::SlowConsumer,
        Self::RateLimited,
        Self::Malformed,
        Self::InvalidUtf8,
        Self::TooLarge,
        Self::TransportError,
        Self::Internal,
        Self::Refused,
    ];

    /// The WebSocket close code and reason sent to the client.
    pub fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Self::ClientClosed => (1000, "client closed"),
            Self::ServerShutdown => (1001, "server shutting down"),
            Self::Malformed => (1002, "malformed packet"),
            Self::InvalidUtf8 => (1007, "invalid UTF-8"),
            Self::TooLarge => (1009, "message too big"),
            Self::PingTimeout => (4000, "ping timeout"),
            Self::ConnectTimeout => (4001, "connect timeout"),
            Self::SlowConsumer => (4008, "slow consumer"),
            Self::RateLimited => (4029, "rate limited"),
            Self::TransportError => (1006, "transport error"),
            Self::Internal => (1011, "internal error"),
            Self::Refused => (4003, "connect refused"),
        }
    }

    /// Stable lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ServerShutdown => "server_shutdown",
            Self::PingTimeout => "ping_timeout",
            Self::ConnectTimeout => "connect_timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::RateLimited => "rate_limited",
            Self::Malformed => "malformed",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TooLarge => "too_large",
            Self::TransportError => "transport_error",
            Self::Internal => "internal",
            Self::Refused => "refused",
        }
    }
}

/// Why one namespace socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent a namespace DISCONNECT (`41`).
    ClientDisconnect,
    /// The whole connection ended.
    Closed(CloseReason),
}

/// What the client sent with its HTTP upgrade request and whence.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub peer: SocketAddr,
    /// Decoded query parameters of the upgrade request.
    pub query: Vec<(String, String)>,
    /// The `Authorization: Bearer` token of the upgrade request, if any.
    pub bearer: Option<String>,
}

impl Handshake {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A namespace CONNECT the application refuses.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// `44/x,{"message":"Invalid namespace"}`, as the reference server says.
    InvalidNamespace,
    /// `44{"message":…,"data":…}`, e.g. a bad token.
    Refused {
        message: String,
        data: Option<Value>,
    },
}

/// An event emitted by the client.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    /// The arguments after the event name. Binary attachments appear as
    /// `{"_placeholder":true,"num":i}`, indexing into `attachments`.
    pub args: Vec<Value>,
    /// Present when the client asked for an acknowledgement.
    pub ack_id: Option<u64>,
    pub attachments: Vec<Bytes>,
}

/// The application side of a connection. All calls happen on the
/// connection's shard, in the order the client's packets arrived; none may
/// block or await (replies go through the [`Link`] whenever they are ready).
///
/// The engine calls it, generic over the handler (no dynamic call per
/// packet): [`drive`] for a WebSocket, `transport::polling` for
/// long-polling, both started by [`crate::transport::serve`]. A toy handler
/// that answers every event's acknowledgement with its arguments, driven
/// here by hand as the engine would:
///
/// ```
/// use std::rc::Rc;
///
/// use gatrix_chat::protocol::packet::encode_ack;
/// use gatrix_chat::protocol::{
///     DisconnectReason, Event, Handler, Handshake, Link, QueueLimits, Refusal,
/// };
/// use serde_json::{Value, json};
///
/// struct Echo;
///
/// /// A connected namespace: where replies go.
/// struct Socket {
///     link: Rc<Link>,
///     nsp: String,
/// }
///
/// impl Handler for Echo {
///     type Socket = Socket;
///
///     fn connect(
///         &self,
///         link: &Rc<Link>,
///         _handshake: &Handshake,
///         nsp: &str,
///         _auth: Option<Value>,
///     ) -> Result<Socket, Refusal> {
///         if nsp != "/" {
///             return Err(Refusal::InvalidNamespace);
///         }
///         Ok(Socket { link: link.clone(), nsp: nsp.to_owned() })
///     }
///
///     fn event(&self, socket: &Socket, event: Event) {
///         if let Some(id) = event.ack_id {
///             let args = Value::Array(event.args).to_string();
///             let inner = &args[1..args.len() - 1];
///             // A full queue closes the connection; nothing else to do.
///             let _ = socket.link.push_text(encode_ack(&socket.nsp, id, inner));
///         }
///     }
///
///     fn disconnect(&self, _socket: Socket, _reason: DisconnectReason) {}
/// }
///
/// let peer = "127.0.0.1:4000".parse().unwrap();
/// let limits = QueueLimits { max_frames: 8, max_bytes: 1 << 10 };
/// let link = Rc::new(Link::new(1, "sid".into(), peer, limits));
/// let handshake = Handshake { peer, query: Vec::new(), bearer: None };
///
/// assert!(matches!(
///     Echo.connect(&link, &handshake, "/admin", None),
///     Err(Refusal::InvalidNamespace)
/// ));
/// let socket = Echo.connect(&link, &handshake, "/", None).unwrap();
/// let event = Event {
///     name: "ping".into(),
///     args: vec![json!(1)],
///     ack_id: Some(7),
///     attachments: Vec::new(),
/// };
/// Echo.event(&socket, event); // queues `437[1]`
/// assert_eq!(link.queued_frames(), 1);
/// Echo.disconnect(socket, DisconnectReason::ClientDisconnect);
/// ```
pub trait Handler: 'static {
    /// State of one connected namespace socket.
    type Socket;

    /// A namespace CONNECT with its auth payload.
    fn connect(
        &self,
        link: &Rc<Link>,
        handshake: &Handshake,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<Self::Socket, Refusal>;

    /// The private session id for connection state recovery, sent in the
    /// CONNECT reply; `None` when the application does not recover.
    fn pid(&self, _socket: &Self::Socket) -> Option<String> {
        None
    }

    /// Called right after the CONNECT reply (with the socket's `sid`) was
    /// queued.
    fn connected(&self, _socket: &Self::Socket, _sid: &str) {}

    /// A CONNECT or DISCONNECT was refused by the connection's rate limiter
    /// ([`Link::pace_check`]), or closes the connection for it: for
    /// counting. Returns the CONNECT_ERROR a refused CONNECT is answered
    /// with.
    fn rate_limited(&self) -> Refusal {
        Refusal::Refused {
            message: "rate limited".into(),
            data: None,
        }
    }

    /// An EVENT or BINARY_EVENT for a connected namespace.
    fn event(&self, socket: &Self::Socket, event: Event);

    /// The namespace socket is gone.
    fn disconnect(&self, socket: Self::Socket, reason: DisconnectReason);

    /// The whole WebSocket connection ended (after every `disconnect`),
    /// authenticated or not: for counting why connections end.
    fn closed(&self, _reason: CloseReason) {}
}
