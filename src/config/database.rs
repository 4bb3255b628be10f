//! Which store the server uses, and the database settings' checks.
//!
//! SQLite under DATA_DIR is the default; DATABASE_URL (a `mysql://` URL) or
//! the original server's DB_HOST / DB_PORT / DB_NAME / DB_USER / DB_PASSWORD
//! select MySQL/MariaDB, DATABASE_URL winning when both are given.

use std::fs::File;
use std::path::PathBuf;

use mysql::{Opts, OptsBuilder, SslOpts};

use super::{Config, ConfigError, MASK};

/// The store the configuration selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// The embedded store, in this DATA_DIR.
    Sqlite(PathBuf),
    /// MySQL/MariaDB. `Opts` holds the password: log `store::mysql::describe`
    /// of it, never its `Debug`.
    Mysql(Opts),
}

/// Most months of partitions kept ahead: more is a typo.
const MAX_MONTHS_AHEAD: u32 = 120;
/// The most SEQUENCER_PARTITIONS: 5 bits of a message id (src/ids.rs;
/// `store::sequencing` checks that the two agree).
const MAX_SEQUENCER_PARTITIONS: u32 = 32;

impl Config {
    /// Whether the MySQL store is configured.
    pub fn uses_mysql(&self) -> bool {
        self.database_url.is_some() || self.db_host.is_some()
    }

    /// The store to open. Fails only on settings that [`Config::validate`]
    /// refuses.
    pub fn backend(&self) -> Result<Backend, ConfigError> {
        let builder = match (&self.database_url, &self.db_host) {
            (None, None) => return Ok(Backend::Sqlite(self.data_dir.clone())),
            (Some(url), _) => {
                let opts = Opts::from_url(url).map_err(|e| bad_url(&e.to_string()))?;
                if opts.get_db_name().is_none_or(str::is_empty) {
                    return Err(bad_url("it names no database"));
                }
                OptsBuilder::from_opts(opts)
            }
            (None, Some(host)) => {
                let b = OptsBuilder::new()
                    .db_name(Some(&self.db_name))
                    .user(Some(&self.db_user))
                    .pass(self.db_password.as_deref());
                if host.starts_with('/') {
                    b.socket(Some(host))
                } else {
                    b.ip_or_hostname(Some(host)).tcp_port(self.db_port)
                }
            }
        };
        let builder = if self.db_tls {
            let ssl = SslOpts::default().with_root_cert_path(self.db_tls_ca_file.clone());
            builder.ssl_opts(ssl)
        } else {
            builder
        };
        Ok(Backend::Mysql(builder.into()))
    }

    /// Reader threads of the store: with MySQL, every connection of
    /// `db_pool_size` but the writer's.
    pub fn store_reader_threads(&self) -> usize {
        if self.uses_mysql() && self.db_pool_size >= 2 {
            self.db_pool_size - 1
        } else {
            self.store_readers
        }
    }

