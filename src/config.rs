//! The server's settings: one typed struct with a default for every field.
//!
//! Everything the operator can tune lives in [`Config`], so that a newcomer
//! finds every knob (and why it exists) in one place, and so that the rest of
//! the server never reads the environment itself. Values are layered, each
//! layer overriding the one before it:
//!
//! 1. the built-in defaults ([`Config::default`]),
//! 2. a TOML file (`--config path`, optional; keys are the field names),
//! 3. environment variables, after a `.env` file in the working directory has
//!    been loaded (a `.env` value never overrides a real variable); the name
//!    is the field name upper-cased (`PING_INTERVAL_MS`),
//! 4. command-line flags (`--port`, `--set key=value`, ...).
//!
//! Loading lives in `load`, the start-up checks (whose messages name the
//! setting and the fix) in `validate`, values derived from the settings in
//! `derived`, the defaults in `defaults`, and the development JWT secret that makes `cargo run` work
//! out of the box in `dev_secret`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod bus;
mod cpus;
mod database;
mod defaults;
mod derived;
mod dev_secret;
mod environment;
mod error;
mod gatrix;
mod keys;
mod load;
mod ops;
mod original;
mod recovery;
mod redis;
mod redis_cluster;
mod validate;

pub(crate) use self::redis::RedisTarget;
pub(crate) use self::redis_cluster::{ClusterAddress, ClusterAddressError};
pub use database::{Backend, mask_url_password};
pub use dev_secret::DEV_SECRET_FILE;
pub use environment::Environment;
pub use error::ConfigError;
pub use load::load_dotenv;
pub use ops::{DEFAULT_CORS_MAX_AGE_SECS, DEFAULT_METRICS_LISTEN, METRICS_ON_PUBLIC_PORT};
pub use original::{log_filter_from_env, original_names_in_use, original_warnings};
pub use validate::{MAX_WORKERS, MIN_SECRET_BYTES};

