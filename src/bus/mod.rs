//! The bus: several instances on one MySQL database act as one server,
//! through one ordered, resumable log per sequencing partition in Redis
//! (docs/architecture.md "Several instances").
//!
//! The database orders every message (`pos`, gapless, in commit order
//! across instances); the log only carries the order to the other
//! instances, and may lose anything: the database fills it in.
//!
//! - [`fanout`]: the writer's side ([`BusFanout`]): acks at once, the
//!   batch to this instance's applier and to the publisher.
//! - [`publisher`]: appends each batch to its partition's stream, one
//!   command ([`script`], Lua: only in `pos` order, idempotent).
//! - [`envelope`]: a batch's bytes in the log (rkyv, zstd when large).
//! - [`reader`]: XREAD BLOCK on the streams, one per Redis node, decoded
//!   for the applier.
//! - [`applier`]: every batch to every shard in `pos` order ([`order`]),
//!   gaps read from the database, polling while Redis is away.
//!
//! Each thread owns its Redis connection (the `redis` crate's sync API,
//! through [`crate::redis_link`]) and reconnects with backoff; shards
//! never wait on Redis.
//! Without Redis none of this runs: the writer's fan-out is the in-process
//! mesh, as in one process.

mod applier;
pub(crate) mod batch;
pub(crate) mod envelope;
pub(crate) mod fanout;
mod order;
mod publisher;
mod queue;
mod reader;
mod script;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, bounded};

use self::applier::{Applier, ApplierSettings, OpenStore};
use self::publisher::Publisher;
use self::reader::Reader;
use self::script::Limits;
use crate::chat::mail::Mail;
use crate::config::{Backend, Config};
use crate::mailbox::Mesh;
use crate::metrics::Metrics;
use crate::redis_link::Target;
use crate::store::Store;
use crate::store::mysql::MysqlStore;
pub(crate) use fanout::{BusFanout, ServerFanout};

/// Every key the bus writes starts with this.
pub(crate) const KEY_PREFIX: &str = "gatrix:bus:";

/// Test only, read in debug builds: the number (from 1) of the committed
/// batch whose hand-off this instance's writer leaves out, as if it had
/// died between commit and append (tests/bus.rs). Never set in production;
/// release builds ignore it.
pub(crate) const SKIP_BATCH_ENV: &str = "GATRIX_TEST_BUS_SKIP_BATCH";

/// The sequencing partitions: one stream and one order each (the recovery
/// offsets the applier renders are one position per partition).
fn partitions(config: &Config) -> u32 {
    config.sequencer_partitions.max(1)
}

/// How frames read from the log or the store are compressed on arrival:
/// with several partitions not at all, since the applier renders each
/// frame's offset (and compresses it) when it applies it.
fn received_compression(config: &Config) -> crate::protocol::deflate::Settings {
    let c = config.compression();
    crate::protocol::deflate::Settings {
        enabled: c.enabled && partitions(config) <= 1,
        ..c
    }
}

/// The bus between [`prepare`] (before the store's writer starts: it is
/// the writer's fan-out) and [`Pending::start`] (after the store is
/// migrated, before any shard runs).
pub(crate) struct Pending {
    target: Target,
    local: Receiver<fanout::Local>,
    publish_tx: queue::PublishTx,
    publish_rx: queue::PublishRx,
}

/// The writer's fan-out over the bus, and what starts the bus's threads;
/// `None` without Redis.
pub(crate) fn prepare(
    config: &Config,
    mesh: &Arc<Mesh<Mail>>,
    metrics: &Metrics,
) -> anyhow::Result<Option<(BusFanout, Pending)>> {
    // Checked at start already (Config::validate); the error names only
    // the address's kind, never the URL.
    let Some(target) = Target::open(config)? else {
        return Ok(None);
    };
    metrics.bus().enable(partitions(config) as usize);
    let (local_tx, local) = bounded(config.bus_queue_batches);
    let (publish_tx, publish_rx) =
        queue::publish_queue(config.bus_queue_batches, config.bus_queue_bytes);
    let fanout = BusFanout {
        mesh: mesh.clone(),
        compression: config.compression(),
        partitions: partitions(config),
        local: local_tx,
        publish: publish_tx.clone(),
        metrics: metrics.bus(),
        skip: skip_batch(),
        batches: 0,
    };
    Ok(Some((
        fanout,
        Pending {
            target,
            local,
            publish_tx,
            publish_rx,
        },
    )))
}

