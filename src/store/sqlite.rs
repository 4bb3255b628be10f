//! The embedded store: SQLite (bundled) in WAL mode under DATA_DIR, one
//! connection per store thread. Migrations in migrations/sqlite are applied
//! by refinery at start and by `gatrix-chat migrate`.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use super::{
    Appended, ChannelRecord, MemberRole, MessageRecord, Page, Pin, Result, Store, StoreError,
    UserRecord, append,
};

mod checkpoint;
mod gatrix;
mod rows;
mod users;
mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

pub use checkpoint::Checkpointer;
use rows::{
    CHANNEL_COLUMNS, MESSAGE_COLUMNS, channel_row, find_by_client_id, insert_rows, keep_last_seqs,
    last_pos, last_seq, message_row,
};

/// The database file inside DATA_DIR.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("gatrix-chat.db")
}

/// Creates DATA_DIR if needed and applies pending migrations; returns how
/// many were applied.
pub fn migrate(data_dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(data_dir)?;
    let mut conn = open_connection(&db_path(data_dir))?;
    let report = embedded::migrations::runner().run(&mut conn)?;
    Ok(report.applied_migrations().len())
}

/// Applies the migrations up to `version` only: a store as an earlier
/// gatrix-chat left it, for the tests of a later migration.
#[cfg(test)]
fn migrate_to(data_dir: &Path, version: i32) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let mut conn = open_connection(&db_path(data_dir))?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(&mut conn)?;
    Ok(())
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL + NORMAL: a commit survives a process crash (kill -9); only an
    // OS crash or power loss can lose the last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The WAL file is cut back to this after a checkpoint resets it.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

pub struct SqliteStore {
    conn: Connection,
    /// The writer's: each channel's last seq as this connection last
    /// committed it, so a commit reads no counter it already knows. Safe
    /// only because SQLite has one writer (the process lock, one writer
    /// thread): nothing else raises a counter behind it.
    last_seqs: HashMap<String, u64>,
}

impl SqliteStore {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let conn = open_connection(&db_path(data_dir))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            conn,
            last_seqs: HashMap::new(),
        })
    }

    /// A connection that never checkpoints: for a server whose
    /// [`Checkpointer`] does it.
    pub fn open_without_checkpoints(data_dir: &Path) -> Result<Self> {
        let s = Self::open(data_dir)?;
        s.conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(s)
    }
}

impl Store for SqliteStore {
    fn ping(&mut self) -> Result<()> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn last_seq(&mut self, channel: &str) -> Result<u64> {
        last_seq(&self.conn, channel)
    }

    fn find_by_client_id(&mut self, user: &str, cmid: &str) -> Result<Option<MessageRecord>> {
        find_by_client_id(&self.conn, user, cmid)
    }

    fn insert_messages(&mut self, messages: &mut [MessageRecord]) -> Result<()> {
        let tx = self.conn.transaction()?;
        insert_rows(&tx, messages, false)?;
        gatrix::insert_pins(&tx, messages)?;
        let mut last: HashMap<String, u64> = HashMap::new();
        for m in messages.iter() {
            let seq = last.entry(m.channel_id.clone()).or_insert(0);
            *seq = (*seq).max(m.seq);
        }
        keep_last_seqs(&tx, &last)?;
        tx.commit()?;
        for (channel, seq) in last {
            let known = self.last_seqs.entry(channel).or_insert(0);
            *known = (*known).max(seq);
        }
        Ok(())
    }

    /// Single-writer (the process lock): the counters need no locking, the
    /// transaction only makes the batch all or nothing.
    fn append(&mut self, batch: &[&MessageRecord]) -> Result<Appended> {
        // IMMEDIATE: the write lock first, waiting (busy timeout) for the
        // checkpointer's RESTART. A deferred transaction that has read
        // cannot wait for it: its upgrade fails at once, "database is
        // locked".
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut earlier = HashMap::new();
        for (user, cmid) in append::client_keys(batch) {
            if let Some(m) = find_by_client_id(&tx, &user, &cmid)? {
                earlier.insert((user, cmid), m);
            }
        }
        let mut out = append::dedupe(batch, &earlier);
        let parents = append::parents(&out.rows);
        let mut heads = HashMap::new();
        if !parents.is_empty() {
            heads = rows::heads(&tx, &parents)?;
            append::thread_replies(&mut out, &mut heads);
        }
        let mut last: HashMap<String, u64> = HashMap::new();
        for channel in append::channels(&out.rows) {
            let seq = match self.last_seqs.get(channel) {
                Some(&seq) => seq,
                None => last_seq(&tx, channel)?,
            };
            last.insert(channel.to_owned(), seq);
        }
        append::assign_seqs(&mut out.rows, &mut last);
        // One sequencing partition (SQLite is single-instance): positions
        // after AUTOINCREMENT's counter, ids made of them.
        let mut positions = BTreeMap::from([(0, last_pos(&tx)?)]);
        append::assign_positions(&mut out.rows, 1, &mut positions, true);
        insert_rows(&tx, &mut out.rows, true)?;
        keep_last_seqs(&tx, &last)?;
        rows::keep_heads(&tx, &heads)?;
        tx.commit()?;
        // Only once committed: a failed batch gave out nothing.
        self.last_seqs.extend(last);
        Ok(out)
    }

