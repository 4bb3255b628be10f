//! The command line: global flags that override the configuration, and the
//! commands besides `serve` (checking and printing the config, minting a
//! development token, migrations and partition upkeep of the store).
//!
//! The binary stays thin: it parses a [`Cli`] and dispatches, and every
//! command here returns an exit code instead of exiting, so tests drive the
//! same code paths:
//!
//! ```text
//! let cli = Cli::parse();
//! let code = match &cli.command {
//!     None | Some(Command::Serve) => /* load_config, validate, resolve_dev_secret, server::run */,
//!     Some(Command::Config { .. }) => cli::run_config_command(&cli),
//!     Some(Command::Token { .. }) => cli::run_token_command(&cli),
//!     Some(Command::Migrate) => cli::run_migrate_command(&cli),
//!     Some(Command::Db { .. }) => cli::run_db_command(&cli),
//!     Some(Command::Import { .. }) => cli::run_import_command(&cli),
//! };
//! std::process::exit(code);
//! ```

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::{Authenticator, mint_hs256};
use crate::config::{self, Config, ConfigError};

mod db;
mod import;
pub use db::{DbCommand, run_db_command, run_migrate_command};
pub use import::run_import_command;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the command failed for a reason other than configuration.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: the configuration could not be loaded or is invalid (what
/// `config check` returns for a bad config; systemd logs it as such), or
/// the store is in use by another process (`serve`, `migrate`).
pub const EXIT_CONFIG: i32 = 2;

/// `gatrix-chat [GLOBAL FLAGS] [COMMAND]`. Flags are the highest-precedence
/// layer: defaults < `--config` file < `.env`/environment < flags.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "gatrix-chat",
    version,
    about = "A thread-per-core, Socket.IO v4-compatible chat server"
)]
pub struct Cli {
    /// TOML config file; keys are the lower-case setting names.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to bind, an IP or a host name resolved at start (HOST).
    #[arg(long, global = true, value_name = "HOST")]
    pub host: Option<String>,
    /// Port to listen on, 0 for any free port (PORT).
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// Shards to start, 0 for one per core (CLUSTER_WORKERS).
    #[arg(long, global = true, value_name = "N")]
    pub workers: Option<usize>,
    /// Directory of the embedded store and the development secret (DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Any setting by its lower-case name, e.g. `--set ping_interval_ms=10000`.
    /// Repeatable; a named flag above wins over `--set` of the same key.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the chat server (the default when no command is given).
    Serve,
    /// Apply pending store migrations (SQLite: creating DATA_DIR; MySQL:
    /// the database must exist), then exit. The server also does this at
    /// start. Refused (exit 2) while a server runs on the store.
    Migrate,
    /// Database upkeep.
    Db {
        #[command(subcommand)]
        action: DbCommand,
    },
    /// Import the Node.js Gatrix chat server's data (its chat_users,
    /// chat_channels, chat_channel_members and chat_messages) into the
    /// configured MySQL store: channels keep their numbers, messages their
    /// ids; a second run writes nothing. Prints a report of what was read,
    /// written and skipped. Refused (exit 2) while a server runs on the
    /// store, and into a store a server has written to.
    Import {
        /// The original's database: mysql://user:password@host:port/gatrix_chat
        /// (only read).
        #[arg(long, value_name = "URL")]
        from: String,
    },
    /// Check or print the effective configuration.
    Config {
        #[command(subcommand)]
        action: ConfigCommand,
    },
    /// Print an HS256 token for a user, signed with the configured secret (or
    /// the development secret, created if needed), for testing clients.
    Token {
        /// The user id (the token's `sub`).
        sub: String,
        /// Display name (the token's `name`).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        ttl: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate; print every problem and warning. Exit 0 when the
    /// server would start, 2 when it would refuse.
    Check,
    /// Print the effective configuration as TOML, secrets masked.
    Print,
}

impl Cli {
    /// The command to run: `serve` when none was given.
    pub fn command_or_serve(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }

    /// The flags as `(key, value)` overrides, `--set` first so that the
    /// named flags win.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut pairs = self.set.clone();
        let mut add = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push((key.to_owned(), value));
            }
        };
        add("host", self.host.clone());
        add("port", self.port.map(|p| p.to_string()));
        add("cluster_workers", self.workers.map(|n| n.to_string()));
        // A non-UTF-8 path is passed lossily; use --config or DATA_DIR then.
        add(
            "data_dir",
            self.data_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
        );
        pairs
    }
}

/// Loads `.env` and the config from every layer: defaults < file <
/// environment < flags. Does not validate: callers call [`validate`].
pub fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    config::load_dotenv()?;
    Config::load(cli.config.as_deref(), &cli.overrides())
}

/// Every problem of `config`, so `config check` can report them all at
/// once: the settings' own checks ([`Config::problems`]), then those that
/// need another module (config depends on none): that the TLS files, when
/// readable, parse and belong together.
pub fn problems(config: &Config) -> Vec<ConfigError> {
    let mut found = config.problems();
    let tls_files_readable = !found
        .iter()
        .any(|p| matches!(p.key(), Some("tls_cert_file" | "tls_key_file")));
    if tls_files_readable && let Some(problem) = crate::tls::config_problem(config) {
        found.push(problem);
    }
    found
}

