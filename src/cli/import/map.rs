//! How one row of the original becomes one of ours (docs/operations.md,
//! "The import command"): ids, types, roles, statuses. No I/O here.

use super::source::{SrcChannel, SrcUser};
use crate::store::{ChannelType, UserRecord};

/// Our id of the original's channel `num`: derived from the number only,
/// so a second run finds the row the first one made. Ids the server makes
/// are 22 random URL-safe characters, never of this shape.
pub(crate) fn channel_id(num: u64) -> String {
    format!("{CHANNEL_PREFIX}{num}")
}

pub(crate) const CHANNEL_PREFIX: &str = "gatrix-";

/// The number of one of our channel ids made by [`channel_id`].
pub(crate) fn channel_num(id: &str) -> Option<u64> {
    let digits = id.strip_prefix(CHANNEL_PREFIX)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    canonical.then(|| digits.parse().ok()).flatten()
}

/// Our user id for the original's `chat_users.id` `id`: the backend's
/// user id (`gatrixUserId`, what its tokens carry as `userId`), or, for a
/// row without one (the original's `system` user) or no row at all,
/// `chat-user-<id>`, an id no token names.
pub(crate) fn user_id(id: u64, gatrix_user_id: Option<&str>) -> String {
    match gatrix_user_id.map(str::trim).filter(|g| !g.is_empty()) {
        Some(g) => g.to_owned(),
        None => placeholder_user(id),
    }
}

pub(crate) fn placeholder_user(id: u64) -> String {
    format!("chat-user-{id}")
}

/// When a time is unknown (a NULL the original's defaults should have
/// prevented).
pub(crate) const UNKNOWN_TIME: &str = "1970-01-01T00:00:00.000Z";

/// Directory statuses: `online`, `away`, `busy`, `offline`. Nobody is
/// connected to the new server when the import runs, so `online` is
/// `offline`; an unknown one too.
pub(crate) fn status(chat_status: Option<&str>) -> &'static str {
    match chat_status {
        Some("away") => "away",
        Some("busy") => "busy",
        _ => "offline",
    }
}

/// The directory's record of a `chat_users` row.
pub(crate) fn user(u: &SrcUser) -> UserRecord {
    let id = user_id(u.id, u.gatrix_user_id.as_deref());
    let created = u.created_at.clone().unwrap_or_else(|| UNKNOWN_TIME.into());
    UserRecord {
        username: u
            .username
            .clone()
            .or_else(|| u.email.clone())
            .unwrap_or_else(|| id.clone()),
        id,
        name: u.name.clone(),
        email: u.email.clone(),
        avatar_url: u.avatar.clone(),
        status: Some(status(u.chat_status.as_deref()).to_owned()),
        custom_status: u.custom_status.clone(),
        updated_at: u.updated_at.clone().unwrap_or_else(|| created.clone()),
        created_at: created,
    }
}

/// The original's channel types (`public`, `group`, `direct`; its model
/// writes `private`, which its enum lacks) as ours; whether the type was
/// one it knows.
pub(crate) fn channel_type(kind: Option<&str>) -> (ChannelType, bool) {
    match kind {
        Some("public") => (ChannelType::Public, true),
        Some("direct") => (ChannelType::Direct, true),
        Some("group" | "private") => (ChannelType::Private, true),
        // Members only: never open up a channel whose type is unknown.
        _ => (ChannelType::Private, false),
    }
}

/// The channel's name: `name`, else `channelName`, else `channel <id>`.
pub(crate) fn channel_name(c: &SrcChannel) -> String {
    c.name
        .clone()
        .unwrap_or_else(|| format!("channel {}", c.id))
}

/// A member's role here: `owner` for the channel's owner alone, `admin`
/// or `member` as in the original for everyone else. The second value is
/// true when the original's role was not kept (an `owner` row of someone
/// else than the channel's owner, an `admin` here).
pub(crate) fn role(original: Option<&str>, is_owner: bool) -> (&'static str, bool) {
    if is_owner {
        return ("owner", false);
    }
    match original {
        Some("admin") => ("admin", false),
        Some("owner") => ("admin", true),
        _ => ("member", false),
    }
}

/// The channel's settings as stored here: the original's JSON object, as
/// text; None when it is none (or not an object: the second value true).
pub(crate) fn settings(original: Option<&str>) -> (Option<String>, bool) {
    match original.map(serde_json::from_str::<serde_json::Value>) {
        None => (None, false),
        Some(Ok(v)) if v.is_object() => (Some(v.to_string()), false),
        Some(Ok(serde_json::Value::Null)) => (None, false),
        Some(_) => (None, true),
    }
}

/// Why a membership is not one here: the original keeps rows of members
/// who left or were banned (`status`); muted members stay members.
pub(crate) fn inactive(status: Option<&str>) -> Option<&'static str> {
    match status {
        Some("left") => Some("the member left the channel (status 'left')"),
        Some("banned") => Some("the member is banned (status 'banned'): no bans here"),
        _ => None,
    }
}

/// A message's type: its `contentType`, `text` when none.
pub(crate) fn message_type(content_type: Option<&str>) -> String {
    content_type
        .filter(|t| !t.is_empty())
        .unwrap_or("text")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_come_back_to_their_number() {
        assert_eq!(channel_id(42), "gatrix-42");
        assert_eq!(channel_num("gatrix-42"), Some(42));
        assert_eq!(
            channel_num(&channel_id(u64::from(u32::MAX))),
            Some(4_294_967_295)
        );
        for other in [
            "gatrix-",
            "gatrix-042",
            "gatrix-4x",
            "x-42",
            "3q2-7wX0v9LmQk8aZp1b2w",
        ] {
            assert_eq!(channel_num(other), None, "{other}");
        }
    }

    #[test]
    fn users_are_the_backends_ids() {
        assert_eq!(user_id(7, Some("1042")), "1042");
        assert_eq!(user_id(7, Some(" 01HZABC ")), "01HZABC");
        assert_eq!(user_id(1, None), "chat-user-1");
        assert_eq!(user_id(1, Some("")), "chat-user-1");
    }

    #[test]
    fn types_roles_and_statuses() {
        assert_eq!(channel_type(Some("group")), (ChannelType::Private, true));
        assert_eq!(channel_type(Some("public")), (ChannelType::Public, true));
        assert_eq!(channel_type(Some("")), (ChannelType::Private, false));
        assert_eq!(role(Some("member"), true), ("owner", false));
        assert_eq!(role(Some("admin"), false), ("admin", false));
        assert_eq!(role(Some("owner"), false), ("admin", true));
        assert_eq!(role(None, false), ("member", false));
        assert_eq!(
            settings(Some(r#"{"allowFiles": true}"#)),
            (Some(r#"{"allowFiles":true}"#.into()), false)
        );
        assert_eq!(settings(Some("null")), (None, false));
        assert_eq!(settings(Some("[1]")), (None, true));
        assert_eq!(settings(None), (None, false));
        assert_eq!(status(Some("online")), "offline");
        assert_eq!(status(Some("busy")), "busy");
        assert!(inactive(Some("left")).is_some());
        assert!(inactive(Some("muted")).is_none());
        assert_eq!(message_type(Some("image")), "image");
        assert_eq!(message_type(None), "text");
    }
}