    fn edit_message(&mut self, id: u64, content: &str, at: &str) -> Result<Option<MessageRecord>> {
        let n = self.conn.execute(
            "UPDATE messages SET content = ?2, edited_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
            params![id as i64, content, at],
        )?;
        if n == 0 { Ok(None) } else { self.message(id) }
    }

    fn delete_message(&mut self, id: u64, at: &str) -> Result<Option<MessageRecord>> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE messages SET deleted_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            params![id as i64, at],
        )?;
        if n == 0 {
            return Ok(None);
        }
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
        let m = tx.query_row(&sql, [id as i64], message_row).optional()?;
        // A deleted reply leaves its thread, in the same transaction.
        if let Some(head) = m.as_ref().and_then(|m| m.thread.parent) {
            rows::uncount_reply(&tx, head)?;
        }
        tx.commit()?;
        Ok(m)
    }

    fn message(&mut self, id: u64) -> Result<Option<MessageRecord>> {
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1 AND deleted_at IS NULL");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id as i64], message_row)
            .optional()?)
    }

    fn history(
        &mut self,
        channel: &str,
        page: Page,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, bool)> {
        let (cond, order, bound) = match page {
            Page::Latest => ("seq < ?2", "DESC", i64::MAX),
            Page::Before(n) => ("seq < ?2", "DESC", n as i64),
            Page::After(n) => ("seq > ?2", "ASC", n as i64),
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ?1 AND {cond} AND deleted_at IS NULL
             ORDER BY seq {order} LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let take = limit as i64 + 1;
        let rows: Vec<MessageRecord> = stmt
            .query_map(params![channel, bound, take], message_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(super::finish_page(rows, limit, page))
    }

    fn thread(
        &mut self,
        head: u64,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, u64)> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = ?1 AND deleted_at IS NULL
             ORDER BY seq LIMIT ?2 OFFSET ?3"
        );
        let rows: Vec<MessageRecord> = self
            .conn
            .prepare_cached(&sql)?
            .query_map(
                params![head as i64, limit as i64, offset as i64],
                message_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        let total: i64 = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE thread_id = ?1 AND deleted_at IS NULL",
            )?
            .query_row([head as i64], |r| r.get(0))?;
        Ok((rows, total as u64))
    }

    fn replay_count(&mut self, channels: &[(String, u64)], limit: usize) -> Result<usize> {
        // The inner LIMIT bounds the rows counted, whatever the channel holds.
        let mut stmt = self.conn.prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM messages
              WHERE channel_id = ?1 AND pos > ?2 AND deleted_at IS NULL LIMIT ?3)",
        )?;
        Ok(super::count_replay(
            channels,
            limit,
            |channel, after_pos, left| {
                let n: i64 = stmt
                    .query_row(params![channel, after_pos as i64, left as i64], |r| {
                        r.get(0)
                    })?;
                Ok::<_, rusqlite::Error>(n as usize)
            },
        )?)
    }

    fn replay(
        &mut self,
        ranges: &[super::ReplayRange],
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ?1 AND pos > ?2 AND pos <= ?3 AND seq <= ?4
             AND deleted_at IS NULL ORDER BY pos LIMIT ?5"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        // SQLite's integers are signed: a bound past i64::MAX is "no bound".
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(super::merge_replay(ranges, limit, |r| {
            stmt.query_map(
                params![
                    r.channel,
                    int(r.after),
                    int(r.upto_pos),
                    int(r.max_seq),
                    limit as i64
                ],
                message_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })?)
    }

    fn last_pos(&mut self, partition: u32) -> Result<u64> {
        // One sequencing partition: 0.
        if partition == 0 {
            last_pos(&self.conn)
        } else {
            Ok(0)
        }
    }

    fn partition_messages(
        &mut self,
        partition: u32,
        after_pos: u64,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        if partition != 0 {
            return Ok(Vec::new());
        }
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE pos > ?1 ORDER BY pos LIMIT ?2");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(
                params![i64::try_from(after_pos).unwrap_or(i64::MAX), limit as i64],
                message_row,
            )?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn channel(&mut self, id: &str) -> Result<Option<ChannelRecord>> {
        let sql =
            format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ?1 AND deleted_at IS NULL");
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], channel_row)
            .optional()?)
    }

    fn channel_id_by_num(&mut self, num: u64) -> Result<Option<String>> {
        let sql = "SELECT id FROM channels WHERE num = ?1 AND deleted_at IS NULL";
        let num = i64::try_from(num).unwrap_or(i64::MAX);
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row([num], |r| r.get(0))
            .optional()?)
    }

    fn channels_of(&mut self, user: &str) -> Result<Vec<ChannelRecord>> {
        let sql = format!(
            "SELECT {} FROM channels c JOIN channel_members m ON m.channel_id = c.id
             WHERE m.user_id = ?1 AND c.deleted_at IS NULL ORDER BY c.created_at, c.id",
            CHANNEL_COLUMNS
                .split(", ")
                .map(|c| format!("c.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([user], channel_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn member_ids(&mut self, channel: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT user_id FROM channel_members WHERE channel_id = ?1")?;
        let rows = stmt.query_map([channel], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn create_channel(&mut self, c: &ChannelRecord, members: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO channels (id, name, type, description, owner_id, created_at, updated_at,
                                   settings, max_members, num)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9,
                     (SELECT COALESCE(MAX(num), 0) + 1 FROM channels))",
            params![
                c.id,
                c.name,
                c.kind.as_str(),
                c.description,
                c.owner_id,
                c.created_at,
                c.updated_at,
                c.settings,
                c.max_members,
            ],
        )?;
        tx.execute(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at) VALUES (?1, ?2, 'owner', ?3)",
            params![c.id, c.owner_id, c.created_at],
        )?;
        for m in members.iter().filter(|m| **m != c.owner_id) {
            tx.execute(
                "INSERT OR IGNORE INTO channel_members (channel_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
                params![c.id, m, c.created_at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn update_channel(
        &mut self,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        at: &str,
    ) -> Result<Option<ChannelRecord>> {
        let tx = self.conn.transaction()?;
        if let Some(n) = name {
            tx.execute("UPDATE channels SET name = ?2, updated_at = ?3 WHERE id = ?1 AND deleted_at IS NULL", params![id, n, at])?;
        }
        if let Some(d) = description {
            tx.execute(
                "UPDATE channels SET description = ?2, updated_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
                params![id, d, at],
            )?;
        }
        tx.commit()?;
        self.channel(id)
    }

    fn delete_channel(&mut self, id: &str, at: &str) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE channels SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            params![id, at],
        )?;
        Ok(n > 0)
    }

    fn add_member(&mut self, channel: &str, user: &str, at: &str) -> Result<bool> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO channel_members (channel_id, user_id, joined_at) VALUES (?1, ?2, ?3)",
            params![channel, user, at],
        )?;
        Ok(n > 0)
    }

    fn remove_member(&mut self, channel: &str, user: &str) -> Result<bool> {
        let n = self.conn.execute(
            "DELETE FROM channel_members WHERE channel_id = ?1 AND user_id = ?2 AND role <> 'owner'",
            params![channel, user],
        )?;
        Ok(n > 0)
    }

    fn member_role(&mut self, channel: &str, user: &str) -> Result<Option<MemberRole>> {
        gatrix::member_role(&self.conn, channel, user)
    }

    fn set_member_role(&mut self, channel: &str, user: &str, role: MemberRole) -> Result<bool> {
        gatrix::set_member_role(&self.conn, channel, user, role)
    }

    fn update_channel_settings(
        &mut self,
        id: &str,
        settings: Option<Option<&str>>,
        max_members: Option<Option<u32>>,
        at: &str,
    ) -> Result<Option<ChannelRecord>> {
        gatrix::update_channel_settings(&mut self.conn, id, settings, max_members, at)?;
        self.channel(id)
    }

    fn set_pin(&mut self, id: u64, pin: Option<&Pin>) -> Result<Option<MessageRecord>> {
        if gatrix::set_pin(&self.conn, id, pin)? {
            self.message(id)
        } else {
            Ok(None)
        }
    }

    fn upsert_users(&mut self, list: &[UserRecord]) -> Result<()> {
        users::upsert(&mut self.conn, list)
    }

    fn user(&mut self, id: &str) -> Result<Option<UserRecord>> {
        users::get(&mut self.conn, id)
    }

    fn users_page(
        &mut self,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, u64)> {
        users::page(&mut self.conn, search, offset, limit)
    }

    fn set_user_status(
        &mut self,
        id: &str,
        status: &str,
        custom_status: Option<&str>,
        at: &str,
    ) -> Result<bool> {
        users::set_status(&mut self.conn, id, status, custom_status, at)
    }

    fn delete_user(&mut self, id: &str) -> Result<bool> {
        users::delete(&mut self.conn, id)
    }

    fn read_state(&mut self, channel: &str, user: &str) -> Result<Option<super::ReadState>> {
        users::read_state(&mut self.conn, channel, user)
    }

    fn mark_read(
        &mut self,
        channel: &str,
        user: &str,
        seq: u64,
        message_id: Option<u64>,
        at: &str,
    ) -> Result<bool> {
        users::mark_read(&mut self.conn, channel, user, seq, message_id, at)
    }
}

#[cfg(test)]
mod tests;
