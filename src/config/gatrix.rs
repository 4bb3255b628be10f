//! The Gatrix dialect's settings (`gatrix_compat` and the backend's token
//! settings): what must be set when it is on, and what production refuses,
//! as for `jwt_secret` (`environment.rs`).

use super::environment::{Environment, PLACEHOLDER_SECRETS};
use super::validate::MIN_SECRET_BYTES;
use super::{Config, ConfigError};

/// JWT secrets published by the Gatrix repository itself (`.env.example`,
/// `.env.local.example`, its compose files' fallbacks): anyone can mint a
/// backend token with them.
const GATRIX_PLACEHOLDERS: &[&str] = &[
    "change-this-to-a-very-secure-random-string-min-32-chars",
    "dev-jwt-secret",
];

/// The service token the Gatrix backend falls back to when its
/// `BACKEND_SERVICE_TOKEN` is unset (routes/chat/index.ts and
/// chat-server-service.ts), and the original server's `.env.example`.
const SERVICE_TOKEN_PLACEHOLDERS: &[&str] =
    &["gatrix-backend-service-token-default-key-change-in-production"];

/// Longest claim name, issuer or audience accepted (they are compared with
/// every token's claims; a bound keeps a typo from being a paragraph).
const MAX_NAME_BYTES: usize = 256;

