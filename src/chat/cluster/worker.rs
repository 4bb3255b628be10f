//! The worker thread: this instance's counts in Redis, its lease, the
//! reaping of dead instances, and publishing (module doc of `cluster`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redis::RedisResult;

use super::scripts::{Kind, Scripts, sub_field};
use super::{ClusterMetrics, EVENTS, Envelope, Event, Request, Settings};
use crate::chat::Mail;
use crate::chat::mail::{ToChannelOwner, ToUserOwner};
use crate::mailbox::Mesh;
use crate::redis_link::{Backoff, Conn, Fault, Target, Timeouts};

mod edges;

/// Requests taken per round before the counts are written, so a flood
/// cannot starve the lease's renewal.
const ROUND: usize = 4096;

/// How often the worker looks whether the `user_left`s that Redis lost
/// may be announced ([`Worker::release_recovered`]).
const RECOVERED_POLL: Duration = Duration::from_millis(250);

/// A count this instance holds: what, whose, in which channel.
type Key = (Kind, Arc<str>, Option<Arc<str>>);

pub(super) struct Worker {
    settings: Settings,
    target: Target,
    rx: Receiver<Request>,
    mesh: Arc<Mesh<Mail>>,
    metrics: ClusterMetrics,
    generation: Arc<AtomicU64>,
    scripts: Scripts,
    /// Every count this instance holds, as last asked by the shards: what
    /// is asserted again after a reconnect or a lost lease.
    counts: HashMap<Key, u32>,
    /// Counts not yet written.
    dirty: HashSet<Key>,
    /// Subscription counts whose last write was above 0: the cluster was
    /// told of them (`user_joined`), so their going must be announced
    /// too, even if Redis lost them meanwhile ([`Worker::flush`]).
    held: HashSet<Key>,
    /// Held subscriptions Redis lost while their user left: `user_left`s
    /// to announce once the events' subscribers are back
    /// ([`Worker::release_recovered`]).
    recovered: HashSet<Key>,
    /// After a reconnect, until when events wait to be published: the
    /// other instances' subscribers reconnect within the backoff's cap
    /// (`REDIS_RECONNECT_MAX_MS`) of Redis being back, and an event
    /// published before they are subscribed reaches nobody.
    hold_until: Option<Instant>,
    /// Users whose cluster-wide status a shard asked for.
    queries: HashSet<Arc<str>>,
    /// Events waiting for this round's publish.
    outbox: Vec<Event>,
    /// Presence list changes waiting for this round, in order.
    members: Vec<(Arc<str>, Arc<str>, bool)>,
    /// Redis Cluster: the shard channels of the events' partitions,
    /// computed at the first publish (their tags take a search each).
    shard_channels: Vec<String>,
}

