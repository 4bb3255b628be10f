//! Start-up checks of a loaded [`Config`].
//!
//! A bad value is refused before any socket is opened, with a message that
//! names the setting (environment variable and TOML key) and the fix, rather
//! than surfacing later as a confusing runtime failure (a zero ping interval
//! spinning a timer, a queue that can never hold one frame).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};

use super::environment::PLACEHOLDER_SECRETS;
use super::{Config, ConfigError, Environment};

/// Shortest HS256 secret that is not reported by [`Config::warnings`]:
/// RFC 7518 asks for a key at least as long as the hash output (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Most shards accepted; more is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;

impl Config {
    /// Checks every setting; returns the first problem found. What needs
    /// another module (whether the TLS files parse) is `cli::validate`'s.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(()),
        }
    }

    /// Every problem found, so `config check` can report them all at once.
    pub fn problems(&self) -> Vec<ConfigError> {
        // Limits where zero would stall or refuse everything, with a
        // sensible value for the message.
        #[rustfmt::skip]
        let nonzero: [(&'static str, u64, &str); 19] = [
            ("ws_max_connections", self.ws_max_connections as u64, "connections such as 10000"),
            ("ws_max_connections_per_ip", self.ws_max_connections_per_ip as u64, "connections such as 1000"),
            ("broadcast_batch_size", self.commit_batch_max as u64, "items such as 500"),
            ("ping_interval_ms", self.ping_interval_ms, "milliseconds such as 25000"),
            ("ping_timeout_ms", self.ping_timeout_ms, "milliseconds such as 20000"),
            ("connect_timeout_ms", self.connect_timeout_ms, "milliseconds such as 45000"),
            ("handshake_timeout_ms", self.handshake_timeout_ms, "milliseconds such as 10000"),
            ("typing_timeout_ms", self.typing_timeout_ms, "milliseconds such as 5000"),
            ("channel_cache_idle_ms", self.channel_cache_idle_ms, "milliseconds such as 60000"),
            ("channel_cache_max", self.channel_cache_max as u64, "channels such as 100000"),
            ("max_message_length", self.max_message_length as u64, "bytes such as 4000"),
            ("max_channels_per_connection", self.max_channels_per_connection as u64, "channels such as 100"),
            ("rate_limit_per_sec", self.rate_limit_per_sec.into(), "commands such as 50"),
            ("rate_limit_burst", self.rate_limit_burst.into(), "commands such as 100"),
            ("rate_limit_disconnect_after", self.rate_limit_disconnect_after.into(), "rejected commands such as 100"),
            ("outbound_queue_messages", self.outbound_queue_messages as u64, "frames such as 1024"),
            ("store_writer_queue", self.store_writer_queue as u64, "messages such as 10000"),
            ("store_readers", self.store_readers as u64, "threads such as 2"),
            ("rest_max_body_bytes", self.rest_max_body_bytes as u64, "bytes such as 65536"),
        ];
        // The rate of new connections and the REST keep-alive, likewise.
        #[rustfmt::skip]
        let nonzero_connections: [(&'static str, u64, &str); 3] = [
            ("ws_connection_rate_per_ip", self.ws_connection_rate_per_ip.into(), "connections such as 50"),
            ("ws_connection_burst_per_ip", self.ws_connection_burst_per_ip.into(), "connections such as 500"),
            ("rest_keepalive_timeout_ms", self.rest_keepalive_timeout_ms, "milliseconds such as 10000"),
        ];
        let mut found = Vec::new();
        if let Err(e) = resolve_host(&self.host) {
            found.push(e);
        }
        if self.cluster_workers > MAX_WORKERS {
            found.push(ConfigError::invalid(
                "cluster_workers",
                format!("is {}, more than {MAX_WORKERS}", self.cluster_workers),
                "set it to the number of shards wanted, or 0 for one per core",
            ));
        }
        require_nonzero(&mut found, nonzero.into_iter().chain(nonzero_connections));
        if self.max_payload < 1024 {
            found.push(ConfigError::invalid(
                "max_payload",
                format!("is {}, below 1024 bytes", self.max_payload),
                "set it to a number of bytes such as 1000000 (the Socket.IO default)",
            ));
        }
        if self.max_payload_before_connect < 1024 {
            found.push(ConfigError::invalid(
                "max_payload_before_connect",
                format!("is {}, below 1024 bytes", self.max_payload_before_connect),
                "set it to a number of bytes such as 16384, enough for a CONNECT with its token",
            ));
        }
        if self.max_http_header_bytes < 1024 {
            found.push(ConfigError::invalid(
                "max_http_header_bytes",
                format!(
                    "is {}, too small for a browser's upgrade request",
                    self.max_http_header_bytes
                ),
                "set it to a number of bytes such as 16384",
            ));
        }
        if self.outbound_queue_bytes < self.max_payload {
            found.push(ConfigError::invalid(
                "outbound_queue_bytes",
                format!(
                    "is {}, smaller than MAX_PAYLOAD ({}), so one largest frame would not fit",
                    self.outbound_queue_bytes, self.max_payload
                ),
                "raise it (default 4194304) or lower MAX_PAYLOAD",
            ));
        }
        if !(64..=65536).contains(&self.io_memory_kib) {
            found.push(ConfigError::invalid(
                "io_memory_kib",
                format!("is {}, outside 64..=65536", self.io_memory_kib),
                "set it to a number of KiB such as 1024 (it is locked memory, keep it small)",
            ));
        }
        if !(128..=32_768).contains(&self.io_ring_depth) {
            found.push(ConfigError::invalid(
                "io_ring_depth",
                format!("is {}, outside 128..=32768", self.io_ring_depth),
                "set it to a power of two such as 4096",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            found.push(ConfigError::invalid(
                "data_dir",
                "is empty",
                "set it to a directory such as ./data",
            ));
        }
        if self.jwt_secret.as_deref() == Some("") {
            found.push(ConfigError::invalid(
                "jwt_secret",
                "is empty",
                "set it to a random string of at least 32 bytes, or leave it unset",
            ));
        }
        if let Some(path) = &self.jwt_public_key_file
            // Opening (not just stat-ing) proves the server's user can read it.
            && let Err(e) = File::open(path)
        {
            found.push(ConfigError::invalid(
                "jwt_public_key_file",
                format!("{} cannot be read: {e}", path.display()),
                "point it at a readable PEM public key file, or leave it unset",
            ));
        }
        self.production_problems(&mut found);
        self.database_problems(&mut found);
        self.redis_problems(&mut found);
        self.gatrix_problems(&mut found);
        self.recovery_problems(&mut found);
        self.ops_problems(&mut found);
        self.cpu_problems(&mut found);
        found
    }

    /// Settings that work but are probably not what the operator wants; the
    /// server logs them at start-up and `config check` prints them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(secret) = &self.jwt_secret
            && PLACEHOLDER_SECRETS.contains(&secret.as_str())
            && self.environment == Environment::Development
        {
            warnings.push(
                "JWT_SECRET (jwt_secret) is the placeholder of the Node.js server's \
                 .env.example, which anyone can read: fine on a laptop, refused with \
                 ENVIRONMENT=production; set a random string of at least 32 bytes"
                    .to_owned(),
            );
        }
        if let Some(secret) = &self.jwt_secret
            && !secret.is_empty()
            && secret.len() < MIN_SECRET_BYTES
            && self.environment == Environment::Development
        {
            warnings.push(format!(
                "JWT_SECRET (jwt_secret) is {} bytes, shorter than {MIN_SECRET_BYTES}: \
                 a short HS256 secret can be brute-forced from one token; use a random \
                 string of at least {MIN_SECRET_BYTES} bytes",
                secret.len()
            ));
        }
        if self.max_message_length > self.max_payload {
            warnings.push(format!(
                "MAX_MESSAGE_LENGTH (max_message_length) is {}, more than MAX_PAYLOAD ({}): \
                 messages that long can never arrive",
                self.max_message_length, self.max_payload
            ));
        }
        if self.ws_max_connections_per_ip > self.ws_max_connections {
            warnings.push(format!(
                "WS_MAX_CONNECTIONS_PER_IP (ws_max_connections_per_ip) is {}, more than \
                 WS_MAX_CONNECTIONS ({}): the per-IP limit never applies",
                self.ws_max_connections_per_ip, self.ws_max_connections
            ));
        }
        self.database_warnings(&mut warnings);
        self.redis_warnings(&mut warnings);
        self.gatrix_warnings(&mut warnings);
        warnings
    }
}

/// The address `host` stands for: an IP literal as is, `localhost` as
/// 127.0.0.1 (whatever /etc/hosts lists first), any other name by the
/// system resolver, its first address.
pub(super) fn resolve_host(host: &str) -> Result<IpAddr, ConfigError> {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(Ipv4Addr::LOCALHOST.into());
    }
    if host.is_empty() {
        return Err(bad_host(host, "it is empty"));
    }
    match (host, 0).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => Ok(addr.ip()),
            None => Err(bad_host(host, "the name has no address")),
        },
        Err(e) => Err(bad_host(
            host,
            &format!("it is not an IP address and does not resolve ({e})"),
        )),
    }
}

