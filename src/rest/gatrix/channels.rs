//! `/api/v1/channels` in the Gatrix dialect: the caller's channels
//! (`/channels/my`), creation, one channel, joining, leaving, marking
//! read, and a channel's messages. Channels are named by their number
//! (`channels.num`); the checks and writes are the native handlers'.

use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::super::call::{self, Call};
use super::super::channels::{self as native, NewChannel, readable};
use super::super::reply::{ApiError, Reply};
use super::{GatrixRest, messages, ok, shape};
use crate::chat::message::now;
use crate::store::{ChannelRecord, ChannelType, Store};

/// Largest page of `/channels/my`.
const MAX_PAGE: usize = 100;

pub(super) async fn route(
    call: &Call<'_>,
    g: &GatrixRest,
    method: &Method,
    segs: &[&str],
    query: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    match (method, segs) {
        (&Method::GET, [] | ["my"]) => mine(call, query).await,
        (&Method::POST, []) => create(call, body).await,
        (&Method::GET, [id]) => {
            let c = channel(call, id).await?;
            let count = member_count(call, &c.id).await?;
            let you = shape::ForCaller {
                member_count: Some(count),
                ..Default::default()
            };
            Ok(ok(StatusCode::OK, shape::channel(&c, &you), None))
        }
        (&Method::PUT, [id]) => {
            let c = channel(call, id).await?;
            let p = call::object(body)?;
            let c = native::update_record(call, c.id, &p).await?;
            Ok(ok(
                StatusCode::OK,
                shape::channel(&c, &Default::default()),
                None,
            ))
        }
        (&Method::DELETE, [id]) => {
            let c = channel(call, id).await?;
            native::delete_record(call, c.id).await?;
            Ok(ok(
                StatusCode::OK,
                json!({"message": "Channel deleted successfully"}),
                None,
            ))
        }
        // `history` is the frontend's older-pages call (`before`, `limit`).
        (&Method::GET, [id, "messages" | "history"]) => {
            let c = channel(call, id).await?;
            messages::history(call, g, c, query).await
        }
        (&Method::POST, [id, "messages"]) => {
            let c = channel(call, id).await?;
            messages::send(call, g, &c, &call::object(body)?).await
        }
        (&Method::POST, [id, "join"]) => join(call, id).await,
        (&Method::POST, [id, "leave"]) => leave(call, id).await,
        (&Method::POST, [id, "read"]) => messages::mark_read(call, id, body).await,
        _ => Err(ApiError::not_found("no such path")),
    }
}

/// A channel named by its number (or, failing that, its native id).
pub(super) async fn channel(call: &Call<'_>, id: &str) -> Result<ChannelRecord, ApiError> {
    let (id, user) = (id.to_owned(), call.user.clone());
    call.read(move |s| {
        let native = by_number(s, &id)?;
        readable(s, &native, &user)
    })
    .await
}

/// The native id of the channel a path names.
pub(super) fn by_number(s: &mut dyn Store, id: &str) -> Result<String, ApiError> {
    match id.parse::<u64>() {
        Ok(num) => s
            .channel_id_by_num(num)?
            .ok_or_else(|| ApiError::not_found("Channel not found")),
        Err(_) => Ok(id.to_owned()),
    }
}

async fn member_count(call: &Call<'_>, channel: &str) -> Result<usize, ApiError> {
    let channel = channel.to_owned();
    call.read(move |s| Ok(s.member_ids(&channel)?.len())).await
}

