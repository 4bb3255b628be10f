//! The store the server runs on, opened in one call ([`open`]): its
//! one-process lock, its migrations, its background thread, and its store
//! threads (the writer and the readers), behind one [`StoreGuard`]. The
//! server knows none of them by name.

use anyhow::Context as _;

use super::handle::{self, StoreHandle, StoreSettings, StoreThreads};
use super::lock::DirLock;
use super::mysql::upkeep::Upkeep;
use super::mysql::{self, MysqlStore};
use super::sqlite::{Checkpointer, SqliteStore};
use super::{Fanout, Store, StoreError};
use crate::config::{Backend, Config};

/// Opens the configured store ([`Config::backend`]: SQLite in DATA_DIR, or
/// MySQL): takes its one-process lock, applies its migrations, starts its
/// background thread and then its writer (which hands every commit to
/// `fanout`) and readers. Returns the handle shards use and the guard that
/// owns it all; [`StoreGuard::stop`] it once every handle is gone.
pub(crate) fn open<R, F>(
    config: &Config,
    settings: &StoreSettings,
    fanout: F,
) -> anyhow::Result<(StoreHandle<R>, StoreGuard)>
where
    R: Send + 'static,
    F: Fanout<R> + Send + 'static,
{
    let backend = config.backend()?;
    let (open, background, lock) = prepare(config, &backend)?;
    let (store, threads) =
        handle::start(settings, open, fanout).context("starting the store threads")?;
    let guard = StoreGuard {
        threads,
        background,
        _lock: lock,
    };
    Ok((store, guard))
}

/// What keeps the store running: its threads and its lock. Dropped
/// without [`StoreGuard::stop`] (a failed start), the threads are left to
/// end with the process.
pub(crate) struct StoreGuard {
    threads: StoreThreads,
    background: Background,
    /// SQLite's lock on DATA_DIR (MySQL's is the writer connection's),
    /// released last.
    _lock: Option<DirLock>,
}

impl StoreGuard {
    /// Stops the store, once every [`StoreHandle`] is dropped: the writer
    /// commits what is still queued and ends, the readers end, then the
    /// background thread (SQLite: after a final checkpoint), then the lock
    /// is released.
    pub(crate) fn stop(self) {
        self.threads.join();
        match self.background {
            Background::Partitions(u) => u.stop(),
            Background::Checkpoints(c) => c.stop(),
        }
    }
}

/// The store's own background thread, stopped after the writer.
enum Background {
    /// MySQL: daily partition upkeep.
    Partitions(Upkeep),
    /// SQLite: WAL checkpoints.
    Checkpoints(Checkpointer),
}

/// Opens one store connection; called once per store thread.
type OpenStore = Box<dyn Fn() -> Result<Box<dyn Store>, StoreError>>;

/// Takes the store's one-process lock ([`super::lock`]), applies the
/// migrations and returns how to open a connection to it, plus its
/// background thread (MySQL: the daily partition upkeep, after one pass
/// now; SQLite: the WAL checkpointer) and SQLite's lock, to hold while the
/// store is in use. The first connection `OpenStore` opens is the
/// writer's ([`handle::start`] opens it first): with MySQL, the one
/// made here that holds the lock.
fn prepare(
    config: &Config,
    backend: &Backend,
) -> anyhow::Result<(OpenStore, Background, Option<DirLock>)> {
    match backend {
        Backend::Sqlite(data_dir) => {
            let lock = super::lock::lock_data_dir(data_dir)?;
            tracing::debug!(lock = %lock.path().display(), "store locked");
            let applied = super::sqlite::migrate(data_dir)
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
            // With Redis, several instances share the database: each
            // locks its SERVER_ID only.
            let server_id = config.redis_url().map(|_| config.server_id());
            let mut writer =
                MysqlStore::open_writer(opts, server_id.as_deref()).with_context(|| {
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
            writer
                .set_sequencer_partitions(config.sequencer_partitions)
                .context("making the sequencer rows of SEQUENCER_PARTITIONS")?;
            tracing::info!(
                %database,
                applied,
                pool = config.store_reader_threads() + 1,
                sequencer_partitions = config.sequencer_partitions,
                "MySQL store"
            );
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

/// The last position of each of `config`'s sequencing partitions, read
/// through a connection of its own once the store is migrated: where one
/// process's recovery offsets start (the bus reads its own).
pub(crate) fn last_positions(config: &Config) -> anyhow::Result<Vec<u64>> {
    let mut store: Box<dyn Store> = match config.backend()? {
        Backend::Sqlite(dir) => Box::new(SqliteStore::open_without_checkpoints(&dir)?),
        Backend::Mysql(opts) => Box::new(MysqlStore::open(&opts)?),
    };
    (0..config.sequencer_partitions.max(1))
        .map(|p| store.last_pos(p).map_err(Into::into))
        .collect()
}