/// Each `(key, value, example)` whose value is 0 is refused: "must be at
/// least 1", the fix naming `example` ("milliseconds such as 500").
pub(super) fn require_nonzero<'a>(
    found: &mut Vec<ConfigError>,
    keys: impl IntoIterator<Item = (&'static str, u64, &'a str)>,
) {
    for (key, value, example) in keys {
        if value == 0 {
            found.push(at_least_1(key, example));
        }
    }
}

fn at_least_1(key: &'static str, example: &str) -> ConfigError {
    ConfigError::invalid(
        key,
        "must be at least 1",
        format!("set it to a number of {example}"),
    )
}

pub(super) fn bad_metrics_listen(addr: &str) -> ConfigError {
    ConfigError::invalid(
        "metrics_listen",
        format!("is {addr:?}, not an IP address and port"),
        "set it to an address such as 127.0.0.1:9402 (the default), or `public` to serve /metrics on \
         the public port",
    )
}

fn bad_host(host: &str, why: &str) -> ConfigError {
    ConfigError::invalid(
        "host",
        format!("is {host:?}: {why}"),
        "set it to an address such as 0.0.0.0 (all interfaces), 127.0.0.1 or ::, or a host \
         name that resolves (localhost is 127.0.0.1)",
    )
}

#[cfg(test)]
mod tests;
