//! `/api/v1/messages`: history pages, sends, and one message's read, edit
//! and delete.
//!
//! Reading follows the channel's visibility ([`super::channels::readable`]):
//! public history is open to anyone authenticated (anyone may join a public
//! channel and read it there anyway), private and direct history to
//! members. A send goes through the channel's owner exactly like the
//! WebSocket `send_message` ([`crate::chat::Chat::publish`]): the same
//! validation code, membership check, dedupe, sequencing and broadcast.
//! Edits and deletions are written on the store writer with the
//! permission check in the same job, then broadcast to the channel's
//! subscribers.

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::call::{self, Call};
use super::channels::readable;
use super::reply::{self, ApiError, Reply};
use crate::chat::commands::{self, Command};
use crate::chat::json::message as message_json;
use crate::chat::message::now;
use crate::store::{MemberRole, MessageRecord, Page};

pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Larger `limit`s are capped to this, not refused: a client asking for
/// "everything" gets the largest page and `hasMore`.
pub(crate) const MAX_LIMIT: usize = 100;

fn message_reply(status: StatusCode, m: &MessageRecord) -> Reply {
    reply::wrapped(status, "message", &message_json(m))
}

/// `?before=&after=&limit=` of a history request.
pub(crate) fn parse_page(query: Option<&str>) -> Result<(Page, usize), ApiError> {
    let (mut before, mut after, mut limit) = (None, None, DEFAULT_LIMIT);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "before" => before = Some(seq(&v, "before")?),
            "after" => after = Some(seq(&v, "after")?),
            "limit" => {
                limit = match v.parse::<usize>() {
                    Ok(n) if n >= 1 => n.min(MAX_LIMIT),
                    // Past usize: certainly more than the cap.
                    Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => MAX_LIMIT,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "limit must be a whole number from 1 (at most {MAX_LIMIT} are returned)"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    let page = match (before, after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give before or after, not both"));
        }
        // Every stored seq is below MAX_SEQ (the stores keep a signed
        // 64-bit integer): everything is older than a larger `before`, so
        // it is the latest page, and nothing is newer than a larger
        // `after`. Passed on as they are, such values wrapped to negative
        // in the store and paged the wrong way.
        (Some(b), None) if b > MAX_SEQ => Page::Latest,
        (Some(b), None) => Page::Before(b),
        (None, Some(a)) => Page::After(a.min(MAX_SEQ)),
        (None, None) => Page::Latest,
    };
    Ok((page, limit))
}

/// The largest seq a store can hold (`i64::MAX`).
const MAX_SEQ: u64 = i64::MAX as u64;

/// A `before`/`after` value: a whole number of any size (one past `u64`
/// is past every seq too, as for `limit`); `u64::MAX` stands for it.
fn seq(v: &str, key: &str) -> Result<u64, ApiError> {
    match v.parse::<u64>() {
        Ok(n) => Ok(n),
        Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Ok(u64::MAX),
        Err(_) => Err(ApiError::invalid(format!(
            "{key} must be a seq (a whole number)"
        ))),
    }
}

/// `GET /api/v1/messages/channel/:channelId`: `{messages, hasMore}`,
/// messages in ascending seq; `hasMore` tells whether more exist in the
/// paging direction (older for `before` and the latest page, newer for
/// `after`).
pub(crate) async fn history(
    call: &Call<'_>,
    channel: String,
    query: Option<&str>,
) -> Result<Reply, ApiError> {
    let (page, limit) = parse_page(query)?;
    let user = call.user.clone();
    let (messages, more) = call
        .read(move |s| {
            readable(s, &channel, &user)?;
            Ok(s.history(&channel, page, limit)?)
        })
        .await?;
    let mut out = String::with_capacity(64 + messages.len() * 256);
    out.push_str(r#"{"messages":["#);
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&message_json(m));
    }
    out.push_str(r#"],"hasMore":"#);
    out.push_str(if more { "true" } else { "false" });
    out.push('}');
    Ok(reply::json(StatusCode::OK, out))
}

/// `POST /api/v1/messages`: 201 with the new message. A repeated
/// `clientMessageId` answers 200 with the first message when the first
/// is already stored; a repeat racing its original through the writer is
/// only deduplicated there and answers 201 with the first message.
pub(crate) async fn send(call: &Call<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let p = call::object(body)?;
    let max = call.ctx.max_message_length;
    let Command::Send(m) = commands::parse("send_message", &[Value::Object(p)], max)? else {
        return Err(ApiError::internal());
    };
    if let Some(cmid) = m.client_message_id.clone() {
        let (user, channel) = (call.user.clone(), m.channel.clone());
        let first = call
            .read(move |s| {
                let Some(first) = s.find_by_client_id(&user, &cmid)? else {
                    return Ok(None);
                };
                if first.channel_id != *channel {
                    return Ok(None);
                }
                // A repeat is answered as the first send would be now: a
                // deleted channel or a lost membership refuses it rather
                // than hand back the stored message.
                if s.channel(&channel)?.is_none() {
                    return Err(ApiError::not_found("no such channel"));
                }
                if !s.member_ids(&channel)?.contains(&user) {
                    return Err(ApiError::forbidden("only members may send to this channel"));
                }
                Ok(Some(first))
            })
            .await?;
        if let Some(first) = first {
            return Ok(message_reply(StatusCode::OK, &first));
        }
    }
    let rx = call.ctx.chat.publish(&call.user, m);
    let stored = rx
        .await
        .map_err(|_| ApiError::unavailable("the server is shutting down"))??;
    Ok(message_reply(StatusCode::CREATED, &stored))
}

/// `GET /api/v1/messages/:id`.
pub(crate) async fn get(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    let id = call::message_id(id)?;
    let user = call.user.clone();
    let m = call
        .read(move |s| {
            let m = s
                .message(id)?
                .ok_or_else(|| ApiError::not_found("no such message"))?;
            readable(s, &m.channel_id, &user)?;
            Ok(m)
        })
        .await?;
    Ok(message_reply(StatusCode::OK, &m))
}

/// New content for an edit, checked by the very rules of `send_message`
/// (it is the same field): the body's `content` is run through the
/// command parser with a placeholder channel.
pub(crate) fn edited_content(p: &Map<String, Value>, max: usize) -> Result<String, ApiError> {
    let mut probe = Map::new();
    probe.insert("channelId".into(), Value::from("-"));
    if let Some(c) = p.get("content") {
        probe.insert("content".into(), c.clone());
    }
    match commands::parse("send_message", &[Value::Object(probe)], max)? {
        Command::Send(m) => Ok(m.content),
        _ => Err(ApiError::internal()),
    }
}

/// `PUT /api/v1/messages/:id` `{content}`: the author edits; subscribers
/// get `message_updated` with the whole message (with `editedAt`).
pub(crate) async fn edit(call: &Call<'_>, id: &str, body: &[u8]) -> Result<Reply, ApiError> {
    let id = call::message_id(id)?;
    let content = edited_content(&call::object(body)?, call.ctx.max_message_length)?;
    let m = edit_record(call, id, content).await?;
    Ok(message_reply(StatusCode::OK, &m))
}

/// Edits message `id` as `call.user` (its author only) and broadcasts
/// `message_updated`: the edit of both REST dialects.
pub(crate) async fn edit_record(
    call: &Call<'_>,
    id: u64,
    content: String,
) -> Result<MessageRecord, ApiError> {
    let user = call.user.clone();
    let m = call
        .write(move |s| {
            let gone = || ApiError::not_found("no such message");
            let m = s.message(id)?.ok_or_else(gone)?;
            if m.user_id != user {
                return Err(ApiError::forbidden("only its author may edit a message"));
            }
            // A deleted channel's messages are gone with it.
            if s.channel(&m.channel_id)?.is_none() {
                return Err(gone());
            }
            s.edit_message(id, &content, &now())?.ok_or_else(gone)
        })
        .await?;
    let json = message_json(&m);
    call.ctx
        .chat
        .emit_to_channel(&m.channel_id, "message_updated", &json);
    Ok(m)
}

/// `DELETE /api/v1/messages/:id`: the author or the channel's owner
/// deletes; subscribers get `message_deleted` `{id, channelId, seq}`.
pub(crate) async fn delete(call: &Call<'_>, id: &str) -> Result<Reply, ApiError> {
    delete_record(call, call::message_id(id)?).await?;
    Ok(reply::no_content())
}

/// Deletes message `id` as `call.user` (its author, the channel's owner
/// or an admin) and broadcasts `message_deleted`: the deletion of both REST
/// dialects.
pub(crate) async fn delete_record(call: &Call<'_>, id: u64) -> Result<MessageRecord, ApiError> {
    let user = call.user.clone();
    let m = call
        .write(move |s| {
            let gone = || ApiError::not_found("no such message");
            let m = s.message(id)?.ok_or_else(gone)?;
            // A deleted channel's messages are gone with it, as for GET
            // and PUT.
            let owner = s.channel(&m.channel_id)?.ok_or_else(gone)?.owner_id;
            if m.user_id != user
                && owner != user
                && !s
                    .member_role(&m.channel_id, &user)?
                    .is_some_and(MemberRole::manages)
            {
                return Err(ApiError::forbidden(
                    "only its author, the channel's owner or an admin may delete a message",
                ));
            }
            s.delete_message(id, &now())?.ok_or_else(gone)
        })
        .await?;
    let body = json!({"id": m.id.to_string(), "channelId": &m.channel_id, "seq": m.seq});
    call.ctx
        .chat
        .emit_to_channel(&m.channel_id, "message_deleted", &body.to_string());
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        assert_eq!(parse_page(None), Ok((Page::Latest, DEFAULT_LIMIT)));
        assert_eq!(
            parse_page(Some("before=7&limit=5")),
            Ok((Page::Before(7), 5))
        );
        assert_eq!(
            parse_page(Some("after=0")),
            Ok((Page::After(0), DEFAULT_LIMIT))
        );
        assert_eq!(
            parse_page(Some("limit=1000")),
            Ok((Page::Latest, MAX_LIMIT))
        );
        assert_eq!(
            parse_page(Some("limit=99999999999999999999999")),
            Ok((Page::Latest, MAX_LIMIT))
        );
        // Past every seq: exact answers, not wrapped values.
        let max = i64::MAX as u64;
        for (q, page) in [
            ("before=9223372036854775808", Page::Latest),
            ("before=18446744073709551615", Page::Latest),
            ("before=99999999999999999999999", Page::Latest),
            ("before=9223372036854775807", Page::Before(max)),
            ("after=9223372036854775808", Page::After(max)),
            ("after=18446744073709551615", Page::After(max)),
            ("after=99999999999999999999999", Page::After(max)),
        ] {
            assert_eq!(parse_page(Some(q)), Ok((page, DEFAULT_LIMIT)), "{q}");
        }
        for bad in [
            "before=1&after=2",
            "before=-1",
            "after=+1",
            "before=1.5",
            "limit=0",
            "limit=-1",
            "limit=x",
            "before=a",
            "after=",
        ] {
            assert!(parse_page(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn edits_follow_the_send_rules() {
        let p = |v: Value| edited_content(v.as_object().unwrap(), 5);
        assert_eq!(p(json!({"content": "hi"})), Ok("hi".into()));
        assert_eq!(p(json!({})).unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(
            p(json!({"content": " "})).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            p(json!({"content": 1})).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            p(json!({"content": "123456"})).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