#[cfg(debug_assertions)]
fn skip_batch() -> Option<u64> {
    std::env::var(SKIP_BATCH_ENV).ok()?.parse().ok()
}

#[cfg(not(debug_assertions))]
fn skip_batch() -> Option<u64> {
    let _ = SKIP_BATCH_ENV;
    None
}

impl Pending {
    /// Starts the publisher, the reader and the applier, the applier from
    /// the database's last `pos` (what this instance has not seen, its
    /// clients hold no offset beyond). Call once the store is migrated and
    /// before any shard runs.
    pub(crate) fn start(
        self,
        config: &Config,
        mesh: Arc<Mesh<Mail>>,
        metrics: &Metrics,
    ) -> anyhow::Result<BusGuard> {
        let Backend::Mysql(opts) = config.backend()? else {
            anyhow::bail!("Redis needs the MySQL store");
        };
        let mut open_store: OpenStore =
            Box::new(move || Ok(Box::new(MysqlStore::open(&opts)?) as Box<dyn Store>));
        let mut store = open_store().context("opening the bus's store connection")?;
        let applied: Vec<AtomicU64> = (0..partitions(config))
            .map(|p| store.last_pos(p).map(AtomicU64::new))
            .collect::<Result<_, _>>()
            .context("reading the last commit position")?;
        let applied: Arc<[AtomicU64]> = applied.into();
        // Where a new recovery session starts before the first batch is
        // applied (`BusGuard::start`, the shards' `ChatLimits`).
        let start: Vec<u64> = applied.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        for (p, &pos) in start.iter().enumerate() {
            metrics.bus().set_applied(p, pos);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let timeout = Duration::from_millis(config.bus_redis_timeout_ms);
        let reconnect_max = Duration::from_millis(config.redis_reconnect_max_ms);
        let bus = metrics.bus();
        let (events_tx, events) = bounded(config.bus_queue_batches);
        let publisher = Publisher {
            target: self.target.clone(),
            batches: self.publish_rx,
            partitions: partitions(config),
            limits: Limits {
                stream_max_len: config.bus_stream_max_len,
                parked_ttl_ms: config.bus_parked_ttl_ms,
                max_parked: config.bus_max_parked,
            },
            zstd_threshold: config.bus_zstd_threshold,
            timeout,
            gap_wait: Duration::from_millis(config.bus_gap_wait_ms),
            reconnect_max,
            metrics: bus.clone(),
        };
        let reader = Reader {
            target: self.target,
            events: events_tx,
            applied: applied.clone(),
            block: Duration::from_millis(config.bus_poll_interval_ms),
            timeout,
            refresh: Duration::from_millis(config.redis_cluster_refresh_ms),
            reconnect_max,
            compression: received_compression(config),
            metrics: bus.clone(),
            stop: stop.clone(),
        };
        let applier = Applier {
            mesh,
            local: self.local,
            events,
            publish: self.publish_tx,
            open_store,
            store: Some(store),
            applied,
            settings: ApplierSettings {
                gap_wait: Duration::from_millis(config.bus_gap_wait_ms),
                poll_interval: Duration::from_millis(config.bus_poll_interval_ms),
                page: config.commit_batch_max,
                max_parked: config.bus_max_parked,
                compression: config.compression(),
            },
            metrics: bus,
            stop: stop.clone(),
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(f)
                .with_context(|| format!("starting the {name} thread"))
        };
        let threads = vec![
            spawn("gatrix-bus-pub", Box::new(move || publisher.run()))?,
            spawn("gatrix-bus-read", Box::new(move || reader.run()))?,
            spawn("gatrix-bus-apply", Box::new(move || applier.run()))?,
        ];
        tracing::info!(server_id = %config.server_id(), "bus started (Redis)");
        Ok(BusGuard {
            stop,
            threads,
            start,
        })
    }
}

/// The bus's threads.
pub(crate) struct BusGuard {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Each partition's position the applier started after.
    start: Vec<u64>,
}

impl BusGuard {
    /// Each sequencing partition's position the applier started after:
    /// where a recovery session made before the first batch starts.
    pub(crate) fn start(&self) -> &[u64] {
        &self.start
    }

    /// Stops the bus, after the store's writer (whose fan-out feeds the
    /// publisher): the reader and the applier see the flag within a poll
    /// interval, the publisher ends once both senders are gone.
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}
