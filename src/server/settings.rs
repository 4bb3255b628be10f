//! What each part of the server is started with, read from the
//! configuration: the recovery sessions' home, the store threads' queues,
//! the transport's endpoint, chat's limits.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::chat;
use crate::chat::ChatLimits;
use crate::config::Config;
use crate::mailbox::Mesh;
use crate::metrics::Metrics;
use crate::protocol::{self, QueueLimits};
use crate::store::handle::StoreSettings;
use crate::store::writer::WriterSettings;
use crate::transport::Endpoint;
use crate::transport::origin::OriginPolicy;

/// Where recovery sessions live: in Redis when it is configured (a client
/// may come back through any instance; its thread connects by itself,
/// so an unreachable Redis does not stop the start), else in the process.
pub(super) fn recovery_sessions(
    config: &Config,
    mesh: &Arc<Mesh<chat::Mail>>,
    metrics: &Metrics,
) -> anyhow::Result<chat::recovery::SessionStore> {
    use chat::recovery::{SessionStore, Sessions, Shared};
    // A zero window recovers nothing: nothing to write to Redis either.
    // Checked by the configuration already; the error names only the
    // address's kind, never the URL.
    let target =
        crate::redis_link::Target::open(config)?.filter(|_| !config.recovery_window().is_zero());
    let Some(target) = target else {
        return Ok(SessionStore::Local(Sessions::new(
            config.recovery_max_sessions,
        )));
    };
    let settings = chat::recovery::SharedSettings {
        window: config.recovery_window(),
        max_dropped: config.recovery_max_sessions,
        queue: config.recovery_redis_queue,
        timeout: Duration::from_millis(config.recovery_redis_timeout_ms),
        reconnect_max: Duration::from_millis(config.redis_reconnect_max_ms),
    };
    let shared = Shared::start(target, mesh.clone(), &settings, metrics.recovery())
        .context("starting the Redis sessions thread")?;
    Ok(SessionStore::Shared(shared))
}

/// The store threads' queues and batches.
pub(super) fn store_settings(config: &Config, metrics: &Metrics) -> StoreSettings {
    StoreSettings {
        writer: WriterSettings {
            max_batch: config.commit_batch_max,
            window: Duration::from_micros(config.store_commit_window_us),
        },
        writer_queue: config.store_writer_queue,
        readers: config.store_reader_threads(),
        reader_queue: config.store_writer_queue,
        metrics: metrics.store(),
    }
}

/// What every shard's transport serves with.
pub(super) fn endpoint(config: &Config) -> Endpoint {
    Endpoint {
        opts: protocol::Options {
            ping_interval: config.ping_interval(),
            ping_timeout: config.ping_timeout(),
            connect_timeout: config.connect_timeout(),
            max_payload: config.max_payload,
            max_payload_before_connect: config.max_payload_before_connect,
        },
        queue: QueueLimits {
            max_frames: config.outbound_queue_messages,
            max_bytes: config.outbound_queue_bytes,
        },
        max_header_bytes: config.max_http_header_bytes,
        handshake_timeout: config.handshake_timeout(),
        origins: OriginPolicy::new(config.origin_list(), config.allow_missing_origin)
            .with_cors_max_age(config.cors_max_age_secs),
        // Each shard sets its own.
        refusals: None,
        compression: config.compression(),
    }
}

/// What every shard's chat allows; `start`, the positions commits are
/// applied after (the database's when this process started).
pub(super) fn chat_limits(
    config: &Config,
    start: Option<&[u64]>,
    directory: Arc<crate::chat::gatrix::Directory>,
) -> ChatLimits {
    let partitions = config.sequencer_partitions.max(1) as usize;
    ChatLimits {
        max_message_length: config.max_message_length,
        max_channels_per_connection: config.max_channels_per_connection,
        rate_per_sec: config.rate_limit_per_sec,
        rate_burst: config.rate_limit_burst,
        rate_disconnect_after: config.rate_limit_disconnect_after,
        typing_timeout: config.typing_timeout(),
        presence_interval: config.presence_interval(),
        recovery_window: config.recovery_window(),
        channel_cache_idle: config.channel_cache_idle(),
        channel_cache_max: config.channel_cache_max,
        // A replay must fit in the outbound queue anyway.
        recovery_max_replay: config
            .recovery_max_replay
            .min(config.outbound_queue_messages),
        server_id: config.server_id().into(),
        start_positions: match start {
            Some(s) => s.into(),
            None => vec![0; partitions].into(),
        },
        directory,
        require_known_users: config.gatrix_compat && config.gatrix_require_known_users,
    }
}
