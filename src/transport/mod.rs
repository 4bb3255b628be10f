//! Transport: from an accepted TCP stream to a running Engine.IO session.
//!
//! Every connection starts with one HTTP/1.1 request ([`http`]). A request
//! for `/socket.io/?EIO=4&transport=websocket` is upgraded here (we answer
//! the 101 ourselves and keep the socket: [`crate::protocol::wsio`]) and driven by
//! [`crate::protocol::drive`]; HTTP long-polling ([`polling`]) is served
//! on keep-alive connections, and a WebSocket with the `sid` of a polling
//! session upgrades it; other paths go to the caller's routes. A request
//! for a session of another shard is returned to the caller
//! ([`Opened::Elsewhere`]) to be handed over.

pub(crate) mod cors;
pub mod http;
mod links;
pub mod origin;
pub mod polling;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::Either;
use futures_lite::{AsyncRead, AsyncWrite};
use tungstenite::handshake::derive_accept_key;

use crate::metrics::Refused;
use crate::protocol::wsio::WsIo;
use crate::protocol::{self, Handler, Handshake, Link, QueueLimits};
pub use http::{Request, Response};
pub use links::Links;
pub(crate) use upgrade::check_engine_request;

/// What every connection on a shard is served with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub opts: protocol::Options,
    pub queue: QueueLimits,
    pub max_header_bytes: usize,
    /// Time allowed for the HTTP request head to arrive.
    pub handshake_timeout: Duration,
    /// Which `Origin`s may upgrade (`ALLOWED_ORIGINS`).
    pub origins: origin::OriginPolicy,
    /// Where refused requests are counted and logged: the shard's own
    /// (each shard sets it on its copy); `None` for tools and examples.
    pub refusals: Option<crate::metrics::Refusals>,
    /// permessage-deflate (`WS_COMPRESSION`, `WS_COMPRESSION_THRESHOLD`).
    pub compression: protocol::deflate::Settings,
}

impl Endpoint {
    pub(crate) fn refused(
        &self,
        why: crate::metrics::Refused,
        peer: SocketAddr,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(r) = &self.refusals {
            r.refused(why, peer.ip(), detail);
        }
    }
}

/// A WebSocket session after the 101, ready to run ([`serve`]).
pub struct Upgraded<S> {
    io: WsIo<S>,
    link: Rc<Link>,
    handshake: Handshake,
}

impl<S> Upgraded<S> {
    /// The socket I/O and the link, for a WebSocket application other than
    /// Engine.IO: `examples/ws_echo.rs` runs the Autobahn suite against the
    /// server's own upgrade ([`open`]) and socket I/O ([`WsIo`]) this way,
    /// rather than copies of them.
    #[doc(hidden)]
    pub fn into_parts(self) -> (WsIo<S>, Rc<Link>) {
        (self.io, self.link)
    }
}

/// What [`open`] ended with. (Not boxed: it is moved once, out of the
/// boxed opening future, as the `Option<Upgraded>` before it was.)
#[allow(clippy::large_enum_variant)]
pub enum Opened<S> {
    /// A new WebSocket session, ready to run ([`serve`]).
    Upgraded(Upgraded<S>),
    /// The connection was served (REST, polling, refused, upgraded into a
    /// polling session) or failed.
    Done,
    /// The request is for a polling session of another shard: hand it the
    /// stream and every byte read so far (the request included).
    Elsewhere {
        stream: S,
        shard: usize,
        read: Vec<u8>,
    },
}

impl<S: AsyncWrite + Unpin> Opened<S> {
    /// The new session, on a server that has no other shard to hand a
    /// request to (the examples): a request for another shard's session is
    /// answered as an unknown sid.
    pub async fn here(self) -> Option<Upgraded<S>> {
        match self {
            Opened::Upgraded(upgraded) => Some(upgraded),
            Opened::Done => None,
            Opened::Elsewhere { mut stream, .. } => {
                let _ = http::write_response(&mut stream, &unknown_sid()).await;
                None
            }
        }
    }
}

