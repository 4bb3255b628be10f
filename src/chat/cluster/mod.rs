//! Presence, typing and the other ephemeral events across instances
//! (docs/architecture.md, "Several instances: presence and events").
//!
//! With Redis configured, each instance runs two threads of its own, with
//! their own connections (the `redis` crate's sync API), so no shard ever
//! waits on Redis:
//! - the worker (`worker.rs`): this instance's per-user connection counts
//!   and per-channel subscription counts in Redis, behind a lease it
//!   renews ([`scripts`]); answers which change was a cluster-wide 0 <-> 1
//!   edge; reaps dead instances; publishes events.
//! - the subscriber (`pubsub.rs`): the events of the other instances, handed
//!   to the shards; on a Redis Cluster over sharded pub/sub, one connection
//!   per master (`sharded.rs`).
//!
//! Shards reach the worker through one bounded queue ([`Cluster`]); the
//! threads answer through [`Mesh::post_external`]. Events are at-most-once:
//! a full queue or Redis away drops them (counted). Counts are absolute
//! (this instance's count, not a delta), so an update that could not be
//! queued is sent again on the next tick, and after a reconnect the worker
//! asserts all of them again: nothing drifts.

pub(crate) mod metrics;
mod pubsub;
pub(crate) mod scripts;
pub(crate) mod sharded;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use serde::{Deserialize, Serialize};

pub(crate) use metrics::ClusterMetrics;
pub(crate) use scripts::Kind;

use super::Mail;
use crate::mailbox::Mesh;
use crate::redis_link::Target;

/// The pub/sub channel every instance publishes its events on.
pub(crate) const EVENTS: &str = "gatrix:presence:events";

/// What a shard asks of the worker.
#[derive(Debug)]
pub(crate) enum Request {
    /// This instance's count of `field` is now `count` (users: the user's
    /// connections; subs: the user's connections subscribed to a channel).
    Count {
        kind: Kind,
        user: Arc<str>,
        /// The channel, for subscriptions.
        channel: Option<Arc<str>>,
        count: u32,
    },
    /// `user`'s presence list gained (`added`) or lost `channel`.
    Member {
        user: Arc<str>,
        channel: Arc<str>,
        added: bool,
    },
    /// The cluster-wide status of `user`, answered as
    /// [`super::mail::ToUserOwner::Cluster`] without an edge.
    Query { user: Arc<str> },
    /// An event for the other instances.
    Publish(Event),
}

/// An event for the other instances' shards. Frames are the ready
/// Socket.IO text (`42["typing",{…}]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Event {
    /// A frame for every subscriber of `channel` (typing, user_joined,
    /// user_left, message_updated, message_deleted).
    Emit { channel: String, frame: String },
    /// A `presence_update`: for the subscribers of `channels` and of the
    /// receiver's own presence list of the user, and the user's
    /// connections.
    Presence {
        user: String,
        online: bool,
        frame: String,
        channels: Vec<String>,
    },
    /// The channel changed in the store (REST): reload it.
    Invalidate { channel: String },
    /// `user` became (`added`) or stopped being a member of `channel`.
    Member {
        channel: String,
        user: String,
        added: bool,
    },
    /// `user` changed in the user directory (`/api/v1/users`): forget the
    /// copy in memory (`gatrix::Directory`).
    User { user: String },
}

impl Event {
    /// What picks the event's sharded pub/sub partition: its channel, or
    /// its user for a presence update or a directory change.
    pub(crate) fn routing_key(&self) -> &str {
        match self {
            Event::Emit { channel, .. }
            | Event::Invalidate { channel }
            | Event::Member { channel, .. } => channel,
            Event::Presence { user, .. } | Event::User { user } => user,
        }
    }
}

/// An event on the wire, with the instance that sent it (which ignores it).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Envelope {
    #[serde(rename = "o")]
    pub origin: String,
    #[serde(flatten)]
    pub event: Event,
}

/// How to reach Redis and this instance's part in it.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub target: Target,
    pub server_id: String,
    /// The lease period: a dead instance is reaped within it.
    pub lease: Duration,
    /// The bounded queue from the shards to the worker.
    pub queue: usize,
    /// Redis Cluster: the sharded pub/sub partitions of the events.
    pub pubsub_partitions: u32,
    /// Redis Cluster: how often the subscriber reads the slot map again.
    pub refresh: Duration,
    /// REDIS_RECONNECT_MAX_MS: the cap of the threads' reconnect backoff.
    pub reconnect_max: Duration,
    /// The process's user directory: `Event::User` and a reconnection
    /// (events missed) clear entries there.
    pub directory: Arc<crate::chat::gatrix::Directory>,
}

impl Settings {
    /// The lease key's TTL: half the period.
    pub(crate) fn lease_ttl(&self) -> Duration {
        self.lease / 2
    }

    /// How often the lease is renewed and other instances' leases checked:
    /// a sixth of the period, so that a dead instance's lease ends within
    /// half the period and is seen gone within a sixth more.
    pub(crate) fn tick(&self) -> Duration {
        self.lease / 6
    }
}

