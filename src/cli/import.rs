//! `gatrix-chat import --from mysql://…`: the Node.js Gatrix chat server's
//! data into the configured store (docs/operations.md, "The import
//! command"): `source` reads the original's tables, `map` turns each row
//! into ours, `steps` writes what the store lacks (`messages`: the
//! messages step), `report` says what was
//! done and what was not.
//!
//! MySQL stores only: a Gatrix deployment runs MySQL, and the import's
//! statements are MySQL's. It holds the store's process lock (the whole
//! database's, as a server without Redis: no server and no instance runs
//! meanwhile), migrates, and refuses a store a server has written to.

use std::io::Write;
use std::time::Duration;

use ::mysql::{Opts, OptsBuilder};

use super::{Cli, Command, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK};
use crate::config::Backend;
use crate::store::StoreError;
use crate::store::mysql::{self, MysqlStore};

mod map;
mod messages;
mod report;
mod source;
mod steps;

/// Why an import stopped. Each has a code, printed with it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("reading the original's database: {0}")]
    Source(#[from] ::mysql::Error),
    #[error("reading the original's database: an unexpected value ({0})")]
    SourceValue(String),
    #[error(
        "the --from database lacks the Node.js Gatrix chat server's tables ({0}): point it at \
         that server's database (its .env names it: CHAT_DB_NAME or DB_NAME, gatrix_chat by \
         default)"
    )]
    NotTheOriginal(String),
    #[error("writing the store: {0}")]
    Store(#[from] StoreError),
    #[error(
        "the store has been served: it holds {channels} channel(s) and {messages} message(s) \
         that gatrix-chat made, not an import. Imported channels keep the original's numbers \
         and messages their ids and order, which what was made here would contradict: import \
         into a fresh database (created and migrated, never served), then start the server"
    )]
    Served { channels: u64, messages: u64 },
}

impl ImportError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Source(_) | Self::SourceValue(_) => "SOURCE",
            Self::NotTheOriginal(_) => "NOT_THE_ORIGINAL",
            Self::Store(_) => "STORE",
            Self::Served { .. } => "STORE_SERVED",
        }
    }
}

/// How long connecting to the original's database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `import` (the one in `cli.command`); the report on stdout, errors
/// on stderr; returns the exit code.
pub fn run_import_command(cli: &Cli) -> i32 {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let Some(Command::Import { from }) = &cli.command else {
        let _ = writeln!(err, "error: internal: expected the import command");
        return EXIT_FAILURE;
    };
    let Some(config) = super::db::valid_config(cli, &mut err) else {
        return EXIT_CONFIG;
    };
    let target = match config.backend() {
        Ok(Backend::Mysql(opts)) => opts,
        Ok(Backend::Sqlite(dir)) => {
            let _ = writeln!(
                err,
                "gatrix-chat: not importing: the store is SQLite in {}; the import writes to a \
                 MySQL/MariaDB store (a Gatrix deployment runs one; SQLite is for one machine \
                 and development). Set DATABASE_URL (or DB_HOST, DB_NAME, …) to a database of \
                 gatrix-chat's own",
                dir.display()
            );
            return EXIT_CONFIG;
        }
        Err(e) => {
            let _ = writeln!(err, "gatrix-chat: configuration error: {e}");
            return EXIT_CONFIG;
        }
    };
    let source = match Opts::from_url(from) {
        Ok(o) if o.get_db_name().is_some_and(|d| !d.is_empty()) => o,
        Ok(_) => {
            let _ = writeln!(
                err,
                "gatrix-chat: --from names no database: mysql://user:password@host:port/gatrix_chat"
            );
            return EXIT_CONFIG;
        }
        Err(e) => {
            let _ = writeln!(err, "gatrix-chat: --from is not a MySQL URL: {e}");
            return EXIT_CONFIG;
        }
    };
    let (from_desc, to_desc) = (mysql::describe(&source), mysql::describe(&target));
    if same_database(&source, &target) {
        let _ = writeln!(
            err,
            "gatrix-chat: not importing: --from and the store are one database ({to_desc}); \
             gatrix-chat needs a database of its own"
        );
        return EXIT_CONFIG;
    }
    // The whole database's lock, as a server without Redis takes it: it
    // also refuses while instances with Redis run.
    let mut store = match MysqlStore::open_writer(&target, None) {
        Ok(s) => s,
        Err(e) if crate::store::lock::is_store_locked(&e) => {
            let _ = writeln!(
                err,
                "gatrix-chat: not importing: {e:#}. Stop every gatrix-chat on this database first"
            );
            return EXIT_CONFIG;
        }
        Err(e) => {
            let _ = writeln!(err, "gatrix-chat: opening the store at {to_desc}: {e:#}");
            return EXIT_FAILURE;
        }
    };
    match mysql::migrate(&target) {
        Ok(0) => {}
        Ok(n) => {
            let _ = writeln!(out, "store at {to_desc}: {n} migration(s) applied");
        }
        Err(e) => {
            let _ = writeln!(err, "gatrix-chat: migrating the store at {to_desc}: {e:#}");
            return EXIT_FAILURE;
        }
    }
    if let Err(e) = store.set_sequencer_partitions(config.sequencer_partitions) {
        let _ = writeln!(err, "gatrix-chat: the store at {to_desc}: {e}");
        return EXIT_FAILURE;
    }
    let conn = OptsBuilder::from_opts(source).tcp_connect_timeout(Some(CONNECT_TIMEOUT));
    let result = ::mysql::Conn::new(conn)
        .map_err(ImportError::from)
        .and_then(source::Source::open)
        .and_then(|mut src| steps::import(&mut src, &mut store));
    match result {
        Ok(report) => {
            let _ = writeln!(out, "imported from {from_desc} into {to_desc}");
            let _ = write!(out, "{report}");
            EXIT_OK
        }
        Err(e @ (ImportError::Served { .. } | ImportError::NotTheOriginal(_))) => {
            let _ = writeln!(
                err,
                "gatrix-chat: not importing from {from_desc} into {to_desc}: {} ({e})",
                e.code()
            );
            EXIT_CONFIG
        }
        Err(e) => {
            let _ = writeln!(
                err,
                "gatrix-chat: importing from {from_desc} into {to_desc}: {} ({e}); what was \
                 written stays, and running the import again continues it",
                e.code()
            );
            EXIT_FAILURE
        }
    }
}

/// Whether the two URLs name one database on one server (as far as the
/// URLs tell: a host name and its address are not compared).
fn same_database(a: &Opts, b: &Opts) -> bool {
    a.get_ip_or_hostname() == b.get_ip_or_hostname()
        && a.get_tcp_port() == b.get_tcp_port()
        && a.get_db_name() == b.get_db_name()
}
