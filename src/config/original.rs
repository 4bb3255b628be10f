//! The Node.js Gatrix chat server's environment, read honestly.
//!
//! An operator moving from the original brings its `.env`. Names that mean
//! the same thing here are read as aliases, with the original's precedence
//! (`CHAT_DB_HOST || DB_HOST`, `CHAT_PORT || PORT`, an empty value skipped
//! as JavaScript's `||` does); every other name of its `.env.example` and
//! `config/index.ts` is named in a warning that says why it is ignored, at
//! start and by `config check`, so nothing is dropped silently. A setting
//! that would send the data elsewhere is never ignored: the `CHAT_DB_*`
//! names without a host are refused (see [`refuse_ignored_database`]).

use std::collections::BTreeMap;

use super::{Config, ConfigError};

/// How an alias's value becomes the key's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Verbatim.
    Text,
    /// A TCP port, 0-65535.
    Port,
    /// A non-negative integer, same unit as the key (milliseconds, bytes).
    Number,
    /// A port for `/metrics`: `127.0.0.1:<port>` (loopback, as the default
    /// `metrics_listen`; `METRICS_LISTEN=0.0.0.0:<port>` publishes it).
    MetricsPort,
}

/// An original name read for one of our keys.
struct Alias {
    name: &'static str,
    key: &'static str,
    /// Read before the key's own name (the original read `CHAT_*` before
    /// the generic name); otherwise our own name wins.
    first: bool,
    kind: Kind,
}

#[rustfmt::skip]
const ALIASES: &[Alias] = &[
    Alias { name: "CHAT_PORT", key: "port", first: true, kind: Kind::Port },
    Alias { name: "CHAT_DB_HOST", key: "db_host", first: true, kind: Kind::Text },
    Alias { name: "CHAT_DB_PORT", key: "db_port", first: true, kind: Kind::Port },
    Alias { name: "CHAT_DB_NAME", key: "db_name", first: true, kind: Kind::Text },
    Alias { name: "CHAT_DB_USER", key: "db_user", first: true, kind: Kind::Text },
    Alias { name: "CHAT_DB_PASSWORD", key: "db_password", first: true, kind: Kind::Text },
    // socket.io's pingInterval/pingTimeout/maxHttpBufferSize, in the same
    // units (ms, bytes) as ours.
    Alias { name: "WS_PING_INTERVAL", key: "ping_interval_ms", first: false, kind: Kind::Number },
    Alias { name: "WS_PING_TIMEOUT", key: "ping_timeout_ms", first: false, kind: Kind::Number },
    Alias { name: "WS_MAX_HTTP_BUFFER_SIZE", key: "max_payload", first: false, kind: Kind::Number },
    Alias { name: "CHAT_METRICS_PORT", key: "metrics_listen", first: false, kind: Kind::MetricsPort },
    Alias { name: "METRICS_PORT", key: "metrics_listen", first: false, kind: Kind::MetricsPort },
    Alias { name: "NODE_ENV", key: "environment", first: false, kind: Kind::Text },
];

/// The original's names with no counterpart here, grouped by why.
#[rustfmt::skip]
const IGNORED: &[(&[&str], &str)] = &[
    (&["CLUSTER_ENABLED", "STICKY_SESSION", "CHANNEL_SHARDING", "MAX_CHANNELS_PER_SHARD"],
     "one process always runs one shard per core (CLUSTER_WORKERS) and places channels itself"),
    (&["GATRIX_API_URL", "GATRIX_API_SECRET", "GATRIX_CONNECTION_TIMEOUT", "JWT_SERVER_SECRET"],
     "gatrix-chat does not call the Gatrix main server: users come from their JWTs and from the \
      backend's sync (/api/v1/users with BACKEND_SERVICE_TOKEN)"),
    (&["JWT_EXPIRES_IN"],
     "gatrix-chat checks tokens' exp but does not issue tokens (`gatrix-chat token --ttl` in development)"),
    (&["UPLOAD_MAX_SIZE", "UPLOAD_ALLOWED_TYPES", "UPLOAD_PATH"],
     "there are no file uploads"),
    (&["RATE_LIMIT_WINDOW_MS", "RATE_LIMIT_MAX_REQUESTS"],
     "limits are per connection and per address: RATE_LIMIT_PER_SEC, RATE_LIMIT_BURST, \
      WS_CONNECTION_RATE_PER_IP"),
    (&["WS_UPGRADE_TIMEOUT", "WS_COMPRESSION"],
     "not configurable in this build"),
    (&["BROADCAST_BATCH_DELAY", "USE_MESSAGE_PACK", "BROADCAST_COMPRESSION"],
     "there is no broadcast batching or MessagePack: a message is encoded once and sent as soon \
      as it is stored (BROADCAST_BATCH_SIZE is read, with another meaning: docs/configuration.md)"),
    (&["MONITORING_ENABLED"],
     "metrics are on by default (METRICS_ENABLED, METRICS_LISTEN)"),
    (&["HEALTH_CHECK_PATH", "READINESS_CHECK_PATH", "HEALTH_CHECK_INTERVAL"],
     "the probes are always GET /health and GET /ready"),
    (&["MAX_MEMORY_USAGE", "GC_INTERVAL", "CONNECTION_CLEANUP_INTERVAL"],
     "there is no garbage collector; memory is bounded by the connection, queue and cache limits"),
    (&["LOG_FILE"],
     "logs go to stderr (journald under systemd; LOG_FORMAT=json for log shippers)"),
    (&["DB_DEBUG"],
     "use RUST_LOG=info,gatrix_chat::store=debug"),
];

