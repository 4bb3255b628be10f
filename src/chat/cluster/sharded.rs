//! The subscriber on a Redis Cluster: sharded pub/sub (Redis 7).
//!
//! Classic PUBLISH on a cluster is broadcast to every node, so every node
//! carries every instance's events. Here the events go over
//! `REDIS_PUBSUB_PARTITIONS` shard channels ([`shard_channel`]: spread
//! hash tags, so they spread over the masters), an event's partition from
//! its channel or user ([`partition_of`]); SPUBLISH reaches only the
//! master owning the channel's slot (and its replicas).
//!
//! The subscriber reads the slot map (CLUSTER SLOTS), groups the
//! partitions by master and holds ONE connection per master, subscribed
//! (SSUBSCRIBE, one command per slot: a command names channels of one
//! slot) to the partitions that master owns; one thread per master. The
//! topology is ours to follow:
//! - an unsolicited `sunsubscribe` from a node means the slot left it: the
//!   round ends, the map is read again, every connection subscribes anew
//!   on the slots' new owners. We never send SUNSUBSCRIBE (the server may
//!   send its own meanwhile): a connection is closed instead.
//! - a connection error, or a PING left unanswered for a probe period on
//!   a quiet connection (a stopped node), ends the round too; so does a
//!   slot map, read every `REDIS_CLUSTER_REFRESH_MS`, that names another
//!   master for a partition (a failover).
//!
//! After each new round the shards drop their channel caches and re-read
//! presence (events were missed: they are at most once), as after the
//! classic subscriber's reconnects.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::{RedisError, Value};

use super::pubsub::Subscriber;
use crate::redis_link::resp::RawConn;
use crate::redis_link::slots;
use crate::redis_link::topology::{self, Node, SlotMap};
use crate::redis_link::{Backoff, Fault, Target};

/// Every shard channel starts with this.
pub(crate) const SHARD_PREFIX: &str = "gatrix:ev:";

/// Partition `p` of `n`'s shard channel.
pub(crate) fn shard_channel(p: u32, n: u32) -> String {
    format!("{SHARD_PREFIX}{{{}}}:{p}", slots::spread_tag(p, n))
}

/// Every partition's shard channel, computed once per thread.
pub(crate) fn shard_channels(n: u32) -> Vec<String> {
    (0..n.max(1)).map(|p| shard_channel(p, n.max(1))).collect()
}

/// The partition of an event keyed by `key` (its channel or user).
pub(crate) fn partition_of(key: &str, n: u32) -> u32 {
    u32::from(slots::slot(key.as_bytes())) % n.max(1)
}

/// A slot and its shard channels: one SSUBSCRIBE.
type SlotChannels<'a> = (u16, Vec<&'a str>);

/// How one master's connection ended.
enum End {
    Stopped,
    /// The server unsubscribed us from a channel: its slot moved.
    Moved(String),
    Failed(RedisError),
}

pub(super) struct Sharded {
    pub inner: Subscriber,
    pub partitions: u32,
    /// How often the slot map is read again while every connection works.
    pub refresh: Duration,
}

