//! Redis and the instance's name: what lets several processes on one MySQL
//! database act as one server (docs/architecture.md "Several instances").
//!
//! REDIS_URL, or the original server's REDIS_CLUSTER_NODES (a Redis
//! Cluster, [`super::redis_cluster`]) or REDIS_HOST / REDIS_PORT /
//! REDIS_PASSWORD / REDIS_DB, in that order of precedence. No Redis: one
//! process, as before. Redis needs the MySQL store: with SQLite
//! there is one writer file and one process by design, so the combination
//! is refused at start rather than half-working.

use super::redis_cluster::{self, ClusterAddress, ClusterAddressError};
use super::{Config, ConfigError};

/// The Redis named by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RedisTarget {
    /// One Redis server: its `redis://` URL.
    Standalone(String),
    /// A Redis Cluster.
    Cluster(ClusterAddress),
}

/// The longest SERVER_ID: it is part of Redis keys and lock names.
const MAX_SERVER_ID: usize = 64;

/// The shortest presence lease: renewed every sixth, so every 100 ms.
const MIN_PRESENCE_LEASE_MS: u64 = 600;

impl Config {
    /// The Redis to use, as a `redis://` URL or a Redis Cluster's
    /// `redis+cluster://` one (holding the password: never log it, log
    /// [`Config::masked`]), or `None` for one process without Redis.
    pub fn redis_url(&self) -> Option<String> {
        if let Some(url) = &self.redis_url {
            return Some(url.clone());
        }
        if let Some(nodes) = &self.redis_cluster_nodes {
            return Some(redis_cluster::url_of(nodes, self.redis_password.as_deref()));
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

    /// The Redis to use, by kind; `None` without Redis. An error for a
    /// cluster address that does not parse (refused at start by
    /// [`Config::validate`], so only a caller that skipped it sees one).
    pub(crate) fn redis_target(&self) -> Option<Result<RedisTarget, ClusterAddressError>> {
        let url = self.redis_url()?;
        Some(match redis_cluster::parse_url(&url) {
            Some(cluster) => cluster.map(RedisTarget::Cluster),
            None => Ok(RedisTarget::Standalone(url)),
        })
    }

    /// Which key named the Redis: the one its errors are about.
    fn redis_key(&self) -> &'static str {
        if self.redis_url.is_some() {
            "redis_url"
        } else if self.redis_cluster_nodes.is_some() {
            "redis_cluster_nodes"
        } else {
            "redis_host"
        }
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
            let key = self.redis_key();
            if let Some(cluster) = redis_cluster::parse_url(&url) {
                self.cluster_problems(key, cluster.err(), found);
            } else if let Err(e) = redis::Client::open(url.as_str()) {
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

    /// A Redis Cluster address's problems: its syntax, and a database
    /// other than 0 (a cluster has only that one).
    fn cluster_problems(
        &self,
        key: &'static str,
        error: Option<ClusterAddressError>,
        found: &mut Vec<ConfigError>,
    ) {
        if let Some(e) = error {
            found.push(ConfigError::invalid(
                key,
                e.to_string(),
                "name the cluster as REDIS_CLUSTER_NODES=host:7000,host:7001 (some of its \
                 nodes; REDIS_PASSWORD for its password) or \
                 REDIS_URL=redis+cluster://[:password@]host:7000,host:7001",
            ));
        }
        if key == "redis_cluster_nodes" && self.redis_db != 0 {
            found.push(ConfigError::invalid(
                "redis_db",
                format!(
                    "is {} with REDIS_CLUSTER_NODES: a Redis Cluster has only database 0",
                    self.redis_db
                ),
                "unset REDIS_DB (or set it to 0) for a Redis Cluster",
            ));
        }
    }

    pub(super) fn redis_warnings(&self, warnings: &mut Vec<String>) {
        if self.redis_url.is_some() && self.redis_cluster_nodes.is_some() {
            warnings.push(
                "REDIS_CLUSTER_NODES (redis_cluster_nodes) is ignored: REDIS_URL (redis_url) \
                 is set and wins; unset one of them"
                    .to_owned(),
            );
        }
        if (self.redis_url.is_some() || self.redis_cluster_nodes.is_some())
            && self.redis_host.is_some()
        {
            let winner = if self.redis_url.is_some() {
                "REDIS_URL (redis_url)"
            } else {
                "REDIS_CLUSTER_NODES (redis_cluster_nodes)"
            };
            warnings.push(format!(
                "REDIS_HOST (redis_host) is ignored: {winner} is set and wins; unset one of them"
            ));
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
    fn a_cluster_is_named_by_its_nodes_or_its_url() {
        let c = Config {
            redis_cluster_nodes: Some("r1:7000,r2:7000".into()),
            redis_password: Some("pw".into()),
            redis_host: Some("localhost".into()),
            ..mysql()
        };
        let want = ClusterAddress {
            nodes: vec![("r1".into(), 7000), ("r2".into(), 7000)],
            username: None,
            password: Some("pw".into()),
        };
        assert_eq!(
            c.redis_target(),
            Some(Ok(RedisTarget::Cluster(want.clone())))
        );
        let mut found = Vec::new();
        c.redis_problems(&mut found);
        assert!(found.is_empty(), "{found:?}");
        let mut w = Vec::new();
        c.redis_warnings(&mut w);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("REDIS_CLUSTER_NODES (redis_cluster_nodes) is set and wins"));
        let url = Config {
            redis_url: Some("redis+cluster://:pw@r1:7000,r2:7000".into()),
            ..mysql()
        };
        assert_eq!(url.redis_target(), Some(Ok(RedisTarget::Cluster(want))));
        let single = Config {
            redis_url: Some("redis://r1:6379/0".into()),
            ..mysql()
        };
        assert_eq!(
            single.redis_target(),
            Some(Ok(RedisTarget::Standalone("redis://r1:6379/0".into())))
        );
    }

    #[test]
    fn a_bad_cluster_address_is_refused_naming_the_key_and_the_fix() {
        let problems = |c: Config| {
            let mut found = Vec::new();
            c.redis_problems(&mut found);
            found.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        let found = problems(Config {
            redis_cluster_nodes: Some("r1:7000,r2".into()),
            redis_password: Some("hunter2".into()),
            ..mysql()
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("REDIS_CLUSTER_NODES"), "{}", found[0]);
        assert!(found[0].contains("\"r2\""), "{}", found[0]);
        assert!(found[0].contains("host:7000"), "{}", found[0]);
        assert!(!found[0].contains("hunter2"), "{}", found[0]);
        let found = problems(Config {
            redis_url: Some("redis+cluster://:hunter2@r1:7000/3".into()),
            ..mysql()
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("REDIS_URL") && found[0].contains("database 0"));
        assert!(!found[0].contains("hunter2"), "{}", found[0]);
        let found = problems(Config {
            redis_cluster_nodes: Some("r1:7000".into()),
            redis_db: 1,
            ..mysql()
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("REDIS_DB"), "{}", found[0]);
        // A cluster needs MySQL as one Redis does.
        let found = problems(Config {
            redis_cluster_nodes: Some("r1:7000".into()),
            ..Config::default()
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("SQLite"), "{}", found[0]);
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
