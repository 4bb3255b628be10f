//! Rows of the SQLite store: the column lists, how a row becomes a record,
//! and the statements the writer's commit is made of.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::append::Head;
use crate::store::{ChannelRecord, ChannelType, MessageRecord, Pin, Result, Thread};

pub(super) const MESSAGE_COLUMNS: &str = "pos, id, channel_id, seq, user_id, content, type, client_message_id, reply_to, created_at, edited_at, deleted_at, pinned_at, pinned_by, thread_id, thread_count, last_thread_at";

pub(super) fn message_row(r: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        pos: r.get::<_, i64>(0)? as u64,
        id: r.get::<_, i64>(1)? as u64,
        channel_id: r.get(2)?,
        seq: r.get::<_, i64>(3)? as u64,
        user_id: r.get(4)?,
        content: r.get(5)?,
        kind: r.get(6)?,
        client_message_id: r.get(7)?,
        reply_to: r.get(8)?,
        created_at: r.get(9)?,
        edited_at: r.get(10)?,
        deleted_at: r.get(11)?,
        pinned: Pin::of_columns(r.get(12)?, r.get(13)?),
        thread: Thread {
            parent: r.get::<_, Option<i64>>(14)?.map(|id| id as u64),
            count: r.get::<_, i64>(15)? as u64,
            last_at: r.get(16)?,
        },
    })
}

pub(super) const CHANNEL_COLUMNS: &str =
    "id, name, type, description, owner_id, created_at, updated_at, num, settings, max_members";

pub(super) fn channel_row(r: &Row<'_>) -> rusqlite::Result<ChannelRecord> {
    let kind: String = r.get(2)?;
    Ok(ChannelRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: ChannelType::parse(&kind).unwrap_or(ChannelType::Private),
        description: r.get(3)?,
        owner_id: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        num: r.get::<_, Option<i64>>(7)?.unwrap_or(0) as u64,
        settings: r.get(8)?,
        max_members: r.get(9)?,
    })
}

/// The last seq given out in `channel`: its counter, or for a channel
/// without a row (messages are not tied to one here) its highest message.
pub(super) fn last_seq(conn: &Connection, channel: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT last_seq FROM channels WHERE id = ?1), 0),
                        COALESCE((SELECT MAX(seq) FROM messages WHERE channel_id = ?1), 0))",
        )?
        .query_row([channel], |r| r.get(0))?;
    Ok(n as u64)
}

pub(super) fn find_by_client_id(
    conn: &Connection,
    user: &str,
    cmid: &str,
) -> Result<Option<MessageRecord>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = ?1 AND client_message_id = ?2"
    );
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([user, cmid], message_row)
        .optional()?)
}

/// Inserts `messages` (inside the caller's transaction) and fills in their
/// `pos` (AUTOINCREMENT), or with `positioned`, at the `pos` they have.
pub(super) fn insert_rows(
    conn: &Connection,
    messages: &mut [MessageRecord],
    positioned: bool,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages (pos, id, channel_id, seq, user_id, content, type, client_message_id, reply_to, created_at,
                               thread_id, thread_count, last_thread_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for m in messages.iter_mut() {
        stmt.execute(params![
            positioned.then_some(m.pos as i64),
            m.id as i64,
            m.channel_id,
            m.seq as i64,
            m.user_id,
            m.content,
            m.kind,
            m.client_message_id,
            m.reply_to,
            m.created_at,
            m.thread.parent.map(|id| id as i64),
            m.thread.count as i64,
            m.thread.last_at,
        ])?;
        m.pos = conn.last_insert_rowid() as u64;
    }
    Ok(())
}

/// The last position given out: AUTOINCREMENT's counter (the largest
/// `pos` ever, deleted rows included), 0 on an empty store.
pub(super) fn last_pos(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0)",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

/// Raises each channel's counter to its new last seq (never lowers it).
pub(super) fn keep_last_seqs(conn: &Connection, last: &HashMap<String, u64>) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("UPDATE channels SET last_seq = MAX(last_seq, ?2) WHERE id = ?1")?;
    for (channel, seq) in last {
        stmt.execute(params![channel, *seq as i64])?;
    }
    Ok(())
}

/// The thread heads `ids` as the commit reads them ([`Head`]); an id
/// without a row is left out.
pub(super) fn heads(conn: &Connection, ids: &[u64]) -> Result<HashMap<u64, Head>> {
    let mut stmt = conn.prepare_cached(
        "SELECT channel_id, thread_id IS NOT NULL, deleted_at IS NOT NULL, thread_count, last_thread_at
         FROM messages WHERE id = ?1",
    )?;
    let mut out = HashMap::with_capacity(ids.len());
    for &id in ids {
        let head = stmt
            .query_row([id as i64], |r| {
                Ok(Head {
                    channel_id: r.get(0)?,
                    reply: r.get(1)?,
                    deleted: r.get(2)?,
                    thread: Thread {
                        parent: None,
                        count: r.get::<_, i64>(3)? as u64,
                        last_at: r.get(4)?,
                    },
                    counted: false,
                })
            })
            .optional()?;
        if let Some(h) = head {
            out.insert(id, h);
        }
    }
    Ok(out)
}

/// Writes the new count and latest reply time of each head a reply was
/// counted into.
pub(super) fn keep_heads(conn: &Connection, heads: &HashMap<u64, Head>) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE messages SET thread_count = ?2, last_thread_at = ?3 WHERE id = ?1",
    )?;
    for (id, h) in heads.iter().filter(|(_, h)| h.counted) {
        stmt.execute(params![*id as i64, h.thread.count as i64, h.thread.last_at])?;
    }
    Ok(())
}

/// A reply deleted (inside the caller's transaction): its head counts one
/// reply less, and its latest reply is the latest left.
pub(super) fn uncount_reply(conn: &Connection, head: u64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE messages SET thread_count = MAX(thread_count - 1, 0),
             last_thread_at = (SELECT MAX(created_at) FROM messages
                               WHERE thread_id = ?1 AND deleted_at IS NULL)
         WHERE id = ?1",
    )?
    .execute([head as i64])?;
    Ok(())
}
