//! What the deployment is (`ENVIRONMENT`, or the Node.js server's
//! `NODE_ENV`), and what production requires: a real JWT secret.

use serde::{Deserialize, Serialize};

use super::validate::MIN_SECRET_BYTES;
use super::{Config, ConfigError};

/// What the deployment is, for the checks that must be strict in
/// production only (the original server's `NODE_ENV`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// `cargo run`, tests: a generated development secret is fine.
    /// `test`, the original's third value, means the same here.
    #[default]
    #[serde(alias = "test")]
    Development,
    /// Refuses to start on a generated development secret, a published
    /// placeholder or a short one.
    Production,
}

/// JWT secrets published in the original server's `.env.example` and
/// config defaults: anyone can mint tokens with them.
pub(super) const PLACEHOLDER_SECRETS: &[&str] = &[
    "your-super-secret-jwt-key-change-this-in-production",
    "your-super-secret-jwt-key-for-chat-server",
];

impl Config {
    /// In production, only a real JWT secret (or public key): never the
    /// generated development secret, a published placeholder or a short one.
    pub(super) fn production_problems(&self, found: &mut Vec<ConfigError>) {
        if self.environment != Environment::Production {
            return;
        }
        let fix = "set JWT_SECRET to a random string of at least 32 bytes (e.g. the output of \
                   `openssl rand -base64 48`) or JWT_PUBLIC_KEY_FILE, or ENVIRONMENT=development \
                   on a machine that is not production";
        let problem = match self.jwt_secret.as_deref() {
            None if self.jwt_public_key_file.is_none() => Some(
                "is not set and ENVIRONMENT (environment) is production: the server would \
                 run on a generated development secret"
                    .to_owned(),
            ),
            Some(s) if PLACEHOLDER_SECRETS.contains(&s) => Some(
                "is the published placeholder of the Node.js server's .env.example and \
                 ENVIRONMENT (environment) is production"
                    .to_owned(),
            ),
            Some(s) if !s.is_empty() && s.len() < MIN_SECRET_BYTES => Some(format!(
                "is {} bytes, shorter than {MIN_SECRET_BYTES}, and ENVIRONMENT (environment) \
                 is production",
                s.len()
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            found.push(ConfigError::invalid("jwt_secret", problem, fix));
        }
    }
}