impl Worker {
    pub(super) fn new(
        settings: Settings,
        target: Target,
        rx: Receiver<Request>,
        mesh: Arc<Mesh<Mail>>,
        metrics: ClusterMetrics,
        generation: Arc<AtomicU64>,
    ) -> Self {
        let ttl = settings.lease_ttl().as_millis() as u64;
        let scripts = Scripts::new(&settings.server_id, ttl.max(1));
        Self {
            settings,
            target,
            rx,
            mesh,
            metrics,
            generation,
            scripts,
            counts: HashMap::new(),
            dirty: HashSet::new(),
            held: HashSet::new(),
            recovered: HashSet::new(),
            hold_until: None,
            queries: HashSet::new(),
            outbox: Vec::new(),
            members: Vec::new(),
            shard_channels: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut backoff = Backoff::new(self.settings.reconnect_max);
        let mut connected_before = false;
        let mut next_tick = Instant::now();
        // A count that would have hidden an edge: taken after the flush.
        let mut held: Option<Request> = None;
        loop {
            if conn.is_none() && backoff.ready(Instant::now()) {
                match self.connect(connected_before) {
                    Ok(c) => {
                        conn = Some(c);
                        if connected_before {
                            self.metrics.reconnects.inc();
                            let hold = self.settings.reconnect_max * 3 / 2;
                            self.hold_until = Some(Instant::now() + hold);
                        }
                        connected_before = true;
                        backoff.succeeded();
                        next_tick = Instant::now() + self.settings.tick();
                    }
                    Err(e) => {
                        let now = Instant::now();
                        backoff.failed(now);
                        tracing::warn!(error = %e, fault = %Fault::of(&e),
                            retry_in_ms = backoff.remaining(now).as_millis() as u64,
                            "presence: cannot reach Redis");
                    }
                }
            }
            let waiting = !self.recovered.is_empty() || !self.outbox.is_empty();
            let wake = if conn.is_some() && waiting {
                // Events held for the subscribers: looked at often, not
                // once a tick (a sixth of the lease).
                next_tick.min(Instant::now() + RECOVERED_POLL)
            } else if conn.is_some() {
                next_tick
            } else {
                Instant::now() + backoff.remaining(Instant::now())
            };
            // Counts left over from a bounded round: no waiting.
            let wait = if conn.is_some() && !self.dirty.is_empty() {
                Duration::ZERO
            } else {
                wake.saturating_duration_since(Instant::now())
            };
            // A request held back by the last round goes first, at once.
            let first = match held.take() {
                Some(req) => Ok(req),
                None => self.rx.recv_timeout(wait),
            };
            match first {
                Ok(req) => {
                    let connected = conn.is_some();
                    held = self.take(req, connected);
                    for _ in 0..ROUND {
                        if held.is_some() {
                            break;
                        }
                        match self.rx.try_recv() {
                            Ok(req) => held = self.take(req, connected),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every shard is gone: the process is stopping.
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let Some(c) = conn.as_mut() else {
                // Redis away: events are dropped (at-most-once); counts and
                // queries wait in `counts` / for the shards' retries.
                let lost = self.outbox.len() + self.members.len();
                self.metrics.dropped.inc_by(lost as u64);
                self.outbox.clear();
                self.members.clear();
                self.queries.clear();
                continue;
            };
            let mut result = self.flush(c);
            if result.is_ok() && Instant::now() >= next_tick {
                next_tick = Instant::now() + self.settings.tick();
                result = self.tick(c);
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, fault = %Fault::of(&e), "presence: Redis failed; reconnecting");
                self.metrics.lease.set(0);
                conn = None;
                backoff.failed(Instant::now());
            }
        }
    }

    /// Connects, clears this instance's leftovers from an earlier run under
    /// the same id (on the first connection), takes the lease, asserts
    /// every count again, and (on a reconnect) tells the shards to drop
    /// their channel caches and re-read presence: events were missed.
    fn connect(&mut self, reconnect: bool) -> RedisResult<Conn> {
        // A paused Redis must not hold the thread past the lease.
        let mut c = self
            .target
            .connect(Timeouts::all(self.settings.lease_ttl()))?;
        if !reconnect {
            let leftovers = self.scripts.reap(&mut c, true)?;
            self.announce_reaped(&mut c, leftovers)?;
        }
        self.scripts.renew(&mut c)?;
        self.metrics.lease.set(1);
        self.dirty.extend(self.counts.keys().cloned());
        if reconnect {
            self.generation.fetch_add(1, Ordering::Relaxed);
            for shard in 0..self.mesh.shards() {
                self.mesh
                    .post_external(shard, ToChannelOwner::Reconnected.into());
                self.mesh.post_external(shard, ToUserOwner::Reread.into());
            }
        }
        tracing::info!(server_id = %self.settings.server_id, "presence: connected to Redis");
        Ok(c)
    }

    /// Takes a shard's request into this round, or hands it back when it
    /// must wait for the round's flush: a count whose zero-ness differs
    /// from the one still waiting to be written for the same key. Counts
    /// are absolute, so overwriting would hide an edge: a connection
    /// opened and closed within one round (0 -> 1 -> 0 written as 0)
    /// would announce neither its `user_joined` nor its `user_left`; a
    /// quick reconnection (1 -> 0 -> 1) neither its offline nor its
    /// online. Flushing first writes both crossings, and Redis answers
    /// each one's edge. Without a connection nothing is written (events
    /// are dropped meanwhile), so the count is simply overwritten.
    fn take(&mut self, req: Request, connected: bool) -> Option<Request> {
        match req {
            Request::Count {
                kind,
                user,
                channel,
                count,
            } => {
                let key = (kind, user, channel);
                if connected && self.dirty.contains(&key) {
                    let pending = self.counts.get(&key).copied().unwrap_or(0);
                    if (pending == 0) != (count == 0) {
                        let (kind, user, channel) = key;
                        return Some(Request::Count {
                            kind,
                            user,
                            channel,
                            count,
                        });
                    }
                }
                self.counts.insert(key.clone(), count);
                self.dirty.insert(key);
            }
            Request::Member {
                user,
                channel,
                added,
            } => self.members.push((user, channel, added)),
            Request::Query { user } => {
                self.queries.insert(user);
            }
            Request::Publish(e) => self.outbox.push(e),
        }
        None
    }

    /// Writes the dirty counts (answering each change's edge), answers the
    /// queries and publishes the events.
    fn flush(&mut self, c: &mut Conn) -> RedisResult<()> {
        self.release_recovered(Instant::now());
        // Lists first: a join's channel is in the list its user's next
        // edge announces to.
        for (user, channel, added) in std::mem::take(&mut self.members) {
            self.scripts.member(c, &user, &channel, added)?;
        }
        let mut lost = false;
        // At most a round per call: a reconnect asserting every count
        // must not hold back the lease's renewal.
        let round: Vec<Key> = self.dirty.iter().take(ROUND).cloned().collect();
        for key in round {
            let count = self.counts.get(&key).copied().unwrap_or(0);
            let (kind, user, channel) = &key;
            let field = match channel {
                Some(ch) => sub_field(ch, user),
                None => user.to_string(),
            };
            let changed = self.scripts.set(c, *kind, &field, count)?;
            let totals = changed.totals;
            let was_held = match (kind, count) {
                (Kind::Subs, 0) => self.held.remove(&key),
                (Kind::Subs, _) => {
                    self.held.insert(key.clone());
                    // Back before its leave was announced: none is due.
                    self.recovered.remove(&key);
                    false
                }
                (Kind::Users, _) => false,
            };
            if was_held && totals.before == 0 && totals.after == 0 {
                // Redis no longer had the subscription the cluster was
                // told of: it came back empty (a restart without
                // persistence, a whole Redis Cluster down) or this
                // instance was reaped, and the user left meanwhile. The
                // `user_left` is this instance's to announce, or nobody's:
                // the other instances' subscribers would keep the user in
                // the channel for good. (After a reap the reaper announced
                // it already: a repeated `user_left` is harmless, a
                // missing one is not.) Not now: Redis is just back, and
                // the others' subscribers may not be subscribed yet, so an
                // event now could reach nobody. Presence needs no such
                // help: each instance re-reads its users' status after a
                // reconnect.
                self.recovered.insert(key.clone());
            }
            self.dirty.remove(&key);
            if count == 0 {
                self.counts.remove(&key);
            }
            lost |= totals.lost;
            self.answer(&key, totals, changed.list);
        }
        if lost {
            // The lease had expired: the others may have reaped this
            // instance's counts. Assert them all again.
            tracing::warn!("presence: the lease had expired; asserting every count again");
            self.dirty.extend(self.counts.keys().cloned());
        }
        for user in std::mem::take(&mut self.queries) {
            let total = self.scripts.query(c, Kind::Users, &user)?;
            self.to_user(user, total > 0, None, Vec::new());
        }
        if self.holding(Instant::now()) {
            // Kept for after the hold, the newest at most a queue's worth.
            let excess = self.outbox.len().saturating_sub(self.settings.queue);
            if excess > 0 {
                self.outbox.drain(..excess);
                self.metrics.dropped.inc_by(excess as u64);
            }
            return Ok(());
        }
        if !self.outbox.is_empty() {
            let mut texts = Vec::with_capacity(self.outbox.len());
            let outbox = std::mem::take(&mut self.outbox);
            for event in &outbox {
                let envelope = Envelope {
                    origin: self.settings.server_id.clone(),
                    event: event.clone(),
                };
                match serde_json::to_string(&envelope) {
                    // On a cluster, the shard channel of its partition.
                    Ok(text) => texts.push((self.channel_of(event), text)),
                    Err(_) => {
                        self.metrics.dropped.inc();
                    }
                }
            }
            let n = outbox.len() as u64;
            let sent = match c {
                Conn::Cluster(_) => c.spublish_each(texts),
                Conn::Single(_) => {
                    c.publish_all(EVENTS, texts.into_iter().map(|(_, t)| t).collect())
                }
            };
            match sent {
                Ok(()) => {
                    self.metrics.published.inc_by(n);
                }
                Err(e) => {
                    self.metrics.dropped.inc_by(n);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Whether events still wait for the other instances' subscribers
    /// after a reconnect ([`Worker::hold_until`]).
    fn holding(&mut self, now: Instant) -> bool {
        match self.hold_until {
            Some(t) if now < t => true,
            Some(_) => {
                self.hold_until = None;
                false
            }
            None => false,
        }
    }

    /// Announces the `user_left`s of [`Worker::recovered`] once the hold
    /// after the reconnect is over. Still at most once, as every event: a
    /// subscriber away longer misses them.
    fn release_recovered(&mut self, now: Instant) {
        if self.recovered.is_empty() || self.holding(now) {
            return;
        }
        for (_, user, channel) in std::mem::take(&mut self.recovered) {
            if let Some(channel) = channel {
                self.sub_edge(channel, user, false);
            }
        }
    }

    /// Renews the lease and reaps instances whose lease expired.
    fn tick(&mut self, c: &mut Conn) -> RedisResult<()> {
        if self.scripts.renew(c)? {
            tracing::warn!("presence: the lease had expired; asserting every count again");
            self.dirty.extend(self.counts.keys().cloned());
        }
        let reaped = self.scripts.reap(c, false)?;
        if reaped.instances > 0 {
            tracing::info!(
                instances = reaped.instances,
                edges = reaped.gone.len(),
                "presence: reaped instances whose lease expired"
            );
            self.metrics.reaped.inc_by(reaped.instances);
        }
        self.announce_reaped(c, reaped)
    }
}

impl Worker {
    /// The shard channel of `event` (a Redis Cluster's sharded pub/sub);
    /// unused on one server.
    fn channel_of(&mut self, event: &super::Event) -> String {
        let n = self.settings.pubsub_partitions;
        if self.shard_channels.is_empty() {
            self.shard_channels = super::sharded::shard_channels(n);
        }
        let p = super::sharded::partition_of(event.routing_key(), n) as usize;
        self.shard_channels.get(p).cloned().unwrap_or_default()
    }
}
