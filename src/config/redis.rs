//! Redis and the instance's name: what lets several processes on one MySQL
//! database act as one server (docs/architecture.md "Several instances").
//!
//! REDIS_URL, or the original server's REDIS_HOST / REDIS_PORT /
//! REDIS_PASSWORD / REDIS_DB, REDIS_URL winning when both are given. No
//! Redis: one process, as before. Redis needs the MySQL store: with SQLite
//! there is one writer file and one process by design, so the combination
//! is refused at start rather than half-working.

use super::{Config, ConfigError};

/// The longest SERVER_ID: it is part of Redis keys and lock names.
const MAX_SERVER_ID: usize = 64;

/// The shortest presence lease: renewed every sixth, so every 100 ms.
const MIN_PRESENCE_LEASE_MS: u64 = 600;

impl Config {
    /// The Redis to use, as a `redis://` URL (holding the password: never
    /// log it, log [`Config::masked`]), or `None` for one process without
    /// Redis.
    pub fn redis_url(&self) -> Option<String> {
        if let Some(url) = &self.redis_url {
            return Some(url.clone());
        }
        let host = self.redis_host.as_deref()?;
        // IPv6 literals need brackets in a URL.
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let auth = match &self.redis_password {
            Some(p) => format!(
                ":{}@",
                percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
            ),
            None => String::new(),
        };
        Some(format!(
            "redis://{auth}{host}:{}/{}",
            self.redis_port, self.redis_db
        ))
    }

    /// This instance's name: SERVER_ID, or `<host name>-<pid>`.
    pub fn server_id(&self) -> String {
        if let Some(id) = &self.server_id {
            return id.clone();
        }
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "host".to_owned());
        let host: String = host
            .chars()
            .map(|c| if server_id_char(c) { c } else { '-' })
            .take(MAX_SERVER_ID - 11)
            .collect();
        format!("{host}-{}", std::process::id())
    }

    /// The presence lease period (`presence_lease_ms`).
    pub fn presence_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.presence_lease_ms)
    }

    pub(super) fn redis_problems(&self, found: &mut Vec<ConfigError>) {
        self.bus_problems(found);
        if let Some(url) = self.redis_url() {
            let key = if self.redis_url.is_some() {
                "redis_url"
            } else {
                "redis_host"
            };
            if let Err(e) = redis::Client::open(url.as_str()) {
                // The crate's message may quote the URL: name only its kind.
                found.push(ConfigError::invalid(
                    key,
                    format!("is not a usable Redis address ({:?})", e.kind()),
                    "write REDIS_URL as redis://[:password@]host:6379/0 (percent-encode special \
                     characters in the password), or set REDIS_HOST and REDIS_PORT",
                ));
            }
            if !self.uses_mysql() {
                found.push(ConfigError::invalid(
                    key,
                    "is set but the store is SQLite: several instances share one MySQL \
                     database, which is their only source of truth, and SQLite is one \
                     process by design",
                    "set DATABASE_URL (or DB_HOST) to the MySQL/MariaDB database the \
                     instances share, or unset REDIS_URL and REDIS_HOST for one process",
                ));
            }
        }
        if self.presence_lease_ms < MIN_PRESENCE_LEASE_MS {
            found.push(ConfigError::invalid(
                "presence_lease_ms",
                format!("must be at least {MIN_PRESENCE_LEASE_MS} ms"),
                "give milliseconds such as 15000: an instance renews its lease every sixth \
                 of it, and a short lease loses it to a slow network",
            ));
        }
        if self.presence_queue == 0 {
            found.push(ConfigError::invalid(
                "presence_queue",
                "must not be 0: no presence update could reach Redis",
                "give requests such as 65536",
            ));
        }
        if let Some(id) = &self.server_id
            && (id.is_empty() || id.len() > MAX_SERVER_ID || !id.chars().all(server_id_char))
        {
            found.push(ConfigError::invalid(
                "server_id",
                format!("must be 1 to {MAX_SERVER_ID} characters of A-Z a-z 0-9 . _ -"),
                "name the instance with letters, digits, '.', '_' and '-', e.g. chat-1, or \
                 unset it for <host name>-<pid>",
            ));
        }
    }

    pub(super) fn redis_warnings(&self, warnings: &mut Vec<String>) {
        if self.redis_url.is_some() && self.redis_host.is_some() {
            warnings.push(
                "REDIS_HOST (redis_host) is ignored: REDIS_URL (redis_url) is set and wins; \
                 unset one of them"
                    .to_owned(),
            );
        }
        if self.redis_url().is_none() && self.redis_password.is_some() {
            warnings.push(
                "REDIS_PASSWORD (redis_password) is set but neither REDIS_URL nor REDIS_HOST \
                 is: no Redis is used"
                    .to_owned(),
            );
        }
    }
}

