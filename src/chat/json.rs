//! The JSON a client sees for a message (docs/protocol.md, `message`): in
//! a `message` event, a send's ack, a recovery replay, history and the REST
//! answers. The store returns records; their client-facing form is chat's.

use serde::Serialize;

use crate::store::MessageRecord;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageJson<'a> {
    id: String,
    channel_id: &'a str,
    seq: u64,
    user_id: &'a str,
    content: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_message_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a str>,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    edited_at: Option<&'a str>,
    /// A pinned message only (the Gatrix REST's pin, docs/api.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_id: Option<String>,
    #[serde(skip_serializing_if = "is_zero")]
    thread_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_thread_message_at: Option<&'a str>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `m` as clients see it: the id as a string (as it always was), the
/// optional fields only when set, `pos` and `deletedAt` never. A reply in
/// a thread has `threadId` (its head's id, a string like every id) and
/// `threadCount` (its thread's, right after its commit); a head with
/// replies `threadCount` and `lastThreadMessageAt`.
pub(crate) fn message(m: &MessageRecord) -> String {
    let j = MessageJson {
        id: m.id.to_string(),
        channel_id: &m.channel_id,
        seq: m.seq,
        user_id: &m.user_id,
        content: &m.content,
        kind: &m.kind,
        client_message_id: m.client_message_id.as_deref(),
        reply_to: m.reply_to.as_deref(),
        created_at: &m.created_at,
        edited_at: m.edited_at.as_deref(),
        pinned_at: m.pinned.as_ref().map(|p| p.at.as_str()),
        pinned_by: m.pinned.as_ref().and_then(|p| p.by.as_deref()),
        thread_id: m.thread.parent.map(|id| id.to_string()),
        thread_count: m.thread.count,
        last_thread_message_at: m.thread.last_at.as_deref(),
    };
    serde_json::to_string(&j).unwrap_or_default()
}
