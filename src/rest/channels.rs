//! `/api/v1/channels`: list, create, read, rename/describe, delete.
//!
//! Who may do what: anyone authenticated creates (and owns) a channel; a
//! public channel is visible to anyone authenticated, a private or direct
//! one only to its members; the owner or an admin (schema 7) changes it,
//! only the owner deletes it. Changes are written on the store writer with
//! the permission check in the same job, then the channel's owner shard is
//! told to reload its cache.

use std::collections::BTreeSet;

use hyper::StatusCode;
use serde_json::Value;

use super::call::{self, Call, Field};
use super::reply::{self, ApiError, Reply};
use crate::chat::commands::MAX_ID_LEN;
use crate::chat::message::now;
use crate::store::{ChannelRecord, ChannelType, MemberRole, Store};

pub(crate) const MAX_NAME_CHARS: usize = 100;
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Members given at creation; more are added by joining (public) later.
pub(crate) const MAX_MEMBERS: usize = 1000;

fn channel_reply(status: StatusCode, c: &ChannelRecord) -> Result<Reply, ApiError> {
    let json = serde_json::to_string(c).map_err(|_| ApiError::internal())?;
    Ok(reply::wrapped(status, "channel", &json))
}

/// The channel if `user` may see it and read its history.
pub(crate) fn readable(s: &mut dyn Store, id: &str, user: &str) -> Result<ChannelRecord, ApiError> {
    let c = s
        .channel(id)?
        .ok_or_else(|| ApiError::not_found("no such channel"))?;
    if c.kind != ChannelType::Public && !s.member_ids(id)?.iter().any(|m| m == user) {
        return Err(ApiError::forbidden("this channel is for its members only"));
    }
    Ok(c)
}

/// The channel if `user` owns it.
fn owned(s: &mut dyn Store, id: &str, user: &str) -> Result<ChannelRecord, ApiError> {
    let c = s
        .channel(id)?
        .ok_or_else(|| ApiError::not_found("no such channel"))?;
    if c.owner_id != user {
        return Err(ApiError::forbidden("only the channel's owner may do this"));
    }
    Ok(c)
}

/// The channel if `user` owns it or is one of its admins (schema 7: only
/// imported data makes admins).
pub(crate) fn managed(s: &mut dyn Store, id: &str, user: &str) -> Result<ChannelRecord, ApiError> {
    let c = s
        .channel(id)?
        .ok_or_else(|| ApiError::not_found("no such channel"))?;
    if c.owner_id != user && !s.member_role(id, user)?.is_some_and(MemberRole::manages) {
        return Err(ApiError::forbidden(
            "only the channel's owner or an admin may do this",
        ));
    }
    Ok(c)
}

/// `GET /api/v1/channels`: the channels the caller is a member of.
pub(crate) async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let user = call.user.clone();
    let channels = call.read(move |s| Ok(s.channels_of(&user)?)).await?;
    let json = serde_json::to_string(&channels).map_err(|_| ApiError::internal())?;
    Ok(reply::wrapped(StatusCode::OK, "channels", &json))
}

/// A validated `POST /api/v1/channels` body.
#[derive(Debug, PartialEq)]
pub(crate) struct NewChannel {
    pub(crate) name: String,
    pub(crate) kind: ChannelType,
    pub(crate) description: Option<String>,
    /// Without the creator, who is added as owner anyway.
    pub(crate) members: Vec<String>,
    /// The Gatrix dialect's `settings` (JSON text) and `maxMembers`;
    /// natively none.
    pub(crate) settings: Option<String>,
    pub(crate) max_members: Option<u32>,
}

