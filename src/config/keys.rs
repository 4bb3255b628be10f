//! The one table of configuration keys: each key once, with how its raw
//! text (environment, `--set`) becomes a value. Everything that lists keys
//! ([`KEYS`](super::KEYS), the environment layer, `--set`'s check, the
//! normalisation of empty optional values, `config print`'s unset keys) is
//! derived from it, so adding a key is a field of [`Config`] (with its
//! default), one line here and its row in docs/configuration.md (a test
//! checks it). The environment name is always the key upper-cased; the
//! Node.js server's other names for some keys are `original`'s list (in
//! the order the start log names them), checked against this table by its
//! tests.

use std::path::{Path, PathBuf};

use super::Config;

/// One configuration key.
#[derive(Clone, Copy)]
pub(crate) struct Key {
    /// As written in TOML and `--set`: the serde name of [`Config`]'s
    /// field (its own name, but for `commit_batch_max`, whose key is
    /// `broadcast_batch_size`).
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
}

/// How a key's raw text from the environment or `--set` becomes a value.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// Parsed (a number, a boolean, a name); anything that does not parse
    /// stays text, and extraction reports the key and the expected type.
    /// An empty value leaves the lower layers in charge.
    Parsed,
    /// Free text, verbatim (a secret made of digits stays text, `000123`
    /// keeps its zeros). An empty value leaves the lower layers in charge.
    Text,
    /// Free text that may be unset: an empty value, from any layer (TOML's
    /// `jwt_secret = ""` too), unsets it, which lets the environment clear a
    /// value the TOML file set; `config print` lists it when unset.
    Optional(Field),
}

/// An optional key's field, to unset it when its value is empty.
#[derive(Clone, Copy)]
pub(crate) enum Field {
    Text(fn(&mut Config) -> &mut Option<String>),
    Path(fn(&mut Config) -> &mut Option<PathBuf>),
}

impl Key {
    /// Whether the raw text is taken verbatim rather than parsed.
    pub(crate) fn is_text(&self) -> bool {
        !matches!(self.kind, Kind::Parsed)
    }

    /// The field of an optional key.
    pub(crate) fn optional(&self) -> Option<Field> {
        match self.kind {
            Kind::Optional(field) => Some(field),
            _ => None,
        }
    }
}

impl Field {
    /// Whether the field has no value in `config`.
    pub(crate) fn is_unset(self, config: &mut Config) -> bool {
        match self {
            Field::Text(f) => f(config).is_none(),
            Field::Path(f) => f(config).is_none(),
        }
    }

    /// Unsets the field when its value is empty.
    pub(crate) fn unset_if_empty(self, config: &mut Config) {
        match self {
            Field::Text(f) => {
                let value = f(config);
                if value.as_deref() == Some("") {
                    *value = None;
                }
            }
            Field::Path(f) => {
                let value = f(config);
                if value.as_deref() == Some(Path::new("")) {
                    *value = None;
                }
            }
        }
    }
}

const fn parsed(name: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Parsed,
    }
}

const fn text(name: &'static str) -> Key {
    Key {
        name,
        kind: Kind::Text,
    }
}

const fn optional_text(name: &'static str, f: fn(&mut Config) -> &mut Option<String>) -> Key {
    Key {
        name,
        kind: Kind::Optional(Field::Text(f)),
    }
}

const fn optional_path(name: &'static str, f: fn(&mut Config) -> &mut Option<PathBuf>) -> Key {
    Key {
        name,
        kind: Kind::Optional(Field::Path(f)),
    }
}

