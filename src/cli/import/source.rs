//! Reading the Node.js Gatrix chat server's tables (its knex migrations in
//! `packages/chat-server/src/database/migrations` of maxidea1024/gatrix):
//! `chat_users`, `chat_channels`, `chat_channel_members`, `chat_messages`,
//! and the counts of what has no place here (`chat_message_reactions`,
//! `chat_message_attachments`).
//!
//! Columns that later migrations added (`name`, `ownerId`, `isArchived`,
//! `status`, `lastReadMessageId`, `isDeleted`, …) are looked up in
//! `information_schema` first and read as NULL when a deployment never
//! ran those migrations. Every SQL text is built from these constants
//! only. Times are read in UTC (the session's `time_zone`; the original
//! wrote its TIMESTAMPs through a `+00:00` connection) and rendered as
//! the server writes them, `2025-02-01T00:00:00.000Z`.

use std::collections::HashSet;

use mysql::prelude::{FromValue, Queryable};
use mysql::{Conn, Row};

use super::ImportError;

pub(crate) const USERS: &str = "chat_users";
pub(crate) const CHANNELS: &str = "chat_channels";
pub(crate) const MEMBERS: &str = "chat_channel_members";
pub(crate) const MESSAGES: &str = "chat_messages";
pub(crate) const REACTIONS: &str = "chat_message_reactions";
pub(crate) const ATTACHMENTS: &str = "chat_message_attachments";