pub(crate) fn parse_new(body: &[u8], creator: &str) -> Result<NewChannel, ApiError> {
    let p = call::object(body)?;
    let name = match call::text(&p, "name", MAX_NAME_CHARS)? {
        Field::Text(n) if !n.trim().is_empty() => n.trim().to_owned(),
        _ => {
            return Err(ApiError::invalid(format!(
                "name is required: 1-{MAX_NAME_CHARS} characters"
            )));
        }
    };
    let kind = match p.get("type") {
        Some(Value::String(t)) => ChannelType::parse(t),
        _ => None,
    }
    .ok_or_else(|| ApiError::invalid("type must be public, private or direct"))?;
    let description = match call::text(&p, "description", MAX_DESCRIPTION_CHARS)? {
        Field::Text(d) => Some(d),
        Field::Absent | Field::Null => None,
    };
    let members = match p.get("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.len() <= MAX_MEMBERS => {
            let mut set = BTreeSet::new();
            for m in a {
                match m {
                    Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_LEN => {
                        set.insert(s.clone());
                    }
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "members must be user ids: strings of 1-{MAX_ID_LEN} bytes"
                        )));
                    }
                }
            }
            set.remove(creator);
            set.into_iter().collect()
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "members must be an array of at most {MAX_MEMBERS} user ids"
            )));
        }
    };
    if kind == ChannelType::Direct && members.len() != 1 {
        return Err(ApiError::invalid(
            "a direct channel has exactly one other member in members",
        ));
    }
    Ok(NewChannel {
        name,
        kind,
        description,
        members,
        settings: None,
        max_members: None,
    })
}

/// `POST /api/v1/channels`: the caller creates a channel and owns it.
pub(crate) async fn create(call: &Call<'_>, body: &[u8]) -> Result<Reply, ApiError> {
    let record = create_record(call, parse_new(body, &call.user)?).await?;
    channel_reply(StatusCode::CREATED, &record)
}

/// Creates `new` owned by `call.user`: the creation of both REST dialects.
/// The record has its number (given by the store).
pub(crate) async fn create_record(
    call: &Call<'_>,
    new: NewChannel,
) -> Result<ChannelRecord, ApiError> {
    let at = now();
    let record = ChannelRecord {
        // Random: unique across instances without a shared counter.
        id: crate::ids::channel_id(),
        name: new.name,
        kind: new.kind,
        description: new.description,
        owner_id: call.user.clone(),
        created_at: at.clone(),
        updated_at: at,
        num: 0, // given by the store
        settings: new.settings,
        max_members: new.max_members,
    };
    let (stored, members) = (record.clone(), new.members);
    call.write(move |s| {
        s.create_channel(&stored, &members)?;
        s.channel(&stored.id)?.ok_or_else(ApiError::internal)
    })
    .await
}

/// `GET /api/v1/channels/:id`.
pub(crate) async fn get(call: &Call<'_>, id: String) -> Result<Reply, ApiError> {
    let user = call.user.clone();
    let c = call.read(move |s| readable(s, &id, &user)).await?;
    channel_reply(StatusCode::OK, &c)
}

/// `PUT /api/v1/channels/:id` `{name?, description?}`: the owner renames
/// or describes it; `description: null` clears the description.
pub(crate) async fn update(call: &Call<'_>, id: String, body: &[u8]) -> Result<Reply, ApiError> {
    let c = update_record(call, id, &call::object(body)?).await?;
    channel_reply(StatusCode::OK, &c)
}

/// A validated `{name?, description?}`: what to change (`description:
/// null` clears it).
#[derive(Debug, Default)]
pub(crate) struct Change {
    pub(crate) name: Option<String>,
    pub(crate) description: Option<Option<String>>,
}

impl Change {
    pub(crate) fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none()
    }
}

pub(crate) fn parse_change(p: &serde_json::Map<String, Value>) -> Result<Change, ApiError> {
    let name = match call::text(p, "name", MAX_NAME_CHARS)? {
        Field::Absent => None,
        Field::Text(n) if !n.trim().is_empty() => Some(n.trim().to_owned()),
        _ => {
            return Err(ApiError::invalid(format!(
                "name must be 1-{MAX_NAME_CHARS} characters"
            )));
        }
    };
    let description = match call::text(p, "description", MAX_DESCRIPTION_CHARS)? {
        Field::Absent => None,
        Field::Null => Some(None),
        Field::Text(d) => Some(Some(d)),
    };
    Ok(Change { name, description })
}

