//! The production store: MySQL or MariaDB (the `mysql` crate speaks to
//! both), chosen by DATABASE_URL or DB_HOST. Same tables and meaning as the
//! SQLite store; one connection per store thread (the writer's and each
//! reader's: that is the pool), each kept alive by a `connection::Connection` that
//! reconnects with backoff. Migrations in migrations/mysql are applied by
//! refinery at start and by `gatrix-chat migrate`; monthly partitions of
//! `messages` are kept by `partitions` (at start, daily, and by
//! `gatrix-chat db partitions`).
//!
//! Every statement with a value in it is a prepared statement (the `mysql`
//! crate prepares and caches each distinct SQL text per connection); SQL
//! text is built only from constants.

mod batch;
mod connection;
mod error;
mod gatrix;
pub(crate) mod lock;
mod migrate;
pub(crate) mod partitions;
mod rows;
mod sequence;
pub(crate) mod upkeep;
mod users;

use std::collections::HashMap;

use mysql::prelude::Queryable;
use mysql::{Opts, TxOpts};

use super::{
    Appended, ChannelRecord, MemberRole, MessageRecord, Page, Pin, ReplayRange, Result, Store,
    StoreError, UserRecord, count_replay, merge_replay,
};
use connection::{Connection, store_opts};
pub use connection::{MAX_BACKOFF, describe};
use error::{is_duplicate, map_error};
pub use migrate::migrate;
pub use partitions::{Partition, PartitionPolicy, Plan};
use rows::{
    CHANNEL_COLUMNS, ChannelRow, MESSAGE_COLUMNS, MessageRow, all, first, to_channel, to_message,
};
pub use rows::{MAX_INSERT_ROWS, MAX_LOOKUP_KEYS};

/// One connection to MySQL/MariaDB.
pub struct MysqlStore {
    conn: Connection,
    /// SEQUENCER_PARTITIONS: how the writer's commits map channels to
    /// `sequencer` rows (`sequencing::partition_of`).
    partitions: u32,
}

impl MysqlStore {
    /// Connects to the database `opts` points at (already migrated), with
    /// one sequencing partition. Fails with `Unavailable` when it cannot be
    /// reached; once open, a lost connection is re-established by later
    /// calls.
    pub fn open(opts: &Opts) -> Result<Self> {
        Ok(Self {
            conn: Connection::open(store_opts(opts))?,
            partitions: 1,
        })
    }

    /// Commits from now on with `partitions` sequencing partitions
    /// (1..=32): makes their `sequencer` rows when missing.
    pub fn set_sequencer_partitions(&mut self, partitions: u32) -> Result<()> {
        let partitions = partitions.clamp(1, crate::store::sequencing::MAX_SEQUENCER_PARTITIONS);
        self.conn
            .run(|c| sequence::ensure_partitions(c, partitions))?;
        self.partitions = partitions;
        Ok(())
    }

    /// Connects as the writer: takes the store's process lock (see
    /// `lock`: with `server_id`, when Redis is configured, the instance's
    /// own; else the whole database's) before anything else, and again on
    /// every reconnect. Fails with [`crate::store::lock::StoreLocked`]
    /// when another process holds it (or, for an instance, when a server
    /// without Redis holds the database).
    pub fn open_writer(opts: &Opts, server_id: Option<&str>) -> anyhow::Result<Self> {
        let lock = lock::WriterLock::for_database(opts.get_db_name().unwrap_or(""), server_id);
        Ok(Self {
            conn: Connection::open_locked(store_opts(opts), lock)?,
            partitions: 1,
        })
    }

    /// Runs `f` on this store's connection (reconnected as the store's
    /// calls are): statements of `gatrix-chat import` that no `Store`
    /// method makes.
    pub(crate) fn run_sql<T>(
        &mut self,
        f: impl FnOnce(&mut mysql::Conn) -> mysql::Result<T>,
    ) -> Result<T> {
        self.conn.run(f)
    }

