//! Recovery sessions in Redis (several instances): what went wrong with
//! Redis, counted (each outage is also logged once).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// The `redis-sessions` thread's counts (no shard label: one thread).
#[derive(Debug, Clone, Default)]
pub struct RecoveryMetrics {
    /// Redis commands of the sessions thread that failed (or could not be
    /// tried: Redis unreachable).
    pub redis_errors: Counter,
    /// Requests dropped because the thread's queue was full.
    pub redis_dropped: Counter,
}

impl RecoveryMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        // Counters are registered without `_total`: the encoder adds it.
        r.register(
            "chat_recovery_redis_errors",
            "Redis commands for recovery sessions that failed or found Redis unreachable",
            self.redis_errors.clone(),
        );
        r.register(
            "chat_recovery_redis_dropped",
            "Recovery session requests dropped on a full Redis queue",
            self.redis_dropped.clone(),
        );
    }
}