/// Every configuration key, as written in TOML and `--set` (the environment
/// variable is the upper-case form), from the key table (`keys`). Only these
/// are read from the environment, so unrelated variables such as `PATH`
/// never leak in.
pub const KEYS: [&str; keys::TABLE.len()] = keys::names();

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, for a terminal or `journalctl`.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The effective configuration of one server process.
///
/// `Debug` prints the JWT secret: log [`Config::masked`], never the config
/// itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address every shard binds (SO_REUSEPORT): an IP literal, or a host
    /// name resolved once at start (`localhost` is 127.0.0.1), as the
    /// original server accepted; the start log says what was bound.
    pub host: String,
    /// Public port for HTTP and WebSocket. 0 picks a free port, which is what
    /// the integration tests use to run side by side.
    pub port: u16,
    /// Number of shards (pinned executors). 0 means one per available core,
    /// the right choice unless cores are reserved for something else.
    pub cluster_workers: usize,
    /// CPUs to pin the shards to, one shard per CPU (`1-15`, `2,3,6-7`).
    /// Unset: the shards spread over the CPUs the process may use.
    #[serde(deserialize_with = "cpus::text_or_number")]
    pub shard_cpus: Option<String>,
    /// Process-wide connection cap, so a flood cannot exhaust file
    /// descriptors or memory; past it, new sockets are refused.
    pub ws_max_connections: usize,
    /// Per-client-IP connection cap, so one host (or one buggy reconnect
    /// loop) cannot take the whole budget.
    pub ws_max_connections_per_ip: usize,
    /// New connections per second accepted from one client IP address (any
    /// route: WebSocket, REST, probes), so a loop opening and dropping
    /// sockets cannot churn the server; past it, HTTP 429.
    pub ws_connection_rate_per_ip: u32,
    /// New connections one address may open at once before that rate
    /// applies: a NAT'd office reconnecting after a restart.
    pub ws_connection_burst_per_ip: u32,
    /// Most messages the store writer commits in one transaction (group
    /// commit), and so the most one committed batch sent to the shards
    /// carries: larger batches amortise fsyncs, smaller ones bound the
    /// latency a single batch can add. Its key is `broadcast_batch_size`
    /// (`BROADCAST_BATCH_SIZE`), the Node.js server's name, which meant
    /// something else there (docs/configuration.md).
    #[serde(rename = "broadcast_batch_size")]
    pub commit_batch_max: usize,
    /// `production` refuses to start without a real JWT secret (or public
    /// key): no generated development secret, no placeholder, none under
    /// 32 bytes. `development` (the default) allows them with a warning.
    pub environment: Environment,
    /// Shared secret for HS256 tokens. When neither this nor a public key is
    /// set, `serve` generates one under `data_dir` (see
    /// [`Config::resolve_dev_secret`]); there is no well-known default.
    pub jwt_secret: Option<String>,
    /// PEM public key (RSA or P-256) for RS256/ES256 tokens issued by an
    /// identity provider that keeps the private key to itself.
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `aud` claim, when tokens from one issuer serve several
    /// services and must not be replayed across them.
    pub jwt_audience: Option<String>,
    /// Required `iss` claim, when several issuers share a key.
    pub jwt_issuer: Option<String>,
    /// The Gatrix dialect (docs/protocol.md, "The Gatrix dialect"): a
    /// connection whose token is the Gatrix backend's (`iss` =
    /// `gatrix_jwt_issuer`) speaks the original's events; native tokens
    /// keep the native protocol on the same server.
    pub gatrix_compat: bool,
    /// The Gatrix backend's JWT secret (its `JWT_SECRET`), HS256 only.
    pub gatrix_jwt_secret: Option<String>,
    /// The `iss` of the backend's access tokens.
    pub gatrix_jwt_issuer: String,
    /// The `aud` of the backend's access tokens (its refresh tokens carry
    /// another, and are refused).
    pub gatrix_jwt_audience: String,
    /// The claim holding the user id when a backend token has no `sub`.
    pub gatrix_user_id_claim: String,
    /// The Gatrix backend's service token (its `BACKEND_SERVICE_TOKEN`): a
    /// REST request with it in `X-API-Token` speaks the Gatrix REST
    /// dialect (docs/api.md), acting as the user in `X-User-ID`.
    pub backend_service_token: Option<String>,
    /// How many users of the directory each process keeps in memory for
    /// the Gatrix frames' authors (names and avatars in messages).
    pub gatrix_directory_cache_users: usize,
    /// A Gatrix connection or REST call is refused unless its user is in
    /// the directory (synced by the backend), as the original refused
    /// them; native tokens are never checked.
    pub gatrix_require_known_users: bool,
    /// Where the embedded store and the generated development secret live.
    pub data_dir: PathBuf,
    /// Engine.IO pingInterval: how often the server pings, which is how dead
    /// peers (NAT timeouts, sleeping laptops) are found.
    pub ping_interval_ms: u64,
    /// Engine.IO pingTimeout: how long a pong may take before the connection
    /// is considered dead.
    pub ping_timeout_ms: u64,
    /// Time allowed between the WebSocket upgrade and a Socket.IO CONNECT
    /// (the reference server's connectTimeout), so idle sockets are reclaimed.
    pub connect_timeout_ms: u64,
    /// Time allowed to receive the HTTP upgrade request, so slowloris-style
    /// half-open requests do not pin connection slots.
    pub handshake_timeout_ms: u64,
    /// Engine.IO maxPayload, also the WebSocket message and frame size limit:
    /// bounds the memory one peer can make the server buffer.
    pub max_payload: usize,
    /// The frame and message size limit while a connection has no
    /// namespace connected (before its CONNECT succeeds): an
    /// unauthenticated client may only send small frames. Large enough for
    /// a CONNECT with the longest token accepted (8 KiB); capped at
    /// `max_payload`.
    pub max_payload_before_connect: usize,
    /// Largest HTTP request head accepted before the upgrade, for the same
    /// reason.
    pub max_http_header_bytes: usize,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it,
    /// as the reference server's `WS_COMPRESSION` (default on).
    pub ws_compression: bool,
    /// Frames shorter than this many bytes go uncompressed (the
    /// reference's `perMessageDeflate.threshold`, 1024).
    pub ws_compression_threshold: usize,
    /// Largest chat message content, in bytes.
    pub max_message_length: usize,
    /// Channels one connection may join, which bounds its fan-out cost.
    pub max_channels_per_connection: usize,
    /// Sustained commands per second per connection.
    pub rate_limit_per_sec: u32,
    /// Commands a connection may send at once before the sustained rate
    /// applies, so a client catching up after a reconnect is not punished.
    pub rate_limit_burst: u32,
    /// Rejected commands in a row before the connection is closed: a client
    /// that ignores rate-limit errors is misbehaving, not unlucky.
    pub rate_limit_disconnect_after: u32,
    /// Frames a connection's outbound queue may hold. Overflow disconnects
    /// the slow consumer (it recovers by `seq` on reconnect) instead of
    /// growing memory without bound.
    pub outbound_queue_messages: usize,
    /// Bytes a connection's outbound queue may hold; at least `max_payload`
    /// so that one largest frame always fits.
    pub outbound_queue_bytes: usize,
    /// How long a typing indicator lasts without a refresh, so a client that
    /// vanishes does not leave "is typing" forever.
    pub typing_timeout_ms: u64,
    /// At most one `presence_update` per user per this many ms: changes in
    /// between are coalesced into the user's final status, so that a client
    /// cycling its connections cannot flood the members of its channels.
    /// 0 announces every change at once.
    pub presence_interval_ms: u64,
    /// How long a channel owner keeps a cached channel that nobody is
    /// subscribed to, typing in or waiting for, after its last command.
    pub channel_cache_idle_ms: u64,
    /// Channels each owner shard caches; over it the least recently used
    /// ones not in use are evicted, so made-up or abandoned channel ids
    /// cannot grow memory without bound.
    pub channel_cache_max: usize,
    /// Grace period on SIGTERM for connections to drain and the store to
    /// flush before the process exits anyway.
    pub shutdown_timeout_ms: u64,
    /// glommio io_memory per shard, in KiB. It is locked memory and
    /// RLIMIT_MEMLOCK is often only 8 MiB for the whole process, so keep it
    /// small.
    pub io_memory_kib: usize,
    /// io_uring submission queue depth per ring of each shard. The kernel
    /// sizes its cancel lookup table from it, and glommio cancels a timer
    /// on every loop: with many idle connections (one pending poll each) a
    /// small ring makes every loop scan thousands of polls.
    pub io_ring_depth: usize,
    /// Messages and writes that may wait for the store writer. When full,
    /// sends are refused with UNAVAILABLE at once instead of queueing
    /// without bound while the database is slow or down.
    pub store_writer_queue: usize,
    /// How long the writer waits for more messages before committing a
    /// batch, in microseconds. 0 commits what is queued at once; batches
    /// still grow under load while the previous commit runs.
    pub store_commit_window_us: u64,
    /// Reader threads (history, channel loads, REST reads), each with its
    /// own database connection.
    pub store_readers: usize,
    /// How long after a disconnect a client may recover its session
    /// (subscriptions and missed messages) with Socket.IO connection state
    /// recovery.
    pub recovery_window_ms: u64,
    /// Most messages one recovery replays, across all its channels. A
    /// larger gap is refused up front (a fresh session; the client catches
    /// up by seq) instead of being read into memory. Taken as at most
    /// `outbound_queue_messages`, which the replay must fit in anyway.
    pub recovery_max_replay: usize,
    /// Most dropped sessions kept for recovery in the process; beyond it
    /// the oldest is forgotten first, so a flood of dropped connections
    /// cannot grow memory without bound.
    pub recovery_max_sessions: usize,
    /// With Redis: requests the recovery sessions thread holds at most;
    /// beyond it a reconnect is not recovered and a session write is
    /// dropped (written again at the next refresh), so a slow Redis never
    /// makes a shard wait.
    pub recovery_redis_queue: usize,
    /// With Redis: the longest the recovery sessions thread waits for one
    /// Redis command (and to connect); a reconnect's CONNECT reply waits
    /// at most this for a hung Redis, then it is not recovered.
    pub recovery_redis_timeout_ms: u64,
    /// Largest REST request body accepted (413 above it).
    pub rest_max_body_bytes: usize,
    /// How long a REST keep-alive connection may sit with no byte moving
    /// before it is closed, so idle sockets do not pin connection slots.
    pub rest_keepalive_timeout_ms: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Refused connections, upgrades and tokens are logged at most once
    /// per reason per shard in this interval (the rest counted in the next
    /// line), so a flood cannot flood the log; 0 logs every one.
    pub refusal_log_interval_ms: u64,
    /// The production store, `mysql://user:password@host:3306/database`
    /// (MySQL or MariaDB). When it or `db_host` is set, channels, members
    /// and messages live there instead of in SQLite under `data_dir`, so
    /// that the data outlives the machine. One gatrix-chat process per
    /// database: the single writer is what keeps seqs and clientMessageIds
    /// unique. Wins over the `db_*` keys. A secret (it holds the password):
    /// `config print` masks it.
    pub database_url: Option<String>,
    /// The original Gatrix server's way to name the database, for an
    /// existing deployment's environment file: host name or IP (or the path
    /// of a Unix socket). Used when `database_url` is not set.
    pub db_host: Option<String>,
    /// TCP port of `db_host`.
    pub db_port: u16,
    /// Database (schema) on `db_host`; created by the operator, its tables
    /// by `gatrix-chat migrate`.
    pub db_name: String,
    /// Account on `db_host`.
    pub db_user: String,
    /// Password of `db_user`; masked by `config print`.
    pub db_password: Option<String>,
    /// Database connections the store threads hold: one for the writer
    /// (all message inserts, in commit order) and one per reader thread.
    /// 0 means `store_readers` + 1.
    pub db_pool_size: usize,
    /// Encrypt the database connection (TLS via rustls), for a database
    /// reached over a network the operator does not trust.
    pub db_tls: bool,
    /// PEM CA certificate that signed the database server's certificate
    /// (a private CA), trusted in addition to the public web roots.
    pub db_tls_ca_file: Option<PathBuf>,
    /// Messages older than this many days are deleted (MySQL: by dropping
    /// whole monthly partitions, so a message may stay up to a month
    /// longer). 0 keeps messages forever.
    pub message_retention_days: u32,
    /// Monthly partitions of the messages table kept ready ahead of the
    /// current month (MySQL), so new messages never land in the catch-all
    /// partition, whose rows would have to be moved later.
    pub db_partition_months_ahead: u32,
    /// Sequencing partitions (1..=32): `pos` counters that channels are
    /// spread over (`store::sequencing`), each its own `sequencer` row, so
    /// writers of several instances commit in parallel. SQLite: 1.
    pub sequencer_partitions: u32,
    /// Redis, which lets several gatrix-chat processes on one MySQL database
    /// act as one server (docs/architecture.md "Several instances"):
    /// `redis://[:password@]host:port/db`. Unset, together with
    /// `redis_host`: one process, no Redis. Wins over the `redis_*` keys.
    /// Needs the MySQL store: SQLite is one process by design. A secret:
    /// `config print` masks its password.
    pub redis_url: Option<String>,
    /// The original server's way to name Redis (`REDIS_HOST`): host name
    /// or IP. Used when `redis_url` is not set.
    pub redis_host: Option<String>,
    /// TCP port of `redis_host`.
    pub redis_port: u16,
    /// Password of `redis_host` (Redis `AUTH`); masked by `config print`.
    pub redis_password: Option<String>,
    /// Logical database of `redis_host` (`SELECT`).
    pub redis_db: u32,
    /// A Redis Cluster instead of one Redis (the Node.js server's
    /// `REDIS_CLUSTER_NODES`): `host:port,host:port`, some of its nodes
    /// (the client learns the rest), with `redis_password`. Wins over
    /// `redis_host`; `redis_url` wins over it (`redis+cluster://` is its
    /// form there). `REDIS_CLUSTER_ENABLED=false` in the environment, as
    /// in the original's `.env.example`, leaves it unset.
    pub redis_cluster_nodes: Option<String>,
    /// Redis Cluster: how often the bus reader reads the slot map again
    /// (CLUSTER SLOTS) while its reads work, to follow a slot that moved
    /// before any command meets the move.
    pub redis_cluster_refresh_ms: u64,
    /// With Redis: the longest wait between two reconnects of a Redis
    /// thread (bus, presence, recovery sessions), which double from
    /// 100 ms up to it, each jittered so instances do not retry in
    /// lockstep. After an outage a thread is back at most about this
    /// long after Redis.
    pub redis_reconnect_max_ms: u64,
    /// Redis Cluster: the sharded pub/sub channels the ephemeral events
    /// (typing, presence, cache invalidation) are spread over, an event's
    /// from its channel or user; each instance holds one subscriber
    /// connection per master whatever the number.
    pub redis_pubsub_partitions: u32,
    /// This instance's name among those sharing one database and one
    /// Redis: unique per running process (a second process with the same
    /// id is refused), stable across its restarts if possible. Unset: the
    /// host name and the process id.
    pub server_id: Option<String>,
    /// With Redis: how long a missing commit position may stay missing
    /// from the log before this instance reads it from the database (and
    /// re-publishes it). Longer waits less often on a slow writer, shorter
    /// recovers sooner from a lost entry.
    pub bus_gap_wait_ms: u64,
    /// With Redis: how often the database's last commit position is read
    /// (the lag in `/metrics`, a gap nobody noticed), and while Redis is
    /// away, how often new messages are read from the database instead.
    pub bus_poll_interval_ms: u64,
    /// With Redis: entries (batches) each partition's stream keeps,
    /// trimmed approximately (`MAXLEN ~`).
    pub bus_stream_max_len: usize,
    /// With Redis: a batch's envelope at least this long (bytes) is zstd
    /// compressed in the log; 0 never compresses.
    pub bus_zstd_threshold: usize,
    /// With Redis: batches waiting for the publisher (and, apart, for this
    /// instance's applier); a full queue drops the batch from the log and
    /// the gap fill reads it from the database: the writer never waits.
    pub bus_queue_batches: usize,
    /// With Redis: bytes (message frames) the publisher's queue holds at
    /// most; beyond it a batch is dropped from the log as when the queue
    /// is full.
    pub bus_queue_bytes: usize,
    /// With Redis: batches held while their predecessor is missing, per
    /// partition, by the log's append script and by each applier.
    pub bus_max_parked: usize,
    /// With Redis: how long the append script keeps a parked batch.
    pub bus_parked_ttl_ms: u64,
    /// With Redis: connect, read and write timeout of each bus connection.
    pub bus_redis_timeout_ms: u64,
    /// With Redis: the presence lease period. An instance that dies has
    /// its users and channel subscriptions announced gone by the others
    /// within this long (its lease lasts half of it and is renewed every
    /// sixth).
    pub presence_lease_ms: u64,
    /// With Redis: requests and events a shard may queue for the presence
    /// thread; beyond it events are dropped (counted) and count updates
    /// retried on the next tick.
    pub presence_queue: usize,
    /// Serve Prometheus metrics on `GET /metrics` (docs/metrics.md).
    /// Counting goes on either way; this only hides the exposition.
    pub metrics_enabled: bool,
    /// Where `/metrics` is served: an `IP:port` of its own, by default
    /// loopback port 9402 (the original's metrics port), so that operational
    /// data is not published on the public port; the public port then
    /// answers 404 for `/metrics`. `public`: on the public port instead,
    /// unauthenticated like `/health`.
    pub metrics_listen: String,
    /// Comma-separated origins (`scheme://host[:port]`, case-insensitive)
    /// whose pages may use the server: any other `Origin` gets 403 before
    /// a WebSocket upgrade, so a page on another site cannot use a
    /// visitor's cookies or network position against the server, and no
    /// CORS headers on REST answers, so its pages cannot read them. Empty
    /// or `*` allows any.
    pub allowed_origins: String,
    /// The original server's name for `allowed_origins` (it read
    /// `CORS_ORIGIN`, comma-separated, `*` for any), used when
    /// `allowed_origins` is empty, so its `.env` keeps its meaning. Setting
    /// both to different lists is a configuration error.
    pub cors_origin: String,
    /// Whether an upgrade without an `Origin` header is allowed when
    /// `allowed_origins` is set. Native game clients send none; browsers
    /// always do, so refusing it only matters for non-browser clients.
    pub allow_missing_origin: bool,
    /// How long, in seconds, a browser may reuse the answer to a CORS
    /// preflight (`Access-Control-Max-Age`) before asking again for the
    /// same URL.
    pub cors_max_age_secs: u32,
    /// PEM certificate chain: with `tls_key_file`, the public port speaks
    /// HTTPS/WSS only. SIGHUP reloads both files (new connections get the
    /// new certificate).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

/// The version and git commit of this build, for the start log and
/// `config check`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GATRIX_GIT_COMMIT"),
    ")"
);

/// What [`Config::masked`] puts in place of a secret.
pub const MASK: &str = "********";

#[cfg(test)]
mod tests;
