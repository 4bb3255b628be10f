//! `gatrix-chat migrate` and `gatrix-chat db ...`: the store's upkeep from
//! the command line, for whichever store the configuration selects.

use std::io::Write;

use clap::Subcommand;

use super::{Cli, Command, EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, load_config};
use crate::config::{Backend, Config};
use crate::store::mysql::partitions::{self, Partition, Plan};
use crate::store::mysql::{self, MysqlStore, upkeep};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum DbCommand {
    /// Show the monthly partitions of the messages table (MySQL) with their
    /// bounds and row estimates, then create the months ahead
    /// (DB_PARTITION_MONTHS_AHEAD) and drop those past
    /// MESSAGE_RETENTION_DAYS. The server also does this at start and daily.
    Partitions {
        /// Only print what would be created and dropped.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(super) fn valid_config(cli: &Cli, err: &mut dyn Write) -> Option<Config> {
    match load_config(cli).and_then(|c| super::validate(&c).map(|()| c)) {
        Ok(c) => Some(c),
        Err(e) => {
            let _ = writeln!(err, "gatrix-chat: configuration error: {e}");
            None
        }
    }
}

/// `gatrix-chat migrate`: applies pending store migrations.
pub fn run_migrate_command(cli: &Cli) -> i32 {
    let mut err = std::io::stderr();
    let Some(config) = valid_config(cli, &mut err) else {
        return EXIT_CONFIG;
    };
    let backend = match config.backend() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gatrix-chat: configuration error: {e}");
            return EXIT_CONFIG;
        }
    };
    // Under the store's process lock, as the server migrates: never while
    // a server without Redis runs on the store (its code expects the
    // schema it started with; stop it, migrate, start the new version —
    // which also migrates by itself). With Redis, the instance lock of
    // this SERVER_ID, as `serve` takes it: instances may run meanwhile
    // (a rolling upgrade's migrations must suit the running version).
    let server_id = config.redis_url().map(|_| config.server_id());
    let (place, result) = match &backend {
        Backend::Sqlite(dir) => (
            format!("store in {}", dir.display()),
            crate::store::lock::lock_data_dir(dir)
                .and_then(|_lock| crate::store::sqlite::migrate(dir)),
        ),
        Backend::Mysql(opts) => (
            format!("store at {}", mysql::describe(opts)),
            MysqlStore::open_writer(opts, server_id.as_deref())
                .and_then(|_lock| mysql::migrate(opts)),
        ),
    };
    match result {
        Ok(n) => {
            println!("{place}: {n} migration(s) applied");
            EXIT_OK
        }
        Err(e) if crate::store::lock::is_store_locked(&e) => {
            eprintln!("gatrix-chat: not migrating: {e:#}");
            EXIT_CONFIG
        }
        Err(e) => {
            eprintln!("gatrix-chat: migrating the {place}: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// Runs `db ...` (the one in `cli.command`); returns the exit code.
pub fn run_db_command(cli: &Cli) -> i32 {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let Some(Command::Db { action }) = &cli.command else {
        let _ = writeln!(err, "error: internal: expected the db command");
        return EXIT_FAILURE;
    };
    let Some(config) = valid_config(cli, &mut err) else {
        return EXIT_CONFIG;
    };
    match action {
        DbCommand::Partitions { dry_run } => {
            partitions_command(&config, *dry_run, &mut out, &mut err)
        }
    }
}

fn partitions_command(
    config: &Config,
    dry_run: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let opts = match config.backend() {
        Ok(Backend::Mysql(opts)) => opts,
        Ok(Backend::Sqlite(dir)) => {
            let _ = writeln!(
                out,
                "the store is SQLite in {}: partitions do not apply (they are a MySQL store \
                 feature; set DATABASE_URL or DB_HOST to use MySQL)",
                dir.display()
            );
            return EXIT_OK;
        }
        Err(e) => {
            let _ = writeln!(err, "gatrix-chat: configuration error: {e}");
            return EXIT_CONFIG;
        }
    };
    let policy = config.partition_policy();
    let run = MysqlStore::open(&opts).and_then(|mut s| {
        let (before, plan) = s.maintain_partitions(policy, upkeep::now_unix_ms(), dry_run)?;
        let after = if dry_run {
            before.clone()
        } else {
            s.partitions()?
        };
        Ok((before, plan, after))
    });
    let (before, plan, after) = match run {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                err,
                "gatrix-chat: partitions of {}: {e}",
                mysql::describe(&opts)
            );
            return EXIT_FAILURE;
        }
    };
    let _ = writeln!(out, "messages partitions at {}:", mysql::describe(&opts));
    print_partitions(out, &before);
    let retention = match policy.retention_days {
        0 => "messages are kept forever".to_owned(),
        d => format!("messages are kept {d} days"),
    };
    let _ = writeln!(
        out,
        "policy: {} month(s) ahead; {retention}",
        policy.months_ahead
    );
    print_plan(out, &plan, dry_run);
    if !dry_run && !plan.is_empty() {
        let _ = writeln!(out, "now:");
        print_partitions(out, &after);
    }
    EXIT_OK
}

fn print_partitions(out: &mut dyn Write, list: &[Partition]) {
    for p in list {
        let bound = match p.bound {
            Some(b) => format!("id < {b:<20} (before {})", partitions::bound_date(b)),
            None => "MAXVALUE (catch-all)".to_owned(),
        };
        let _ = writeln!(out, "  {:<10} {bound:<52} ~{} rows", p.name, p.rows);
    }
}

fn print_plan(out: &mut dyn Write, plan: &Plan, dry_run: bool) {
    if plan.is_empty() {
        let _ = writeln!(out, "nothing to do");
        return;
    }
    let (create, drop) = if dry_run {
        ("would create", "would drop")
    } else {
        ("created", "dropped")
    };
    for p in &plan.create {
        let _ = writeln!(
            out,
            "{create} {} (id < {}, before {})",
            p.name,
            p.bound,
            partitions::bound_date(p.bound)
        );
    }
    for name in &plan.drop {
        let _ = writeln!(out, "{drop} {name} and every message in it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_has_no_partitions() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = partitions_command(&Config::default(), true, &mut out, &mut err);
        assert_eq!(code, EXIT_OK);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("partitions do not apply"), "{text}");
    }

    #[test]
    fn an_unreachable_database_fails_without_showing_the_password() {
        let config = Config {
            database_url: Some("mysql://u:hunter2@127.0.0.1:1/db".into()),
            ..Config::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = partitions_command(&config, true, &mut out, &mut err);
        assert_eq!(code, EXIT_FAILURE);
        let text = String::from_utf8(err).unwrap();
        assert!(text.contains("mysql://u@127.0.0.1:1/db"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn plans_read_as_sentences() {
        let plan = Plan {
            create: vec![partitions::NewPartition {
                name: "p202701".into(),
                bound: partitions::month_start(2027, 2),
            }],
            drop: vec!["p202501".into()],
        };
        let mut out = Vec::new();
        print_plan(&mut out, &plan, true);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("would create p202701"), "{text}");
        assert!(text.contains("before 2027-02-01"), "{text}");
        assert!(text.contains("would drop p202501"), "{text}");
    }
}
