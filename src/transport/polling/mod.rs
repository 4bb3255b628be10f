//! Engine.IO v4 HTTP long-polling, as the reference server (engine.io 6)
//! serves it: the handshake (`GET` without `sid`: the OPEN packet, with
//! `"upgrades":["websocket"]`), `GET` to receive (it waits until a packet
//! is queued; the ping is one, so at most a ping interval), `POST` to send
//! (`ok`), the payload format ([`payload`]), the reference's error codes,
//! CORS for browsers ([`cors`]), and the upgrade to WebSocket
//! ([`session`]).
//!
//! Sessions live on the shard that answered their handshake, in its
//! [`Polls`]; the shard is the `sid`'s suffix ([`shard_of_sid`]), so a
//! request that lands on another shard (SO_REUSEPORT) is handed to the
//! owner before anything is read from the session (see
//! `crate::shard::handoff`).

pub(crate) mod payload;
pub(crate) mod session;

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::http::{self, Request, Response};
use super::origin::OriginPolicy;
use super::{Endpoint, Links};
use crate::protocol::engine::State;
use crate::protocol::{CloseReason, Handler, Handshake, Link, packet};
use session::PollSession;

type Sessions<S> = RefCell<HashMap<Rc<str>, Rc<PollSession<S>>>>;

/// A task the shard runs (in its drain gate).
pub type Task = Pin<Box<dyn Future<Output = ()>>>;

/// A session's place in the connection limits (held while it lives), or
/// the answer refusing it.
pub type Admit = Box<dyn Fn(IpAddr) -> Result<Box<dyn Any>, Response>>;

/// What a shard lends its polling sessions.
pub struct Hooks {
    /// A new connection id of this shard.
    pub next_id: Box<dyn Fn() -> u64>,
    pub admit: Admit,
    /// Runs a session's driver as one of the shard's connection tasks.
    pub spawn: Box<dyn Fn(Task)>,
}

/// One shard's polling sessions, by sid.
pub struct Polls<S> {
    shard: usize,
    shards: usize,
    sessions: Rc<Sessions<S>>,
    next_id: Box<dyn Fn() -> u64>,
    admit: Admit,
    start: Box<dyn Fn(Rc<PollSession<S>>, Handshake)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + 'static> Polls<S> {
    /// `shard` of `shards`: this shard's number, written into every sid.
    pub fn new<H: Handler>(
        shard: usize,
        shards: usize,
        ep: Rc<Endpoint>,
        handler: Rc<H>,
        links: Rc<Links>,
        hooks: Hooks,
    ) -> Self {
        let sessions: Rc<Sessions<S>> = Rc::default();
        let registry = sessions.clone();
        let start = move |ps: Rc<PollSession<S>>, hs: Handshake| -> Task {
            let (ep, handler, links, registry) =
                (ep.clone(), handler.clone(), links.clone(), registry.clone());
            Box::pin(async move {
                let st = State::new(ps.link.clone(), hs, &ep.opts, &*handler);
                let reason = session::drive(ps.clone(), st, &ep.opts).await;
                handler.closed(reason);
                links.map.borrow_mut().remove(&ps.link.id);
                registry.borrow_mut().remove(&*ps.link.sid);
                tracing::debug!(
                    conn = ps.link.id,
                    reason = reason.as_str(),
                    "polling session closed"
                );
            })
        };
        let Hooks {
            next_id,
            admit,
            spawn,
        } = hooks;
        Self {
            shard,
            shards,
            sessions,
            next_id,
            admit,
            start: Box::new(move |ps, hs| spawn(start(ps, hs))),
        }
    }
}

impl<S> Polls<S> {
    /// This shard's number.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// The shard a request for `sid` belongs to: another one's is handed
    /// over; `None` (no such shard) is answered as an unknown sid here.
    pub fn owner(&self, sid: &str) -> Option<usize> {
        shard_of_sid(sid).filter(|s| *s < self.shards)
    }

    fn session(&self, sid: &str) -> Option<Rc<PollSession<S>>> {
        self.sessions.borrow().get(sid).cloned()
    }

    pub fn len(&self) -> usize {
        self.sessions.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.borrow().is_empty()
    }
}

/// The sid of a polling session: a random token (URL-safe base64, no
/// `.`), a `.` and the shard that holds the session. Any shard can route
/// a request by it without asking anyone.
fn new_sid(shard: usize) -> String {
    format!("{}.{shard}", crate::ids::random_token(15))
}

/// The shard written in a polling session's sid.
pub fn shard_of_sid(sid: &str) -> Option<usize> {
    sid.rsplit_once('.')?.1.parse().ok()
}

