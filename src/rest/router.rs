//! From a hyper request to a handler: the route table (docs/api.md),
//! CORS (preflights, and the headers of every answer, errors included),
//! the per-connection rate limit, bearer authentication, the bounded body,
//! and the two probes (`/health`, `/ready`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ALLOW, AUTHORIZATION,
    CONTENT_LENGTH, HeaderName, HeaderValue, ORIGIN,
};
use hyper::{Method, Request, StatusCode};

use super::call::Call;
use super::reply::{self, ApiError, Reply};
use super::{Conn, channels, messages};
use crate::transport::cors::{self, CorsHeaders};

/// How long `/ready` waits for the store's answer before calling it down.
const READY_STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// What a path names; the method is checked against it afterwards, so a
/// known path with the wrong method is a 405, not a 404.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Health,
    Ready,
    Metrics,
    Channels,
    Channel(String),
    History(String),
    Messages,
    Message(String),
    /// The Socket.IO endpoint, reached after the first request on a
    /// connection: only a connection's first request can be upgraded.
    SocketIo,
}

impl Route {
    pub(crate) fn parse(path: &str) -> Option<Route> {
        let path = path
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(path);
        let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        // Ids are opaque tokens; a percent-encoded one is decoded.
        let id = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .ok()
                .filter(|d| !d.is_empty())
                .map(|d| d.into_owned())
        };
        Some(match segs.as_slice() {
            ["health"] => Route::Health,
            ["ready"] => Route::Ready,
            ["metrics"] => Route::Metrics,
            ["socket.io"] => Route::SocketIo,
            ["api", "v1", "channels"] => Route::Channels,
            ["api", "v1", "channels", c] => Route::Channel(id(c)?),
            ["api", "v1", "messages"] => Route::Messages,
            ["api", "v1", "messages", "channel", c] => Route::History(id(c)?),
            ["api", "v1", "messages", m] => Route::Message(id(m)?),
            _ => return None,
        })
    }

    /// The methods a request may use (`Access-Control-Allow-Methods`).
    fn allows(&self) -> &'static str {
        match self {
            Route::Health | Route::Ready | Route::Metrics | Route::SocketIo => "GET, HEAD",
            Route::History(_) => "GET",
            Route::Channels => "GET, POST",
            Route::Messages => "POST",
            Route::Channel(_) | Route::Message(_) => "GET, PUT, DELETE",
        }
    }

    /// `Allow` (RFC 9110): those, and `OPTIONS`, which every route answers.
    fn allow_header(&self) -> &'static str {
        match self {
            Route::Health | Route::Ready | Route::Metrics | Route::SocketIo => "GET, HEAD, OPTIONS",
            Route::History(_) => "GET, OPTIONS",
            Route::Channels => "GET, POST, OPTIONS",
            Route::Messages => "POST, OPTIONS",
            Route::Channel(_) | Route::Message(_) => "GET, PUT, DELETE, OPTIONS",
        }
    }
}

pub(super) async fn handle(conn: &Conn, req: Request<Incoming>) -> Reply {
    let _busy = conn.activity.request();
    let origin = header(&req, &ORIGIN).map(str::to_owned);
    if req.method() == Method::OPTIONS {
        // Not rate limited: browsers send preflights on their own, and
        // they must not eat the budget of the requests they precede.
        return options(conn, &req, origin.as_deref());
    }
    let result = route(conn, req).await;
    let mut reply = result.unwrap_or_else(|e| {
        if e.status.is_server_error() {
            tracing::debug!(code = e.code, message = %e.message, "REST request failed");
        }
        e.into_reply()
    });
    add_headers(&mut reply, conn.origins.cors_headers(origin.as_deref()));
    reply
}

/// `OPTIONS`: a CORS preflight gets 204 with what the route allows, or
/// 403 (and no CORS header) when its origin is not allowed; a plain
/// `OPTIONS` gets 204 with `Allow`.
fn options(conn: &Conn, req: &Request<Incoming>, origin: Option<&str>) -> Reply {
    let Some(route) = Route::parse(req.uri().path()) else {
        let mut r = ApiError::not_found("no such path").into_reply();
        add_headers(&mut r, conn.origins.cors_headers(origin));
        return r;
    };
    let request_method = header(req, &ACCESS_CONTROL_REQUEST_METHOD);
    if !cors::is_preflight("OPTIONS", origin, request_method) {
        let mut r = reply::no_content();
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(route.allow_header()));
        add_headers(&mut r, conn.origins.cors_headers(origin));
        return r;
    }
    let requested = header(req, &ACCESS_CONTROL_REQUEST_HEADERS);
    match conn
        .origins
        .cors_preflight(origin, route.allows(), requested)
    {
        Some(headers) => {
            let mut r = reply::no_content();
            add_headers(&mut r, headers);
            r
        }
        // A 403 rather than a 204 without headers: the browser fails
        // either way, and someone replaying the request by hand sees why.
        None => {
            tracing::debug!(origin, path = req.uri().path(), "CORS preflight refused");
            ApiError::forbidden(
                "this origin may not call this API from a browser (ALLOWED_ORIGINS)",
            )
            .into_reply()
        }
    }
}

