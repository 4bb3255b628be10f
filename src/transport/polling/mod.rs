//! Engine.IO v4 HTTP long-polling, as the reference server (engine.io 6)
//! serves it: the handshake (`GET` without `sid`: the OPEN packet, with
//! `"upgrades":["websocket"]`), `GET` to receive (it waits until a packet
//! is queued; the ping is one, so at most a ping interval), `POST` to send
//! (`ok`), the payload format (`payload`), the reference's error codes,
//! CORS for browsers (`cors`), the requests (`request`), and the upgrade
//! to WebSocket (`session`).
//!
//! Sessions live on the shard that answered their handshake, in its
//! [`Polls`]; the shard is the `sid`'s suffix ([`shard_of_sid`]), so a
//! request that lands on another shard (SO_REUSEPORT) is handed to the
//! holder before anything is read from the session (see
//! `crate::shard::handoff`).

mod cors;
pub(crate) mod payload;
mod request;
pub(crate) mod session;

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;

use futures_lite::{AsyncRead, AsyncWrite};

use super::http::{Request, Response};
use super::{Endpoint, Links};
use crate::protocol::engine::State;
use crate::protocol::{Handler, Handshake, Link, packet};
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
            // The same span as a WebSocket connection's (see `shard`).
            let span = tracing::debug_span!(
                "conn",
                conn = ps.link.id,
                shard,
                transport = "polling",
                user = tracing::field::Empty
            );
            Box::pin(tracing::Instrument::instrument(
                async move {
                    let st = State::new(ps.link.clone(), hs, &ep.opts, &*handler);
                    let upgrade_timeout = ep.handshake_timeout;
                    let reason = session::drive(ps.clone(), st, &ep.opts, upgrade_timeout).await;
                    handler.closed(reason);
                    links.map.borrow_mut().remove(&ps.link.id);
                    registry.borrow_mut().remove(&*ps.link.sid);
                    tracing::debug!(reason = reason.as_str(), "polling session closed");
                },
                span,
            ))
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

    /// The shard that holds `sid`'s session: a request for another one's
    /// is handed over; `None` (no such shard) is answered as an unknown
    /// sid here.
    pub fn holder(&self, sid: &str) -> Option<usize> {
        shard_of_sid(sid).filter(|s| *s < self.shards)
    }

    fn session(&self, sid: &str) -> Option<Rc<PollSession<S>>> {
        self.sessions.borrow().get(sid).cloned()
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

/// The reference server's error answer: `{"code":…,"message":…}`.
pub(crate) fn engine_error(status: u16, code: u8, message: &str) -> Response {
    Response::json(
        status,
        serde_json::json!({"code": code, "message": message}).to_string(),
    )
}

const UNKNOWN_SID: (u8, &str) = (1, "Session ID unknown");
const BAD_REQUEST: (u8, &str) = (3, "Bad request");

pub(crate) use request::{After, serve};

/// A new session: its place in the limits, its link, its driver; the
/// OPEN packet to answer with.
pub(super) fn handshake<S>(
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