/// Applies `change` on the store writer as `user`, the channel's owner or
/// an admin (checked in the same job), then `more` (the Gatrix dialect's
/// settings); the channel as it is after.
pub(crate) async fn change_record(
    call: &Call<'_>,
    id: String,
    change: Change,
    more: impl FnOnce(&mut dyn Store, &str) -> Result<(), ApiError> + Send + 'static,
) -> Result<ChannelRecord, ApiError> {
    let (user, key) = (call.user.clone(), id.clone());
    let c = call
        .write(move |s| {
            managed(s, &key, &user)?;
            if !change.is_empty() {
                let d = change.description.as_ref().map(|d| d.as_deref());
                s.update_channel(&key, change.name.as_deref(), d, &now())?;
            }
            more(s, &key)?;
            s.channel(&key)?
                .ok_or_else(|| ApiError::not_found("no such channel"))
        })
        .await?;
    // Canceled only when the owner's shard is stopping: answer anyway.
    let _ = call.ctx.chat.invalidate_channel(&id).await;
    Ok(c)
}

/// Applies `{name?, description?}` as the channel's owner or an admin.
pub(crate) async fn update_record(
    call: &Call<'_>,
    id: String,
    p: &serde_json::Map<String, Value>,
) -> Result<ChannelRecord, ApiError> {
    let change = parse_change(p)?;
    if change.is_empty() {
        return Err(ApiError::invalid("give name or description to change"));
    }
    change_record(call, id, change, |_, _| Ok(())).await
}

/// `DELETE /api/v1/channels/:id`: the owner deletes it (softly: its
/// messages stay in the store, unreachable).
pub(crate) async fn delete(call: &Call<'_>, id: String) -> Result<Reply, ApiError> {
    delete_record(call, id).await?;
    Ok(reply::no_content())
}

/// Deletes the channel as its owner: the deletion of both REST dialects.
pub(crate) async fn delete_record(call: &Call<'_>, id: String) -> Result<(), ApiError> {
    let (user, key) = (call.user.clone(), id.clone());
    call.write(move |s| {
        owned(s, &key, &user)?;
        if s.delete_channel(&key, &now())? {
            Ok(())
        } else {
            Err(ApiError::not_found("no such channel"))
        }
    })
    .await?;
    // Canceled only when the owner's shard is stopping: answer anyway.
    let _ = call.ctx.chat.invalidate_channel(&id).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<NewChannel, ApiError> {
        parse_new(body.as_bytes(), "me")
    }

    #[test]
    fn a_new_channel_is_validated() {
        let c =
            parse(r#"{"name":" general ","type":"public","members":["me","b","a","b"]}"#).unwrap();
        assert_eq!(c.name, "general");
        assert_eq!(c.members, ["a", "b"]);
        assert_eq!(c.description, None);
        let ok = |b: &str| parse(b).is_ok();
        assert!(ok(r#"{"name":"d","type":"direct","members":["me","you"]}"#));
        assert!(!ok(r#"{"name":"d","type":"direct","members":["me"]}"#));
        assert!(!ok(r#"{"name":"d","type":"direct","members":["a","b"]}"#));
        assert!(!ok(r#"{"name":"","type":"public"}"#));
        assert!(!ok(r#"{"name":"  ","type":"public"}"#));
        assert!(!ok(&format!(
            r#"{{"name":"{}","type":"public"}}"#,
            "x".repeat(101)
        )));
        assert!(ok(&format!(
            r#"{{"name":"{}","type":"public"}}"#,
            "é".repeat(100)
        )));
        assert!(!ok(r#"{"name":"n","type":"secret"}"#));
        assert!(!ok(r#"{"name":"n"}"#));
        assert!(!ok(r#"{"name":"n","type":"public","members":"a"}"#));
        assert!(!ok(r#"{"name":"n","type":"public","members":[1]}"#));
        assert!(!ok(r#"{"name":"n","type":"public","members":[""]}"#));
        let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
        let body = serde_json::json!({"name":"n","type":"public","members":many}).to_string();
        assert!(!ok(&body));
        let long = "d".repeat(1001);
        assert!(!ok(&format!(
            r#"{{"name":"n","type":"public","description":"{long}"}}"#
        )));
    }
}