impl Config {
    /// With `gatrix_compat` on: the backend's secret is set, the names are
    /// not empty, and in production the secret is not a published
    /// placeholder nor short.
    pub(super) fn gatrix_problems(&self, found: &mut Vec<ConfigError>) {
        if !self.gatrix_compat {
            return;
        }
        let secret = self.gatrix_jwt_secret.as_deref().unwrap_or_default();
        if secret.is_empty() {
            found.push(ConfigError::invalid(
                "gatrix_jwt_secret",
                "is not set and GATRIX_COMPAT (gatrix_compat) is on",
                "set it to the Gatrix backend's JWT_SECRET, or turn gatrix_compat off",
            ));
        } else if self.environment == Environment::Production {
            let problem = if is_placeholder(secret) {
                Some("is a secret published in the Gatrix or Node.js server's examples".to_owned())
            } else if secret.len() < MIN_SECRET_BYTES {
                Some(format!(
                    "is {} bytes, shorter than {MIN_SECRET_BYTES}",
                    secret.len()
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                found.push(ConfigError::invalid(
                    "gatrix_jwt_secret",
                    format!("{problem}, and ENVIRONMENT (environment) is production"),
                    "give the Gatrix backend (JWT_SECRET) and this server a random string of \
                     at least 32 bytes (e.g. `openssl rand -base64 48`)",
                ));
            }
        }
        if self.environment == Environment::Production
            && let Some(problem) = self.weak_service_token()
        {
            found.push(ConfigError::invalid(
                "backend_service_token",
                format!("{problem}, and ENVIRONMENT (environment) is production"),
                "give the Gatrix backend (BACKEND_SERVICE_TOKEN) and this server a random \
                 string of at least 32 bytes (e.g. `openssl rand -base64 48`)",
            ));
        }
        for (key, value) in [
            ("gatrix_jwt_issuer", &self.gatrix_jwt_issuer),
            ("gatrix_jwt_audience", &self.gatrix_jwt_audience),
            ("gatrix_user_id_claim", &self.gatrix_user_id_claim),
        ] {
            if value.is_empty() || value.len() > MAX_NAME_BYTES {
                found.push(ConfigError::invalid(
                    key,
                    format!("is {} bytes", value.len()),
                    "set it to 1 to 256 bytes (the defaults are the Gatrix backend's)",
                ));
            }
        }
    }

    /// What is wrong with the service token, if it is set and weak: the
    /// published default, or short. The token is never repeated.
    fn weak_service_token(&self) -> Option<String> {
        let token = self.backend_service_token.as_deref()?;
        if SERVICE_TOKEN_PLACEHOLDERS.contains(&token) {
            Some("is the default published in the Gatrix backend's code".to_owned())
        } else if token.len() < MIN_SECRET_BYTES {
            Some(format!(
                "is {} bytes, shorter than {MIN_SECRET_BYTES}",
                token.len()
            ))
        } else {
            None
        }
    }

    /// In development, a weak backend secret or service token is allowed
    /// with a warning; a service token without the dialect is unused.
    pub(super) fn gatrix_warnings(&self, warnings: &mut Vec<String>) {
        if self.gatrix_compat && self.backend_service_token.is_none() {
            warnings.push(
                "GATRIX_COMPAT (gatrix_compat) is on without BACKEND_SERVICE_TOKEN \
                 (backend_service_token): the Gatrix backend's REST calls are refused"
                    .to_owned(),
            );
        } else if self.backend_service_token.is_some() && !self.gatrix_compat {
            warnings.push(
                "BACKEND_SERVICE_TOKEN (backend_service_token) is ignored: GATRIX_COMPAT \
                 (gatrix_compat) is off"
                    .to_owned(),
            );
        } else if self.gatrix_compat
            && self.environment == Environment::Development
            && let Some(problem) = self.weak_service_token()
        {
            warnings.push(format!(
                "BACKEND_SERVICE_TOKEN (backend_service_token) {problem}: anyone could call \
                 the Gatrix REST API as any user; refused with ENVIRONMENT=production"
            ));
        }
        if self.gatrix_require_known_users && !self.gatrix_compat {
            warnings.push(
                "GATRIX_REQUIRE_KNOWN_USERS (gatrix_require_known_users) is ignored: \
                 GATRIX_COMPAT (gatrix_compat) is off"
                    .to_owned(),
            );
        }
        let Some(secret) = self.gatrix_jwt_secret.as_deref().filter(|s| !s.is_empty()) else {
            return;
        };
        if self.gatrix_compat
            && self.environment == Environment::Development
            && (is_placeholder(secret) || secret.len() < MIN_SECRET_BYTES)
        {
            warnings.push(format!(
                "GATRIX_JWT_SECRET (gatrix_jwt_secret) is a published placeholder or shorter \
                 than {MIN_SECRET_BYTES} bytes: anyone could mint Gatrix tokens; refused with \
                 ENVIRONMENT=production"
            ));
        }
    }
}

fn is_placeholder(secret: &str) -> bool {
    GATRIX_PLACEHOLDERS.contains(&secret) || PLACEHOLDER_SECRETS.contains(&secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(secret: Option<&str>, environment: Environment) -> Config {
        Config {
            gatrix_compat: true,
            gatrix_jwt_secret: secret.map(str::to_owned),
            backend_service_token: Some("t".repeat(40)),
            environment,
            ..Config::default()
        }
    }

    fn problems(c: &Config) -> Vec<String> {
        let mut found = Vec::new();
        c.gatrix_problems(&mut found);
        found.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn off_needs_nothing() {
        assert!(problems(&Config::default()).is_empty());
    }

    #[test]
    fn on_needs_the_backend_secret() {
        let p = problems(&on(None, Environment::Development));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("gatrix_jwt_secret"), "{p:?}");
        let strong = "s".repeat(40);
        assert!(problems(&on(Some(&strong), Environment::Production)).is_empty());
    }

    #[test]
    fn production_refuses_weak_secrets_development_warns() {
        for weak in ["dev-jwt-secret", "tiny-s3cret", GATRIX_PLACEHOLDERS[0]] {
            let p = problems(&on(Some(weak), Environment::Production));
            assert_eq!(p.len(), 1, "{weak}: {p:?}");
            assert!(!p[0].contains(weak), "the secret is never repeated: {p:?}");
            let dev = on(Some(weak), Environment::Development);
            assert!(problems(&dev).is_empty());
            let mut w = Vec::new();
            dev.gatrix_warnings(&mut w);
            assert_eq!(w.len(), 1, "{weak}");
        }
    }

    #[test]
    fn weak_service_tokens_are_refused_in_production() {
        let strong = "s".repeat(40);
        let mut c = on(Some(&strong), Environment::Production);
        for weak in [SERVICE_TOKEN_PLACEHOLDERS[0], "short-token"] {
            c.backend_service_token = Some(weak.into());
            let p = problems(&c);
            assert_eq!(p.len(), 1, "{weak}: {p:?}");
            assert!(p[0].contains("backend_service_token"), "{p:?}");
            assert!(!p[0].contains(weak), "the token is never repeated: {p:?}");
            let mut dev = c.clone();
            dev.environment = Environment::Development;
            assert!(problems(&dev).is_empty());
            let mut w = Vec::new();
            dev.gatrix_warnings(&mut w);
            assert_eq!(w.len(), 1, "{weak}: {w:?}");
        }
        c.backend_service_token = Some("t".repeat(40));
        assert!(problems(&c).is_empty());
        // Masked like the other secrets.
        assert_eq!(
            c.masked().backend_service_token.as_deref(),
            Some(crate::config::MASK)
        );
        let mut w = Vec::new();
        c.gatrix_warnings(&mut w);
        assert!(w.is_empty(), "{w:?}");
        c.backend_service_token = None;
        c.gatrix_warnings(&mut w);
        assert!(
            w.len() == 1 && w[0].contains("refused"),
            "compat without the token: {w:?}"
        );
    }

    #[test]
    fn require_known_users_without_the_dialect_is_ignored_with_a_warning() {
        let mut c = on(Some(&"s".repeat(40)), Environment::Development);
        c.gatrix_require_known_users = true;
        let mut w = Vec::new();
        c.gatrix_warnings(&mut w);
        assert!(w.is_empty(), "{w:?}");
        c.gatrix_compat = false;
        c.backend_service_token = None;
        c.gatrix_warnings(&mut w);
        assert!(
            w.len() == 1 && w[0].contains("GATRIX_REQUIRE_KNOWN_USERS"),
            "{w:?}"
        );
    }

    #[test]
    fn empty_names_are_refused() {
        let mut c = on(Some(&"s".repeat(40)), Environment::Development);
        c.gatrix_user_id_claim = String::new();
        let p = problems(&c);
        assert!(
            p.iter().any(|p| p.contains("gatrix_user_id_claim")),
            "{p:?}"
        );
    }
}