    pub(super) fn database_problems(&self, found: &mut Vec<ConfigError>) {
        if let Some(url) = &self.database_url {
            match Opts::from_url(url) {
                Err(e) => found.push(bad_url(&e.to_string())),
                Ok(o) if o.get_db_name().is_none_or(str::is_empty) => {
                    found.push(bad_url("it names no database"));
                }
                Ok(_) => {}
            }
        } else if self.db_host.is_some() {
            if self.db_host.as_deref().is_some_and(|h| h.trim().is_empty()) {
                found.push(ConfigError::invalid(
                    "db_host",
                    "is blank",
                    "set it to the database host name or IP, or unset it for SQLite",
                ));
            }
            if self.db_port == 0 {
                found.push(ConfigError::invalid(
                    "db_port",
                    "is 0",
                    "set it to the database port, 3306 by default",
                ));
            }
            for (key, value) in [("db_name", &self.db_name), ("db_user", &self.db_user)] {
                if value.trim().is_empty() {
                    found.push(ConfigError::invalid(
                        key,
                        "is empty while DB_HOST is set",
                        "set it to the database name and account created for gatrix-chat",
                    ));
                }
            }
        }
        if self.db_pool_size == 1 {
            found.push(ConfigError::invalid(
                "db_pool_size",
                "is 1, but the writer and at least one reader need a connection each",
                "set it to 2 or more, or 0 for STORE_READERS + 1",
            ));
        }
        if let Some(path) = &self.db_tls_ca_file
            && let Err(e) = File::open(path)
        {
            found.push(ConfigError::invalid(
                "db_tls_ca_file",
                format!("{} cannot be read: {e}", path.display()),
                "point it at the PEM certificate of the CA that signed the database's \
                 certificate, or leave it unset",
            ));
        }
        if !(1..=MAX_SEQUENCER_PARTITIONS).contains(&self.sequencer_partitions) {
            found.push(ConfigError::invalid(
                "sequencer_partitions",
                format!(
                    "is {}, outside 1..={MAX_SEQUENCER_PARTITIONS}",
                    self.sequencer_partitions
                ),
                "set it to 1 (one ordered log) or up to 32 partitions",
            ));
        } else if self.sequencer_partitions > 1 && !self.uses_mysql() {
            found.push(ConfigError::invalid(
                "sequencer_partitions",
                format!(
                    "is {} but the store is SQLite, one process with one writer: its \
                     messages have one commit order",
                    self.sequencer_partitions
                ),
                "unset SEQUENCER_PARTITIONS (1), or use MySQL (DATABASE_URL or DB_HOST) for \
                 several instances",
            ));
        }
        if !(1..=MAX_MONTHS_AHEAD).contains(&self.db_partition_months_ahead) {
            found.push(ConfigError::invalid(
                "db_partition_months_ahead",
                format!(
                    "is {}, outside 1..={MAX_MONTHS_AHEAD}",
                    self.db_partition_months_ahead
                ),
                "set it to a number of months such as 3",
            ));
        }
    }

    pub(super) fn database_warnings(&self, warnings: &mut Vec<String>) {
        if self.database_url.is_some() && self.db_host.is_some() {
            warnings.push(
                "DB_HOST (db_host) is ignored: DATABASE_URL (database_url) is set and wins; \
                 unset one of them"
                    .to_owned(),
            );
        }
        if !self.uses_mysql() {
            if self.db_password.is_some() {
                warnings.push(
                    "DB_PASSWORD (db_password) is set but neither DATABASE_URL nor DB_HOST is: \
                     the store is SQLite under DATA_DIR"
                        .to_owned(),
                );
            }
            if self.message_retention_days > 0 {
                warnings.push(
                    "MESSAGE_RETENTION_DAYS (message_retention_days) applies only to the MySQL \
                     store: with SQLite, messages are kept"
                        .to_owned(),
                );
            }
        }
        if self.db_tls_ca_file.is_some() && !self.db_tls {
            warnings.push(
                "DB_TLS_CA_FILE (db_tls_ca_file) is ignored while DB_TLS (db_tls) is false: \
                 set DB_TLS=true to encrypt the database connection"
                    .to_owned(),
            );
        }
    }
}

/// The DATABASE_URL error; never quotes the URL (it holds the password).
fn bad_url(problem: &str) -> ConfigError {
    ConfigError::invalid(
        "database_url",
        format!("is not a usable MySQL URL: {problem}"),
        "write it as mysql://user:password@host:3306/database (percent-encode special \
         characters in the password), or unset it",
    )
}

/// `url` with the password of its user info replaced by [`MASK`]
/// (`mysql://chat:********@db:3306/gatrix`). Text that is not a URL with
/// user info is returned unchanged unless it has an `@`, in which case all of
/// it is masked, to be safe.
pub fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            MASK.to_owned()
        } else {
            url.to_owned()
        };
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{MASK}{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
