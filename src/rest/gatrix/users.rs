//! `/api/v1/users`: the directory the Gatrix backend keeps (issue 15 item
//! 4), through `chat-server-service.ts` with its service token and no
//! user (upsert, sync-user, sync-users, check, one user, status, delete),
//! and the list its users read (`GET /users`, with `X-User-ID`).
//! Every change updates this process's
//! [`Directory`](crate::chat::gatrix::Directory) and, with Redis, makes the
//! other instances forget the user (`cluster::Event::User`).

use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::super::call::{self, Call, Field};
use super::super::reply::{ApiError, Reply};
use super::super::{Conn, context::Context};
use super::{GatrixRest, ok, shape};
use crate::chat::commands::MAX_ID_LEN;
use crate::chat::message::now;
use crate::store::UserRecord;

/// Longest name, username, email or custom status kept.
const MAX_TEXT_CHARS: usize = 255;
/// Longest avatar URL kept.
const MAX_URL_CHARS: usize = 2048;
/// Largest page of `GET /users`.
const MAX_PAGE: usize = 100;
const STATUSES: &[&str] = &["online", "away", "busy", "offline"];

/// Which directory changes a request may make. The backend itself (no
/// `X-User-ID`) makes any; a request on behalf of a user (the proxy
/// forwards its users' calls) changes only that user: the original let any
/// logged-in user rewrite or delete anyone through the proxy.
fn may_change(acting: Option<&str>, target: &str) -> Result<(), ApiError> {
    match acting {
        Some(me) if me != target => Err(ApiError::forbidden(
            "a user changes only their own directory entry",
        )),
        _ => Ok(()),
    }
}

pub(super) async fn route(
    conn: &Conn,
    g: &GatrixRest,
    acting: Option<&str>,
    method: &Method,
    segs: &[&str],
    body: &[u8],
) -> Result<Reply, ApiError> {
    let ctx = &conn.ctx;
    // The backend acting for itself: no user.
    let call = Call {
        ctx,
        user: String::new(),
    };
    match (method, segs) {
        (&Method::POST, ["upsert" | "sync-user"]) => {
            let u = parse_user(&call::object(body)?)?;
            may_change(acting, &u.id)?;
            upsert(&call, g, vec![u.clone()]).await?;
            let user = read(&call, u.id).await?;
            Ok(ok(
                StatusCode::OK,
                json!({"user": user.as_ref().map(shape::user),
                       "message": "User information updated successfully"}),
                None,
            ))
        }
        (&Method::POST, ["sync-users"]) => {
            if acting.is_some() {
                return Err(ApiError::forbidden(
                    "only the backend itself syncs users in bulk (no X-User-ID)",
                ));
            }
            let list = match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(mut m)) => m.remove("users"),
                Ok(v @ Value::Array(_)) => Some(v),
                _ => None,
            };
            let Some(Value::Array(items)) = list else {
                return Err(ApiError::invalid("users must be a non-empty array"));
            };
            if items.is_empty() {
                return Err(ApiError::invalid("users must be a non-empty array"));
            }
            // Bounded by the body's size (REST_MAX_BODY_BYTES).
            let users = items
                .iter()
                .map(|v| match v {
                    Value::Object(m) => parse_user(m),
                    _ => Err(ApiError::invalid("every user must be an object")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let n = users.len();
            upsert(&call, g, users).await?;
            Ok(ok(
                StatusCode::OK,
                json!({"processedCount": n,
                       "message": format!("{n} users synchronized successfully")}),
                None,
            ))
        }
        (&Method::GET, ["check", id]) => {
            let id = user_id(id)?;
            let exists = read(&call, id.clone()).await?.is_some();
            Ok(ok(
                StatusCode::OK,
                json!({"exists": exists, "userId": id}),
                None,
            ))
        }
        (&Method::GET, [id]) => match read(&call, user_id(id)?).await? {
            Some(u) => Ok(ok(StatusCode::OK, json!({"user": shape::user(&u)}), None)),
            None => Err(ApiError::not_found("User not found")),
        },
        (&Method::PUT, [id, "status"]) => {
            let id = user_id(id)?;
            may_change(acting, &id)?;
            let p = call::object(body)?;
            let status = match p.get("status") {
                Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => s.clone(),
                _ => {
                    return Err(ApiError::invalid(
                        "status must be online, away, busy or offline",
                    ));
                }
            };
            let custom = text(&p, "customStatus", MAX_TEXT_CHARS)?;
            let key = id.clone();
            let found = call
                .write(move |s| Ok(s.set_user_status(&key, &status, custom.as_deref(), &now())?))
                .await?;
            if !found {
                return Err(ApiError::not_found("User not found"));
            }
            forget_everywhere(ctx, g, &id);
            Ok(ok(
                StatusCode::OK,
                json!({"message": "User status updated successfully"}),
                None,
            ))
        }
        (&Method::DELETE, [id]) => {
            let id = user_id(id)?;
            may_change(acting, &id)?;
            let key = id.clone();
            let found = call.write(move |s| Ok(s.delete_user(&key)?)).await?;
            if !found {
                return Err(ApiError::not_found("User not found"));
            }
            forget_everywhere(ctx, g, &id);
            Ok(ok(
                StatusCode::OK,
                json!({"message": "User deleted successfully"}),
                None,
            ))
        }
        _ => Err(ApiError::not_found("no such path")),
    }
}

/// `GET /api/v1/users?search=&page=&limit=`: `data` is the list, as the
/// backend's `getUsers` returns it (`response.data.data`).
pub(super) async fn list(call: &Call<'_>, query: Option<&str>) -> Result<Reply, ApiError> {
    let (page, limit) = shape::page(query, MAX_PAGE);
    let search = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "search")
        .map(|(_, v)| v.into_owned())
        .filter(|s| !s.is_empty());
    let offset = (page - 1).saturating_mul(limit);
    let (users, total) = call
        .read(move |s| Ok(s.users_page(search.as_deref(), offset, limit)?))
        .await?;
    let data: Vec<Value> = users.iter().map(shape::user).collect();
    Ok(ok(
        StatusCode::OK,
        Value::Array(data),
        Some(shape::pagination(page, limit, total)),
    ))
}

