//! The user directory on SQLite (`super::super::users`).

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::Result;
use crate::store::users::{ReadState, USER_COLUMNS, UserRecord, contains_pattern};

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        username: r.get(1)?,
        name: r.get(2)?,
        email: r.get(3)?,
        avatar_url: r.get(4)?,
        status: r.get(5)?,
        custom_status: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub(super) fn upsert(conn: &mut Connection, users: &[UserRecord]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO users (id, username, name, email, avatar_url, status, custom_status,
                                created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?6, 'offline'), ?7, ?8, ?9)
             ON CONFLICT (id) DO UPDATE SET
                username = excluded.username, name = excluded.name, email = excluded.email,
                avatar_url = excluded.avatar_url, status = COALESCE(?6, users.status),
                custom_status = COALESCE(?7, users.custom_status),
                updated_at = excluded.updated_at",
        )?;
        for u in users {
            stmt.execute(params![
                u.id,
                u.username,
                u.name,
                u.email,
                u.avatar_url,
                u.status,
                u.custom_status,
                u.created_at,
                u.updated_at
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn get(conn: &mut Connection, id: &str) -> Result<Option<UserRecord>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], user_row)
        .optional()?)
}

pub(super) fn page(
    conn: &mut Connection,
    search: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<(Vec<UserRecord>, u64)> {
    let pattern = contains_pattern(search.unwrap_or(""));
    let filter = "WHERE username LIKE ?1 ESCAPE '\\' OR name LIKE ?1 ESCAPE '\\'
                  OR email LIKE ?1 ESCAPE '\\'";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM users {filter}"))?
        .query_row([&pattern], |r| r.get(0))?;
    let sql = format!("SELECT {USER_COLUMNS} FROM users {filter} ORDER BY id LIMIT ?2 OFFSET ?3");
    let (limit, offset) = (
        i64::try_from(limit).unwrap_or(i64::MAX),
        i64::try_from(offset).unwrap_or(i64::MAX),
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![pattern, limit, offset], user_row)?;
    let users = rows.collect::<rusqlite::Result<_>>()?;
    Ok((users, u64::try_from(total).unwrap_or(0)))
}

pub(super) fn set_status(
    conn: &mut Connection,
    id: &str,
    status: &str,
    custom: Option<&str>,
    at: &str,
) -> Result<bool> {
    let n = conn.execute(
        "UPDATE users SET status = ?2, custom_status = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, status, custom, at],
    )?;
    Ok(n > 0)
}

pub(super) fn delete(conn: &mut Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM users WHERE id = ?1", [id])? > 0)
}

pub(super) fn read_state(
    conn: &mut Connection,
    channel: &str,
    user: &str,
) -> Result<Option<ReadState>> {
    let sql = "SELECT last_read_seq, last_read_at, last_read_message_id FROM channel_members
               WHERE channel_id = ?1 AND user_id = ?2";
    Ok(conn
        .prepare_cached(sql)?
        .query_row([channel, user], |r| {
            Ok(ReadState {
                seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                at: r.get(1)?,
                message_id: r
                    .get::<_, Option<i64>>(2)?
                    .and_then(|m| u64::try_from(m).ok()),
            })
        })
        .optional()?)
}

pub(super) fn mark_read(
    conn: &mut Connection,
    channel: &str,
    user: &str,
    seq: u64,
    message_id: Option<u64>,
    at: &str,
) -> Result<bool> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let mid = message_id.and_then(|m| i64::try_from(m).ok());
    let n = conn.execute(
        "UPDATE channel_members SET last_read_seq = ?3, last_read_at = ?4,
                last_read_message_id = COALESCE(?5, last_read_message_id)
         WHERE channel_id = ?1 AND user_id = ?2 AND last_read_seq <= ?3",
        params![channel, user, seq, at, mid],
    )?;
    // Nothing moved: already past it, or no member.
    Ok(n > 0 || read_state(conn, channel, user)?.is_some())
}