/// What the connection does after a polling request.
pub(crate) enum After {
    /// Reads the next request; the bytes already read come first.
    KeepAlive(Vec<u8>),
    Close,
}

/// The reference server's error answer: `{"code":…,"message":…}`.
pub(crate) fn engine_error(status: u16, code: u8, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({"code": code, "message": message}).to_string(),
    )
}

const UNKNOWN_SID: (u8, &str) = (1, "Session ID unknown");
const BAD_REQUEST: (u8, &str) = (3, "Bad request");

/// CORS for the polling routes: an allowed `Origin` is echoed (with
/// `Vary: Origin` and credentials, as the reference's `cors` option does),
/// a request without one gets no CORS headers, and a refused origin the
/// 403 of a refused WebSocket upgrade. One function, so that it can later
/// follow the REST API's CORS policy.
pub(crate) fn cors(
    req: &Request,
    origins: &OriginPolicy,
) -> Result<Vec<(&'static str, String)>, Response> {
    origins.check(req)?;
    Ok(match req.header("origin") {
        Some(origin) if !origin.is_empty() => vec![
            ("Access-Control-Allow-Origin", origin.to_owned()),
            ("Access-Control-Allow-Credentials", "true".to_owned()),
            ("Vary", "Origin".to_owned()),
        ],
        _ => Vec::new(),
    })
}

/// The preflight's extra headers: the methods of the polling routes and
/// the headers the browser asks for.
fn preflight(req: &Request, headers: &mut Vec<(&'static str, String)>) {
    headers.push((
        "Access-Control-Allow-Methods",
        "GET, POST, OPTIONS".to_owned(),
    ));
    if let Some(h) = req.header("access-control-request-headers") {
        headers.push(("Access-Control-Allow-Headers", h.to_owned()));
    }
    headers.push(("Access-Control-Max-Age", "86400".to_owned()));
}

/// Serves one request of `transport=polling` on its session's shard.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S>(
    stream: &mut S,
    req: &Request,
    read: Vec<u8>,
    peer: SocketAddr,
    ep: &Endpoint,
    links: &Links,
    polls: &Polls<S>,
) -> After
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut headers = match cors(req, &ep.origins) {
        Ok(h) => h,
        Err(r) => return refuse(stream, &r).await,
    };
    let keep_alive = req.minor_version >= 1 && !req.header_has_token("connection", "close");
    let body_at = req.head_len.min(read.len());
    if req.method == "OPTIONS" {
        preflight(req, &mut headers);
        return reply(
            stream,
            204,
            "",
            &headers,
            "",
            keep_alive,
            read[body_at..].to_vec(),
        )
        .await;
    }
    let q = req.query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("EIO") != Some("4") {
        return refuse(
            stream,
            &engine_error(400, 5, "Unsupported protocol version"),
        )
        .await;
    }
    let Some(sid) = get("sid") else {
        if req.method != "GET" {
            return refuse(stream, &engine_error(400, 2, "Bad handshake method")).await;
        }
        let open = match handshake(req, peer, ep, links, polls) {
            Ok(open) => open,
            Err(r) => return refuse(stream, &r).await,
        };
        return reply(
            stream,
            200,
            TEXT,
            &headers,
            &open,
            keep_alive,
            read[body_at..].to_vec(),
        )
        .await;
    };
    let Some(ps) = polls.session(sid) else {
        return refuse(stream, &engine_error(400, UNKNOWN_SID.0, UNKNOWN_SID.1)).await;
    };
    if ps.link.closing().is_some() || ps.upgraded() {
        // Gone, or on WebSocket now: the reference's transport mismatch.
        return refuse(stream, &engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1)).await;
    }
    match req.method.as_str() {
        "GET" => match ps.poll_request().await {
            Some(body) => {
                reply(
                    stream,
                    200,
                    TEXT,
                    &headers,
                    &body,
                    keep_alive,
                    read[body_at..].to_vec(),
                )
                .await
            }
            None => refuse(stream, &engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1)).await,
        },
        "POST" => post(stream, req, read, ep, &ps, &headers, keep_alive).await,
        _ => refuse(stream, &engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1)).await,
    }
}

const TEXT: &str = "text/plain; charset=UTF-8";