/// A user id from a path: the backend's, a string of at most 128 bytes.
fn user_id(s: &str) -> Result<String, ApiError> {
    if s.is_empty() || s.len() > MAX_ID_LEN {
        return Err(ApiError::invalid(format!(
            "a user id is 1-{MAX_ID_LEN} bytes"
        )));
    }
    Ok(s.to_owned())
}

fn text(p: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, ApiError> {
    Ok(match call::text(p, key, max)? {
        Field::Text(t) => Some(t),
        Field::Absent | Field::Null => None,
    })
}

/// One user as the backend sends it (`UserData`): `id` (a string, or a
/// number in older builds) and `username` required.
fn parse_user(p: &Map<String, Value>) -> Result<UserRecord, ApiError> {
    let id = match p.get("id") {
        Some(Value::String(s)) => user_id(s)?,
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => return Err(ApiError::invalid("id and username are required")),
    };
    let Some(username) = text(p, "username", MAX_TEXT_CHARS)?.filter(|u| !u.is_empty()) else {
        return Err(ApiError::invalid("id and username are required"));
    };
    let avatar = match text(p, "avatarUrl", MAX_URL_CHARS)? {
        Some(a) => Some(a),
        None => text(p, "avatar", MAX_URL_CHARS)?,
    };
    let status = match text(p, "status", 16)? {
        Some(s) if STATUSES.contains(&s.as_str()) => Some(s),
        // The backend's own statuses (active, ...) are no chat status.
        _ => None,
    };
    let at = now();
    Ok(UserRecord {
        id,
        username,
        name: text(p, "name", MAX_TEXT_CHARS)?,
        email: text(p, "email", MAX_TEXT_CHARS)?,
        avatar_url: avatar,
        status,
        custom_status: text(p, "customStatus", MAX_TEXT_CHARS)?,
        created_at: at.clone(),
        updated_at: at,
    })
}

async fn upsert(call: &Call<'_>, g: &GatrixRest, users: Vec<UserRecord>) -> Result<(), ApiError> {
    let stored = users.clone();
    call.write(move |s| Ok(s.upsert_users(&stored)?)).await?;
    for u in &users {
        g.directory.put(u);
        call.ctx.chat.user_changed(&u.id);
    }
    Ok(())
}

/// A changed user: out of this process's directory (the next CONNECT or
/// send reads it again) and, with Redis, the other instances'.
fn forget_everywhere(ctx: &Context, g: &GatrixRest, id: &str) {
    g.directory.forget(id);
    ctx.chat.user_changed(id);
}

async fn read(call: &Call<'_>, id: String) -> Result<Option<UserRecord>, ApiError> {
    call.read(move |s| Ok(s.user(&id)?)).await
}
