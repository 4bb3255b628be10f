//! Values derived from the settings: durations, addresses, lists, the
//! masked copy and the TOML rendering.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::*;

impl Config {
    /// Number of shards to start: `cluster_workers`, or one per available
    /// core when it is 0 (1 if the core count cannot be read).
    pub fn shards(&self) -> usize {
        match (self.cluster_workers, self.shard_cpu_list()) {
            (0, Ok(Some(cpus))) => cpus.len(),
            (0, _) => std::thread::available_parallelism().map_or(1, |n| n.get()),
            (n, _) => n,
        }
    }

    /// The address every shard binds, `host` resolved when it is a name.
    /// Fails only on a host that [`Config::validate`] would refuse.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        Ok(SocketAddr::new(
            validate::resolve_host(&self.host)?,
            self.port,
        ))
    }

    /// How `host` was resolved, for the start log and `config check`, when
    /// it is a name (`HOST localhost is 127.0.0.1`); `None` for an IP.
    pub fn host_note(&self) -> Option<String> {
        if self.host.trim().parse::<IpAddr>().is_ok() {
            return None;
        }
        let ip = validate::resolve_host(&self.host).ok()?;
        Some(format!("HOST {} is {ip}", self.host.trim()))
    }

    // The `*_ms` settings as `Duration`s, so callers never convert units.

    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub fn recovery_window(&self) -> Duration {
        Duration::from_millis(self.recovery_window_ms)
    }

    pub fn typing_timeout(&self) -> Duration {
        Duration::from_millis(self.typing_timeout_ms)
    }

    pub fn presence_interval(&self) -> Duration {
        Duration::from_millis(self.presence_interval_ms)
    }

    pub fn channel_cache_idle(&self) -> Duration {
        Duration::from_millis(self.channel_cache_idle_ms)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// The origins of `allowed_origins`, or of `cors_origin` (the
    /// original's name) when that is empty, trimmed and lower-cased; empty
    /// when any origin is allowed (`*` may be in it too, and means any).
    pub fn origin_list(&self) -> Vec<String> {
        split_origins(self.origin_setting().1)
    }

    /// Which key gives the origin list, and its value.
    pub(super) fn origin_setting(&self) -> (&'static str, &str) {
        if self.allowed_origins.trim().is_empty() && !self.cors_origin.trim().is_empty() {
            ("cors_origin", &self.cors_origin)
        } else {
            ("allowed_origins", &self.allowed_origins)
        }
    }

    /// Where `/metrics` is served apart from the public port; `None` when
    /// `metrics_listen` is `public`. Fails only on a value
    /// [`Config::validate`] would refuse.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let value = self.metrics_listen.trim();
        if value.eq_ignore_ascii_case(METRICS_ON_PUBLIC_PORT) {
            return Ok(None);
        }
        value
            .parse()
            .map(Some)
            .map_err(|_| validate::bad_metrics_listen(value))
    }

    /// Where `/metrics` is served, in words, for the start log and `config
    /// check`.
    pub fn metrics_location(&self) -> String {
        if !self.metrics_enabled {
            return "off (METRICS_ENABLED=false)".to_owned();
        }
        match self.metrics_addr() {
            Ok(Some(addr)) => format!("http://{addr}/metrics (METRICS_LISTEN)"),
            Ok(None) => {
                let scheme = if self.tls_files().is_some() {
                    "https"
                } else {
                    "http"
                };
                let at = self.listen_addr().map_or_else(
                    |_| format!("{}:{}", self.host, self.port),
                    |a| a.to_string(),
                );
                format!("{scheme}://{at}/metrics, the public port (METRICS_LISTEN=public)")
            }
            Err(_) => format!(
                "nowhere: METRICS_LISTEN {:?} is not usable",
                self.metrics_listen
            ),
        }
    }

    /// The certificate and key files, when TLS is on.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        }
    }

    /// glommio `io_memory` per shard, in bytes.
    pub fn io_memory_bytes(&self) -> usize {
        self.io_memory_kib.saturating_mul(1024)
    }

    /// A copy safe to log or print: the JWT secrets and the database
    /// and Redis passwords, when set, are replaced by [`MASK`] (in
    /// DATABASE_URL and REDIS_URL, only the password part).
    pub fn masked(&self) -> Config {
        let mut copy = self.clone();
        for secret in [
            &mut copy.jwt_secret,
            &mut copy.gatrix_jwt_secret,
            &mut copy.backend_service_token,
            &mut copy.db_password,
            &mut copy.redis_password,
        ] {
            if secret.is_some() {
                *secret = Some(MASK.to_owned());
            }
        }
        copy.database_url = copy.database_url.as_deref().map(mask_url_password);
        copy.redis_url = copy.redis_url.as_deref().map(mask_url_password);
        copy
    }

    /// The config as a TOML file (what `config print` shows). Unset optional
    /// keys are listed as comments so the operator sees they exist. Does not
    /// mask: call [`Config::masked`] first when printing.
    pub fn to_toml(&self) -> String {
        let mut out = match toml::to_string(self) {
            Ok(text) => text,
            // Unreachable for this struct (flat, string keys); say so rather
            // than panic.
            Err(e) => format!("# could not render the config as TOML: {e}\n"),
        };
        let mut probe = self.clone();
        for key in keys::TABLE {
            if key.optional().is_some_and(|f| f.is_unset(&mut probe)) {
                out.push_str(&format!("# {} is not set\n", key.name));
            }
        }
        out
    }
}

/// A comma-separated origin list, trimmed and lower-cased, empty entries
/// dropped.
pub(super) fn split_origins(list: &str) -> Vec<String> {
    list.split(',')
        .map(|o| o.trim().to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect()
}
