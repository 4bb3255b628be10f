//! The presence thread's figures on `/metrics` (docs/metrics.md, "Several
//! instances: presence and events"). Process-wide: the thread is one.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Cloning shares the counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterMetrics {
    /// Events this instance published to the others.
    pub(crate) published: Counter,
    /// Events from other instances handed to the shards.
    pub(crate) received: Counter,
    /// Events dropped: a shard's queue to the thread was full, or Redis
    /// was away (at-most-once), or one could not be decoded.
    pub(crate) dropped: Counter,
    /// Count updates a full queue deferred to the next tick (never lost).
    pub(crate) deferred: Counter,
    /// 1 while this instance holds its presence lease in Redis.
    pub(crate) lease: Gauge,
    /// Connections to Redis made again after a failure.
    pub(crate) reconnects: Counter,
    /// Dead instances whose users and subscriptions this one cleaned up.
    pub(crate) reaped: Counter,
    /// Redis Cluster: sharded subscriptions made anew (a slot moved, a
    /// node failed or stopped answering, the slot map changed).
    pub(crate) resubscribes: Counter,
    /// Redis Cluster: PINGs on a quiet subscribed connection left
    /// unanswered for a probe period (the connection is then dropped).
    pub(crate) probes_failed: Counter,
    /// Redis Cluster: slot maps the subscriber read (CLUSTER SLOTS).
    pub(crate) slot_map_refreshes: Counter,
    /// Redis Cluster: unsolicited `sunsubscribe`s (a shard channel's slot
    /// left the node).
    pub(crate) slot_moves: Counter,
    /// 1 while the subscriber's subscriptions are all up (`/ready`).
    pub(crate) subscribed: Gauge,
}

impl ClusterMetrics {
    /// Registers the families (counters without `_total`: the encoder adds it).
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "chat_cluster_events_published",
            "Ephemeral events (typing, presence, edits, cache invalidation) published to the other instances",
            self.published.clone(),
        );
        r.register(
            "chat_cluster_events_received",
            "Ephemeral events received from the other instances",
            self.received.clone(),
        );
        r.register(
            "chat_cluster_events_dropped",
            "Ephemeral events dropped: queue to the presence thread full, Redis away, or undecodable",
            self.dropped.clone(),
        );
        r.register(
            "chat_cluster_updates_deferred",
            "Presence count updates deferred to the next tick because the queue to the presence thread was full",
            self.deferred.clone(),
        );
        r.register(
            "chat_cluster_lease",
            "1 while this instance holds its presence lease in Redis, else 0",
            self.lease.clone(),
        );
        r.register(
            "chat_cluster_redis_reconnects",
            "Connections of the presence threads to Redis made again after a failure",
            self.reconnects.clone(),
        );
        r.register(
            "chat_cluster_instances_reaped",
            "Dead instances (lease expired) whose users and subscriptions this instance cleaned up",
            self.reaped.clone(),
        );
        r.register(
            "chat_cluster_resubscribes",
            "Redis Cluster: sharded pub/sub subscriptions made anew (a slot moved, a node failed \
             or stopped answering, the slot map changed)",
            self.resubscribes.clone(),
        );
        r.register(
            "chat_cluster_probes_failed",
            "Redis Cluster: PINGs on a quiet sharded subscription left unanswered (the \
             connection is dropped and the subscription made anew)",
            self.probes_failed.clone(),
        );
        r.register(
            "chat_cluster_slot_map_refreshes",
            "Redis Cluster: slot maps (CLUSTER SLOTS) read by the sharded subscriber",
            self.slot_map_refreshes.clone(),
        );
        r.register(
            "chat_cluster_slot_moves",
            "Redis Cluster: unsolicited sunsubscribes from a node (a shard channel's slot left it)",
            self.slot_moves.clone(),
        );
        r.register(
            "chat_cluster_subscribed",
            "1 while every subscription of the events' subscriber is up (0 while one is being \
             made again, and without Redis)",
            self.subscribed.clone(),
        );
    }
}