    /// The partitions of `messages`, oldest first.
    pub fn partitions(&mut self) -> Result<Vec<Partition>> {
        self.conn.run(partitions::list)
    }

    /// Brings the partitions in line with `policy` at `now_unix_ms` (or,
    /// with `dry_run`, only says how); returns the partitions before and
    /// the plan.
    pub fn maintain_partitions(
        &mut self,
        policy: PartitionPolicy,
        now_unix_ms: u64,
        dry_run: bool,
    ) -> Result<(Vec<Partition>, Plan)> {
        let existing = self.partitions()?;
        if existing.is_empty() {
            return Err(StoreError::Other(
                "the messages table is missing or not partitioned: run `gatrix-chat migrate` first"
                    .into(),
            ));
        }
        self.conn.run(|c| {
            let plan = partitions::plan(&existing, now_unix_ms, policy);
            if !dry_run && !plan.is_empty() {
                // Gives up rather than queue behind a long transaction:
                // a waiting ALTER would block every other statement on
                // the table meanwhile. Upkeep runs again tomorrow.
                c.query_drop("SET SESSION lock_wait_timeout = 5")?;
                partitions::apply(c, &existing, &plan)?;
            }
            Ok((existing, plan))
        })
    }
}

impl Store for MysqlStore {
    fn ping(&mut self) -> Result<()> {
        self.conn.run(|c| c.ping())
    }

