//! Rows of the MySQL store: the column lists, how a row becomes a record,
//! and the shapes of the batched statements (multi-row INSERT, lookup by
//! many client message ids).

use mysql::prelude::{FromRow, FromValue, Queryable};
use mysql::{FromRowError, Row};

use crate::store::{ChannelRecord, ChannelType, MessageRecord, Pin, Thread};

/// Most rows in one INSERT statement; a larger batch is sent as several
/// statements in the same transaction.
pub const MAX_INSERT_ROWS: usize = 128;
/// Most (user, clientMessageId) pairs in one lookup statement.
pub const MAX_LOOKUP_KEYS: usize = 64;
/// Most content bytes in one INSERT statement, well below the server's
/// max_allowed_packet (16 MiB by default on MariaDB 10.11, 64 MiB on MySQL 8).
pub(super) const MAX_INSERT_BYTES: usize = 4 << 20;

/// The columns of a message, in [`MessageRow`] order.
pub(super) const MESSAGE_COLUMNS: &str = "pos, id, channel_id, seq, user_id, content, type, client_message_id, reply_to, created_at, edited_at, deleted_at, pinned_at, pinned_by, thread_id, thread_count, last_thread_at";

/// A row of [`MESSAGE_COLUMNS`] (more columns than the driver's tuples
/// convert).
pub(super) struct MessageRow(MessageRecord);

impl FromRow for MessageRow {
    fn from_row_opt(mut row: Row) -> Result<Self, FromRowError> {
        fn take<T: FromValue>(row: &mut Row, i: usize) -> Option<T> {
            row.take_opt::<T, usize>(i)?.ok()
        }
        let m = (|| {
            Some(MessageRecord {
                pos: take(&mut row, 0)?,
                id: take(&mut row, 1)?,
                channel_id: take(&mut row, 2)?,
                seq: take(&mut row, 3)?,
                user_id: take(&mut row, 4)?,
                content: take(&mut row, 5)?,
                kind: take(&mut row, 6)?,
                client_message_id: take(&mut row, 7)?,
                reply_to: take(&mut row, 8)?,
                created_at: take(&mut row, 9)?,
                edited_at: take(&mut row, 10)?,
                deleted_at: take(&mut row, 11)?,
                pinned: Pin::of_columns(take(&mut row, 12)?, take(&mut row, 13)?),
                thread: Thread {
                    parent: take(&mut row, 14)?,
                    count: take(&mut row, 15)?,
                    last_at: take(&mut row, 16)?,
                },
            })
        })();
        m.map(MessageRow).ok_or(FromRowError(row))
    }
}

pub(super) fn to_message(r: MessageRow) -> MessageRecord {
    r.0
}

/// The columns of a channel, in [`ChannelRow`] order.
pub(super) const CHANNEL_COLUMNS: &str =
    "id, name, type, description, owner_id, created_at, updated_at, num, settings, max_members";
pub(super) type ChannelRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    u64,
    Option<String>,
    Option<u32>,
);

pub(super) fn to_channel(r: ChannelRow) -> ChannelRecord {
    ChannelRecord {
        id: r.0,
        name: r.1,
        kind: ChannelType::parse(&r.2).unwrap_or(ChannelType::Private),
        description: r.3,
        owner_id: r.4,
        created_at: r.5,
        updated_at: r.6,
        num: r.7,
        settings: r.8,
        max_members: r.9,
    }
}

/// Rows that did not convert are an error, never a panic on a store thread.
pub(super) fn all<T>(rows: Vec<std::result::Result<T, FromRowError>>) -> mysql::Result<Vec<T>> {
    rows.into_iter()
        .map(|r| r.map_err(|FromRowError(row)| mysql::Error::FromRowError(row)))
        .collect()
}

pub(super) fn first<T: FromRow>(
    conn: &mut impl Queryable,
    sql: &str,
    params: impl Into<mysql::Params>,
) -> mysql::Result<Option<T>> {
    Ok(all(conn.exec_opt(sql, params)?)?.into_iter().next())
}

/// `INSERT INTO messages ... VALUES (...), (...)` for `rows` rows: one
/// prepared statement per row count, cached on the connection.
pub(super) fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO messages (id, partition_id, pos, channel_id, seq, user_id, content, type, client_message_id, reply_to, created_at, thread_id, thread_count, last_thread_at) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

/// `SELECT ... WHERE (user_id, client_message_id) IN (...)` for `keys`
/// pairs, first messages first.
pub(super) fn lookup_sql(keys: usize) -> String {
    let pairs = vec!["(?, ?)"; keys].join(", ");
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE (user_id, client_message_id) IN ({pairs}) ORDER BY pos"
    )
}

/// The batch split into INSERT statements: at most [`MAX_INSERT_ROWS`]
/// rows and about [`MAX_INSERT_BYTES`] of content each.
pub(super) fn chunks(messages: &[MessageRecord]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, m) in messages.iter().enumerate() {
        let size = m.content.len() + 256;
        if i > start && (i - start == MAX_INSERT_ROWS || bytes + size > MAX_INSERT_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        out.push(start..messages.len());
    }
    out
}