/// The process environment, names upper-cased (names are matched without
/// regard to case); variables that are not UTF-8 are left out.
pub(super) type Vars = BTreeMap<String, String>;

pub(super) fn process_vars() -> Vars {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            Some((
                k.into_string().ok()?.to_ascii_uppercase(),
                v.into_string().ok()?,
            ))
        })
        .collect()
}

/// The names read for `key`, the winning one first.
fn candidates(key: &str) -> Vec<(String, Kind)> {
    let aliases = ALIASES.iter().filter(|a| a.key == key);
    let alias = |a: &Alias| (a.name.to_owned(), a.kind);
    let mut names: Vec<_> = aliases.clone().filter(|a| a.first).map(alias).collect();
    names.push((key.to_ascii_uppercase(), Kind::Text));
    names.extend(aliases.filter(|a| !a.first).map(alias));
    names
}

/// The raw value for `key` from `vars`: the first non-empty one of its
/// names; else an empty value of its own name (which unsets an optional
/// key); else nothing.
pub(super) fn env_value(vars: &Vars, key: &'static str) -> Result<Option<String>, ConfigError> {
    // The original's switch: its `.env.example` lists nodes with
    // REDIS_CLUSTER_ENABLED=false, which must not make a cluster here.
    if key == "redis_cluster_nodes" && cluster_switch(vars) == Some(false) {
        return Ok(None);
    }
    if !ALIASES.iter().any(|a| a.key == key) {
        return Ok(vars.get(&key.to_ascii_uppercase()).cloned());
    }
    for (name, kind) in candidates(key) {
        match vars.get(&name) {
            Some(raw) if !raw.trim().is_empty() => return convert(&name, key, kind, raw).map(Some),
            _ => {}
        }
    }
    Ok(vars.get(&key.to_ascii_uppercase()).cloned())
}

fn convert(name: &str, key: &'static str, kind: Kind, raw: &str) -> Result<String, ConfigError> {
    let number = |max: u64| {
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| ConfigError::Invalid {
                env: name.to_owned(),
                key,
                problem: format!("is {raw:?}, not a number from 0 to {max}"),
                fix: format!(
                    "set it to a number, or use {} instead",
                    key.to_ascii_uppercase()
                ),
            })
    };
    Ok(match kind {
        Kind::Text => raw.to_owned(),
        Kind::Port => number(u16::MAX.into())?.to_string(),
        Kind::Number => number(u64::MAX)?.to_string(),
        Kind::MetricsPort => format!("127.0.0.1:{}", number(u16::MAX.into())?),
    })
}

/// Refuses the original's database names when no database is configured:
/// the original would have used MySQL (on localhost by default), and
/// running on SQLite instead would put the data somewhere else.
pub(super) fn refuse_ignored_database(config: &Config, vars: &Vars) -> Result<(), ConfigError> {
    if config.uses_mysql() {
        return Ok(());
    }
    let set: Vec<&str> = [
        "CHAT_DB_PORT",
        "CHAT_DB_NAME",
        "CHAT_DB_USER",
        "CHAT_DB_PASSWORD",
    ]
    .into_iter()
    .filter(|n| vars.get(*n).is_some_and(|v| !v.trim().is_empty()))
    .collect();
    match set.first() {
        None => Ok(()),
        Some(first) => Err(ConfigError::Invalid {
            env: (*first).to_owned(),
            key: "db_host",
            problem: format!(
                "{} set without a database host: the Node.js server would use MySQL on \
                 localhost, gatrix-chat would keep the data in SQLite under DATA_DIR",
                if set.len() == 1 {
                    "is".to_owned()
                } else {
                    format!("and {} are", set[1..].join(", "))
                }
            ),
            fix: "set CHAT_DB_HOST (or DB_HOST, or DATABASE_URL) to use MySQL, e.g. \
                  CHAT_DB_HOST=localhost, or remove the CHAT_DB_* variables to use SQLite"
                .to_owned(),
        }),
    }
}

/// Warnings about the original's names in the process environment: the
/// ones ignored (each named, with why), and aliases shadowed by another
/// name. Printed at start and by `config check`.
pub fn original_warnings() -> Vec<String> {
    warnings_for(&process_vars())
}

