//! Schema 7 on SQLite (`crate::store::gatrix`): members' roles, a
//! channel's settings and member limit, pins.

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{MemberRole, MessageRecord, Pin, Result};

pub(super) fn member_role(
    conn: &Connection,
    channel: &str,
    user: &str,
) -> Result<Option<MemberRole>> {
    let role: Option<String> = conn
        .prepare_cached(
            "SELECT CASE WHEN c.owner_id = m.user_id THEN 'owner' ELSE m.role END
             FROM channel_members m JOIN channels c ON c.id = m.channel_id
             WHERE m.channel_id = ?1 AND m.user_id = ?2 AND c.deleted_at IS NULL",
        )?
        .query_row([channel, user], |r| r.get(0))
        .optional()?;
    Ok(role.as_deref().map(MemberRole::parse))
}

pub(super) fn set_member_role(
    conn: &Connection,
    channel: &str,
    user: &str,
    role: MemberRole,
) -> Result<bool> {
    if role == MemberRole::Owner {
        return Ok(false);
    }
    let n = conn.execute(
        "UPDATE channel_members SET role = ?3
         WHERE channel_id = ?1 AND user_id = ?2 AND role <> 'owner'
           AND user_id <> (SELECT owner_id FROM channels WHERE id = ?1)",
        params![channel, user, role.as_str()],
    )?;
    Ok(n > 0)
}

pub(super) fn update_channel_settings(
    conn: &mut Connection,
    id: &str,
    settings: Option<Option<&str>>,
    max_members: Option<Option<u32>>,
    at: &str,
) -> Result<()> {
    let tx = conn.transaction()?;
    if let Some(s) = settings {
        tx.execute(
            "UPDATE channels SET settings = ?2, updated_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
            params![id, s, at],
        )?;
    }
    if let Some(m) = max_members {
        tx.execute(
            "UPDATE channels SET max_members = ?2, updated_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
            params![id, m, at],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// False when there is no live message `id`.
pub(super) fn set_pin(conn: &Connection, id: u64, pin: Option<&Pin>) -> Result<bool> {
    let n = conn.execute(
        "UPDATE messages SET pinned_at = ?2, pinned_by = ?3 WHERE id = ?1 AND deleted_at IS NULL",
        params![
            id as i64,
            pin.map(|p| p.at.as_str()),
            pin.and_then(|p| p.by.as_deref())
        ],
    )?;
    Ok(n > 0)
}

/// The pins of imported messages, inside `insert_messages`' transaction (a
/// commit stores none: the writer's inserts stay as they were).
pub(super) fn insert_pins(conn: &Connection, messages: &[MessageRecord]) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("UPDATE messages SET pinned_at = ?2, pinned_by = ?3 WHERE id = ?1")?;
    for m in messages {
        if let Some(p) = &m.pinned {
            stmt.execute(params![m.id as i64, p.at, p.by])?;
        }
    }
    Ok(())
}
