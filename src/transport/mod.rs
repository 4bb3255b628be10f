//! Transport: from an accepted TCP stream to a running Engine.IO session.
//!
//! Every connection starts with one HTTP/1.1 request ([`http`]). A request
//! for `/socket.io/?EIO=4&transport=websocket` is upgraded here (we answer
//! the 101 ourselves and keep the socket: [`crate::protocol::wsio`]) and driven by
//! [`crate::protocol::drive`]; HTTP long-polling is refused with the
//! reference server's 400; other paths go to the caller's routes.

pub mod http;
pub mod origin;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use base64::Engine;
use futures_lite::{AsyncRead, AsyncWrite};
use tungstenite::handshake::derive_accept_key;

use crate::protocol::wsio::WsIo;
use crate::protocol::{self, CloseReason, Handler, Handshake, Link, QueueLimits};
pub use http::{Request, Response};

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
    /// permessage-deflate (`WS_COMPRESSION`, `WS_COMPRESSION_THRESHOLD`).
    pub compression: protocol::deflate::Settings,
}

/// The live links of one shard, so shutdown can close every one.
#[derive(Default)]
pub struct Links {
    map: RefCell<HashMap<u64, Rc<Link>>>,
    /// Set by [`Links::close_all`]: a link registered later (its upgrade was
    /// under way) is closed at once.
    closing: Cell<Option<CloseReason>>,
}

impl Links {
    fn register(&self, link: Rc<Link>) {
        if let Some(reason) = self.closing.get() {
            link.close(reason);
        }
        self.map.borrow_mut().insert(link.id, link);
    }

    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Asks every link to close with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        self.closing.set(Some(reason));
        let links: Vec<Rc<Link>> = self.map.borrow().values().cloned().collect();
        for l in links {
            l.close(reason);
        }
    }
}

/// A WebSocket session after the 101, ready to [`run`].
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

/// Serves one accepted connection to its end: [`open`], then [`run`].
/// Requests for anything but the Socket.IO endpoint go to `other` with the
/// stream and every byte read from it so far (REST, health, metrics).
///
/// Memory: a connection task's future is as large as its largest state and
/// lives as long as the connection, so everything before the WebSocket
/// session (the request head, the REST server, the 101 reply) runs in a
/// boxed future that is freed when the session starts. (The box gets a
/// statement of its own: a temporary lives to the end of its statement,
/// so `Box::pin(open(..)).await` would keep the unboxed future's space in
/// this one across the await.)
pub async fn serve<S, H, O, F>(
    stream: S,
    peer: SocketAddr,
    conn_id: u64,
    ep: &Endpoint,
    handler: &H,
    links: &Links,
    other: O,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
    O: FnOnce(S, Request, Vec<u8>) -> F,
    F: std::future::Future<Output = ()>,
{
    let opening = Box::pin(open(stream, peer, conn_id, ep, links, other));
    if let Some(upgraded) = opening.await {
        run(upgraded, ep, handler, links).await;
    }
}

/// Runs an upgraded session to its end and unregisters its link. (Not an
/// `async fn`, for the reason given at [`protocol::drive`].)
pub fn run<'a, S, H>(
    u: Upgraded<S>,
    ep: &'a Endpoint,
    handler: &'a H,
    links: &'a Links,
) -> impl std::future::Future<Output = ()> + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + 'a,
    H: Handler,
{
    let (id, peer) = (u.link.id, u.link.peer);
    let session = protocol::drive(u.io, u.link, u.handshake, &ep.opts, handler);
    futures::FutureExt::map(session, move |reason| {
        handler.closed(reason);
        links.map.borrow_mut().remove(&id);
        tracing::debug!(conn = id, %peer, reason = reason.as_str(), "connection closed");
    })
}