/// One connection's task, in two phases: the server's shards (`shard::conn`)
/// and the examples go through it alike.
///
/// 1. `opening`: everything before a WebSocket session. On a shard:
///    admission, the TLS handshake, then [`open`] (request heads, REST,
///    long-polling, refusals, the 101). It gives the new session and what
///    must live as long as it (the admission ticket), or `None` when the
///    connection was served otherwise, refused, handed over or failed.
/// 2. The session ([`protocol::drive`]) to its end; then the handler is
///    told why it ended ([`Handler::closed`]), the link unregistered, and
///    `keep` dropped.
///
/// Memory: a connection task's future is as large as its largest state
/// and lives as long as the connection. So the opening comes boxed (by the
/// caller, in a statement of its own: a temporary lives to the end of its
/// statement, so `serve(Box::pin(open(..)), ..)` inside an `.await` would
/// keep the unboxed future's space in the task) and is freed when the
/// session starts; the two phases share the task's space (`then`: the
/// first phase's state, then the second's, never both); and no phase is an
/// `async fn` keeping a second copy of its arguments (as at
/// [`protocol::drive`]).
pub fn serve<'a, S, H, K, F>(
    opening: Pin<Box<F>>,
    ep: &'a Endpoint,
    handler: &'a H,
    links: &'a Links,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
    H: Handler,
    K: 'a,
    F: Future<Output = Option<(Upgraded<S>, K)>> + 'a,
{
    opening.then(move |opened| match opened {
        Some((upgraded, keep)) => Either::Left(run(upgraded, keep, ep, handler, links)),
        None => Either::Right(std::future::ready(())),
    })
}

/// The reference's answer to a `sid` it does not hold.
pub fn unknown_sid() -> Response {
    polling::engine_error(400, 1, "Session ID unknown")
}

/// Runs an upgraded session to its end, unregisters its link, then drops
/// `keep`.
fn run<'a, S, H, K>(
    u: Upgraded<S>,
    keep: K,
    ep: &'a Endpoint,
    handler: &'a H,
    links: &'a Links,
) -> impl Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
    H: Handler,
    K: 'a,
{
    let (id, peer) = (u.link.id, u.link.peer);
    let session = protocol::drive(u.io, u.link, u.handshake, &ep.opts, handler);
    session.map(move |reason| {
        handler.closed(reason);
        links.map.borrow_mut().remove(&id);
        tracing::debug!(conn = id, %peer, reason = reason.as_str(), "connection closed");
        drop(keep);
    })
}