/// A request header as text, if present and visible ASCII.
fn header<'r>(req: &'r Request<Incoming>, name: &HeaderName) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Sets the CORS headers on an answer. The values come from visible-ASCII
/// request headers and constants; one that still does not fit is left out.
fn add_headers(reply: &mut Reply, headers: CorsHeaders) {
    let h = reply.headers_mut();
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
}

async fn route(conn: &Conn, req: Request<Incoming>) -> Result<Reply, ApiError> {
    // The Gatrix backend's calls (X-API-Token, X-User-ID) under /api/v1
    // speak its dialect; the probes and everything else stay native.
    if let Some(g) = &conn.ctx.gatrix
        && req.uri().path() == "/ws/info"
        && req.method() == Method::GET
    {
        // The original's unauthenticated probe of its Socket.IO side.
        return Ok(super::gatrix::ws_info_plain(g));
    }
    if let Some(g) = &conn.ctx.gatrix
        && req.uri().path().starts_with("/api/")
        && super::gatrix::speaks(&req)
    {
        if conn.limiter.check().is_err() {
            conn.ctx.metrics.rate_limited.inc();
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many requests on this connection; slow down",
            ));
        }
        return Ok(super::gatrix::handle(conn, g, req).await);
    }
    let Some(route) = Route::parse(req.uri().path()) else {
        return Err(ApiError::not_found("no such path"));
    };
    if !route
        .allows()
        .split(", ")
        .any(|m| m == req.method().as_str())
    {
        return Ok(method_not_allowed(&route));
    }
    match route {
        Route::Health => return Ok(reply::json(StatusCode::OK, r#"{"status":"ok"}"#.into())),
        Route::Ready => return ready(conn).await,
        // Unauthenticated like the probes; 404 when metrics are off or
        // served on METRICS_LISTEN instead.
        Route::Metrics => {
            return match conn.ctx.metrics.exposition() {
                Some(text) => Ok(reply::text(
                    StatusCode::OK,
                    crate::metrics::CONTENT_TYPE,
                    text,
                )),
                None => Err(ApiError::not_found("no such path")),
            };
        }
        Route::SocketIo => {
            return Err(ApiError::invalid(
                "the Socket.IO endpoint must be the first request on a connection",
            ));
        }
        _ => {}
    }
    if conn.limiter.check().is_err() {
        conn.ctx.metrics.rate_limited.inc();
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests on this connection; slow down",
        ));
    }
    let user = authenticate(conn, &req)?;
    let call = Call {
        ctx: &conn.ctx,
        user,
    };
    let (method, query) = (req.method().clone(), req.uri().query().map(str::to_owned));
    let body = match method {
        Method::POST | Method::PUT => read_body(conn, req).await?,
        _ => Bytes::new(),
    };
    match (route, method) {
        (Route::Channels, Method::GET) => channels::list(&call).await,
        (Route::Channels, Method::POST) => channels::create(&call, &body).await,
        (Route::Channel(id), Method::GET) => channels::get(&call, id).await,
        (Route::Channel(id), Method::PUT) => channels::update(&call, id, &body).await,
        (Route::Channel(id), Method::DELETE) => channels::delete(&call, id).await,
        (Route::History(c), Method::GET) => messages::history(&call, c, query.as_deref()).await,
        (Route::Messages, Method::POST) => messages::send(&call, &body).await,
        (Route::Message(id), Method::GET) => messages::get(&call, &id).await,
        (Route::Message(id), Method::PUT) => messages::edit(&call, &id, &body).await,
        (Route::Message(id), Method::DELETE) => messages::delete(&call, &id).await,
        (route, _) => Ok(method_not_allowed(&route)),
    }
}

/// A 405 names the allowed methods, in the `Allow` header as RFC 9110
/// asks and in the message for people reading the body.
fn method_not_allowed(route: &Route) -> Reply {
    let allowed = route.allow_header();
    let e = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("allowed: {allowed}"),
    );
    let mut r = e.into_reply();
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allowed));
    r
}