/// The first of [`problems`]: what `serve`, `migrate` and `db` refuse to
/// start on.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    match problems(config).into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// Runs `config check` or `config print` (whichever `cli.command` is) on
/// stdout/stderr; returns the exit code.
pub fn run_config_command(cli: &Cli) -> i32 {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match &cli.command {
        Some(Command::Config { action }) => config_command(cli, *action, &mut out, &mut err),
        other => wrong_command("config", other, &mut err),
    }
}

/// Runs `token` (the one in `cli.command`): prints the token on stdout,
/// notes on stderr; returns the exit code.
pub fn run_token_command(cli: &Cli) -> i32 {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    match &cli.command {
        Some(Command::Token { sub, name, ttl }) => {
            token_command(cli, sub, name.as_deref(), *ttl, &mut out, &mut err)
        }
        other => wrong_command("token", other, &mut err),
    }
}

/// A dispatch bug in the caller, reported rather than panicking.
fn wrong_command(expected: &str, got: &Option<Command>, err: &mut dyn Write) -> i32 {
    let _ = writeln!(
        err,
        "error: internal: expected the {expected} command, got {got:?}"
    );
    EXIT_FAILURE
}

// Write errors on stdout/stderr (a closed pipe) are ignored below: there is
// nowhere left to report them, and the exit code still tells the outcome.

fn config_command(
    cli: &Cli,
    action: ConfigCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_CONFIG;
        }
    };
    if action == ConfigCommand::Print {
        let _ = write!(out, "{}", config.masked().to_toml());
        return EXIT_OK;
    }

    let mut problems: Vec<String> = problems(&config).iter().map(ToString::to_string).collect();
    if problems.is_empty() {
        if config.jwt_secret.is_none() && config.jwt_public_key_file.is_none() {
            let _ = writeln!(
                err,
                "warning: neither JWT_SECRET nor JWT_PUBLIC_KEY_FILE is set: serve will use the \
                 development secret in {} (created if absent); set JWT_SECRET in production",
                config.data_dir.join(config::DEV_SECRET_FILE).display()
            );
        } else if let Err(e) = Authenticator::from_config(&config) {
            problems.push(e.to_string());
        }
    }
    for problem in &problems {
        let _ = writeln!(err, "error: {problem}");
    }
    let warnings: Vec<String> = config
        .warnings()
        .into_iter()
        .chain(config::original_warnings())
        .collect();
    for warning in &warnings {
        let _ = writeln!(err, "warning: {warning}");
    }
    if !problems.is_empty() {
        return EXIT_CONFIG;
    }
    let original = config::original_names_in_use();
    if !original.is_empty() {
        let _ = writeln!(
            err,
            "note: read from the Node.js server's names: {}",
            original.join(", ")
        );
    }
    let listen = config.listen_addr().map_or_else(
        |_| format!("{}:{}", config.host, config.port),
        |a| a.to_string(),
    );
    let host = config
        .host_note()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let warned = match warnings.len() {
        0 => String::new(),
        n => format!(" with {n} warning(s) above"),
    };
    let _ = writeln!(
        out,
        "configuration OK{warned}: gatrix-chat {}, {} shard(s), listening on {listen}{host}\n\
         store: {}\nmetrics: {}",
        config::VERSION,
        config.shards(),
        config.store_description(),
        config.metrics_location(),
    );
    EXIT_OK
}

fn token_command(
    cli: &Cli,
    sub: &str,
    name: Option<&str>,
    ttl_secs: u64,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let mut config = match load_config(cli) {
        Ok(config) => config,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_CONFIG;
        }
    };
    if config.jwt_secret.is_none() && config.jwt_public_key_file.is_some() {
        let _ = writeln!(
            err,
            "error: JWT_PUBLIC_KEY_FILE is set and JWT_SECRET is not: tokens come from the \
             identity provider that holds the private key; mint them there, or set JWT_SECRET \
             to accept HS256 tokens too"
        );
        return EXIT_CONFIG;
    }
    match config.resolve_dev_secret() {
        Ok(Some(path)) => {
            let _ = writeln!(
                err,
                "note: signed with the development secret in {}",
                path.display()
            );
        }
        Ok(None) => {}
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_CONFIG;
        }
    }
    let secret = config.jwt_secret.as_deref().unwrap_or_default();
    let (aud, iss) = (config.jwt_audience.as_deref(), config.jwt_issuer.as_deref());
    match mint_hs256(secret, sub, name, ttl_secs, aud, iss) {
        Ok(token) => {
            let _ = writeln!(out, "{token}");
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_FAILURE
        }
    }
}

/// Parses `KEY=VALUE` (splitting at the first `=`, so values may hold `=`).
fn parse_key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "expected KEY=VALUE, such as ping_interval_ms=10000, got {arg:?}"
        )),
    }
}

#[cfg(test)]
mod tests;
