//! Schema 7 on MySQL/MariaDB (`crate::store::gatrix`): members' roles, a
//! channel's settings and member limit, pins.

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use super::rows::first;
use crate::store::{MemberRole, MessageRecord, Pin};

pub(super) fn member_role(
    c: &mut Conn,
    channel: &str,
    user: &str,
) -> mysql::Result<Option<MemberRole>> {
    let role: Option<String> = first(
        c,
        "SELECT CASE WHEN c.owner_id = m.user_id THEN 'owner' ELSE m.role END
         FROM channel_members m JOIN channels c ON c.id = m.channel_id
         WHERE m.channel_id = ? AND m.user_id = ? AND c.deleted_at IS NULL",
        (channel, user),
    )?;
    Ok(role.as_deref().map(MemberRole::parse))
}

pub(super) fn set_member_role(
    c: &mut Conn,
    channel: &str,
    user: &str,
    role: MemberRole,
) -> mysql::Result<bool> {
    if role == MemberRole::Owner {
        return Ok(false);
    }
    c.exec_drop(
        "UPDATE channel_members m JOIN channels c ON c.id = m.channel_id SET m.role = ?
         WHERE m.channel_id = ? AND m.user_id = ? AND m.role <> 'owner' AND c.owner_id <> m.user_id",
        (role.as_str(), channel, user),
    )?;
    Ok(c.affected_rows() > 0)
}

pub(super) fn update_channel_settings(
    c: &mut Conn,
    id: &str,
    settings: Option<Option<&str>>,
    max_members: Option<Option<u32>>,
    at: &str,
) -> mysql::Result<()> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    if let Some(s) = settings {
        tx.exec_drop(
            "UPDATE channels SET settings = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
            (s, at, id),
        )?;
    }
    if let Some(m) = max_members {
        tx.exec_drop(
            "UPDATE channels SET max_members = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
            (m, at, id),
        )?;
    }
    tx.commit()
}

/// False when there is no live message `id`. A pin set again to the same
/// values changes no row: found rows are counted, not changed ones.
pub(super) fn set_pin(c: &mut Conn, id: u64, pin: Option<&Pin>) -> mysql::Result<bool> {
    let live: Option<u64> = first(
        c,
        "SELECT id FROM messages WHERE id = ? AND deleted_at IS NULL",
        (id,),
    )?;
    if live.is_none() {
        return Ok(false);
    }
    c.exec_drop(
        "UPDATE messages SET pinned_at = ?, pinned_by = ? WHERE id = ? AND deleted_at IS NULL",
        (
            pin.map(|p| p.at.as_str()),
            pin.and_then(|p| p.by.as_deref()),
            id,
        ),
    )?;
    Ok(true)
}

/// The pins of imported messages, inside `insert_messages`' transaction (a
/// commit stores none: the writer's inserts stay as they were).
pub(super) fn insert_pins(
    tx: &mut impl Queryable,
    messages: &[MessageRecord],
) -> mysql::Result<()> {
    for m in messages {
        if let Some(p) = &m.pinned {
            tx.exec_drop(
                "UPDATE messages SET pinned_at = ?, pinned_by = ? WHERE id = ?",
                (&p.at, &p.by, m.id),
            )?;
        }
    }
    Ok(())
}
