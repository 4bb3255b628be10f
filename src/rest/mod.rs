//! The REST API (docs/api.md) and the probes, on the public port.
//!
//! [`crate::transport::serve`] reads a connection's first request head; a
//! request that is not a Socket.IO upgrade comes here with the socket and
//! every byte read so far. hyper's HTTP/1.1 server takes the connection
//! over from those bytes ([`io`]), with keep-alive, and answers each
//! request on this shard: [`router`] authenticates and dispatches to
//! [`channels`] and [`messages`], which reach the store through store
//! threads and the channel's owner through [`ChatApi`], both in the
//! shard's REST [`Context`]; [`reply`] maps every
//! failure to the protocol's error shape.
//!
//! A connection ends when the client closes it, after an idle timeout,
//! when a request head is still arriving at its deadline (a trickle is no
//! way to hold a connection), or on drain (after the request in flight). hyper's own timers want a
//! `Send` timer, so the idle and drain checks are a small watchdog here.

mod call;
mod channels;
mod context;
mod gatrix;
mod io;
mod messages;
mod reply;
mod router;

// The fuzz targets' way in (src/fuzzing.rs): the request parsers.
#[cfg(feature = "fuzzing")]
pub(crate) use self::{
    call::{message_id, object, text},
    channels::{MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, parse_new},
    messages::{MAX_LIMIT, edited_content, parse_page},
    router::Route,
};

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hyper::body::Incoming;
use hyper::server::conn::http1;

use crate::config::Config;
use crate::transport::origin::OriginPolicy;
pub(crate) use context::{ChatApi, Context};
pub(crate) use gatrix::GatrixRest;
use io::{Activity, Rewind};
use reply::Reply;

/// REST limits, taken from the config once and copied into each shard.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestSettings {
    /// Largest request body; past it, 413 PAYLOAD_TOO_LARGE.
    pub max_body_bytes: usize,
    /// Largest request head; hyper's read buffer is sized from it.
    pub max_head_bytes: usize,
    /// How long a keep-alive connection may sit without a byte moving
    /// before it is closed (`REST_KEEPALIVE_TIMEOUT_MS`): idle sockets must
    /// not pin connection slots.
    pub idle_timeout: Duration,
    /// How long each request's head may take to arrive from its first
    /// byte, and its body from the handler's first read
    /// (`HANDSHAKE_TIMEOUT_MS`, the budget of the first head too): a
    /// trickle keeps a connection busy but not for longer than this.
    pub head_timeout: Duration,
    /// Requests per second on one connection, and the burst allowed before
    /// that rate applies: the WebSocket command limits.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
}

impl RestSettings {
    pub(crate) fn from_config(c: &Config) -> Self {
        Self {
            max_body_bytes: c.rest_max_body_bytes,
            max_head_bytes: c.max_http_header_bytes,
            idle_timeout: Duration::from_millis(c.rest_keepalive_timeout_ms),
            head_timeout: c.handshake_timeout(),
            rate_per_sec: c.rate_limit_per_sec,
            rate_burst: c.rate_limit_burst,
        }
    }

    fn quota(&self) -> Quota {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(n(self.rate_per_sec)).allow_burst(n(self.rate_burst))
    }
}

/// hyper refuses a read buffer smaller than this.
const MIN_READ_BUFFER: usize = 8192;
/// How often the watchdog looks at the drain flag (it also wakes when the
/// idle timeout is due): soon enough against a drain deadline of seconds,
/// rare enough that thousands of idle connections cost little.
const WATCH_TICK: Duration = Duration::from_millis(500);

/// What every request on one connection shares.
struct Conn {
    ctx: Rc<Context>,
    /// The client's address, for the log of refused tokens.
    peer: std::net::IpAddr,
    /// The shard is draining: `/ready` says 503.
    draining: Rc<Cell<bool>>,
    settings: RestSettings,
    limiter: DefaultDirectRateLimiter,
    activity: Rc<Activity>,
    /// The origin allow-list: which CORS headers each answer carries.
    origins: OriginPolicy,
}

/// The hyper service of one connection. Its futures are boxed so that the
/// connection is `Unpin` (for `poll_without_shutdown`), and not `Send`:
/// hyper's HTTP/1 server does not ask for it, and everything here lives on
/// one shard.
struct Service(Rc<Conn>);

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = Reply;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, Infallible>>>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let conn = self.0.clone();
        Box::pin(async move { Ok(router::handle(&conn, req).await) })
    }
}

/// What a shard serves REST requests with (its REST context, its drain
/// flag, the limits and the CORS policy), for [`serve`].
pub(crate) struct Serving {
    pub context: Rc<Context>,
    pub draining: Rc<Cell<bool>>,
    pub settings: RestSettings,
    pub origins: OriginPolicy,
}

