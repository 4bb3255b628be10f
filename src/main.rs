//! The `gatrix-chat` binary: parses the command line and calls the library.

use clap::Parser;
use gatrix_chat::cli::{self, Cli, Command};

// mimalloc: glibc's malloc (`_int_malloc`, `malloc_consolidate`) was a
// visible share of the shard and the writer on the message path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let code = match &cli.command {
        None | Some(Command::Serve) => serve(&cli),
        Some(Command::Config { .. }) => cli::run_config_command(&cli),
        Some(Command::Token { .. }) => cli::run_token_command(&cli),
        Some(Command::Migrate) => {
            // Store warnings (e.g. MySQL durability settings) are logged.
            gatrix_chat::server::init_logging(gatrix_chat::config::LogFormat::Human);
            cli::run_migrate_command(&cli)
        }
        Some(Command::Db { .. }) => {
            gatrix_chat::server::init_logging(gatrix_chat::config::LogFormat::Human);
            cli::run_db_command(&cli)
        }
        Some(Command::Import { .. }) => {
            gatrix_chat::server::init_logging(gatrix_chat::config::LogFormat::Human);
            cli::run_import_command(&cli)
        }
    };
    std::process::exit(code);
}

fn serve(cli: &Cli) -> i32 {
    let mut config = match cli::load_config(cli).and_then(|c| cli::validate(&c).map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatrix-chat: configuration error: {e}");
            return 2;
        }
    };
    gatrix_chat::server::init_logging(config.log_format);
    tracing::info!(
        version = gatrix_chat::config::VERSION,
        store = %config.store_description(),
        metrics = %config.metrics_location(),
        "gatrix-chat starting"
    );
    if let Some(note) = config.host_note() {
        tracing::info!("{note}");
    }
    let original = gatrix_chat::config::original_names_in_use();
    if !original.is_empty() {
        tracing::info!(
            "read from the Node.js server's names: {}",
            original.join(", ")
        );
    }
    for w in config
        .warnings()
        .into_iter()
        .chain(gatrix_chat::config::original_warnings())
    {
        tracing::warn!("{w}");
    }
    match config.resolve_dev_secret() {
        Ok(Some(path)) => tracing::warn!(
            path = %path.display(),
            "JWT_SECRET is not set: using a generated development secret (mint tokens with `gatrix-chat token <user>`)"
        ),
        Ok(None) => {}
        Err(e) => {
            eprintln!("gatrix-chat: configuration error: {e}");
            return 2;
        }
    }
    match gatrix_chat::server::run(config) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            // Another process holds the store: as a configuration that
            // cannot start, not a failure a restart would fix.
            if gatrix_chat::store::lock::is_store_locked(&e) {
                cli::EXIT_CONFIG
            } else {
                1
            }
        }
    }
}