fn server_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql() -> Config {
        Config {
            database_url: Some("mysql://u:p@db:3306/chat".into()),
            ..Config::default()
        }
    }

    #[test]
    fn no_redis_unless_named() {
        assert_eq!(Config::default().redis_url(), None);
    }

    #[test]
    fn the_original_keys_make_a_url_and_the_url_wins() {
        let mut c = Config {
            redis_host: Some("cache".into()),
            redis_port: 6380,
            redis_password: Some("p@ss word".into()),
            redis_db: 2,
            ..mysql()
        };
        assert_eq!(
            c.redis_url().as_deref(),
            Some("redis://:p%40ss%20word@cache:6380/2")
        );
        c.redis_password = None;
        c.redis_host = Some("::1".into());
        assert_eq!(c.redis_url().as_deref(), Some("redis://[::1]:6380/2"));
        c.redis_url = Some("redis://other:6379/0".into());
        assert_eq!(c.redis_url().as_deref(), Some("redis://other:6379/0"));
        let mut w = Vec::new();
        c.redis_warnings(&mut w);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("REDIS_HOST (redis_host) is ignored"));
    }

    #[test]
    fn redis_with_sqlite_is_refused_naming_the_fix() {
        let c = Config {
            redis_url: Some("redis://127.0.0.1:6379/0".into()),
            ..Config::default()
        };
        let mut found = Vec::new();
        c.redis_problems(&mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        let text = found[0].to_string();
        assert!(text.contains("REDIS_URL"), "{text}");
        assert!(text.contains("SQLite"), "{text}");
        assert!(text.contains("DATABASE_URL"), "{text}");
        let mut found = Vec::new();
        Config {
            redis_url: c.redis_url.clone(),
            ..mysql()
        }
        .redis_problems(&mut found);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_bad_url_is_refused_without_quoting_it() {
        let c = Config {
            redis_url: Some("http://:secret@cache".into()),
            ..mysql()
        };
        let mut found = Vec::new();
        c.redis_problems(&mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        let text = found[0].to_string();
        assert!(text.contains("REDIS_URL"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn server_ids_are_checked_and_defaulted() {
        let mut found = Vec::new();
        Config {
            server_id: Some("chat 1".into()),
            ..Config::default()
        }
        .redis_problems(&mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].to_string().contains("SERVER_ID"));
        let id = Config::default().server_id();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(
            id.len() <= MAX_SERVER_ID && id.chars().all(server_id_char),
            "{id}"
        );
        let named = Config {
            server_id: Some("chat-1".into()),
            ..Config::default()
        };
        assert_eq!(named.server_id(), "chat-1");
    }

    #[test]
    fn passwords_are_masked() {
        let c = Config {
            redis_url: Some("redis://:hunter2@cache:6379/0".into()),
            redis_password: Some("hunter2".into()),
            ..mysql()
        }
        .masked();
        assert!(!c.redis_url.unwrap().contains("hunter2"));
        assert!(!c.redis_password.unwrap().contains("hunter2"));
    }
}