/// The shards' handle on the threads. Dropping the last one stops them.
pub(crate) struct Cluster {
    tx: Sender<Request>,
    pub(crate) metrics: ClusterMetrics,
    stop: Arc<AtomicBool>,
    /// The last time (ms since start) a full queue was logged.
    logged_full: AtomicU64,
    started: std::time::Instant,
}

impl Cluster {
    /// With Redis configured, starts the threads for this instance.
    pub(crate) fn from_config(
        config: &crate::config::Config,
        mesh: &Arc<Mesh<Mail>>,
        metrics: &crate::metrics::Metrics,
        directory: Arc<crate::chat::gatrix::Directory>,
    ) -> std::io::Result<Option<Arc<Self>>> {
        let target = Target::open(config).map_err(std::io::Error::other)?;
        let Some(target) = target else {
            return Ok(None);
        };
        let settings = Settings {
            target,
            server_id: config.server_id(),
            lease: config.presence_lease(),
            queue: config.presence_queue,
            pubsub_partitions: config.redis_pubsub_partitions,
            refresh: Duration::from_millis(config.redis_cluster_refresh_ms),
            reconnect_max: Duration::from_millis(config.redis_reconnect_max_ms),
            directory,
        };
        Self::start(settings, mesh.clone(), metrics.cluster()).map(Some)
    }

    /// Starts the worker and the subscriber, answering into `mesh`.
    pub(crate) fn start(
        settings: Settings,
        mesh: Arc<Mesh<Mail>>,
        metrics: ClusterMetrics,
    ) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = crossbeam_channel::bounded(settings.queue);
        let stop = Arc::new(AtomicBool::new(false));
        // The worker bumps it on each reconnect: the subscriber then
        // subscribes again too (its idle connection may be a dead one).
        let generation = Arc::new(AtomicU64::new(0));
        let w = worker::Worker::new(
            settings.clone(),
            settings.target.clone(),
            rx,
            mesh.clone(),
            metrics.clone(),
            generation.clone(),
        );
        std::thread::Builder::new()
            .name("presence".into())
            .spawn(move || w.run())?;
        let s = pubsub::Subscriber {
            me: settings.server_id.clone(),
            target: settings.target.clone(),
            mesh,
            metrics: metrics.clone(),
            stop: stop.clone(),
            generation,
            probe: settings.tick(),
            reconnect_max: settings.reconnect_max,
            directory: settings.directory.clone(),
        };
        // On a Redis Cluster, sharded pub/sub (one connection per master);
        // on one server, classic pub/sub (one connection either way, and
        // Redis before 7 keeps working).
        let s = sharded::Sharded {
            inner: s,
            partitions: settings.pubsub_partitions,
            refresh: settings.refresh,
        };
        std::thread::Builder::new()
            .name("presence-sub".into())
            .spawn(move || s.run())?;
        Ok(Arc::new(Self {
            tx,
            metrics,
            stop,
            logged_full: AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
        }))
    }

    /// A handle without threads, for tests of the shards' side: what the
    /// shards queue is read from the receiver.
    #[cfg(test)]
    pub(crate) fn detached(queue: usize) -> (Arc<Self>, crossbeam_channel::Receiver<Request>) {
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let cluster = Arc::new(Self {
            tx,
            metrics: ClusterMetrics::default(),
            stop: Arc::new(AtomicBool::new(false)),
            logged_full: AtomicU64::new(u64::MAX),
            started: std::time::Instant::now(),
        });
        (cluster, rx)
    }

    /// Queues a count update: false when the queue is full (the caller
    /// sends the count again on its next tick).
    pub(crate) fn count(
        &self,
        kind: Kind,
        user: &Arc<str>,
        channel: Option<&Arc<str>>,
        count: u32,
    ) -> bool {
        let req = Request::Count {
            kind,
            user: user.clone(),
            channel: channel.cloned(),
            count,
        };
        let ok = self.try_send(req);
        if !ok {
            self.metrics.deferred.inc();
        }
        ok
    }

    /// Changes `user`'s presence list in Redis (best effort, like events).
    pub(crate) fn member(&self, user: &Arc<str>, channel: &Arc<str>, added: bool) {
        let req = Request::Member {
            user: user.clone(),
            channel: channel.clone(),
            added,
        };
        if !self.try_send(req) {
            self.metrics.dropped.inc();
        }
    }

    /// Asks for `user`'s cluster-wide status; false when the queue is full.
    pub(crate) fn query(&self, user: &Arc<str>) -> bool {
        self.try_send(Request::Query { user: user.clone() })
    }

    /// Publishes `event` to the other instances, at most once.
    pub(crate) fn publish(&self, event: Event) {
        if !self.try_send(Request::Publish(event)) {
            self.metrics.dropped.inc();
        }
    }

    fn try_send(&self, req: Request) -> bool {
        match self.tx.try_send(req) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                // At most one line a second: a full queue is a flood.
                let now = self.started.elapsed().as_millis() as u64;
                let last = self.logged_full.load(Ordering::Relaxed);
                if (last == u64::MAX || now >= last + 1000)
                    && self
                        .logged_full
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(
                        "presence queue full: events dropped, count updates retried \
                         (raise presence_queue, or Redis is slow)"
                    );
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
