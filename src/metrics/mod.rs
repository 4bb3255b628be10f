//! Prometheus metrics (docs/metrics.md lists every one and how to use it).
//!
//! One [`Metrics`] per process holds the registry and the metric families.
//! Each shard resolves its own instances once at start ([`Metrics::shard`]):
//! a [`ShardMetrics`] is a set of handles whose counters are that shard's
//! own atomics, so the hot path bumps them with one relaxed atomic add, and
//! never takes a lock, formats a label or touches another shard's cache
//! line on purpose. Labels are bounded: the shard index, a transport, a
//! close reason; never a user or a channel.
//!
//! The exposition (OpenMetrics text, by prometheus-client) is rendered on
//! a scrape: on the main port through the REST router, or, with
//! `METRICS_LISTEN`, on a listener of its own (`listen`).

mod bus;
mod histogram;
pub(crate) mod listen;
mod recovery;
pub(crate) mod refusals;

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use bus::BusMetrics;
pub use histogram::AtomicHistogram;
pub use recovery::RecoveryMetrics;
pub use refusals::{Refusals, Refused};

use crate::protocol::CloseReason;

/// What a scrape answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// chat_broadcast_latency bounds, in nanoseconds: 50 µs to 1 s.
static BROADCAST_BOUNDS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];
/// chat_store_commit_latency_seconds bounds, in nanoseconds: 100 µs to 5 s.
static COMMIT_BOUNDS: [u64; 15] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];
/// chat_store_batch_size bounds, in messages.
static BATCH_BOUNDS: [u64; 11] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000];
const NANOS: f64 = 1e9;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    shard: usize,
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    shard: usize,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

type HistogramFamily = Family<ShardLabel, AtomicHistogram, fn() -> AtomicHistogram>;

fn broadcast_histogram() -> AtomicHistogram {
    AtomicHistogram::new(&BROADCAST_BOUNDS, NANOS)
}