/// REDIS_CLUSTER_ENABLED as the original read it: `Some(true)`,
/// `Some(false)`, `None` when unset or neither.
fn cluster_switch(vars: &Vars) -> Option<bool> {
    let v = vars.get("REDIS_CLUSTER_ENABLED")?.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn warnings_for(vars: &Vars) -> Vec<String> {
    let set = |name: &str| vars.get(name).is_some_and(|v| !v.trim().is_empty());
    let mut warnings = Vec::new();
    // A Redis Cluster is REDIS_CLUSTER_NODES (or a redis+cluster://
    // REDIS_URL); the original's switch can only turn it off.
    match (cluster_switch(vars), set("REDIS_CLUSTER_NODES")) {
        (Some(false), true) => warnings.push(
            "REDIS_CLUSTER_NODES is ignored: REDIS_CLUSTER_ENABLED=false (the Node.js \
             server's switch); unset REDIS_CLUSTER_ENABLED to use the cluster"
                .to_owned(),
        ),
        (Some(true), false) => warnings.push(
            "REDIS_CLUSTER_ENABLED=true is ignored: no REDIS_CLUSTER_NODES names the \
             cluster's nodes (host:port,host:port)"
                .to_owned(),
        ),
        (None, _) if set("REDIS_CLUSTER_ENABLED") => warnings.push(
            "REDIS_CLUSTER_ENABLED is ignored: it is neither true nor false (a cluster is \
             used when REDIS_CLUSTER_NODES names its nodes)"
                .to_owned(),
        ),
        _ => {}
    }
    for (names, why) in IGNORED {
        // `false` asks for what is true here anyway (no Redis cluster, no
        // compression, ...): nothing to warn about.
        let given: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| set(n) && !vars[*n].trim().eq_ignore_ascii_case("false"))
            .collect();
        if !given.is_empty() {
            let verb = if given.len() == 1 { "is" } else { "are" };
            warnings.push(format!(
                "{} {verb} ignored (Node.js server setting): {why}",
                given.join(", ")
            ));
        }
    }
    let mut keys: Vec<&'static str> = ALIASES.iter().map(|a| a.key).collect();
    keys.dedup();
    for key in keys {
        let names: Vec<String> = candidates(key).into_iter().map(|(n, _)| n).collect();
        let given: Vec<&String> = names.iter().filter(|n| set(n)).collect();
        let winner = given.first().map(|n| vars[n.as_str()].trim());
        // The same value under two names (PORT and CHAT_PORT alike) is fine.
        let ignored: Vec<&str> = given
            .iter()
            .skip(1)
            .filter(|n| Some(vars[n.as_str()].trim()) != winner)
            .map(|n| n.as_str())
            .collect();
        if !ignored.is_empty() {
            warnings.push(format!(
                "{} ignored: {} is set and wins (the order is {})",
                ignored.join(", "),
                given[0],
                names.join(", ")
            ));
        }
    }
    if set("LOG_LEVEL") {
        if set("RUST_LOG") {
            warnings.push("LOG_LEVEL ignored: RUST_LOG is set and wins".to_owned());
        } else if winston_level(&vars["LOG_LEVEL"]).is_none() {
            warnings.push(format!(
                "LOG_LEVEL {:?} is not a level (error, warn, info, http, verbose, debug, silly): \
                 logging at info",
                vars["LOG_LEVEL"]
            ));
        }
    }
    warnings
}

/// The original's names read here, as `NAME (key)`, for the start log and
/// `config check`.
pub fn original_names_in_use() -> Vec<String> {
    let vars = process_vars();
    let set = |name: &str| vars.get(name).is_some_and(|v| !v.trim().is_empty());
    let mut used: Vec<String> = ALIASES
        .iter()
        .filter(|a| set(a.name))
        .map(|a| format!("{} ({})", a.name, a.key))
        .collect();
    if set("LOG_LEVEL") && !set("RUST_LOG") {
        used.push("LOG_LEVEL (RUST_LOG)".to_owned());
    }
    used
}

/// The log filter when RUST_LOG is not set: the original's LOG_LEVEL
/// (winston's levels mapped to tracing's), else `None` (info).
pub fn log_filter_from_env() -> Option<String> {
    let vars = process_vars();
    if vars.get("RUST_LOG").is_some_and(|v| !v.trim().is_empty()) {
        return None;
    }
    winston_level(vars.get("LOG_LEVEL")?).map(str::to_owned)
}

fn winston_level(level: &str) -> Option<&'static str> {
    Some(match level.trim().to_ascii_lowercase().as_str() {
        "error" => "error",
        "warn" => "warn",
        "info" | "http" => "info",
        "verbose" | "debug" => "debug",
        "silly" | "trace" => "trace",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