    fn last_seq(&mut self, channel: &str) -> Result<u64> {
        self.conn.run(|c| {
            // The counter, or for a channel without a row its highest
            // message (as the writer's commit reads it).
            Ok(first::<Option<u64>>(
                c,
                "SELECT GREATEST(
                    COALESCE((SELECT last_seq FROM channels WHERE id = ?), 0),
                    COALESCE((SELECT MAX(seq) FROM messages WHERE channel_id = ?), 0))",
                (channel, channel),
            )?
            .flatten()
            .unwrap_or(0))
        })
    }

    fn find_by_client_id(&mut self, user: &str, cmid: &str) -> Result<Option<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = ? AND client_message_id = ? LIMIT 1"
        );
        self.conn
            .run(|c| Ok(first::<MessageRow>(c, &sql, (user, cmid))?.map(to_message)))
    }

    /// One query per [`MAX_LOOKUP_KEYS`] pairs (`batch::find_by_client_ids`).
    fn find_by_client_ids(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), MessageRecord>> {
        let mut unique: Vec<&(String, String)> = keys.iter().collect();
        unique.sort_unstable();
        unique.dedup();
        self.conn.run(|c| batch::find_by_client_ids(c, &unique))
    }

    /// One transaction of multi-row INSERTs (`sequence::insert_messages`).
    fn insert_messages(&mut self, messages: &mut [MessageRecord]) -> Result<()> {
        let partitions = self.partitions;
        self.conn
            .run(|c| sequence::insert_messages(c, messages, partitions))
    }

    /// Seqs and positions from counters locked in the transaction
    /// (`sequence`).
    fn append(&mut self, batch: &[&MessageRecord]) -> Result<Appended> {
        let partitions = self.partitions;
        self.conn.run(|c| sequence::append(c, batch, partitions))
    }

    fn edit_message(&mut self, id: u64, content: &str, at: &str) -> Result<Option<MessageRecord>> {
        let n = self.conn.run(|c| {
            c.exec_drop(
                "UPDATE messages SET content = ?, edited_at = ? WHERE id = ? AND deleted_at IS NULL",
                (content, at, id),
            )?;
            Ok(c.affected_rows())
        })?;
        if n == 0 { Ok(None) } else { self.message(id) }
    }

    fn delete_message(&mut self, id: u64, at: &str) -> Result<Option<MessageRecord>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?");
        self.conn.run(|c| {
            let mut tx = c.start_transaction(mysql::TxOpts::default())?;
            tx.exec_drop(
                "UPDATE messages SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (at, id),
            )?;
            if tx.affected_rows() == 0 {
                return Ok(None); // the transaction rolls back, having done nothing
            }
            let m = first::<MessageRow>(&mut tx, &sql, (id,))?.map(to_message);
            // A deleted reply leaves its thread, in the same transaction.
            if let Some(head) = m.as_ref().and_then(|m| m.thread.parent) {
                // Two statements: MySQL refuses a subquery on the table
                // an UPDATE changes.
                let latest = first::<Option<String>>(
                    &mut tx,
                    "SELECT MAX(created_at) FROM messages WHERE thread_id = ? AND deleted_at IS NULL",
                    (head,),
                )?
                .flatten();
                tx.exec_drop(
                    "UPDATE messages SET thread_count = GREATEST(CAST(thread_count AS SIGNED) - 1, 0),
                         last_thread_at = ? WHERE id = ?",
                    (latest, head),
                )?;
            }
            tx.commit()?;
            Ok(m)
        })
    }

    fn thread(
        &mut self,
        head: u64,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, u64)> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = ? AND deleted_at IS NULL
             ORDER BY seq LIMIT ? OFFSET ?"
        );
        self.conn.run(|c| {
            let rows = c.exec_opt::<MessageRow, _, _>(&sql, (head, limit as u64, offset as u64))?;
            let rows = all(rows)?.into_iter().map(to_message).collect();
            let total = first::<u64>(
                c,
                "SELECT COUNT(*) FROM messages WHERE thread_id = ? AND deleted_at IS NULL",
                (head,),
            )?;
            Ok((rows, total.unwrap_or(0)))
        })
    }

    fn message(&mut self, id: u64) -> Result<Option<MessageRecord>> {
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ? AND deleted_at IS NULL");
        self.conn
            .run(|c| Ok(first::<MessageRow>(c, &sql, (id,))?.map(to_message)))
    }

    fn history(
        &mut self,
        channel: &str,
        page: Page,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, bool)> {
        let (cond, order, bound) = match page {
            Page::Latest => ("seq < ?", "DESC", u64::MAX),
            Page::Before(n) => ("seq < ?", "DESC", n),
            Page::After(n) => ("seq > ?", "ASC", n),
        };
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND {cond} AND deleted_at IS NULL
             ORDER BY seq {order} LIMIT ?"
        );
        let take = limit as u64 + 1;
        let rows: Vec<MessageRecord> = self.conn.run(|c| {
            Ok(
                all(c.exec_opt::<MessageRow, _, _>(&sql, (channel, bound, take))?)?
                    .into_iter()
                    .map(to_message)
                    .collect(),
            )
        })?;
        Ok(super::finish_page(rows, limit, page))
    }

    fn replay_count(&mut self, channels: &[(String, u64)], limit: usize) -> Result<usize> {
        // The inner LIMIT bounds the rows counted, whatever the channel holds.
        let sql = "SELECT COUNT(*) FROM (SELECT 1 FROM messages
                    WHERE channel_id = ? AND pos > ? AND deleted_at IS NULL LIMIT ?) AS t";
        self.conn.run(|c| {
            count_replay(channels, limit, |channel, after_pos, left| {
                let n = first::<u64>(c, sql, (channel, after_pos, left as u64))?.unwrap_or(0);
                Ok(n as usize)
            })
        })
    }

    fn replay(&mut self, ranges: &[ReplayRange], limit: usize) -> Result<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = ? AND pos > ? AND pos <= ? AND seq <= ?
             AND deleted_at IS NULL ORDER BY pos LIMIT ?"
        );
        self.conn.run(|c| {
            merge_replay(ranges, limit, |r| {
                let rows = c.exec_opt::<MessageRow, _, _>(
                    &sql,
                    (&r.channel, r.after, r.upto_pos, r.max_seq, limit as u64),
                )?;
                Ok(all(rows)?.into_iter().map(to_message).collect())
            })
        })
    }

    fn last_pos(&mut self, partition: u32) -> Result<u64> {
        self.conn.run(|c| {
            Ok(first::<u64>(
                c,
                "SELECT last_pos FROM sequencer WHERE partition_id = ?",
                (partition,),
            )?
            .unwrap_or(0))
        })
    }

    /// One range read of `(partition_id, pos)` in each monthly partition.
    fn partition_messages(
        &mut self,
        partition: u32,
        after_pos: u64,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE partition_id = ? AND pos > ?
             ORDER BY pos LIMIT ?"
        );
        self.conn.run(|c| {
            let rows =
                c.exec_opt::<MessageRow, _, _>(&sql, (partition, after_pos, limit as u64))?;
            Ok(all(rows)?.into_iter().map(to_message).collect())
        })
    }

    fn channel(&mut self, id: &str) -> Result<Option<ChannelRecord>> {
        let sql =
            format!("SELECT {CHANNEL_COLUMNS} FROM channels WHERE id = ? AND deleted_at IS NULL");
        self.conn
            .run(|c| Ok(first::<ChannelRow>(c, &sql, (id,))?.map(to_channel)))
    }

    fn channel_id_by_num(&mut self, num: u64) -> Result<Option<String>> {
        let sql = "SELECT id FROM channels WHERE num = ? AND deleted_at IS NULL";
        self.conn.run(|c| first::<String>(c, sql, (num,)))
    }

    fn channels_of(&mut self, user: &str) -> Result<Vec<ChannelRecord>> {
        let sql =
            "SELECT c.id, c.name, c.type, c.description, c.owner_id, c.created_at, c.updated_at, c.num,
                    c.settings, c.max_members
             FROM channels c JOIN channel_members m ON m.channel_id = c.id
             WHERE m.user_id = ? AND c.deleted_at IS NULL ORDER BY c.created_at, c.id";
        self.conn.run(|c| {
            Ok(all(c.exec_opt::<ChannelRow, _, _>(sql, (user,))?)?
                .into_iter()
                .map(to_channel)
                .collect())
        })
    }

    fn member_ids(&mut self, channel: &str) -> Result<Vec<String>> {
        self.conn.run(|c| {
            all(c.exec_opt(
                "SELECT user_id FROM channel_members WHERE channel_id = ?",
                (channel,),
            )?)
        })
    }

    fn create_channel(&mut self, ch: &ChannelRecord, members: &[String]) -> Result<()> {
        self.conn.run(|c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            tx.exec_drop(
                "INSERT INTO channels (id, name, type, description, owner_id, created_at, updated_at,
                                       settings, max_members)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    &ch.id,
                    &ch.name,
                    ch.kind.as_str(),
                    &ch.description,
                    &ch.owner_id,
                    &ch.created_at,
                    &ch.updated_at,
                    &ch.settings,
                    ch.max_members,
                ),
            )?;
            tx.exec_drop(
                "INSERT INTO channel_members (channel_id, user_id, role, joined_at) VALUES (?, ?, 'owner', ?)",
                (&ch.id, &ch.owner_id, &ch.created_at),
            )?;
            for m in members.iter().filter(|m| **m != ch.owner_id) {
                insert_member(&mut tx, &ch.id, m, &ch.created_at)?;
            }
            tx.commit()
        })
    }

    fn update_channel(
        &mut self,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        at: &str,
    ) -> Result<Option<ChannelRecord>> {
        self.conn.run(|c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            if let Some(n) = name {
                tx.exec_drop(
                    "UPDATE channels SET name = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
                    (n, at, id),
                )?;
            }
            if let Some(d) = description {
                tx.exec_drop(
                    "UPDATE channels SET description = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
                    (d, at, id),
                )?;
            }
            tx.commit()
        })?;
        self.channel(id)
    }

    fn delete_channel(&mut self, id: &str, at: &str) -> Result<bool> {
        self.conn.run(|c| {
            c.exec_drop(
                "UPDATE channels SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
                (at, at, id),
            )?;
            Ok(c.affected_rows() > 0)
        })
    }

    fn add_member(&mut self, channel: &str, user: &str, at: &str) -> Result<bool> {
        self.conn.run(|c| insert_member(c, channel, user, at))
    }

    fn remove_member(&mut self, channel: &str, user: &str) -> Result<bool> {
        self.conn.run(|c| {
            c.exec_drop(
                "DELETE FROM channel_members WHERE channel_id = ? AND user_id = ? AND role <> 'owner'",
                (channel, user),
            )?;
            Ok(c.affected_rows() > 0)
        })
    }

    fn member_role(&mut self, channel: &str, user: &str) -> Result<Option<MemberRole>> {
        self.conn.run(|c| gatrix::member_role(c, channel, user))
    }

    fn set_member_role(&mut self, channel: &str, user: &str, role: MemberRole) -> Result<bool> {
        self.conn
            .run(|c| gatrix::set_member_role(c, channel, user, role))
    }

    fn update_channel_settings(
        &mut self,
        id: &str,
        settings: Option<Option<&str>>,
        max_members: Option<Option<u32>>,
        at: &str,
    ) -> Result<Option<ChannelRecord>> {
        self.conn
            .run(|c| gatrix::update_channel_settings(c, id, settings, max_members, at))?;
        self.channel(id)
    }

    fn set_pin(&mut self, id: u64, pin: Option<&Pin>) -> Result<Option<MessageRecord>> {
        if self.conn.run(|c| gatrix::set_pin(c, id, pin))? {
            self.message(id)
        } else {
            Ok(None)
        }
    }

    fn upsert_users(&mut self, list: &[UserRecord]) -> Result<()> {
        self.conn.run(|c| users::upsert(c, list))
    }

    fn user(&mut self, id: &str) -> Result<Option<UserRecord>> {
        self.conn.run(|c| users::get(c, id))
    }

    fn users_page(
        &mut self,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, u64)> {
        self.conn.run(|c| users::page(c, search, offset, limit))
    }

    fn set_user_status(
        &mut self,
        id: &str,
        status: &str,
        custom_status: Option<&str>,
        at: &str,
    ) -> Result<bool> {
        self.conn
            .run(|c| users::set_status(c, id, status, custom_status, at))
    }

    fn delete_user(&mut self, id: &str) -> Result<bool> {
        self.conn.run(|c| users::delete(c, id))
    }

    fn read_state(&mut self, channel: &str, user: &str) -> Result<Option<super::ReadState>> {
        self.conn.run(|c| users::read_state(c, channel, user))
    }

    fn mark_read(
        &mut self,
        channel: &str,
        user: &str,
        seq: u64,
        message_id: Option<u64>,
        at: &str,
    ) -> Result<bool> {
        self.conn
            .run(|c| users::mark_read(c, channel, user, seq, message_id, at))
    }
}

/// Adds a member; false if already one. Not `INSERT IGNORE`: that would
/// also turn a missing channel (a foreign-key error, a Conflict in SQLite)
/// into a silent no-op. A duplicate key fails only this statement, not an
/// enclosing transaction.
fn insert_member(
    c: &mut impl Queryable,
    channel: &str,
    user: &str,
    at: &str,
) -> mysql::Result<bool> {
    match c.exec_drop(
        "INSERT INTO channel_members (channel_id, user_id, joined_at) VALUES (?, ?, ?)",
        (channel, user, at),
    ) {
        Ok(()) => Ok(true),
        Err(e) if is_duplicate(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

impl From<mysql::Error> for StoreError {
    fn from(e: mysql::Error) -> Self {
        map_error(e)
    }
}

#[cfg(test)]
mod tests;