/// The caller's user id from `Authorization: Bearer <JWT>`.
fn authenticate(conn: &Conn, req: &Request<Incoming>) -> Result<String, ApiError> {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|header| header.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty());
    let (message, e) = match token.map(|t| conn.ctx.auth.verify(t)) {
        Some(Ok(claims)) => return Ok(claims.sub),
        None => (
            "send Authorization: Bearer <token>",
            crate::auth::AuthError::Missing,
        ),
        Some(Err(e)) => ("invalid token", e),
    };
    // The client gets the reason's code (`reason`, as on a Socket.IO
    // CONNECT), the log the sentence; never the token.
    let metrics = &conn.ctx.metrics;
    // As before: a request without a token is no auth failure there (it
    // is a `token_missing` refusal).
    if token.is_some() {
        metrics.auth_failures_rest.inc();
    }
    metrics
        .refusals
        .refused(crate::metrics::Refused::token(&e), conn.peer, || {
            format!("REST request: {e}")
        });
    Err(ApiError::unauthorized(message).with_token_refusal(e.refusal()))
}

/// Reads the whole body, at most `max_body_bytes` (413 past it, without
/// reading on when Content-Length already says so) and within the head
/// timeout (`HANDSHAKE_TIMEOUT_MS`), so a trickled body cannot hold a
/// connection.
pub(super) async fn read_body(conn: &Conn, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let max = conn.settings.max_body_bytes;
    let too_large = || ApiError::too_large(format!("the body is larger than {max} bytes"));
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), max).collect();
    let collected = crate::within::within(conn.settings.head_timeout, body).await;
    match collected {
        Some(Ok(c)) => Ok(c.to_bytes()),
        Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Some(Err(_)) => Err(ApiError::invalid("the body could not be read")),
        None => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "INVALID_PAYLOAD",
            "the body did not arrive in time",
        )),
    }
}

/// `/ready`: 200 while the shard accepts work and the store answers a
/// ping within a second; 503 while draining or when the store does not.
async fn ready(conn: &Conn) -> Result<Reply, ApiError> {
    if conn.draining.get() {
        return Err(ApiError::unavailable("draining"));
    }
    let rx = conn.ctx.store.read(|s| s.ping().is_ok())?;
    let answered = crate::within::within(READY_STORE_TIMEOUT, rx).await;
    match answered {
        // With Redis, the bus's state too; Redis away is not unready (the
        // instance polls the database meanwhile).
        Some(Ok(true)) => Ok(reply::json(
            StatusCode::OK,
            match conn.ctx.metrics.bus.ready_json() {
                Some(bus) => format!(
                    r#"{{"status":"ready","bus":{bus},"pubsub":{{"subscribed":{}}}}}"#,
                    conn.ctx.metrics.pubsub.get() == 1
                ),
                None => r#"{"status":"ready"}"#.into(),
            },
        )),
        _ => Err(ApiError::unavailable("the store does not answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_names_the_methods_and_options() {
        for route in [
            Route::Health,
            Route::Ready,
            Route::Metrics,
            Route::SocketIo,
            Route::Channels,
            Route::Channel("1".into()),
            Route::History("1".into()),
            Route::Messages,
            Route::Message("1".into()),
        ] {
            assert_eq!(
                route.allow_header(),
                format!("{}, OPTIONS", route.allows()),
                "{route:?}"
            );
        }
    }

    #[test]
    fn routes() {
        let r = Route::parse;
        assert_eq!(r("/health"), Some(Route::Health));
        assert_eq!(r("/metrics"), Some(Route::Metrics));
        assert_eq!(r("/api/v1/channels"), Some(Route::Channels));
        assert_eq!(r("/api/v1/channels/"), Some(Route::Channels));
        assert_eq!(r("/api/v1/channels/7"), Some(Route::Channel("7".into())));
        assert_eq!(
            r("/api/v1/channels/a%20b"),
            Some(Route::Channel("a b".into()))
        );
        assert_eq!(
            r("/api/v1/messages/channel/7"),
            Some(Route::History("7".into()))
        );
        assert_eq!(r("/api/v1/messages/9"), Some(Route::Message("9".into())));
        assert_eq!(r("/api/v1/messages"), Some(Route::Messages));
        assert_eq!(r("/socket.io/"), Some(Route::SocketIo));
        for none in [
            "/",
            "",
            "/api",
            "/api/v1/channels/7/x",
            "/api/v1/channels/%FF",
            "/api/v1/x",
        ] {
            assert_eq!(r(none), None, "{none}");
        }
    }
}