/// Serves REST requests on a connection until it ends. `first` is the
/// first request's head as the transport parsed it, and `read` every byte
/// the transport read from `stream` (that head, maybe more). Returns the
/// stream and the bytes read of a later request for the Socket.IO
/// endpoint (long-polling after REST calls on one kept-alive connection,
/// as browsers do): the transport serves it ([`io::Rewind`]).
pub(crate) async fn serve<S>(
    mut stream: S,
    first: &crate::transport::Request,
    read: Vec<u8>,
    with: Serving,
    peer: std::net::IpAddr,
) -> Option<(S, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Serving {
        context,
        draining,
        settings,
        origins,
    } = with;
    // hyper would answer a bad Content-Length with a bare 400; on the first
    // request the answer has the REST error shape, as the transport's 400
    // and 431 do. (Later requests on the connection still get hyper's.)
    if let Err(message) = check_content_length(first) {
        let r = crate::transport::Response::error(400, "INVALID_PAYLOAD", message);
        let _ = crate::transport::http::write_response(&mut stream, &r).await;
        crate::transport::http::linger(&mut stream).await;
        return None;
    }
    let activity = Rc::new(Activity::new());
    let conn = Rc::new(Conn {
        ctx: context,
        peer,
        draining: draining.clone(),
        settings,
        limiter: RateLimiter::direct(settings.quota()),
        activity: activity.clone(),
        origins,
    });
    let mut http = http1::Builder::new()
        .keep_alive(true)
        // A client may shut down its sending side once its request is out
        // (some scripts and proxies do); it still gets the answer.
        .half_close(true)
        // The first request's head is already in `read`; with a little of
        // its body it must fit.
        .max_buf_size((settings.max_head_bytes + 1024).max(MIN_READ_BUFFER))
        .serve_connection(Rewind::new(stream, read, activity.clone()), Service(conn));
    let mut shutting_down = false;
    let ended = loop {
        let idle_left = settings.idle_timeout.saturating_sub(activity.idle_for());
        let head_left = activity
            .head_for()
            .map_or(WATCH_TICK, |t| settings.head_timeout.saturating_sub(t));
        let tick = WATCH_TICK
            .min(idle_left)
            .min(head_left)
            .max(Duration::from_millis(1));
        let polled = futures_lite::future::or(
            async { Some(poll_fn(|cx| http.poll_without_shutdown(cx)).await) },
            async {
                glommio::timer::sleep(tick).await;
                None
            },
        )
        .await;
        match polled {
            Some(result) => break result,
            None if draining.get() && !shutting_down => {
                // Finishes the request in flight, then ends; an idle
                // connection ends at once.
                Pin::new(&mut http).graceful_shutdown();
                shutting_down = true;
            }
            None if !activity.busy() && activity.idle_for() >= settings.idle_timeout => {
                tracing::debug!("REST connection idle; closing");
                return None;
            }
            None if !activity.busy()
                && activity
                    .head_for()
                    .is_some_and(|t| t >= settings.head_timeout) =>
            {
                tracing::debug!("REST request head too slow; closing");
                return None;
            }
            None => {}
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "REST connection ended with an error");
    }
    let mut io = http.into_parts().io;
    if let Some(read) = io.diverted() {
        return Some((io.into_inner(), read));
    }
    crate::transport::http::linger(&mut io.into_inner()).await;
    None
}

/// What hyper accepts as `Content-Length` (RFC 9110 §8.6): decimal digits,
/// and several values (headers or a comma list) only when all are equal.
fn check_content_length(req: &crate::transport::Request) -> Result<(), &'static str> {
    let mut seen: Option<u64> = None;
    let values = req.headers.iter().filter(|(k, _)| k == "content-length");
    for v in values.flat_map(|(_, v)| v.split(',')) {
        let v = v.trim();
        let n = (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .ok_or("Content-Length must be a decimal number")?;
        if seen.is_some_and(|s| s != n) {
            return Err("conflicting Content-Length values");
        }
        seen = Some(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_is_checked_as_hyper_does() {
        let req = |values: &[&str]| crate::transport::Request {
            method: "POST".into(),
            path: "/api/v1/messages".into(),
            query: String::new(),
            headers: values
                .iter()
                .map(|v| ("content-length".to_owned(), (*v).to_owned()))
                .collect(),
            head_len: 0,
            minor_version: 1,
        };
        for ok in [&[][..], &["0"], &["12"], &["12", "12"], &["12, 12"]] {
            assert_eq!(check_content_length(&req(ok)), Ok(()), "{ok:?}");
        }
        for bad in [
            &["x"][..],
            &["-1"],
            &["+1"],
            &[""],
            &["1 2"],
            &["99999999999999999999999"],
            &["1", "2"],
            &["1, 2"],
        ] {
            assert!(check_content_length(&req(bad)).is_err(), "{bad:?}");
        }
    }
}
