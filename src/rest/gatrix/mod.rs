//! The Gatrix REST dialect (docs/api.md, "The Gatrix REST dialect"): what
//! the Gatrix backend sends on behalf of its users (its chat proxy,
//! `routes/chat/index.ts`) and for itself (`chat-server-service.ts`).
//!
//! A request speaks it when it carries `X-API-Token` or `X-User-ID`
//! ([`speaks`]) and `gatrix_compat` is on. It is authenticated by
//! `X-API-Token` equal to `BACKEND_SERVICE_TOKEN` (compared in constant
//! time) and acts as the user named by `X-User-ID`; `X-User-ID` alone is
//! refused, never a login as the original took it. Answers are the
//! original's envelopes, `{success:true, data, pagination?}` and
//! `{success:false, error:{code, message}}`, with channel and message ids
//! as JSON numbers (`channels.num`, message ids) and user ids as strings.
//! The handlers reuse the native ones' checks and paths (`super::channels`,
//! `super::messages`, [`crate::chat::Chat::publish`]).

mod channels;
mod messages;
mod shape;
mod users;

use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::Conn;
use super::call::Call;
use super::reply::{self, ApiError, Reply};
use crate::chat::commands::MAX_ID_LEN;
use crate::chat::gatrix::Directory;

/// What a shard's REST needs for the Gatrix dialect (`gatrix_compat` on).
pub(crate) struct GatrixRest {
    /// `BACKEND_SERVICE_TOKEN`; unset: every such request is refused.
    pub service_token: Option<Arc<str>>,
    /// The process's user directory (authors in frames), kept current by
    /// the sync routes.
    pub directory: Arc<Directory>,
    pub server_id: Arc<str>,
    /// `gatrix_require_known_users`: a request acting as a user the
    /// directory does not know is refused (`known.rs`).
    pub require_known: bool,
}

const API_TOKEN: &str = "x-api-token";
const USER_ID: &str = "x-user-id";

/// Whether a request is the backend's: it names a service token or a user.
pub(super) fn speaks(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(API_TOKEN) || req.headers().contains_key(USER_ID)
}

/// `{success:true, data}` (and `pagination` when given).
pub(super) fn ok(status: StatusCode, data: Value, pagination: Option<Value>) -> Reply {
    let mut body = json!({"success": true, "data": data});
    if let (Some(p), Some(b)) = (pagination, body.as_object_mut()) {
        b.insert("pagination".into(), p);
    }
    reply::json(status, body.to_string())
}

/// `{success:false, error:{code, message}}` with the native status.
fn refused(e: ApiError) -> Reply {
    if e.status.is_server_error() {
        tracing::debug!(code = e.code, message = %e.message, "Gatrix REST request failed");
    }
    let mut body = json!({"success": false, "error": {"code": e.code, "message": e.message}});
    // A refusal's `reason` (and `claim`), as in the native 401.
    if let (Some(t), Some(Value::Object(error))) = (e.token, body.get_mut("error")) {
        t.add_to(error);
    }
    let mut r = reply::json(e.status, body.to_string());
    if e.status == StatusCode::SERVICE_UNAVAILABLE || e.status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    r
}

/// Who the request acts as: `None` for the backend itself (no
/// `X-User-ID`), which only the directory's upkeep and the info routes
/// accept.
fn authenticate(g: &GatrixRest, req: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let header = |name| req.headers().get(name).map(|v| v.as_bytes());
    let Some(given) = header(API_TOKEN) else {
        return Err(ApiError::unauthorized(
            "X-API-Token is required: X-User-ID alone is no authentication",
        ));
    };
    let Some(expected) = g.service_token.as_deref() else {
        return Err(ApiError::unauthorized(
            "the service token API is off: BACKEND_SERVICE_TOKEN is not configured",
        ));
    };
    // Constant time over the content; the length is no secret worth it.
    if !bool::from(given.ct_eq(expected.as_bytes())) {
        return Err(ApiError::unauthorized("invalid X-API-Token"));
    }
    match header(USER_ID) {
        None => Ok(None),
        Some(v) => match std::str::from_utf8(v) {
            Ok(id) if !id.trim().is_empty() && id.len() <= MAX_ID_LEN => {
                Ok(Some(id.trim().to_owned()))
            }
            _ => Err(ApiError::invalid(format!(
                "X-User-ID must be a user id of 1-{MAX_ID_LEN} bytes"
            ))),
        },
    }
}

/// With `gatrix_require_known_users`: the acting user is in the
/// directory (in memory, else one store read), or the request is refused
/// as the original refused it: 401 `User not found in chat system. Please
/// sync user first.` (`reason` `USER_UNKNOWN`), or 503 when the store
/// cannot say (never admitted unchecked).
async fn known(conn: &Conn, g: &GatrixRest, user: &str) -> Result<(), ApiError> {
    use crate::chat::gatrix::known::NotAdmitted;
    if !g.require_known || g.directory.knows(user) {
        return Ok(());
    }
    let (dir, id, generation) = (
        g.directory.clone(),
        user.to_owned(),
        g.directory.generation(),
    );
    let call = Call {
        ctx: &conn.ctx,
        user: String::new(),
    };
    let why = match call.read(move |s| Ok(s.user(&id)?)).await {
        Ok(Some(u)) => {
            dir.put_unless_forgotten(generation, &u);
            return Ok(());
        }
        Ok(None) => NotAdmitted::Unknown,
        Err(_) => NotAdmitted::Unavailable,
    };
    conn.ctx
        .metrics
        .refusals
        .refused(why.refused(), conn.peer, || {
            format!("Gatrix REST: {}", why.message())
        });
    let (code, reason) = why.codes();
    let (status, message) = match why {
        NotAdmitted::Unknown => (
            StatusCode::UNAUTHORIZED,
            "User not found in chat system. Please sync user first.",
        ),
        NotAdmitted::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, why.message()),
    };
    let refusal = crate::auth::TokenRefusal {
        reason,
        claim: None,
    };
    Err(ApiError::new(status, code, message).with_token_refusal(refusal))
}

