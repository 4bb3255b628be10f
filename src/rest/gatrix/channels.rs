//! `/api/v1/channels` in the Gatrix dialect: the caller's channels
//! (`/channels/my`), creation, one channel, joining, leaving, marking
//! read, and a channel's messages. Channels are named by their number
//! (`channels.num`); the checks and writes are the native handlers'.

use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::super::call::{self, Call};
use super::super::channels::{self as native, NewChannel, readable};
use super::super::reply::{ApiError, Reply};
use super::{GatrixRest, messages, ok, shape};
use crate::chat::ChatError;
use crate::chat::message::now;
use crate::store::{ChannelRecord, ChannelType, MemberRole, Store};

/// Largest page of `/channels/my`.
const MAX_PAGE: usize = 100;
/// The largest `maxMembers`, as the original's validation has it.
const MAX_MEMBERS_LIMIT: u64 = 10_000;

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
        (&Method::PUT, [id]) => update(call, id, body).await,
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
                let role = s.member_role(&c.id, &user)?.unwrap_or(MemberRole::Member);
                rows.push((c, members, read, last, role));
            }
            Ok((rows, total))
        })
        .await?;
    let data: Vec<Value> = rows
        .iter()
        .map(|(c, members, read, last, role)| {
            let read = read.clone().unwrap_or_default();
            let you = shape::ForCaller {
                member_count: Some(*members),
                role: Some(role.as_str()),
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
/// maxMembers?}`: the native creation, with the settings and the member
/// limit kept.
async fn create(call: &Call<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let mut p = call::object(body)?;
    let settings = settings_of(&p)?.flatten();
    let max_members = max_members_of(&p)?.flatten();
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
    let mut new: NewChannel = native::parse_new(&body, &call.user)?;
    if let Some(max) = max_members
        && new.members.len() + 1 > max as usize
    {
        return Err(ApiError::invalid(format!(
            "maxMembers is {max}: fewer than the creator and memberIds"
        )));
    }
    (new.settings, new.max_members) = (settings, max_members);
    let c = native::create_record(call, new).await?;
    let count = member_count(call, &c.id).await?;
    let you = shape::ForCaller {
        member_count: Some(count),
        role: Some("owner"),
        ..Default::default()
    };
    Ok(ok(StatusCode::CREATED, shape::channel(&c, &you), None))
}

/// `PUT /channels/:id` `{name?, description?, settings?, maxMembers?}`:
/// the owner or an admin (the original's check); `settings: null` and
/// `maxMembers: null` clear them. A limit below the current member count
/// stands: it refuses joins until members leave, as a lowered limit does.
async fn update(call: &Call<'_>, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let c = channel(call, id).await?;
    let p = call::object(body)?;
    let change = native::parse_change(&p)?;
    let (settings, max_members) = (settings_of(&p)?, max_members_of(&p)?);
    if change.is_empty() && settings.is_none() && max_members.is_none() {
        return Err(ApiError::invalid(
            "give name, description, settings or maxMembers to change",
        ));
    }
    let c = native::change_record(call, c.id, change, move |s, key| {
        if settings.is_some() || max_members.is_some() {
            let settings = settings.as_ref().map(|s| s.as_deref());
            s.update_channel_settings(key, settings, max_members, &now())?;
        }
        Ok(())
    })
    .await?;
    let count = member_count(call, &c.id).await?;
    let you = shape::ForCaller {
        member_count: Some(count),
        ..Default::default()
    };
    Ok(ok(StatusCode::OK, shape::channel(&c, &you), None))
}

/// `settings`: absent (`None`), `null` (`Some(None)`) or an object, kept as
/// its JSON text.
fn settings_of(p: &Map<String, Value>) -> Result<Option<Option<String>>, ApiError> {
    match p.get("settings") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v @ Value::Object(_)) => Ok(Some(Some(v.to_string()))),
        Some(_) => Err(ApiError::invalid("settings must be an object")),
    }
}

/// `maxMembers`: absent, `null`, or the original's range.
fn max_members_of(p: &Map<String, Value>) -> Result<Option<Option<u32>>, ApiError> {
    match p.get("maxMembers") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => match v.as_u64() {
            Some(n @ 1..=MAX_MEMBERS_LIMIT) => Ok(Some(Some(n as u32))),
            _ => Err(ApiError::invalid(format!(
                "maxMembers must be an integer from 1 to {MAX_MEMBERS_LIMIT}"
            ))),
        },
    }
}

/// `POST /channels/:id/join`: a public channel only (private and direct
/// ones are joined by invitation or at creation), while it has room.
async fn join(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let (key, user) = (id.to_owned(), call.user.clone());
    let (channel, added) = call
        .write(move |s| {
            let native = by_number(s, &key)?;
            let c = readable(s, &native, &user)?;
            let members = s.member_ids(&native)?;
            let member = members.contains(&user);
            if c.kind != ChannelType::Public && !member {
                return Err(ApiError::forbidden("this channel is for its members only"));
            }
            // Checked on the writer, in the same job as the insert: two
            // joins through this instance cannot both take the last place.
            if let Some(max) = c.max_members
                && !member
                && members.len() >= max as usize
            {
                return Err(ApiError::forbidden(ChatError::channel_full(max).message));
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
