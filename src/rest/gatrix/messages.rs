//! Messages in the Gatrix dialect: a channel's page (`limit`, `before` /
//! `after` as message ids; `{messages, hasMore, total}`), sends (through
//! [`crate::chat::Chat::publish`], as the native REST and `send_message`:
//! broadcast as `message_created` to Gatrix sockets, `message` to native
//! ones), read marks, and `/messages/...`: one message, edits and
//! deletions (the native paths, broadcast the same way), batch deletion.

use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::super::call::{self, Call};
use super::super::channels::readable;
use super::super::messages::{self as native, MAX_LIMIT, edited_content};
use super::super::reply::{ApiError, Reply};
use super::channels::{by_number, channel};
use super::{GatrixRest, ok, shape};
use crate::chat::commands::{self, Command};
use crate::chat::message::now;
use crate::store::{ChannelRecord, MemberRole, MessageRecord, Page, Pin};

/// Most ids in one `DELETE /messages/batch`.
const MAX_BATCH: usize = 100;

pub(super) async fn route(
    call: &Call<'_>,
    g: &GatrixRest,
    method: &Method,
    segs: &[&str],
    query: Option<&str>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    match (method, segs) {
        (&Method::GET, ["channel", id]) => {
            let c = channel(call, id).await?;
            history(call, g, c, query).await
        }
        (&Method::GET, ["thread", id]) => thread(call, g, id, query).await,
        (&Method::POST, []) => {
            let p = call::object(body)?;
            let id = shape::number(p.get("channelId"))
                .map(|n| n.to_string())
                .ok_or_else(|| ApiError::invalid("channelId is required"))?;
            let c = channel(call, &id).await?;
            send(call, g, &c, &p).await
        }
        (&Method::DELETE, ["batch"]) => {
            let p = call::object(body)?;
            let ids: Vec<u64> = match p.get("messageIds") {
                Some(Value::Array(a)) if !a.is_empty() && a.len() <= MAX_BATCH => a
                    .iter()
                    .map(|v| shape::number(Some(v)))
                    .collect::<Option<_>>()
                    .ok_or_else(|| ApiError::invalid("messageIds must be message ids"))?,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "messageIds must be 1-{MAX_BATCH} message ids"
                    )));
                }
            };
            let mut deleted = Vec::new();
            for id in ids {
                native::delete_record(call, id).await?;
                deleted.push(id);
            }
            Ok(ok(
                StatusCode::OK,
                json!({"deletedCount": deleted.len(), "messageIds": deleted}),
                None,
            ))
        }
        (&Method::GET, [id]) => {
            let id = call::message_id(id)?;
            let user = call.user.clone();
            let (m, num) = call
                .read(move |s| {
                    let m = s
                        .message(id)?
                        .ok_or_else(|| ApiError::not_found("Message not found"))?;
                    let c = readable(s, &m.channel_id, &user)?;
                    Ok((m, c.num))
                })
                .await?;
            Ok(ok(
                StatusCode::OK,
                shape::message(&m, num, &g.directory),
                None,
            ))
        }
        (&Method::PUT, [id]) => {
            let id = call::message_id(id)?;
            let content = edited_content(&call::object(body)?, call.ctx.max_message_length)?;
            let m = native::edit_record(call, id, content).await?;
            let num = num_of(call, &m).await?;
            Ok(ok(
                StatusCode::OK,
                shape::message(&m, num, &g.directory),
                None,
            ))
        }
        (&Method::PATCH, [id, "pin"]) => pin(call, g, id, body).await,
        (&Method::DELETE, [id]) => {
            let id = call::message_id(id)?;
            native::delete_record(call, id).await?;
            Ok(ok(
                StatusCode::OK,
                json!({"message": "Message deleted successfully", "messageId": id}),
                None,
            ))
        }
        _ => Err(ApiError::not_found("no such path")),
    }
}

async fn num_of(call: &Call<'_>, m: &MessageRecord) -> Result<u64, ApiError> {
    let channel = m.channel_id.clone();
    call.read(move |s| Ok(s.channel(&channel)?.map_or(0, |c| c.num)))
        .await
}

/// `?limit=&before=&after=` with message ids.
fn page_query(query: Option<&str>) -> Result<(Option<u64>, Option<u64>, usize), ApiError> {
    let (mut before, mut after, mut limit) = (None, None, 50usize);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let id = || {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid(format!("{k} must be a message id")))
        };
        match &*k {
            "before" => before = Some(id()?),
            "after" => after = Some(id()?),
            "limit" => limit = v.parse().ok().filter(|&l| l >= 1).unwrap_or(50),
            _ => {}
        }
    }
    if before.is_some() && after.is_some() {
        return Err(ApiError::invalid("give before or after, not both"));
    }
    Ok((before, after, limit.min(MAX_LIMIT)))
}