/// Messages read per query (in id order, after the last one read).
pub(crate) const MESSAGE_PAGE: usize = 2000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SrcUser {
    pub id: u64,
    /// The backend's user id (the token's `userId`), as text.
    pub gatrix_user_id: Option<String>,
    pub username: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
    /// `avatarUrl`, else the older `avatar`.
    pub avatar: Option<String>,
    pub chat_status: Option<String>,
    pub custom_status: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SrcChannel {
    pub id: u64,
    /// `name`, else the older `channelName`.
    pub name: Option<String>,
    pub description: Option<String>,
    pub kind: Option<String>,
    /// `ownerId`, else `createdBy`.
    pub owner: Option<u64>,
    pub archived: bool,
    pub archived_at: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The JSON text of `settings`.
    pub settings: Option<String>,
    pub max_members: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SrcMember {
    pub channel: u64,
    pub user: u64,
    pub role: Option<String>,
    pub status: Option<String>,
    pub joined_at: Option<String>,
    pub last_read_message_id: Option<u64>,
    pub last_read_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SrcMessage {
    pub id: u64,
    pub channel: u64,
    pub user: u64,
    pub content: String,
    pub content_type: Option<String>,
    pub reply_to: Option<u64>,
    pub thread: Option<u64>,
    pub edited: bool,
    pub deleted: bool,
    pub pinned: bool,
    /// `messageData` is set (structured content with no column here).
    pub has_data: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub deleted_at: Option<String>,
}

/// The original's database: its connection and the columns its tables have.
pub(crate) struct Source {
    conn: Conn,
    columns: HashSet<(String, String)>,
}

impl Source {
    /// Reads which columns the original's tables have; refuses a database
    /// without its four main tables.
    pub(crate) fn open(mut conn: Conn) -> Result<Self, ImportError> {
        conn.query_drop("SET SESSION time_zone = '+00:00'")?;
        let rows: Vec<(String, String)> = conn.query(
            "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS
             WHERE TABLE_SCHEMA = DATABASE()",
        )?;
        let columns: HashSet<(String, String)> = rows.into_iter().collect();
        let source = Self { conn, columns };
        let missing: Vec<&str> = [USERS, CHANNELS, MEMBERS, MESSAGES]
            .into_iter()
            .filter(|t| !source.has(t, "id"))
            .collect();
        if !missing.is_empty() {
            return Err(ImportError::NotTheOriginal(missing.join(", ")));
        }
        Ok(source)
    }

    fn has(&self, table: &str, column: &str) -> bool {
        self.columns
            .contains(&(table.to_owned(), column.to_owned()))
    }

    /// Whether `table` exists (has an `id`).
    pub(crate) fn has_table(&self, table: &str) -> bool {
        self.has(table, "id")
    }

    /// The column, or NULL when the table lacks it.
    fn col(&self, table: &str, column: &str) -> String {
        if self.has(table, column) {
            format!("`{column}`")
        } else {
            "NULL".to_owned()
        }
    }

    /// The first of `columns` the table has that is not NULL (or empty,
    /// with `skip_empty`), NULL when it has none of them.
    fn first_of(&self, table: &str, columns: &[&str], skip_empty: bool) -> String {
        let present: Vec<String> = columns
            .iter()
            .filter(|c| self.has(table, c))
            .map(|c| {
                if skip_empty {
                    format!("NULLIF(`{c}`, '')")
                } else {
                    format!("`{c}`")
                }
            })
            .collect();
        match present.len() {
            0 => "NULL".to_owned(),
            1 => present[0].clone(),
            _ => format!("COALESCE({})", present.join(", ")),
        }
    }

    /// A flag column as 0/1, 0 when missing.
    fn flag(&self, table: &str, column: &str) -> String {
        if self.has(table, column) {
            format!("IF(`{column}`, 1, 0)")
        } else {
            "0".to_owned()
        }
    }

    /// A time column as the server's string, NULL when missing.
    fn time(&self, table: &str, column: &str) -> String {
        if self.has(table, column) {
            format!("CONCAT(LEFT(DATE_FORMAT(`{column}`, '%Y-%m-%dT%H:%i:%s.%f'), 23), 'Z')")
        } else {
            "NULL".to_owned()
        }
    }

    fn text(&self, table: &str, column: &str) -> String {
        if self.has(table, column) {
            format!("CAST(`{column}` AS CHAR)")
        } else {
            "NULL".to_owned()
        }
    }

    pub(crate) fn users(&mut self) -> Result<Vec<SrcUser>, ImportError> {
        let t = USERS;
        let sql = format!(
            "SELECT id, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {t} ORDER BY id",
            self.text(t, "gatrixUserId"),
            self.first_of(t, &["username"], true),
            self.first_of(t, &["name"], true),
            self.first_of(t, &["email"], true),
            self.first_of(t, &["avatarUrl", "avatar"], true),
            self.text(t, "chatStatus"),
            self.first_of(t, &["customStatus"], true),
            self.time(t, "createdAt"),
            self.time(t, "updatedAt"),
        );
        self.rows(&sql, |r| {
            Ok(SrcUser {
                id: req(r, 0)?,
                gatrix_user_id: opt(r, 1)?,
                username: opt(r, 2)?,
                name: opt(r, 3)?,
                email: opt(r, 4)?,
                avatar: opt(r, 5)?,
                chat_status: opt(r, 6)?,
                custom_status: opt(r, 7)?,
                created_at: opt(r, 8)?,
                updated_at: opt(r, 9)?,
            })
        })
    }

    pub(crate) fn channels(&mut self) -> Result<Vec<SrcChannel>, ImportError> {
        let t = CHANNELS;
        let sql = format!(
            "SELECT id, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM {t} ORDER BY id",
            self.first_of(t, &["name", "channelName"], true),
            self.col(t, "description"),
            self.text(t, "type"),
            self.first_of(t, &["ownerId", "createdBy"], false),
            self.flag(t, "isArchived"),
            self.time(t, "archivedAt"),
            self.time(t, "createdAt"),
            self.time(t, "updatedAt"),
            self.text(t, "settings"),
            self.col(t, "maxMembers"),
        );
        self.rows(&sql, |r| {
            Ok(SrcChannel {
                id: req(r, 0)?,
                name: opt(r, 1)?,
                description: opt(r, 2)?,
                kind: opt(r, 3)?,
                owner: opt(r, 4)?,
                archived: req::<u8>(r, 5)? != 0,
                archived_at: opt(r, 6)?,
                created_at: opt(r, 7)?,
                updated_at: opt(r, 8)?,
                settings: opt(r, 9)?,
                max_members: opt(r, 10)?,
            })
        })
    }

    pub(crate) fn members(&mut self) -> Result<Vec<SrcMember>, ImportError> {
        let t = MEMBERS;
        let sql = format!(
            "SELECT channelId, userId, {}, {}, {}, {}, {} FROM {t} ORDER BY channelId, userId",
            self.text(t, "role"),
            self.text(t, "status"),
            self.time(t, "joinedAt"),
            self.col(t, "lastReadMessageId"),
            self.time(t, "lastReadAt"),
        );
        self.rows(&sql, |r| {
            Ok(SrcMember {
                channel: req(r, 0)?,
                user: req(r, 1)?,
                role: opt(r, 2)?,
                status: opt(r, 3)?,
                joined_at: opt(r, 4)?,
                last_read_message_id: opt(r, 5)?,
                last_read_at: opt(r, 6)?,
            })
        })
    }

    /// The next page of messages after id `after`, in id order.
    pub(crate) fn messages_after(&mut self, after: u64) -> Result<Vec<SrcMessage>, ImportError> {
        let t = MESSAGES;
        let sql = format!(
            "SELECT id, channelId, userId, COALESCE(content, ''), {}, {}, {}, {}, {}, {}, {},
                    {}, {}, {}
             FROM {t} WHERE id > {after} ORDER BY id LIMIT {MESSAGE_PAGE}",
            self.text(t, "contentType"),
            self.col(t, "replyToMessageId"),
            self.col(t, "threadId"),
            self.flag(t, "isEdited"),
            self.flag(t, "isDeleted"),
            self.flag(t, "isPinned"),
            if self.has(t, "messageData") {
                "IF(`messageData` IS NULL, 0, 1)"
            } else {
                "0"
            },
            self.time(t, "createdAt"),
            self.time(t, "updatedAt"),
            self.time(t, "deletedAt"),
        );
        self.rows(&sql, |r| {
            Ok(SrcMessage {
                id: req(r, 0)?,
                channel: req(r, 1)?,
                user: req(r, 2)?,
                content: req(r, 3)?,
                content_type: opt(r, 4)?,
                reply_to: opt(r, 5)?,
                thread: opt(r, 6)?,
                edited: req::<u8>(r, 7)? != 0,
                deleted: req::<u8>(r, 8)? != 0,
                pinned: req::<u8>(r, 9)? != 0,
                has_data: req::<u8>(r, 10)? != 0,
                created_at: opt(r, 11)?,
                updated_at: opt(r, 12)?,
                deleted_at: opt(r, 13)?,
            })
        })
    }

    /// Rows of `table` (0 when it does not exist).
    pub(crate) fn count(&mut self, table: &str) -> Result<u64, ImportError> {
        if !self.has_table(table) {
            return Ok(0);
        }
        let n: Option<u64> = self
            .conn
            .query_first(format!("SELECT COUNT(*) FROM {table}"))?;
        Ok(n.unwrap_or(0))
    }

    fn rows<T>(
        &mut self,
        sql: &str,
        mut each: impl FnMut(&mut Row) -> Result<T, ImportError>,
    ) -> Result<Vec<T>, ImportError> {
        let rows: Vec<Row> = self.conn.query(sql)?;
        rows.into_iter().map(|mut r| each(&mut r)).collect()
    }
}

/// Column `i`, NULL as None.
fn opt<T: FromValue>(row: &mut Row, i: usize) -> Result<Option<T>, ImportError> {
    match row.take_opt::<Option<T>, usize>(i) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(ImportError::SourceValue(format!("column {i}: {e}"))),
        None => Err(ImportError::SourceValue(format!("column {i} missing"))),
    }
}

/// Column `i`, which must not be NULL.
fn req<T: FromValue>(row: &mut Row, i: usize) -> Result<T, ImportError> {
    opt(row, i)?.ok_or_else(|| ImportError::SourceValue(format!("column {i} is NULL")))
}
