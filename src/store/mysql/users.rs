//! The user directory on MySQL/MariaDB (`crate::store::users`).

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use super::rows::{all, first};
use crate::store::users::{ReadState, USER_COLUMNS, UserRecord, contains_pattern};

type UserRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn to_user(r: UserRow) -> UserRecord {
    UserRecord {
        id: r.0,
        username: r.1,
        name: r.2,
        email: r.3,
        avatar_url: r.4,
        status: r.5,
        custom_status: r.6,
        created_at: r.7,
        updated_at: r.8,
    }
}

pub(super) fn upsert(c: &mut Conn, users: &[UserRecord]) -> mysql::Result<()> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    for u in users {
        tx.exec_drop(
            "INSERT INTO users (id, username, name, email, avatar_url, status, custom_status,
                                created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, COALESCE(?, 'offline'), ?, ?, ?)
             ON DUPLICATE KEY UPDATE
                username = VALUES(username), name = VALUES(name), email = VALUES(email),
                avatar_url = VALUES(avatar_url), status = COALESCE(?, status),
                custom_status = COALESCE(?, custom_status), updated_at = VALUES(updated_at)",
            mysql::Params::Positional(vec![
                u.id.as_str().into(),
                u.username.as_str().into(),
                u.name.as_deref().into(),
                u.email.as_deref().into(),
                u.avatar_url.as_deref().into(),
                u.status.as_deref().into(),
                u.custom_status.as_deref().into(),
                u.created_at.as_str().into(),
                u.updated_at.as_str().into(),
                u.status.as_deref().into(),
                u.custom_status.as_deref().into(),
            ]),
        )?;
    }
    tx.commit()
}

pub(super) fn get(c: &mut Conn, id: &str) -> mysql::Result<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
    Ok(first::<UserRow>(c, &sql, (id,))?.map(to_user))
}

pub(super) fn page(
    c: &mut Conn,
    search: Option<&str>,
    offset: usize,
    limit: usize,
) -> mysql::Result<(Vec<UserRecord>, u64)> {
    let p = contains_pattern(search.unwrap_or(""));
    let filter = "WHERE username LIKE ? ESCAPE '\\\\' OR name LIKE ? ESCAPE '\\\\'
                  OR email LIKE ? ESCAPE '\\\\'";
    let total = first::<u64>(
        c,
        &format!("SELECT COUNT(*) FROM users {filter}"),
        (&p, &p, &p),
    )?
    .unwrap_or(0);
    let sql = format!("SELECT {USER_COLUMNS} FROM users {filter} ORDER BY id LIMIT ? OFFSET ?");
    let (limit, offset) = (limit as u64, offset as u64);
    let rows = all(c.exec_opt::<UserRow, _, _>(sql, (&p, &p, &p, limit, offset))?)?;
    Ok((rows.into_iter().map(to_user).collect(), total))
}

pub(super) fn set_status(
    c: &mut Conn,
    id: &str,
    status: &str,
    custom: Option<&str>,
    at: &str,
) -> mysql::Result<bool> {
    // affected_rows counts changed rows only: an unchanged status is still
    // a known user.
    if first::<u8>(c, "SELECT 1 FROM users WHERE id = ?", (id,))?.is_none() {
        return Ok(false);
    }
    c.exec_drop(
        "UPDATE users SET status = ?, custom_status = ?, updated_at = ? WHERE id = ?",
        (status, custom, at, id),
    )?;
    Ok(true)
}

pub(super) fn delete(c: &mut Conn, id: &str) -> mysql::Result<bool> {
    c.exec_drop("DELETE FROM users WHERE id = ?", (id,))?;
    Ok(c.affected_rows() > 0)
}

pub(super) fn read_state(
    c: &mut Conn,
    channel: &str,
    user: &str,
) -> mysql::Result<Option<ReadState>> {
    let row = first::<(u64, Option<String>, Option<u64>)>(
        c,
        "SELECT last_read_seq, last_read_at, last_read_message_id FROM channel_members
         WHERE channel_id = ? AND user_id = ?",
        (channel, user),
    )?;
    Ok(row.map(|(seq, at, message_id)| ReadState {
        seq,
        at,
        message_id,
    }))
}

pub(super) fn mark_read(
    c: &mut Conn,
    channel: &str,
    user: &str,
    seq: u64,
    message_id: Option<u64>,
    at: &str,
) -> mysql::Result<bool> {
    c.exec_drop(
        "UPDATE channel_members SET last_read_seq = ?, last_read_at = ?,
                last_read_message_id = COALESCE(?, last_read_message_id)
         WHERE channel_id = ? AND user_id = ? AND last_read_seq <= ?",
        (seq, at, message_id, channel, user, seq),
    )?;
    // affected_rows counts changed rows: a member whose mark did not move
    // is still a member.
    Ok(c.affected_rows() > 0 || read_state(c, channel, user)?.is_some())
}
