//! The MySQL schema: refinery's migrations (migrations/mysql), applied at
//! start and by `gatrix-chat migrate`, and the checks after them.

use mysql::prelude::Queryable;
use mysql::{Conn, Opts};

use super::link::store_opts;

mod embedded {
    refinery::embed_migrations!("migrations/mysql");
}

/// Applies pending migrations to the database `opts` points at; returns how
/// many were applied. Also checks that the server keeps commits durable.
pub fn migrate(opts: &Opts) -> anyhow::Result<usize> {
    let mut conn = Conn::new(store_opts(opts))?;
    let report = embedded::migrations::runner().run(&mut conn)?;
    // refinery sends a migration file as one multi-statement query, and the
    // driver reports only the first statement's error: check the result.
    let mut tables: Vec<String> = conn.query(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()
         AND TABLE_NAME IN ('channels', 'channel_members', 'messages')",
    )?;
    tables.sort_unstable();
    anyhow::ensure!(
        tables == ["channel_members", "channels", "messages"],
        "the schema is incomplete after the migrations (found tables {tables:?}): \
         a statement of migrations/mysql failed; see the database's error log"
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
