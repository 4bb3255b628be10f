//! The Gatrix REST bodies: channels, messages and users as the frontend's
//! `types/chat.ts` reads them (ids of channels and messages as numbers,
//! users' as strings), and the page parameters it sends.

use serde_json::{Value, json};

use crate::chat::gatrix::{Directory, Nums, frames};
use crate::store::{ChannelRecord, MessageRecord, UserRecord};

/// What a channel list adds to a channel for its caller.
#[derive(Debug, Default, Clone)]
pub(super) struct ForCaller {
    pub member_count: Option<usize>,
    pub role: Option<&'static str>,
    pub unread_count: Option<u64>,
    pub last_read_at: Option<String>,
    pub last_read_message_id: Option<u64>,
}

pub(super) fn channel(c: &ChannelRecord, you: &ForCaller) -> Value {
    let mut v = json!({
        "id": c.num,
        "name": c.name,
        "description": c.description,
        "type": c.kind,
        "ownerId": c.owner_id,
        "createdBy": c.owner_id,
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
        "isArchived": false,
        // Stored as the frontend sent it; `{}` when none.
        "settings": c.settings.as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .unwrap_or_else(|| json!({})),
        "maxMembers": c.max_members,
    });
    let o = v.as_object_mut().expect("built as an object");
    if let Some(n) = you.member_count {
        o.insert("memberCount".into(), n.into());
    }
    if let Some(r) = you.role {
        o.insert("role".into(), r.into());
    }
    if let Some(n) = you.unread_count {
        o.insert("unreadCount".into(), n.into());
        o.insert("lastReadAt".into(), you.last_read_at.clone().into());
        o.insert("lastReadMessageId".into(), you.last_read_message_id.into());
    }
    v
}

/// A stored message as the Gatrix frames show it (the same translation,
/// `frames::message`), its channel by number.
pub(super) fn message(m: &MessageRecord, channel_num: u64, dir: &Directory) -> Value {
    let native = crate::chat::json::message(m);
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&native) else {
        return Value::Null; // chat::json always writes an object
    };
    let mut nums = Nums::default();
    nums.insert(&m.channel_id.as_str().into(), channel_num);
    frames::message(&map, &nums, dir)
}

pub(super) fn user(u: &UserRecord) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "email": u.email,
        "avatarUrl": u.avatar_url,
        "status": u.status,
        "customStatus": u.custom_status,
        "isOnline": u.status.as_deref() == Some("online"),
        "createdAt": u.created_at,
        "updatedAt": u.updated_at,
    })
}

/// `?page=&limit=` (the original's: page from 1, limit 20 by default);
/// the limit is capped at `max`.
pub(super) fn page(query: Option<&str>, max: usize) -> (usize, usize) {
    let (mut page, mut limit) = (1usize, 20usize);
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "page" => page = v.parse().ok().filter(|&p| p >= 1).unwrap_or(1),
            "limit" => limit = v.parse().ok().filter(|&l| l >= 1).unwrap_or(20),
            _ => {}
        }
    }
    (page, limit.min(max))
}

/// The original's `pagination`.
pub(super) fn pagination(page: usize, limit: usize, total: u64) -> Value {
    let total_pages = total.div_ceil(limit.max(1) as u64);
    json!({
        "page": page, "limit": limit, "total": total, "totalPages": total_pages,
        // Saturating: `page` comes from the query, as large as it likes.
        "hasNext": (page.saturating_mul(limit) as u64) < total,
        "hasPrev": page > 1,
    })
}

/// A number given as a JSON number or a decimal string (the frontend
/// sends both).
pub(super) fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_numbers() {
        assert_eq!(page(None, 100), (1, 20));
        assert_eq!(page(Some("page=3&limit=500"), 100), (3, 100));
        assert_eq!(page(Some("page=0&limit=x"), 100), (1, 20));
        let p = pagination(2, 10, 25);
        assert_eq!(
            (p["totalPages"].as_u64(), p["hasNext"].as_bool()),
            (Some(3), Some(true))
        );
        assert_eq!(pagination(3, 10, 25)["hasNext"], false);
        // A page number from the query near usize::MAX does not overflow.
        let (page, limit) = page(Some("page=18446744073709551615&limit=100"), 100);
        assert_eq!(pagination(page, limit, 5)["hasNext"], false);
        assert_eq!(number(Some(&json!("12"))), Some(12));
        assert_eq!(number(Some(&json!(12))), Some(12));
        assert_eq!(number(Some(&json!(-1))), None);
        assert_eq!(number(None), None);
    }
}