/// A new session: its place in the limits, its link, its driver; the
/// OPEN packet to answer with.
fn handshake<S>(
    req: &Request,
    peer: SocketAddr,
    ep: &Endpoint,
    links: &Links,
    polls: &Polls<S>,
) -> Result<String, Response> {
    let ticket = (polls.admit)(peer.ip())?;
    let sid = new_sid(polls.shard);
    let link = Rc::new(Link::new((polls.next_id)(), sid.clone(), peer, ep.queue));
    links.register(link.clone());
    let ps = Rc::new(PollSession::new(link, ep.opts.frame_limit(false), ticket));
    polls
        .sessions
        .borrow_mut()
        .insert(sid.as_str().into(), ps.clone());
    (polls.start)(ps, super::handshake_of(req, peer));
    Ok(packet::encode_open(
        &sid,
        ep.opts.ping_interval.as_millis() as u64,
        ep.opts.ping_timeout.as_millis() as u64,
        ep.opts.max_payload,
        true,
    ))
}

/// A POST: its body (at most the session's payload limit, else 413 and
/// the session closes, as for a WebSocket message too large), split into
/// packets for the driver; `ok`.
async fn post<S>(
    stream: &mut S,
    req: &Request,
    mut read: Vec<u8>,
    ep: &Endpoint,
    ps: &PollSession<impl Sized>,
    headers: &[(&'static str, String)],
    keep_alive: bool,
) -> After
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bad = engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1);
    if ps.posting.get() {
        // Two POSTs at once: the reference closes the session.
        ps.link.close(CloseReason::Malformed);
        return refuse(stream, &bad).await;
    }
    let len = match (
        req.header("content-length")
            .map(|v| v.trim().parse::<usize>()),
        req.header("transfer-encoding"),
    ) {
        (Some(Ok(n)), None) => n,
        _ => return refuse(stream, &bad).await,
    };
    if len > ps.body_limit.get() {
        ps.link.close(CloseReason::TooLarge);
        let r = engine_error(413, BAD_REQUEST.0, "Payload too large");
        return refuse(stream, &r).await;
    }
    ps.posting.set(true);
    let body = read_body(stream, &mut read, req.head_len, len, ep).await;
    ps.posting.set(false);
    let Some(leftover) = body else {
        return After::Close;
    };
    let text = std::str::from_utf8(&read[req.head_len..req.head_len + len]).ok();
    match text.and_then(payload::decode) {
        Some(packets) => ps.deliver(packets),
        None => {
            ps.link.close(CloseReason::Malformed);
            return refuse(stream, &bad).await;
        }
    }
    reply(
        stream,
        200,
        "text/html",
        headers,
        "ok",
        keep_alive,
        leftover,
    )
    .await
}

/// Reads until `read` holds the whole body (within the handshake timeout)
/// and returns the bytes after it.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    read: &mut Vec<u8>,
    head: usize,
    len: usize,
    ep: &Endpoint,
) -> Option<Vec<u8>> {
    let fill = async {
        let mut chunk = [0u8; 4096];
        while read.len() < head + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    let done = futures_lite::future::or(fill, async {
        glommio::timer::sleep(ep.handshake_timeout).await;
        false
    })
    .await;
    done.then(|| read.split_off(head + len))
}

/// What becomes of a WebSocket request with the sid of a polling session.
pub(crate) enum Upgrade<S> {
    /// Hand the WebSocket to the session once the 101 is queued: its
    /// driver answers the probe.
    To(Rc<PollSession<S>>),
    /// No such session: the reference's 400.
    Unknown,
    /// A WebSocket took the session already, or it is closing: the
    /// reference accepts the WebSocket and closes it at once.
    Taken,
}

pub(crate) fn upgradable<S>(polls: &Polls<S>, sid: &str) -> Upgrade<S> {
    match polls.session(sid) {
        None => Upgrade::Unknown,
        Some(ps) if ps.upgrading.get() || ps.link.closing().is_some() => Upgrade::Taken,
        Some(ps) => Upgrade::To(ps),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, r: &Response) -> After {
    let _ = http::write_response(stream, r).await;
    After::Close
}

/// Writes a polling answer; keeps the connection for the next request
/// when the client allows it.
#[allow(clippy::too_many_arguments)]
async fn reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    headers: &[(&'static str, String)],
    body: &str,
    keep_alive: bool,
    leftover: Vec<u8>,
) -> After {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n",
        if status == 204 { "No Content" } else { "OK" }
    );
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    ));
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    if stream.write_all(out.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return After::Close;
    }
    if keep_alive {
        After::KeepAlive(leftover)
    } else {
        After::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sid_names_its_shard() {
        let sid = new_sid(3);
        assert_eq!(shard_of_sid(&sid), Some(3));
        assert!(!sid[..sid.len() - 2].contains('.'));
        assert_eq!(shard_of_sid("plainwebsocketsid"), None);
        assert_eq!(shard_of_sid("x.y"), None);
    }
}