/// Answers one Gatrix request: never the native error shape.
pub(super) async fn handle(conn: &Conn, g: &GatrixRest, req: Request<Incoming>) -> Reply {
    route(conn, g, req).await.unwrap_or_else(refused)
}

async fn route(conn: &Conn, g: &GatrixRest, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let path = req.uri().path().to_owned();
    let trimmed = path.strip_suffix('/').unwrap_or(&path);
    let Some(rest) = trimmed
        .strip_prefix("/api/v1")
        .filter(|r| r.is_empty() || r.starts_with('/'))
    else {
        return Err(ApiError::not_found("no such path"));
    };
    let segs: Vec<String> = rest
        .split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|d| d.into_owned())
                .map_err(|_| ApiError::invalid("the path is not UTF-8"))
        })
        .collect::<Result<_, _>>()?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let user = authenticate(g, &req).inspect_err(|e| {
        // A wrong service token is an authentication failure, as a bad
        // bearer token is (chat_auth_failures_total{transport="rest"}).
        if e.status == StatusCode::UNAUTHORIZED && req.headers().contains_key(API_TOKEN) {
            conn.ctx.metrics.auth_failures_rest.inc();
        }
    })?;
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_owned);
    let body = match method {
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => {
            super::router::read_body(conn, req).await?
        }
        _ => Bytes::new(),
    };
    // The backend's own calls, with or without a user.
    match (&method, segs.as_slice()) {
        (&Method::GET, []) => return Ok(info(g)),
        (&Method::GET, ["ws", "info"]) => return Ok(ws_info(g)),
        (_, ["users", ..]) if !(method == Method::GET && segs.len() == 1) => {
            // A user's own sync is what makes them known: never refused.
            let syncing = matches!(segs.as_slice(), ["users", "upsert" | "sync-user"]);
            if let Some(u) = user.as_deref().filter(|_| !syncing) {
                known(conn, g, u).await?;
            }
            return users::route(conn, g, user.as_deref(), &method, &segs[1..], &body).await;
        }
        _ => {}
    }
    let Some(user) = user else {
        return Err(ApiError::unauthorized(
            "X-User-ID is required: the user this request acts for",
        ));
    };
    known(conn, g, &user).await?;
    let call = Call {
        ctx: &conn.ctx,
        user,
    };
    let q = query.as_deref();
    match (&method, segs.as_slice()) {
        (&Method::GET, ["users"]) => users::list(&call, q).await,
        (&Method::GET, ["invitations", "received"]) => Ok(ok(
            StatusCode::OK,
            json!([]),
            Some(json!({"page": 1, "limit": 20, "total": 0, "totalPages": 0,
                        "hasNext": false, "hasPrev": false})),
        )),
        (_, ["channels", ..]) => channels::route(&call, g, &method, &segs[1..], q, &body).await,
        (_, ["messages", ..]) => messages::route(&call, g, &method, &segs[1..], q, &body).await,
        _ => Err(ApiError::not_found("no such path")),
    }
}

/// `GET /api/v1/`: what the backend's health check reads (`success`), with
/// the original's `timestamp` and `serverId` beside `data`.
fn info(g: &GatrixRest) -> Reply {
    let body = json!({
        "success": true,
        "data": {
            "name": "gatrix-chat",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoints": {
                "channels": "/api/v1/channels",
                "messages": "/api/v1/messages",
                "invitations": "/api/v1/invitations",
                "users": "/api/v1/users",
                "websocket": "/socket.io",
                "health": "/health",
                "metrics": "/metrics",
            },
        },
        "timestamp": crate::chat::message::now(),
        "serverId": &*g.server_id,
    });
    reply::json(StatusCode::OK, body.to_string())
}

/// `GET /ws/info` (no authentication, no envelope, as the original's):
/// which server answers, and where its Socket.IO endpoint is.
pub(super) fn ws_info_plain(g: &GatrixRest) -> Reply {
    let body = json!({"serverId": &*g.server_id, "timestamp": crate::chat::message::now(),
                      "path": "/socket.io", "transports": ["websocket", "polling"]});
    reply::json(StatusCode::OK, body.to_string())
}

/// `GET /api/v1/ws/info`: where the Socket.IO endpoint is.
fn ws_info(g: &GatrixRest) -> Reply {
    ok(
        StatusCode::OK,
        json!({"path": "/socket.io", "transports": ["websocket", "polling"],
               "serverId": &*g.server_id}),
        None,
    )
}