/// Every key, in the order of [`Config`]'s fields.
#[rustfmt::skip]
pub(crate) const TABLE: &[Key] = &[
    text("host"),
    parsed("port"),
    parsed("cluster_workers"),
    parsed("shard_cpus"),
    parsed("ws_max_connections"),
    parsed("ws_max_connections_per_ip"),
    parsed("ws_connection_rate_per_ip"),
    parsed("ws_connection_burst_per_ip"),
    parsed("broadcast_batch_size"),
    parsed("environment"),
    optional_text("jwt_secret", |c| &mut c.jwt_secret),
    optional_path("jwt_public_key_file", |c| &mut c.jwt_public_key_file),
    optional_text("jwt_audience", |c| &mut c.jwt_audience),
    optional_text("jwt_issuer", |c| &mut c.jwt_issuer),
    parsed("gatrix_compat"),
    optional_text("gatrix_jwt_secret", |c| &mut c.gatrix_jwt_secret),
    text("gatrix_jwt_issuer"),
    text("gatrix_jwt_audience"),
    text("gatrix_user_id_claim"),
    optional_text("backend_service_token", |c| &mut c.backend_service_token),
    parsed("gatrix_directory_cache_users"),
    parsed("gatrix_require_known_users"),
    text("data_dir"),
    parsed("ping_interval_ms"),
    parsed("ping_timeout_ms"),
    parsed("connect_timeout_ms"),
    parsed("handshake_timeout_ms"),
    parsed("max_payload"),
    parsed("max_payload_before_connect"),
    parsed("max_http_header_bytes"),
    parsed("ws_compression"),
    parsed("ws_compression_threshold"),
    parsed("max_message_length"),
    parsed("max_channels_per_connection"),
    parsed("rate_limit_per_sec"),
    parsed("rate_limit_burst"),
    parsed("rate_limit_disconnect_after"),
    parsed("outbound_queue_messages"),
    parsed("outbound_queue_bytes"),
    parsed("typing_timeout_ms"),
    parsed("presence_interval_ms"),
    parsed("channel_cache_idle_ms"),
    parsed("channel_cache_max"),
    parsed("shutdown_timeout_ms"),
    parsed("io_memory_kib"),
    parsed("io_ring_depth"),
    parsed("store_writer_queue"),
    parsed("store_commit_window_us"),
    parsed("store_readers"),
    parsed("recovery_window_ms"),
    parsed("recovery_max_replay"),
    parsed("recovery_max_sessions"),
    parsed("recovery_redis_queue"),
    parsed("recovery_redis_timeout_ms"),
    parsed("rest_max_body_bytes"),
    parsed("rest_keepalive_timeout_ms"),
    text("log_format"),
    parsed("refusal_log_interval_ms"),
    optional_text("database_url", |c| &mut c.database_url),
    optional_text("db_host", |c| &mut c.db_host),
    parsed("db_port"),
    text("db_name"),
    text("db_user"),
    optional_text("db_password", |c| &mut c.db_password),
    parsed("db_pool_size"),
    parsed("db_tls"),
    optional_path("db_tls_ca_file", |c| &mut c.db_tls_ca_file),
    parsed("message_retention_days"),
    parsed("db_partition_months_ahead"),
    parsed("sequencer_partitions"),
    optional_text("redis_url", |c| &mut c.redis_url),
    optional_text("redis_host", |c| &mut c.redis_host),
    parsed("redis_port"),
    optional_text("redis_password", |c| &mut c.redis_password),
    parsed("redis_db"),
    optional_text("redis_cluster_nodes", |c| &mut c.redis_cluster_nodes),
    parsed("redis_cluster_refresh_ms"),
    parsed("redis_reconnect_max_ms"),
    parsed("redis_pubsub_partitions"),
    optional_text("server_id", |c| &mut c.server_id),
    parsed("bus_gap_wait_ms"),
    parsed("bus_poll_interval_ms"),
    parsed("bus_stream_max_len"),
    parsed("bus_zstd_threshold"),
    parsed("bus_queue_batches"),
    parsed("bus_queue_bytes"),
    parsed("bus_max_parked"),
    parsed("bus_parked_ttl_ms"),
    parsed("bus_redis_timeout_ms"),
    parsed("presence_lease_ms"),
    parsed("presence_queue"),
    parsed("metrics_enabled"),
    text("metrics_listen"),
    text("allowed_origins"),
    text("cors_origin"),
    parsed("allow_missing_origin"),
    parsed("cors_max_age_secs"),
    optional_path("tls_cert_file", |c| &mut c.tls_cert_file),
    optional_path("tls_key_file", |c| &mut c.tls_key_file),
];

/// The key named `name` (lower case), if there is one.
pub(crate) fn find(name: &str) -> Option<&'static Key> {
    TABLE.iter().find(|k| k.name == name)
}

/// Every key's name, from [`TABLE`].
pub(super) const fn names<const N: usize>() -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = TABLE[i].name;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each optional key's accessor reaches the field of its own name (a
    /// copy-pasted line would unset another key).
    #[test]
    fn optional_keys_reach_their_own_field() {
        for key in TABLE {
            let Some(field) = key.optional() else {
                continue;
            };
            let mut c = Config::default();
            match field {
                Field::Text(f) => *f(&mut c) = Some("marker".to_owned()),
                Field::Path(f) => *f(&mut c) = Some(PathBuf::from("marker")),
            }
            assert!(!field.is_unset(&mut c), "{}", key.name);
            let json = serde_json::to_value(&c).unwrap();
            assert_eq!(json[key.name], "marker", "{}", key.name);
            match field {
                Field::Text(f) => *f(&mut c) = Some(String::new()),
                Field::Path(f) => *f(&mut c) = Some(PathBuf::new()),
            }
            field.unset_if_empty(&mut c);
            assert!(field.is_unset(&mut c), "{}", key.name);
        }
    }

    /// Verbatim keys are text fields (a number-typed field read verbatim
    /// would refuse every value).
    #[test]
    fn text_keys_are_text_fields() {
        let json = serde_json::to_value(Config::default()).unwrap();
        for key in TABLE
            .iter()
            .filter(|k| k.is_text() && k.optional().is_none())
        {
            assert!(json[key.name].is_string(), "{}", key.name);
        }
    }

    /// docs/configuration.md has a row for every key, in both spellings.
    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/configuration.md");
        for key in TABLE {
            let row = format!("| `{}` / `{}`", key.name, key.name.to_ascii_uppercase());
            assert!(docs.contains(&row), "docs/configuration.md lacks {row}");
        }
    }
}