/// The process's registry and metric families.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Family<ShardLabel, Gauge>,
    channels: Family<ShardLabel, Gauge>,
    messages: Family<ShardLabel, Counter>,
    deliveries: Family<ShardLabel, Counter>,
    broadcast_latency: HistogramFamily,
    slow_consumers: Family<ShardLabel, Counter>,
    rate_limited: Family<ShardLabel, Counter>,
    auth_failures: Family<AuthLabels, Counter>,
    disconnects: Family<ReasonLabels, Counter>,
    refusals: Family<ReasonLabels, Counter>,
    mailbox_depth: Family<ShardLabel, Gauge>,
    store: StoreMetrics,
    recovery: RecoveryMetrics,
    bus: BusMetrics,
    cluster: crate::chat::cluster::ClusterMetrics,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let connections = Family::default();
        let channels = Family::default();
        let messages = Family::default();
        let deliveries = Family::default();
        let broadcast_latency: HistogramFamily = Family::new_with_constructor(broadcast_histogram);
        let slow_consumers = Family::default();
        let rate_limited = Family::default();
        let auth_failures = Family::default();
        let disconnects = Family::default();
        let refusals = Family::default();
        let mailbox_depth = Family::default();
        let store = StoreMetrics::new();
        let recovery = RecoveryMetrics::default();
        let bus = BusMetrics::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("GATRIX_GIT_COMMIT"),
            })
            .set(1);

        // Counters are registered without `_total`: the encoder adds it.
        let r = &mut registry;
        r.register(
            "chat_connections_active",
            "Socket.IO connections authenticated on the shard",
            connections.clone(),
        );
        r.register(
            "chat_channels_active",
            "Channels the shard owns and holds in its cache",
            channels.clone(),
        );
        r.register(
            "chat_messages",
            "Messages committed and broadcast, on the channel's owner shard",
            messages.clone(),
        );
        r.register(
            "chat_deliveries",
            "Message frames queued to subscribers' connections",
            deliveries.clone(),
        );
        r.register(
            "chat_broadcast_latency",
            "Seconds from a send's arrival to its broadcast being queued on a subscriber's shard",
            broadcast_latency.clone(),
        );
        r.register(
            "chat_slow_consumer_disconnects",
            "Connections closed because their outbound queue overflowed (4008)",
            slow_consumers.clone(),
        );
        r.register(
            "chat_rate_limited",
            "Commands and REST requests refused for rate",
            rate_limited.clone(),
        );
        r.register(
            "chat_auth_failures",
            "Refused tokens, by transport (ws: Socket.IO CONNECT, rest: REST bearer)",
            auth_failures.clone(),
        );
        r.register(
            "chat_disconnects",
            "WebSocket connections ended, by close reason",
            disconnects.clone(),
        );
        r.register(
            "chat_refusals",
            "Connections, upgrades and tokens turned away, by reason",
            refusals.clone(),
        );
        r.register(
            "chat_mailbox_depth",
            "Messages the shard took from its inbox in its last drain",
            mailbox_depth.clone(),
        );
        r.register(
            "chat_store_batch_size",
            "Messages per store commit",
            store.batch_size.clone(),
        );
        r.register(
            "chat_store_commit_latency_seconds",
            "Seconds per store commit (sequencing, insert, commit)",
            store.commit_latency.clone(),
        );
        r.register(
            "chat_store_queue_depth",
            "Messages and writes waiting for the store writer when it last took a batch",
            store.queue_depth.clone(),
        );
        let cluster = crate::chat::cluster::ClusterMetrics::default();
        cluster.register(r);
        r.register(
            "chat_build_info",
            "Always 1; the labels name the running build",
            build_info,
        );
        recovery.register(r);
        bus.register(r);
        Arc::new(Self {
            registry,
            connections,
            channels,
            messages,
            deliveries,
            broadcast_latency,
            slow_consumers,
            rate_limited,
            auth_failures,
            disconnects,
            refusals,
            mailbox_depth,
            store,
            recovery,
            bus,
            cluster,
        })
    }

    /// The handles of one shard; call once, at the shard's start. Every
    /// series of the shard exists (at 0) from then on.
    pub fn shard(&self, shard: usize) -> ShardMetrics {
        let l = ShardLabel { shard };
        let auth = |transport| AuthLabels { shard, transport };
        ShardMetrics {
            connections: self.connections.get_or_create_owned(&l),
            channels: self.channels.get_or_create_owned(&l),
            messages: self.messages.get_or_create_owned(&l),
            deliveries: self.deliveries.get_or_create_owned(&l),
            broadcast_latency: self.broadcast_latency.get_or_create_owned(&l),
            slow_consumers: self.slow_consumers.get_or_create_owned(&l),
            rate_limited: self.rate_limited.get_or_create_owned(&l),
            auth_failures_ws: self.auth_failures.get_or_create_owned(&auth("ws")),
            auth_failures_rest: self.auth_failures.get_or_create_owned(&auth("rest")),
            disconnects: CloseReason::ALL
                .iter()
                .map(|r| {
                    self.disconnects.get_or_create_owned(&ReasonLabels {
                        shard,
                        reason: r.as_str(),
                    })
                })
                .collect(),
            refusals: Refusals::new(
                shard,
                Refused::ALL
                    .iter()
                    .map(|r| {
                        self.refusals.get_or_create_owned(&ReasonLabels {
                            shard,
                            reason: r.as_str(),
                        })
                    })
                    .collect(),
            ),
            mailbox_depth: self.mailbox_depth.get_or_create_owned(&l),
            bus: self.bus.clone(),
            pubsub: self.cluster.subscribed.clone(),
            exposition: None,
        }
    }

    /// The Redis recovery sessions thread's handles.
    pub fn recovery(&self) -> RecoveryMetrics {
        self.recovery.clone()
    }

    /// The bus's handles (several instances through Redis).
    pub fn bus(&self) -> BusMetrics {
        self.bus.clone()
    }

    /// The store writer's handles.
    pub fn store(&self) -> StoreMetrics {
        self.store.clone()
    }

    /// The presence thread's handles (several instances).
    pub(crate) fn cluster(&self) -> crate::chat::cluster::ClusterMetrics {
        self.cluster.clone()
    }

    /// The whole exposition, OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One shard's handles. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct ShardMetrics {
    pub connections: Gauge,
    pub channels: Gauge,
    pub messages: Counter,
    pub deliveries: Counter,
    pub broadcast_latency: AtomicHistogram,
    pub slow_consumers: Counter,
    pub rate_limited: Counter,
    pub auth_failures_ws: Counter,
    pub auth_failures_rest: Counter,
    /// Indexed by `CloseReason as usize` (the order of [`CloseReason::ALL`]).
    disconnects: Box<[Counter]>,
    /// Refused connections, upgrades and tokens: counted and logged.
    pub refusals: Refusals,
    pub mailbox_depth: Gauge,
    /// The process's bus state (for `/ready`).
    pub bus: BusMetrics,
    /// 1 while the events' subscriptions are all up (for `/ready`).
    pub pubsub: Gauge,
    /// The whole registry, when the main port serves `/metrics` (set with
    /// [`ShardMetrics::serving`]); `None` answers 404 there.
    exposition: Option<Arc<Metrics>>,
}

