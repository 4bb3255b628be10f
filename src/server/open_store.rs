//! The store the server runs on: its one-process lock, its migrations,
//! how each store thread opens its connection, and the store's own
//! background thread.

use anyhow::Context as _;

use crate::config::{Backend, Config};
use crate::store::lock::DirLock;
use crate::store::mysql::upkeep::Upkeep;
use crate::store::mysql::{self, MysqlStore};
use crate::store::sqlite::{Checkpointer, SqliteStore};
use crate::store::{self, Store, StoreError};

/// The store's own background thread, stopped after the writer.
pub(super) enum Background {
    /// MySQL: daily partition upkeep.
    Partitions(Upkeep),
    /// SQLite: WAL checkpoints.
    Checkpoints(Checkpointer),
}

/// Opens one store connection; called once per store thread.
pub(super) type OpenStore = Box<dyn Fn() -> Result<Box<dyn Store>, StoreError>>;

/// Takes the store's one-process lock ([`store::lock`]), applies the
/// migrations and returns how to open a connection to it, plus its
/// background thread (MySQL: the daily partition upkeep, after one pass
/// now; SQLite: the WAL checkpointer) and SQLite's lock, to hold while the
/// store is in use. The first connection `OpenStore` opens is the
/// writer's (`store::handle::start` opens it first): with MySQL, the one
/// made here that holds the lock.
pub(super) fn open_store(
    config: &Config,
    backend: &Backend,
) -> anyhow::Result<(OpenStore, Background, Option<DirLock>)> {
    match backend {
        Backend::Sqlite(data_dir) => {
            let lock = store::lock::lock_data_dir(data_dir)?;
            tracing::debug!(lock = %lock.path().display(), "store locked");
            let applied = store::sqlite::migrate(data_dir)
                .with_context(|| format!("opening the store in DATA_DIR {}", data_dir.display()))?;
            if applied > 0 {
                tracing::info!(applied, data_dir = %data_dir.display(), "store migrated");
            }
            let checkpoints =
                Checkpointer::start(data_dir).context("starting the WAL checkpointer")?;
            let data_dir = data_dir.clone();
            let open: OpenStore = Box::new(move || {
                Ok(Box::new(SqliteStore::open_without_checkpoints(&data_dir)?) as Box<dyn Store>)
            });
            Ok((open, Background::Checkpoints(checkpoints), Some(lock)))
        }
        Backend::Mysql(opts) => {
            let database = mysql::describe(opts);
            // Locked before migrating: a second process changes nothing.
            let writer = MysqlStore::open_writer(opts).with_context(|| {
                format!(
                    "opening the MySQL store at {database} (DATABASE_URL, DB_HOST or \
                         CHAT_DB_HOST is set; unset them to use SQLite in DATA_DIR)"
                )
            })?;
            let applied = mysql::migrate(opts).with_context(|| {
                format!(
                    "migrating the MySQL store at {database} (DATABASE_URL, DB_HOST or \
                         CHAT_DB_HOST is set; unset them to use SQLite in DATA_DIR)"
                )
            })?;
            tracing::info!(%database, applied, pool = config.store_reader_threads() + 1, "MySQL store");
            // The catch-all partition takes any message, so a failed pass
            // is not fatal; the daily one retries.
            if let Err(e) = mysql::upkeep::run_once(opts, config.partition_policy()) {
                tracing::error!(error = %e, "message partition upkeep failed; retrying daily");
            }
            let upkeep = Upkeep::start(opts.clone(), config.partition_policy())
                .context("starting the partition upkeep thread")?;
            let opts = opts.clone();
            let writer = std::cell::RefCell::new(Some(writer));
            let open: OpenStore = Box::new(move || {
                let store = match writer.borrow_mut().take() {
                    Some(w) => w,
                    None => MysqlStore::open(&opts)?,
                };
                Ok(Box::new(store) as Box<dyn Store>)
            });
            Ok((open, Background::Partitions(upkeep), None))
        }
    }
}
