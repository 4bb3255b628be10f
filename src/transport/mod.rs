//! Transport: from an accepted TCP stream to a running Engine.IO session.
//!
//! Every connection starts with one HTTP/1.1 request ([`http`]). A request
//! for `/socket.io/?EIO=4&transport=websocket` is upgraded here (we answer
//! the 101 ourselves and hand the same socket to tungstenite) and driven by
//! [`crate::protocol::drive`]; HTTP long-polling is refused with the
//! reference server's 400; other paths go to the caller's routes.

pub mod http;
pub mod origin;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::{Role, WebSocketConfig};

use crate::protocol::{self, CloseReason, Handler, Handshake, Link, QueueLimits};
pub use http::{Request, Response};

/// What every connection on a shard is served with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub opts: protocol::Options,
    pub ws_config: WebSocketConfig,
    pub queue: QueueLimits,
    pub max_header_bytes: usize,
    /// Time allowed for the HTTP request head to arrive.
    pub handshake_timeout: Duration,
    /// Which `Origin`s may upgrade (`ALLOWED_ORIGINS`).
    pub origins: origin::OriginPolicy,
}

impl Endpoint {
    /// WebSocket limits derived from maxPayload: frames and messages are
    /// refused (close 1009) before their payload is buffered. tungstenite's
    /// default 128 KiB read buffer per connection is far more than chat needs.
    /// Frames are buffered up to 64 KiB before a write, so a batch of queued
    /// frames leaves in one write when the driver flushes.
    pub fn ws_config(max_payload: usize) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(64 * 1024)
            .max_message_size(Some(max_payload))
            .max_frame_size(Some(max_payload))
    }
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

/// Serves one accepted connection to its end. Requests for anything but
/// the Socket.IO endpoint go to `other` with the stream and every byte read
/// from it so far (REST, health, metrics).
pub async fn serve<S, H, O, F>(
    mut stream: S,
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
    let head = futures_lite::future::or(
        async { Some(http::read_head(&mut stream, ep.max_header_bytes).await) },
        async {
            glommio::timer::sleep(ep.handshake_timeout).await;
            None
        },
    )
    .await;
    let (req, mut read) = match head {
        Some(Ok(r)) => r,
        Some(Err(http::HttpError::TooLarge(_))) => {
            let r = Response::error(431, "INVALID_PAYLOAD", "request head too large");
            let _ = http::write_response(&mut stream, &r).await;
            return;
        }
        Some(Err(http::HttpError::Malformed(_))) => {
            let r = Response::error(400, "INVALID_PAYLOAD", "malformed HTTP request");
            let _ = http::write_response(&mut stream, &r).await;
            return;
        }
        Some(Err(_)) | None => return,
    };

    if req.path != "/socket.io/" && req.path != "/socket.io" {
        return other(stream, req, read).await;
    }
    let rest = read.split_off(req.head_len);
    let key = match check_engine_request(&req).and_then(|k| ep.origins.check(&req).map(|()| k)) {
        Ok(key) => key.to_owned(),
        Err(r) => {
            let _ = http::write_response(&mut stream, &r).await;
            return;
        }
    };
    let accept = derive_accept_key(key.as_bytes());
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(reply.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ep.ws_config)).await;

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
    let reason = protocol::drive(ws, link, handshake, &ep.opts, handler).await;
    handler.closed(reason);
    links.map.borrow_mut().remove(&conn_id);
    tracing::debug!(conn = conn_id, %peer, reason = reason.as_str(), "connection closed");
}

/// Checks an Engine.IO request the way the reference server does and
/// returns the WebSocket key, or the 400 to answer with.
fn check_engine_request(req: &Request) -> Result<&str, Response> {
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
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !upgrade
        || !req.header_has_token("connection", "upgrade")
        || req.header("sec-websocket-version") != Some("13")
    {
        return Err(engine_error(3, "Bad request"));
    }
    req.header("sec-websocket-key")
        .ok_or_else(|| engine_error(3, "Bad request"))
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
}