/// `GET /channels/my?page=&limit=`: `data` the channels, each with the
/// caller's role, unread count and last read, and its member count;
/// `pagination` as the original's.
async fn mine(call: &Call<'_>, query: Option<&str>) -> Result<Reply, ApiError> {
    let (page, limit) = shape::page(query, MAX_PAGE);
    let user = call.user.clone();
    let (rows, total) = call
        .read(move |s| {
            let all = s.channels_of(&user)?;
            let total = all.len() as u64;
            let mut rows = Vec::new();
            for c in all
                .into_iter()
                .skip((page - 1).saturating_mul(limit))
                .take(limit)
            {
                let members = s.member_ids(&c.id)?.len();
                let read = s.read_state(&c.id, &user)?;
                let last = s.last_seq(&c.id)?;
                rows.push((c, members, read, last));
            }
            Ok((rows, total))
        })
        .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|(c, members, read, last)| {
            let read = read.clone().unwrap_or_default();
            let you = shape::ForCaller {
                member_count: Some(*members),
                role: Some(if c.owner_id == call.user {
                    "owner"
                } else {
                    "member"
                }),
                unread_count: Some(last.saturating_sub(read.seq)),
                last_read_at: read.at,
                last_read_message_id: read.message_id,
            };
            shape::channel(c, &you)
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        Value::Array(data),
        Some(shape::pagination(page, limit, total)),
    ))
}

/// `POST /channels` `{name, description?, type, memberIds?, settings?,
/// maxMembers?}`: the native creation; `settings` and `maxMembers` are
/// accepted and not kept (no such limits here).
async fn create(call: &Call<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let mut p = call::object(body)?;
    if !p.contains_key("type") {
        p.insert("type".into(), "public".into());
    }
    let members: Vec<Value> = match p.remove("memberIds") {
        Some(Value::Array(ids)) => ids
            .into_iter()
            .map(|v| match v {
                Value::Number(n) => Value::String(n.to_string()),
                other => other,
            })
            .collect(),
        _ => Vec::new(),
    };
    p.insert("members".into(), Value::Array(members));
    let body = serde_json::to_vec(&Value::Object(p)).map_err(|_| ApiError::internal())?;
    let new: NewChannel = native::parse_new(&body, &call.user)?;
    let c = native::create_record(call, new).await?;
    let count = member_count(call, &c.id).await?;
    let you = shape::ForCaller {
        member_count: Some(count),
        role: Some("owner"),
        ..Default::default()
    };
    Ok(ok(StatusCode::CREATED, shape::channel(&c, &you), None))
}

/// `POST /channels/:id/join`: a public channel only (private and direct
/// ones are joined by invitation or at creation).
async fn join(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let (key, user) = (id.to_owned(), call.user.clone());
    let (channel, added) = call
        .write(move |s| {
            let native = by_number(s, &key)?;
            let c = readable(s, &native, &user)?;
            if c.kind != ChannelType::Public && !s.member_ids(&native)?.contains(&user) {
                return Err(ApiError::forbidden("this channel is for its members only"));
            }
            Ok((native.clone(), s.add_member(&native, &user, &now())?))
        })
        .await?;
    if added {
        // The owner's cached members include the new one before answering.
        let _ = call.ctx.chat.invalidate_channel(&channel).await;
    }
    let message = if added {
        "Successfully joined channel"
    } else {
        "Already a member of this channel"
    };
    Ok(ok(StatusCode::OK, json!({ "message": message }), None))
}

/// `POST /channels/:id/leave`: the owner stays (delete the channel
/// instead).
async fn leave(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let (key, user) = (id.to_owned(), call.user.clone());
    let channel = call
        .write(move |s| {
            let native = by_number(s, &key)?;
            let c = s
                .channel(&native)?
                .ok_or_else(|| ApiError::not_found("Channel not found"))?;
            if !s.member_ids(&native)?.contains(&user) {
                return Err(ApiError::invalid("Not a member of this channel"));
            }
            if c.owner_id == user {
                return Err(ApiError::forbidden(
                    "the owner cannot leave; delete the channel instead",
                ));
            }
            s.remove_member(&native, &user)?;
            Ok(native)
        })
        .await?;
    let _ = call.ctx.chat.invalidate_channel(&channel).await;
    Ok(ok(
        StatusCode::OK,
        json!({"message": "Successfully left channel"}),
        None,
    ))
}
