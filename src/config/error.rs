//! Why a configuration could not be loaded or used.
//!
//! Every message is meant for an operator reading a terminal or a journal:
//! it names the setting in both spellings (environment variable and TOML
//! key) and says how to fix it.

use std::path::PathBuf;

/// An error from loading, validating or completing the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or the TOML file does not parse. figment's
    /// message already names the key and where the value came from.
    #[error("{0}")]
    Load(Box<figment::Error>),

    /// `--config` names a file that cannot be read.
    #[error("config file {}: {source}: check the --config path", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The `.env` file in the working directory exists but cannot be read or
    /// parsed. The detail never quotes the offending line: it may hold a
    /// secret, and this message ends up in logs.
    #[error(".env file: {detail}: fix it or remove the file")]
    DotEnv { detail: String },

    /// `--set` named a key the config does not have.
    #[error(
        "--set {key}: unknown setting; use a lower-case key such as port or \
         ping_interval_ms (`gatrix-chat config print` lists them all)"
    )]
    UnknownKey { key: String },

    /// A value is out of range or inconsistent with another one.
    #[error("{env} ({key}) {problem}: {fix}")]
    Invalid {
        /// The environment variable name, e.g. `PING_TIMEOUT_MS`.
        env: String,
        /// The TOML key, e.g. `ping_timeout_ms`.
        key: &'static str,
        problem: String,
        fix: String,
    },

    /// The development secret file could not be created or read.
    #[error(
        "development JWT secret {}: {problem}: {fix}",
        path.display()
    )]
    DevSecret {
        path: PathBuf,
        problem: String,
        fix: String,
    },
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`, deriving the environment name.
    pub(crate) fn invalid(
        key: &'static str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            env: key.to_ascii_uppercase(),
            key,
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// The TOML key this error is about, when it is about one setting.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::UnknownKey { key } => Some(key),
            _ => None,
        }
    }
}