/// A channel's messages, ascending; `total` is the channel's last seq (an
/// upper bound: deleted messages count).
pub(super) async fn history(
    call: &Call<'_>,
    g: &GatrixRest,
    c: ChannelRecord,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let (before, after, limit) = page_query(query)?;
    let (channel, dir) = (c.id.clone(), g.directory.clone());
    let (messages, more, total) = call
        .read(move |s| {
            // A message id names its seq in its channel.
            let seq_of = |s: &mut dyn crate::store::Store, id: u64| match s.message(id)? {
                Some(m) if m.channel_id == channel => Ok(m.seq),
                _ => Err(ApiError::invalid(
                    "before/after is no message of this channel",
                )),
            };
            let page = match (before, after) {
                (Some(b), _) => Page::Before(seq_of(s, b)?),
                (_, Some(a)) => Page::After(seq_of(s, a)?),
                _ => Page::Latest,
            };
            let (messages, more) = s.history(&channel, page, limit)?;
            // The page's authors the directory has not asked about: read
            // here, once each, so that the page carries their names.
            let mut authors: Vec<&str> = messages.iter().map(|m| m.user_id.as_str()).collect();
            authors.sort_unstable();
            authors.dedup();
            for id in authors.into_iter().filter(|id| !dir.contains(id)) {
                dir.loaded(id, s.user(id)?.as_ref());
            }
            Ok((messages, more, s.last_seq(&channel)?))
        })
        .await?;
    let list: Vec<Value> = messages
        .iter()
        .map(|m| shape::message(m, c.num, &g.directory))
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!({"messages": list, "hasMore": more, "total": total}),
        None,
    ))
}

/// `GET /messages/thread/:threadId?page=&limit=`: the replies in the
/// thread headed by that message, oldest first, paged as the original
/// pages them (page from 1, 20 by default); 404 when the head is no live
/// message, 403 when its channel is not the caller's to read.
async fn thread(
    call: &Call<'_>,
    g: &GatrixRest,
    id: &str,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let head = call::message_id(id).map_err(|_| ApiError::invalid("Invalid thread ID"))?;
    let (page, limit) = shape::page(query, MAX_LIMIT);
    let offset = (page - 1).saturating_mul(limit);
    let (user, dir) = (call.user.clone(), g.directory.clone());
    let (replies, total, num) = call
        .read(move |s| {
            let m = s
                .message(head)?
                .ok_or_else(|| ApiError::not_found("Thread not found"))?;
            let c = readable(s, &m.channel_id, &user)?;
            let (replies, total) = s.thread(head, offset, limit)?;
            // Authors as a channel's page reads them: once each.
            let mut authors: Vec<&str> = replies.iter().map(|m| m.user_id.as_str()).collect();
            authors.sort_unstable();
            authors.dedup();
            for id in authors.into_iter().filter(|id| !dir.contains(id)) {
                dir.loaded(id, s.user(id)?.as_ref());
            }
            Ok((replies, total, c.num))
        })
        .await?;
    let list: Vec<Value> = replies
        .iter()
        .map(|m| shape::message(m, num, &g.directory))
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!(list),
        Some(shape::pagination(page, limit, total)),
    ))
}

/// A send `{content, contentType?|type?, replyToMessageId?,
/// clientMessageId?, threadId?}`: the native send's command and path.
pub(super) async fn send(
    call: &Call<'_>,
    g: &GatrixRest,
    c: &ChannelRecord,
    p: &Map<String, Value>,
) -> Result<Reply, ApiError> {
    let mut cmd = Map::new();
    cmd.insert("channelId".into(), c.id.clone().into());
    if let Some(v) = p.get("content") {
        cmd.insert("content".into(), v.clone());
    }
    if let Some(t) = p.get("contentType").or_else(|| p.get("type")) {
        cmd.insert("type".into(), t.clone());
    }
    if let Some(r) = shape::number(p.get("replyToMessageId").or_else(|| p.get("replyToId"))) {
        cmd.insert("replyTo".into(), r.to_string().into());
    }
    if let Some(v) = p.get("clientMessageId") {
        cmd.insert("clientMessageId".into(), v.clone());
    }
    // A reply in a thread (a number here, as the frontend sends it): the
    // native command reads it, the commit checks it.
    if let Some(v) = p.get("threadId") {
        cmd.insert("threadId".into(), v.clone());
    }
    let max = call.ctx.max_message_length;
    let Command::Send(m) = commands::parse("send_message", &[Value::Object(cmd)], max)? else {
        return Err(ApiError::internal());
    };
    ensure_author_known(call, g).await?;
    let stored = call
        .ctx
        .chat
        .publish(&call.user, m)
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))??;
    // Who writes has read the channel up to their message: their own send
    // is never unread to them. The message is stored either way; a failed
    // mark only leaves it counted.
    let (channel, user, seq, id) = (
        stored.channel_id.clone(),
        call.user.clone(),
        stored.seq,
        stored.id,
    );
    let marked = call
        .write(move |s| Ok(s.mark_read(&channel, &user, seq, Some(id), &now())?))
        .await;
    if let Err(e) = marked {
        tracing::debug!(code = e.code, "the sender's read mark did not move");
    }
    Ok(ok(
        StatusCode::CREATED,
        shape::message(&stored, c.num, &g.directory),
        None,
    ))
}