/// Reads the request head; serves anything but a Socket.IO upgrade through
/// `other` (and returns `None`), refuses a bad upgrade, or answers 101 and
/// returns the new session, its link registered.
pub async fn open<S, O, F>(
    mut stream: S,
    peer: SocketAddr,
    conn_id: u64,
    ep: &Endpoint,
    links: &Links,
    other: O,
) -> Option<Upgraded<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
    O: FnOnce(S, Request, Vec<u8>) -> F,
    F: std::future::Future<Output = ()>,
{
    let head = futures_lite::future::or(
        async { Some(http::read_head(&mut stream, ep.max_header_bytes).await) },
        async {
            glommio::timer::sleep(ep.handshake_timeout).await;
            None
        },
    )
    .await;
    let (req, read) = match head {
        Some(Ok(r)) => r,
        Some(Err(http::HttpError::TooLarge(_))) => {
            let r = Response::error(431, "INVALID_PAYLOAD", "request head too large");
            let _ = http::write_response(&mut stream, &r).await;
            return None;
        }
        Some(Err(http::HttpError::Malformed(_))) => {
            let r = Response::error(400, "INVALID_PAYLOAD", "malformed HTTP request");
            let _ = http::write_response(&mut stream, &r).await;
            return None;
        }
        Some(Err(_)) | None => return None,
    };

    if req.path != "/socket.io/" && req.path != "/socket.io" {
        // Boxed too: the REST server's future is large.
        let rest = Box::pin(other(stream, req, read));
        rest.await;
        return None;
    }
    let key = match check_engine_request(&req).and_then(|k| ep.origins.check(&req).map(|()| k)) {
        Ok(key) => key.to_owned(),
        Err(r) => {
            let _ = http::write_response(&mut stream, &r).await;
            return None;
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
    let handshake = Handshake {
        peer,
        query: req.query_pairs(),
        bearer: req
            .header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned()),
    };
    Some(Upgraded {
        io,
        link,
        handshake,
    })
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

/// Checks an Engine.IO request the way the reference server does and
/// returns the WebSocket key, or the 400 to answer with.
pub(crate) fn check_engine_request(req: &Request) -> Result<&str, Response> {
    let q = req.query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let engine_error = |code: u8, message: &str| {
        Response::json(
            400,
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
    };
    // The reference checks the transport first.
    if get("transport") != Some("websocket") {
        return Err(engine_error(0, "Transport unknown"));
    }
    if get("EIO") != Some("4") {
        return Err(engine_error(5, "Unsupported protocol version"));
    }
    if req.method != "GET" {
        return Err(engine_error(2, "Bad handshake method"));
    }
    // RFC 6455 4.1/4.2.1: HTTP/1.1 or later, the upgrade headers, and a
    // key that is the base64 of 16 bytes.
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let key = req.header("sec-websocket-key").filter(|k| {
        base64::engine::general_purpose::STANDARD
            .decode(k)
            .is_ok_and(|bytes| bytes.len() == 16)
    });
    let version = req.header("sec-websocket-version");
    let (true, true, Some(key), Some(version)) = (
        req.minor_version >= 1,
        upgrade && req.header_has_token("connection", "upgrade"),
        key,
        version,
    ) else {
        return Err(engine_error(3, "Bad request"));
    };
    // RFC 6455 4.4: a version we do not speak gets 426 and the one we do.
    if version != "13" {
        let mut r = engine_error(3, "Bad request");
        r.status = 426;
        r.headers = &[("Sec-WebSocket-Version", "13")];
        return Err(r);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/socket.io/".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            head_len: 0,
            minor_version: 1,
        }
    }

    const WS: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn polling_is_refused_with_the_reference_error() {
        let r = check_engine_request(&req("EIO=4&transport=polling", &[])).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(r.body, r#"{"code":0,"message":"Transport unknown"}"#);
    }

    #[test]
    fn engine_version_and_upgrade_headers_are_checked() {
        let r = check_engine_request(&req("EIO=3&transport=websocket", &WS)).unwrap_err();
        assert!(r.body.contains("Unsupported protocol version"));
        let r = check_engine_request(&req("EIO=4&transport=websocket", &WS[..2])).unwrap_err();
        assert!(r.body.contains("Bad request"));
        assert_eq!(
            check_engine_request(&req("EIO=4&transport=websocket", &WS)).unwrap(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[test]
    fn the_key_the_version_and_http_1_1_are_checked() {
        let q = "EIO=4&transport=websocket";
        let with = |name: &str, value: &str| {
            let mut r = req(q, &WS);
            r.headers.retain(|(k, _)| k != name);
            r.headers.push((name.into(), value.into()));
            r
        };
        for key in [
            "",
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ",
        ] {
            let r = check_engine_request(&with("sec-websocket-key", key)).unwrap_err();
            assert_eq!(r.status, 400, "key {key:?}");
        }
        let r = check_engine_request(&with("sec-websocket-version", "8")).unwrap_err();
        assert_eq!(
            (r.status, r.headers),
            (426, &[("Sec-WebSocket-Version", "13")][..])
        );
        let mut old = req(q, &WS);
        old.minor_version = 0;
        assert_eq!(check_engine_request(&old).unwrap_err().status, 400);
    }
}