impl Sharded {
    pub(super) fn run(self) {
        let Target::Cluster(seeds) = &self.inner.target else {
            return self.inner.run();
        };
        let channels = shard_channels(self.partitions);
        let mut backoff = Backoff::new(self.inner.reconnect_max);
        let mut map: Option<SlotMap> = None;
        let mut first = true;
        let timeout = self.inner.probe * 3;
        while !self.inner.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if !backoff.ready(now) {
                std::thread::sleep(backoff.remaining(now).min(Duration::from_millis(200)));
                continue;
            }
            let conns = topology::read_slot_map(seeds, map.as_ref(), timeout).and_then(|m| {
                self.inner.metrics.slot_map_refreshes.inc();
                let conns = self.subscribe_all(seeds, &m, &channels, timeout);
                map = Some(m);
                conns
            });
            let conns = match conns {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, fault = %Fault::of(&e), "presence: sharded subscription failed; retrying");
                    backoff.failed(now);
                    continue;
                }
            };
            backoff.succeeded();
            self.inner.metrics.subscribed.set(1);
            if !first {
                self.inner.metrics.resubscribes.inc();
                self.inner.resync();
            }
            first = false;
            let over = AtomicBool::new(false);
            let generation = self.inner.generation.load(Ordering::Relaxed);
            let ends: Vec<(Node, End)> = std::thread::scope(|s| {
                let this = &self;
                let threads: Vec<_> = conns
                    .into_iter()
                    .map(|(node, conn)| {
                        let over = &over;
                        s.spawn(move || {
                            let end = this.listen(conn, over);
                            over.store(true, Ordering::Relaxed);
                            (node, end)
                        })
                    })
                    .collect();
                self.watch(&over, seeds, map.as_ref(), &channels, generation, timeout);
                threads.into_iter().filter_map(|t| t.join().ok()).collect()
            });
            // Events are missed until the next round subscribed.
            self.inner.metrics.subscribed.set(0);
            for (node, end) in ends {
                match end {
                    End::Stopped => {}
                    End::Moved(ch) => {
                        tracing::info!(%node, channel = %ch, "presence: a shard channel's slot moved; subscribing on its new owner")
                    }
                    End::Failed(e) => {
                        tracing::warn!(error = %e, fault = %Fault::of(&e), %node, "presence: a node's subscription was lost; subscribing again");
                        backoff.failed(Instant::now());
                    }
                }
            }
        }
    }

    /// One connection per master of `map`, subscribed to the channels of
    /// the slots it owns.
    fn subscribe_all(
        &self,
        seeds: &[redis::Client],
        map: &SlotMap,
        channels: &[String],
        timeout: Duration,
    ) -> redis::RedisResult<Vec<(Node, RawConn)>> {
        // Per master, per slot, its channels.
        let mut by_node: Vec<(Node, Vec<SlotChannels<'_>>)> = Vec::new();
        for ch in channels {
            let slot = slots::slot(ch.as_bytes());
            let Some(node) = map.master_of(slot) else {
                return Err(cluster_down());
            };
            let i = match by_node.iter().position(|(n, _)| n == node) {
                Some(i) => i,
                None => {
                    by_node.push((node.clone(), Vec::new()));
                    by_node.len() - 1
                }
            };
            let slots = &mut by_node[i].1;
            match slots.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, chs)) => chs.push(ch),
                None => slots.push((slot, vec![ch])),
            }
        }
        let like = seeds.first().ok_or_else(cluster_down)?;
        let mut conns = Vec::with_capacity(by_node.len());
        for (node, slots) in by_node {
            let mut conn = RawConn::connect(&node.host, node.port, like, timeout)?;
            let mut expected = 0;
            for (_, chs) in &slots {
                let mut cmd = redis::cmd("SSUBSCRIBE");
                for ch in chs {
                    cmd.arg(*ch);
                }
                conn.send(&cmd)?;
                expected += chs.len();
            }
            // One `ssubscribe` confirmation per channel; an error (MOVED:
            // the map is already stale) fails the round.
            while expected > 0 {
                if let Value::Array(items) = conn.read()? {
                    match kind(&items) {
                        Some(b"ssubscribe") => expected -= 1,
                        Some(b"smessage") => {
                            if let Some(Value::BulkString(payload)) = items.get(2) {
                                self.inner.deliver(payload);
                            }
                        }
                        _ => {}
                    }
                }
            }
            conn.set_read_timeout(self.inner.probe)?;
            conns.push((node, conn));
        }
        Ok(conns)
    }

    /// One master's events until the round is over, its connection fails
    /// or the server unsubscribes it.
    fn listen(&self, mut conn: RawConn, over: &AtomicBool) -> End {
        // A PING sent and not answered yet.
        let mut probing = false;
        while !over.load(Ordering::Relaxed) && !self.inner.stop.load(Ordering::Relaxed) {
            match conn.read() {
                Ok(Value::Array(items)) => match kind(&items) {
                    Some(b"smessage") => {
                        if let Some(Value::BulkString(payload)) = items.get(2) {
                            self.inner.deliver(payload);
                        }
                    }
                    Some(b"pong") => probing = false,
                    Some(b"sunsubscribe") => {
                        self.inner.metrics.slot_moves.inc();
                        let ch = match items.get(1) {
                            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                            _ => String::new(),
                        };
                        return End::Moved(ch);
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(e) if e.is_timeout() => {
                    if probing {
                        // A probe period without the PING's answer: the
                        // node is stopped or the link is dead.
                        self.inner.metrics.probes_failed.inc();
                        return End::Failed(e);
                    }
                    if let Err(e) = conn.send(&redis::cmd("PING")) {
                        return End::Failed(e);
                    }
                    probing = true;
                }
                Err(e) => return End::Failed(e),
            }
        }
        End::Stopped
    }

    /// Ends the round on stop, on the worker's reconnect, or when the slot
    /// map names another master for a partition.
    fn watch(
        &self,
        over: &AtomicBool,
        seeds: &[redis::Client],
        map: Option<&SlotMap>,
        channels: &[String],
        generation: u64,
        timeout: Duration,
    ) {
        let mut next = Instant::now() + self.refresh;
        while !over.load(Ordering::Relaxed) {
            if self.inner.stop.load(Ordering::Relaxed)
                || self.inner.generation.load(Ordering::Relaxed) != generation
            {
                over.store(true, Ordering::Relaxed);
                break;
            }
            if Instant::now() >= next {
                next = Instant::now() + self.refresh;
                if let Ok(now) = topology::read_slot_map(seeds, map, timeout) {
                    self.inner.metrics.slot_map_refreshes.inc();
                    if channels
                        .iter()
                        .any(|c| now.master_of_key(c) != map.and_then(|m| m.master_of_key(c)))
                    {
                        tracing::info!("presence: the slot map changed; subscribing anew");
                        over.store(true, Ordering::Relaxed);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A pub/sub reply's kind (its first element), lower case as Redis sends.
fn kind(items: &[Value]) -> Option<&[u8]> {
    match items.first() {
        Some(Value::BulkString(b)) => Some(b.as_slice()),
        _ => None,
    }
}

fn cluster_down() -> RedisError {
    (
        redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
        "a shard channel's slot has no master",
    )
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_channels_spread_and_events_pick_one() {
        let chs = shard_channels(64);
        assert_eq!(chs.len(), 64);
        let mut slots: Vec<u16> = chs.iter().map(|c| slots::slot(c.as_bytes())).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), 64, "one slot each");
        // Over three equal masters, 21 or 22 each.
        let mut per = [0; 3];
        for s in &slots {
            per[usize::from(*s) * 3 / usize::from(slots::SLOTS)] += 1;
        }
        assert!(per.iter().all(|n| (21..=22).contains(n)), "{per:?}");
        assert_eq!(partition_of("room", 64), partition_of("room", 64));
        assert!(partition_of("room", 64) < 64);
        assert_eq!(partition_of("x", 0), 0);
    }
}