impl ShardMetrics {
    /// Handles registered nowhere: for tests and tools that run chat
    /// without a server.
    pub fn detached() -> Self {
        Metrics::new().shard(0)
    }

    /// Lets this shard's REST router answer `GET /metrics` with `metrics`.
    pub fn serving(mut self, metrics: Arc<Metrics>) -> Self {
        self.exposition = Some(metrics);
        self
    }

    /// The exposition for `GET /metrics` on the main port, if served there.
    pub fn exposition(&self) -> Option<String> {
        self.exposition.as_ref().map(|m| m.render())
    }

    /// A WebSocket connection ended with `reason`.
    #[inline]
    pub fn disconnected(&self, reason: CloseReason) {
        self.disconnects[reason as usize].inc();
        if reason == CloseReason::SlowConsumer {
            self.slow_consumers.inc();
        }
    }
}

/// The store writer's handles (no shard label: there is one writer).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub batch_size: AtomicHistogram,
    pub commit_latency: AtomicHistogram,
    pub queue_depth: Gauge,
}

impl StoreMetrics {
    fn new() -> Self {
        Self {
            batch_size: AtomicHistogram::new(&BATCH_BOUNDS, 1.0),
            commit_latency: AtomicHistogram::new(&COMMIT_BOUNDS, NANOS),
            queue_depth: Gauge::default(),
        }
    }

    /// Handles registered nowhere, for tests.
    pub fn detached() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contracted_name_is_exposed_per_shard() {
        let m = Metrics::new();
        let s0 = m.shard(0);
        let _s1 = m.shard(1);
        s0.messages.inc_by(3);
        s0.disconnected(CloseReason::SlowConsumer);
        s0.broadcast_latency
            .observe_duration(std::time::Duration::from_micros(70));
        let text = m.render();
        for line in [
            "chat_messages_total{shard=\"0\"} 3",
            "chat_messages_total{shard=\"1\"} 0",
            "chat_slow_consumer_disconnects_total{shard=\"0\"} 1",
            "chat_disconnects_total{shard=\"0\",reason=\"slow_consumer\"} 1",
            "chat_disconnects_total{shard=\"1\",reason=\"ping_timeout\"} 0",
            "chat_auth_failures_total{shard=\"1\",transport=\"rest\"} 0",
            "chat_refusals_total{shard=\"1\",reason=\"token_expired\"} 0",
            "chat_broadcast_latency_bucket{le=\"0.00005\",shard=\"0\"} 0",
            "chat_broadcast_latency_bucket{le=\"0.0001\",shard=\"0\"} 1",
            "chat_broadcast_latency_count{shard=\"0\"} 1",
            "chat_store_batch_size_count 0",
            "chat_store_commit_latency_seconds_count 0",
            "chat_store_queue_depth 0",
            "chat_bus_connected 0",
            "chat_bus_publishes_dropped_total 0",
            "chat_build_info{version=\"",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
