//! The bus's state (several instances through Redis, `crate::bus`): one
//! set per process, no labels but the applied position's `partition`.
//! Without Redis every series stays at 0 and `/ready` says nothing about a
//! bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Shared handles: the bus threads count, `/metrics` and `/ready` read.
#[derive(Debug, Clone, Default)]
pub struct BusMetrics {
    /// Set once at start when Redis is configured.
    enabled: Arc<AtomicBool>,
    /// Sequencing partitions, set with `enabled`.
    partitions: Arc<AtomicUsize>,
    /// 1 while the log reader is connected to Redis.
    pub connected: Gauge,
    /// 1 while the applier polls the store because Redis is away.
    pub polling: Gauge,
    /// Commit positions the database is ahead of what this instance
    /// applied, when last sampled, summed over the partitions.
    pub lag: Gauge,
    /// The last `pos` applied here, per sequencing partition
    /// ([`BusMetrics::set_applied`]).
    applied_pos: Family<PartitionLabel, Gauge>,
    pub batches_applied: Counter,
    pub duplicates_dropped: Counter,
    pub gap_fills: Counter,
    pub polling_fallbacks: Counter,
    pub publishes: Counter,
    pub publishes_dropped: Counter,
    /// The reader's connections, one blocking XREAD each: one per hash
    /// slot of the partitions' streams on a Redis Cluster, 1 on one server.
    pub reader_connections: Gauge,
    /// Rounds of the reader's groups ended (a node failed, a slot moved,
    /// the slot map changed) and the partitions grouped again.
    pub reader_regroups: Counter,
    /// Slot maps read (CLUSTER SLOTS) by the reader.
    pub slot_map_refreshes: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: usize,
}

impl BusMetrics {
    /// The last position applied in partition `p`.
    pub fn set_applied(&self, p: usize, pos: u64) {
        let pos = i64::try_from(pos).unwrap_or(i64::MAX);
        self.applied_pos
            .get_or_create(&PartitionLabel { partition: p })
            .set(pos);
    }

    fn applied(&self, p: usize) -> i64 {
        self.applied_pos
            .get_or_create(&PartitionLabel { partition: p })
            .get()
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "chat_bus_connected",
            "1 while the bus's log reader is connected to Redis (0 without Redis)",
            self.connected.clone(),
        );
        r.register(
            "chat_bus_polling",
            "1 while the applier reads new commits from the store because Redis is away",
            self.polling.clone(),
        );
        r.register(
            "chat_bus_lag",
            "Commit positions the database is ahead of what this instance applied, summed over \
             the sequencing partitions",
            self.lag.clone(),
        );
        // Partition 0 is there from the start (0 without Redis).
        self.set_applied(0, 0);
        r.register(
            "chat_bus_applied_pos",
            "The last commit position this instance applied, per sequencing partition",
            self.applied_pos.clone(),
        );
        r.register(
            "chat_bus_batches_applied",
            "Batches applied to the shards, in pos order",
            self.batches_applied.clone(),
        );
        r.register(
            "chat_bus_duplicates_dropped",
            "Batches dropped before the shards because every pos was applied already",
            self.duplicates_dropped.clone(),
        );
        r.register(
            "chat_bus_gap_fills",
            "Reads from the store of commit positions missing from the log",
            self.gap_fills.clone(),
        );
        r.register(
            "chat_bus_polling_fallbacks",
            "Times the applier fell back to polling the store (Redis away)",
            self.polling_fallbacks.clone(),
        );
        r.register(
            "chat_bus_publishes",
            "Batches appended to the log by this instance (its commits and its gap fills)",
            self.publishes.clone(),
        );
        r.register(
            "chat_bus_publishes_dropped",
            "Batches not appended to the log (Redis away or slow, publisher queue full); \
             the gap fill covers them",
            self.publishes_dropped.clone(),
        );
        r.register(
            "chat_bus_reader_connections",
            "Connections of the bus's log reader, one blocking XREAD each: one per hash slot of \
             the partitions' streams on a Redis Cluster, 1 on one Redis server",
            self.reader_connections.clone(),
        );
        r.register(
            "chat_bus_reader_regroups",
            "Times the log reader grouped the partitions by node anew (a node failed or \
             stopped answering, a slot moved, the slot map changed)",
            self.reader_regroups.clone(),
        );
        r.register(
            "chat_redis_slot_map_refreshes",
            "Redis Cluster slot maps read (CLUSTER SLOTS) by the bus's log reader",
            self.slot_map_refreshes.clone(),
        );
    }

    /// The bus runs in this process (Redis is configured), over
    /// `partitions` sequencing partitions.
    pub fn enable(&self, partitions: usize) {
        self.partitions.store(partitions.max(1), Ordering::Relaxed);
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// `/ready`'s `bus` object, or `None` without Redis: `appliedPos` is
    /// partition 0's (the only one by default), `appliedPositions` every
    /// partition's when there are several.
    pub fn ready_json(&self) -> Option<String> {
        self.is_enabled().then(|| {
            let n = self.partitions.load(Ordering::Relaxed);
            let all = if n > 1 {
                let list: Vec<String> = (0..n).map(|p| self.applied(p).to_string()).collect();
                format!(r#","appliedPositions":[{}]"#, list.join(","))
            } else {
                String::new()
            };
            format!(
                r#"{{"connected":{},"polling":{},"lag":{},"appliedPos":{}{all}}}"#,
                self.connected.get() == 1,
                self.polling.get() == 1,
                self.lag.get(),
                self.applied(0)
            )
        })
    }
}