/// The sender's name in the directory before the message's frame is
/// built: one store read when the directory does not have them.
async fn ensure_author_known(call: &Call<'_>, g: &GatrixRest) -> Result<(), ApiError> {
    if g.directory.contains(&call.user) {
        return Ok(());
    }
    let user = call.user.clone();
    if let Some(u) = call.read(move |s| Ok(s.user(&user)?)).await? {
        g.directory.put(&u);
    }
    Ok(())
}

/// `POST /channels/:id/read` `{messageId?}`: the caller's read mark moves
/// forward to that message (the latest without one).
pub(super) async fn mark_read(call: &Call<'_>, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let given = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        shape::number(call::object(body)?.get("messageId"))
    };
    let (key, user, at) = (id.to_owned(), call.user.clone(), now());
    let (num, message_id) = call
        .write(move |s| {
            let native = by_number(s, &key)?;
            let c = s
                .channel(&native)?
                .ok_or_else(|| ApiError::not_found("Channel not found"))?;
            let (seq, message_id) = match given {
                Some(mid) => match s.message(mid)? {
                    Some(m) if m.channel_id == native => (m.seq, Some(mid)),
                    _ => return Err(ApiError::invalid("messageId is no message of this channel")),
                },
                None => (s.last_seq(&native)?, None),
            };
            if !s.mark_read(&native, &user, seq, message_id, &at)? {
                return Err(ApiError::forbidden("You are not a member of this channel"));
            }
            Ok((c.num, message_id))
        })
        .await?;
    Ok(ok(
        StatusCode::OK,
        json!({"channelId": num, "userId": call.user, "messageId": message_id,
               "timestamp": now()}),
        None,
    ))
}

/// `PATCH /messages/:id/pin`: the original's toggle (no body), or
/// `{isPinned}` to set it either way (a retry then changes nothing). The
/// channel's owner or an admin only, as the original's check (its
/// `moderator` role does not exist here). Broadcast as `message_updated`
/// (both dialects; the original told nobody, and others' views went
/// stale); the answer carries the message.
async fn pin(call: &Call<'_>, g: &GatrixRest, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let id = call::message_id(id)?;
    let wanted = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match call::object(body)?.get("isPinned") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(ApiError::invalid("isPinned must be true or false")),
        }
    };
    let (user, at) = (call.user.clone(), now());
    let (m, num, changed) = call
        .write(move |s| {
            let gone = || ApiError::not_found("Message not found");
            let m = s.message(id)?.ok_or_else(gone)?;
            let c = s.channel(&m.channel_id)?.ok_or_else(gone)?;
            if c.owner_id != user
                && !s
                    .member_role(&c.id, &user)?
                    .is_some_and(MemberRole::manages)
            {
                return Err(ApiError::forbidden(
                    "no permission to pin: only the channel's owner or an admin may",
                ));
            }
            let pinned = wanted.unwrap_or(m.pinned.is_none());
            let pin = pinned.then(|| Pin {
                at,
                by: Some(user.clone()),
            });
            if pinned == m.pinned.is_some() {
                return Ok((m, c.num, false)); // already so: keep who pinned it, and when
            }
            Ok((s.set_pin(id, pin.as_ref())?.ok_or_else(gone)?, c.num, true))
        })
        .await?;
    if changed {
        call.ctx.chat.emit_to_channel(
            &m.channel_id,
            "message_updated",
            &crate::chat::json::message(&m),
        );
    }
    let body = json!({
        "success": true,
        "data": shape::message(&m, num, &g.directory),
        "message": "Message pin status updated successfully",
    });
    Ok(super::super::reply::json(StatusCode::OK, body.to_string()))
}