/// Reads request heads (after `early`, bytes already read); serves
/// anything but the Socket.IO endpoint through `other` (which returns the
/// stream when a Socket.IO request follows on it), polling requests
/// (keep-alive: then the next request), the upgrade of a polling session;
/// refuses a bad upgrade; or answers 101 and returns the new session, its
/// link registered. Without `polls`, long-polling is refused with the
/// reference's 400 (a WebSocket-only server such as `examples/ws_echo.rs`).
#[allow(clippy::too_many_arguments)]
pub async fn open<S, O>(
    mut stream: S,
    mut early: Vec<u8>,
    peer: SocketAddr,
    conn_id: u64,
    ep: &Endpoint,
    links: &Links,
    polls: Option<&polling::Polls<S>>,
    mut other: O,
) -> Opened<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: AsyncFnMut(S, Request, Vec<u8>) -> Option<(S, Vec<u8>)>,
{
    let mut first = true;
    let (req, read) = loop {
        let head = futures_lite::future::or(
            async {
                let early = std::mem::take(&mut early);
                Some(http::read_head_after(&mut stream, early, ep.max_header_bytes).await)
            },
            async {
                // A keep-alive connection's next request: not on a
                // draining shard (the first one is answered, and refused
                // if need be, as always).
                let drain = async {
                    if first {
                        std::future::pending::<()>().await;
                    }
                    links.draining().await;
                };
                crate::within::within(ep.handshake_timeout, drain).await;
                None
            },
        )
        .await;
        first = false;
        let (req, read) = match head {
            Some(Ok(r)) => r,
            Some(Err(http::HttpError::TooLarge(_))) => {
                ep.refused(Refused::BadRequest, peer, || {
                    format!(
                        "request head over {} bytes (MAX_HTTP_HEADER_BYTES): 431",
                        ep.max_header_bytes
                    )
                });
                let r = Response::error(431, "INVALID_PAYLOAD", "request head too large");
                let _ = http::write_response(&mut stream, &r).await;
                return Opened::Done;
            }
            Some(Err(http::HttpError::Malformed(_))) => {
                ep.refused(Refused::BadRequest, peer, || {
                    "malformed HTTP request head: 400".to_owned()
                });
                let r = Response::error(400, "INVALID_PAYLOAD", "malformed HTTP request");
                let _ = http::write_response(&mut stream, &r).await;
                return Opened::Done;
            }
            Some(Err(_)) | None => return Opened::Done,
        };
        if req.path != "/socket.io/" && req.path != "/socket.io" {
            // Boxed too: the REST server's future is large. It gives the
            // connection back for a Socket.IO request after REST calls.
            let rest = Box::pin(other(stream, req, read));
            match rest.await {
                Some((s, next)) => {
                    (stream, early) = (s, next);
                    continue;
                }
                None => return Opened::Done,
            }
        }
        let Some(polls) = polls else {
            break (req, read);
        };
        // A polling session's requests, its upgrade included, are served
        // by the shard that holds it.
        let q = req.query_pairs();
        if let Some((_, sid)) = q.iter().find(|(k, _)| k == "sid")
            && let Some(shard) = polls.holder(sid)
            && shard != polls.shard()
        {
            return Opened::Elsewhere {
                stream,
                shard,
                read,
            };
        }
        let polling = q.iter().any(|(k, v)| k == "transport" && v == "polling");
        if !polling && req.method != "OPTIONS" {
            break (req, read);
        }
        match polling::serve(&mut stream, &req, read, peer, ep, links, polls).await {
            polling::After::KeepAlive(next) => early = next,
            polling::After::Close => return Opened::Done,
        }
    };
    let checked = match check_engine_request(&req) {
        Err(r) => {
            ep.refused(Refused::BadUpgrade, peer, || {
                format!("Socket.IO request: {} {}", r.status, r.body)
            });
            Err(r)
        }
        Ok(key) => ep.origins.check(&req).map(|()| key).inspect_err(|_| {
            ep.refused(Refused::Origin, peer, || {
                let origin = req
                    .header("origin")
                    .map(|o| crate::metrics::refusals::quoted(o, 100));
                format!(
                    "WebSocket upgrade from origin {} (not in ALLOWED_ORIGINS): 403",
                    origin.as_deref().unwrap_or("(none)")
                )
            });
        }),
    };
    let key = match checked {
        Ok(key) => key.to_owned(),
        Err(r) => {
            let _ = http::write_response(&mut stream, &r).await;
            return Opened::Done;
        }
    };
    let accept = derive_accept_key(key.as_bytes());
    let deflate = ep
        .compression
        .enabled
        .then(|| extension_offers(&req))
        .flatten()
        .and_then(|offers| protocol::deflate::negotiate(&offers));
    let extension = deflate.as_ref().map_or(String::new(), |a| {
        format!("Sec-WebSocket-Extensions: {}\r\n", a.response)
    });
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{extension}\r\n"
    );
    let sid = req
        .query_pairs()
        .into_iter()
        .find(|(k, _)| k == "sid")
        .map(|(_, v)| v);
    if let Some(sid) = sid {
        // The upgrade of a polling session (on its shard, see above).
        let upgrade = polls.map_or(polling::Upgrade::Unknown, |p| polling::upgradable(p, &sid));
        let limit = ep.opts.frame_limit(false);
        match upgrade {
            polling::Upgrade::To(ps) => {
                let mut io = WsIo::new(stream, read[req.head_len..].to_vec(), limit);
                io.queue_raw(reply.as_bytes());
                // The 101 named the extension: the upgraded session speaks it.
                if let Some(a) = &deflate {
                    io.enable_deflate(a.compress.then_some(ep.compression.threshold));
                }
                ps.offer_upgrade(io);
            }
            polling::Upgrade::Unknown => {
                let _ = http::write_response(&mut stream, &unknown_sid()).await;
            }
            polling::Upgrade::Taken => {
                let mut io = WsIo::new(stream, Vec::new(), limit);
                io.queue_raw(reply.as_bytes());
                io.queue_close(1000, "");
                let flush = std::future::poll_fn(|cx| io.poll_flush_unsent(cx));
                let _ = crate::within::within(ep.handshake_timeout, flush).await;
            }
        }
        return Opened::Done;
    }
    // Frames and messages above the limit are refused (close 1009) from
    // their header, before their payload is buffered; until a CONNECT
    // succeeds the limit is the smaller one. The 101 leaves with the OPEN
    // packet, in one send.
    let mut io = WsIo::new(
        stream,
        read[req.head_len..].to_vec(),
        ep.opts.frame_limit(false),
    );
    io.queue_raw(reply.as_bytes());
    if let Some(a) = deflate {
        io.enable_deflate(a.compress.then_some(ep.compression.threshold));
    }
    let link = Rc::new(Link::new(
        conn_id,
        crate::ids::random_token(15),
        peer,
        ep.queue,
    ));
    links.register(link.clone());
    Opened::Upgraded(Upgraded {
        io,
        link,
        handshake: handshake_of(&req, peer),
    })
}

/// What a session's handler learns of its first request.
fn handshake_of(req: &Request, peer: SocketAddr) -> Handshake {
    Handshake {
        peer,
        query: req.query_pairs(),
        bearer: req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned()),
    }
}

/// Every `Sec-WebSocket-Extensions` header of the request, joined (a client
/// may send several: RFC 6455 9.1).
fn extension_offers(req: &Request) -> Option<String> {
    let values: Vec<&str> = req
        .headers
        .iter()
        .filter(|(k, _)| k == "sec-websocket-extensions")
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}
