//! The MySQL schema: refinery's migrations (migrations/mysql), applied at
//! start and by `gatrix-chat migrate`, and the checks after them.

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

use super::connection::store_opts;

mod embedded {
    refinery::embed_migrations!("migrations/mysql");
}

/// How long a process waits for another one's migrations (the migration
/// lock) before it gives up: far longer than any migration of an empty
/// database, the case of instances started together.
const MIGRATION_LOCK_WAIT_SECS: u32 = 300;

/// What the last statements of the migrations make, by table: the check
/// after them asks for these columns.
const SCHEMA_COLUMNS: [(&str, &str); 5] = [
    ("channels", "id, num, settings, max_members"),
    ("channel_members", "channel_id, role, last_read_message_id"),
    (
        "messages",
        "partition_id, pinned_at, pinned_by, thread_id, thread_count, last_thread_at",
    ),
    ("sequencer", "partition_id, last_pos"),
    ("users", "id"),
];

/// Whether `table` exists with every one of `columns`. A `SELECT … LIMIT 0`
/// rather than `information_schema.COLUMNS`, which skips a table another
/// connection is altering: instances started together on a fresh database
/// check the schema while the first one's partition upkeep (`ALTER TABLE
/// messages REORGANIZE PARTITION`) runs, and were refused a good schema.
/// The SELECT waits for that ALTER instead (its metadata lock).
fn has_columns(conn: &mut Conn, table: &str, columns: &str) -> anyhow::Result<bool> {
    const BAD_FIELD: u16 = 1054;
    const NO_SUCH_TABLE: u16 = 1146;
    match conn.query_drop(format!("SELECT {columns} FROM {table} LIMIT 0")) {
        Ok(()) => Ok(true),
        Err(mysql::Error::MySqlError(e)) if e.code == BAD_FIELD || e.code == NO_SUCH_TABLE => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Applies pending migrations to the database `opts` points at; returns how
/// many were applied. Also checks that the server keeps commits durable.
///
/// Holds the migration lock (a named lock of its connection) throughout:
/// several instances with Redis, each holding only its own SERVER_ID's
/// lock, may start at once on a fresh database, and two refinery runners
/// would both create the tables (the second fails, `Table already exists`).
/// The second waits, then finds nothing to apply.
pub fn migrate(opts: &Opts) -> anyhow::Result<usize> {
    let mut conn = Conn::new(store_opts(opts))?;
    let db: Option<String> = conn.query_first("SELECT DATABASE()")?;
    let lock = super::lock::migration_lock_name(db.as_deref().unwrap_or_default());
    let got: Option<Option<i64>> =
        conn.exec_first("SELECT GET_LOCK(?, ?)", (&lock, MIGRATION_LOCK_WAIT_SECS))?;
    anyhow::ensure!(
        got.flatten() == Some(1),
        "another process has been migrating this database for {MIGRATION_LOCK_WAIT_SECS} s \
         (named lock {lock}): see its log, or the database's SHOW PROCESSLIST"
    );
    // The lock is the connection's: it goes with `conn`, however this ends.
    refuse_the_originals_database(&mut conn)?;
    let report = embedded::migrations::runner().run(&mut conn)?;
    // refinery sends a migration file as one multi-statement query, and the
    // driver reports only the first statement's error: check the result.
    // Schema 3 rebuilds `messages` (a new table, then DROP and RENAME): a
    // failure past its first statement leaves `messages_v3` behind and
    // `messages` without `partition_id`; later schemas add columns.
    let leftover: Option<String> = conn.query_first(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()
         AND TABLE_NAME = 'messages_v3'",
    )?;
    let mut missing = Vec::new();
    for (table, columns) in SCHEMA_COLUMNS {
        if !has_columns(&mut conn, table, columns)? {
            missing.push(format!("{table} ({columns})"));
        }
    }
    anyhow::ensure!(
        leftover.is_none() && missing.is_empty(),
        "the schema is incomplete after the migrations ({}): a statement of \
         migrations/mysql failed; see the database's error log",
        if missing.is_empty() {
            "messages_v3 left behind".to_owned()
        } else {
            format!("missing or lacking a column: {}", missing.join(", "))
        }
    );
    let flush: Option<u64> = conn.query_first("SELECT @@innodb_flush_log_at_trx_commit")?;
    if flush.is_some_and(|f| f != 1) {
        tracing::warn!(
            innodb_flush_log_at_trx_commit = flush,
            "the database does not flush its log at every commit: an acknowledged message \
             can be lost if the database host crashes; set innodb_flush_log_at_trx_commit = 1"
        );
    }
    Ok(report.applied_migrations().len())
}

/// Applies the migrations up to `version` only: a database as an earlier
/// gatrix-chat left it, for the tests of a later migration.
#[cfg(test)]
pub(super) fn migrate_to(opts: &Opts, version: i32) -> anyhow::Result<()> {
    let mut conn = Conn::new(store_opts(opts))?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run(&mut conn)?;
    Ok(())
}

/// The Node.js server's migration table (knex's `tableName` there).
const ORIGINAL_MIGRATIONS_TABLE: &str = "chat_migrations";

/// Refuses the Node.js server's own database: its `.env` names it
/// (`DB_NAME=gatrix_chat`), and gatrix-chat's tables would be created next
/// to the original's. gatrix-chat needs a database of its own.
fn refuse_the_originals_database(conn: &mut Conn) -> anyhow::Result<()> {
    let found: Option<String> = conn.exec_first(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = ?",
        (ORIGINAL_MIGRATIONS_TABLE,),
    )?;
    anyhow::ensure!(
        found.is_none(),
        "the database holds the Node.js Gatrix chat server's tables (it has \
         {ORIGINAL_MIGRATIONS_TABLE}): gatrix-chat needs a database of its own; create one and \
         set DB_NAME or CHAT_DB_NAME (or DATABASE_URL) to it (docs/operations.md, \
         \"Coming from the Node.js Gatrix chat server\")"
    );
    Ok(())
}
