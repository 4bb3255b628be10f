//! The log reader: XREAD BLOCK on the partitions' streams from what this
//! instance applied, each entry decoded (rkyv, zstd) into a batch for the
//! applier.
//!
//! On a Redis Cluster the partitions' streams (spread hash tags) live on
//! several masters, and one XREAD may only name keys of one slot (a
//! cluster refuses CROSSSLOT even when one node owns every slot named):
//! the reader groups the partitions by slot, finds each slot's master in
//! a slot map read by us (`redis_link::topology`), and runs one thread per
//! group, each with one plain connection to its master, one XREAD BLOCK
//! over the group's partitions (one each with spread tags). A MOVED or ASK (the slot left), a broken
//! or silent connection (a failover, a stopped node: the read timeout is
//! the block time plus the Redis timeout) or a changed slot map (re-read
//! every `REDIS_CLUSTER_REFRESH_MS`) ends the round: every group stops,
//! the map is read again, the groups are formed anew and resume from the
//! same cursors. On one Redis server there is one group.
//!
//! It tells the applier when the log stops ([`Event::Down`]: the applier
//! polls the store) and when every group read again ([`Event::Up`]), and
//! reconnects with backoff by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{Commands as _, RedisError};

use super::batch::Batch;
use super::envelope;
use super::script::PartitionKeys;
use crate::metrics::BusMetrics;
use crate::protocol::deflate::Settings;
use crate::redis_link::topology::{Node, SlotMap};
use crate::redis_link::{Backoff, Fault, NodeGroup, Target, Timeouts};

/// Entries taken per XREAD and stream.
const READ_COUNT: usize = 256;

/// How often the round's watcher looks at the stop flag and the groups.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// What the reader tells the applier.
#[derive(Debug)]
pub(crate) enum Event {
    Batch(Batch),
    /// Connected (at start, or again after [`Event::Down`]).
    Up,
    /// Redis is away: nothing comes from the log until [`Event::Up`].
    Down,
}

pub(crate) struct Reader {
    pub target: Target,
    pub events: Sender<Event>,
    /// Per partition, the last `pos` the applier applied (it moves on
    /// without the log too: gap fills, polling).
    pub applied: Arc<[AtomicU64]>,
    pub block: Duration,
    pub timeout: Duration,
    /// REDIS_CLUSTER_REFRESH_MS: how often the slot map is read again
    /// while every group reads (a cluster only).
    pub refresh: Duration,
    /// REDIS_RECONNECT_MAX_MS: the cap of its reconnect backoff.
    pub reconnect_max: Duration,
    pub compression: Settings,
    pub metrics: BusMetrics,
    pub stop: Arc<AtomicBool>,
}

/// How a group's thread ended.
enum GroupEnd {
    /// The stop flag, or another group ended the round.
    Stopped,
    /// The applier is gone: the reader ends.
    Closed,
    /// Its node failed it (a redirect, an error, no answer in time).
    Failed(RedisError),
}

/// What the groups of one round share.
struct Round<'a> {
    keys: &'a [String],
    cursors: &'a [AtomicU64],
    /// Set by the first group that ends, to end the others.
    over: AtomicBool,
    /// Groups that completed a read this round: the last one tells the
    /// applier the log is up.
    read_once: AtomicUsize,
    groups: usize,
    up: &'a AtomicBool,
}

impl Reader {
    pub(crate) fn run(self) {
        let keys: Vec<String> = PartitionKeys::all(self.applied.len() as u32)
            .into_iter()
            .map(|k| k.stream)
            .collect();
        // Per partition, the last entry id read (a `pos`): kept across
        // rounds, so regrouped partitions resume where they were.
        let cursors: Vec<AtomicU64> = keys.iter().map(|_| AtomicU64::new(0)).collect();
        let mut backoff = Backoff::new(self.reconnect_max);
        let mut map: Option<SlotMap> = None;
        // Down until every group read once: the applier polls meanwhile.
        let up = AtomicBool::new(false);
        let timeouts = Timeouts {
            read: self.block + self.timeout,
            ..Timeouts::all(self.timeout)
        };
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if !backoff.ready(now) {
                // Short naps: the stop flag is checked between them.
                std::thread::sleep(backoff.remaining(now).min(self.block));
                continue;
            }
            let groups = self
                .target
                .by_node(&keys, map.as_ref(), self.timeout)
                .and_then(|(groups, read)| {
                    if let Some(read) = read {
                        self.metrics.slot_map_refreshes.inc();
                        map = Some(read);
                    }
                    groups
                        .into_iter()
                        .map(|g| g.connect(timeouts).map(|c| (g, c)))
                        .collect::<Result<Vec<_>, _>>()
                });
            let groups = match groups {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, fault = %Fault::of(&e), "bus reader: Redis unreachable; the store is polled until it is back");
                    backoff.failed(now);
                    if !self.went_down(&up) {
                        return;
                    }
                    continue;
                }
            };
            self.metrics.reader_connections.set(groups.len() as i64);
            let round = Round {
                keys: &keys,
                cursors: &cursors,
                over: AtomicBool::new(false),
                read_once: AtomicUsize::new(0),
                groups: groups.len(),
                up: &up,
            };
            let ends: Vec<(Option<Node>, GroupEnd)> = std::thread::scope(|s| {
                let this = &self;
                let threads: Vec<_> = groups
                    .into_iter()
                    .map(|(g, c)| {
                        let (round, this) = (&round, this);
                        s.spawn(move || {
                            let end = this.read_group(&g, c, round);
                            round.over.store(true, Ordering::Relaxed);
                            (g.node, end)
                        })
                    })
                    .collect();
                self.watch_slot_map(&round, map.as_ref());
                threads.into_iter().filter_map(|t| t.join().ok()).collect()
            });
            let mut failed = false;
            for (node, end) in ends {
                match end {
                    GroupEnd::Closed => return,
                    GroupEnd::Stopped => {}
                    GroupEnd::Failed(e) => {
                        let node = node.map(|n| n.to_string()).unwrap_or_default();
                        tracing::warn!(error = %e, fault = %Fault::of(&e), %node, "bus reader: a node's read failed; regrouping the partitions by the slot map");
                        failed = true;
                    }
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.metrics.reader_regroups.inc();
            if round.read_once.load(Ordering::Relaxed) == round.groups {
                backoff.succeeded();
            }
            if failed {
                // A redirect, a failover or a stopped node: the log is
                // not read until the next round reads once (the applier
                // polls meanwhile); the map is read again after the
                // backoff (the first wait is short, and a seed with a
                // stale map cannot make it a busy loop).
                backoff.failed(Instant::now());
                if !self.went_down(&up) {
                    return;
                }
            }
        }
    }

    /// Tells the applier the log stopped, if it was up; false if the
    /// applier is gone.
    fn went_down(&self, up: &AtomicBool) -> bool {
        self.metrics.connected.set(0);
        !(up.swap(false, Ordering::Relaxed) && self.events.send(Event::Down).is_err())
    }

    /// While the round's groups read: ends the round when the stop flag is
    /// set, or when the slot map, read every refresh interval, no longer
    /// says what `map` (the round's) said about the partitions' keys.
    fn watch_slot_map(&self, round: &Round<'_>, map: Option<&SlotMap>) {
        let Target::Cluster(seeds) = &self.target else {
            while !round.over.load(Ordering::Relaxed) {
                if self.stop.load(Ordering::Relaxed) {
                    round.over.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(STOP_CHECK);
            }
            return;
        };
        let mut next = Instant::now() + self.refresh;
        while !round.over.load(Ordering::Relaxed) {
            if self.stop.load(Ordering::Relaxed) {
                round.over.store(true, Ordering::Relaxed);
                break;
            }
            if Instant::now() >= next {
                next = Instant::now() + self.refresh;
                if let Ok(now) =
                    crate::redis_link::topology::read_slot_map(seeds, map, self.timeout)
                {
                    self.metrics.slot_map_refreshes.inc();
                    let moved = round
                        .keys
                        .iter()
                        .any(|k| now.master_of_key(k) != map.and_then(|m| m.master_of_key(k)));
                    if moved {
                        tracing::info!(
                            "bus reader: the slot map changed; regrouping the partitions"
                        );
                        round.over.store(true, Ordering::Relaxed);
                    }
                }
            }
            std::thread::sleep(STOP_CHECK);
        }
    }

    /// One group's reads until its node fails it or the round is over.
    fn read_group(
        &self,
        group: &NodeGroup,
        mut conn: redis::Connection,
        round: &Round<'_>,
    ) -> GroupEnd {
        let keys: Vec<&str> = group
            .members
            .iter()
            .map(|i| round.keys[*i].as_str())
            .collect();
        let block_ms = self.block.as_millis().max(1) as usize;
        let options = StreamReadOptions::default()
            .block(block_ms)
            .count(READ_COUNT);
        let mut first = true;
        while !round.over.load(Ordering::Relaxed) && !self.stop.load(Ordering::Relaxed) {
            let ids: Vec<String> = group
                .members
                .iter()
                .map(|p| {
                    let read = round.cursors[*p].load(Ordering::Relaxed);
                    format!("{}-0", read.max(self.applied[*p].load(Ordering::Relaxed)))
                })
                .collect();
            let reply: Option<StreamReadReply> = match conn.xread_options(&keys, &ids, &options) {
                Ok(r) => r,
                Err(e) => return GroupEnd::Failed(e),
            };
            if first {
                first = false;
                // Every group read once: the log is up again.
                if round.read_once.fetch_add(1, Ordering::Relaxed) + 1 == round.groups
                    && !round.up.swap(true, Ordering::Relaxed)
                {
                    self.metrics.connected.set(1);
                    if self.events.send(Event::Up).is_err() {
                        return GroupEnd::Closed;
                    }
                }
            }
            let Some(StreamReadReply { keys: streams }) = reply else {
                continue; // nothing new within the block time
            };
            for stream in streams {
                let Some(p) = group
                    .members
                    .iter()
                    .copied()
                    .find(|p| round.keys[*p] == stream.key)
                else {
                    continue;
                };
                for entry in stream.ids {
                    if let Some(pos) = entry_pos(&entry.id) {
                        round.cursors[p].fetch_max(pos, Ordering::Relaxed);
                        // Applied already (this instance's own
                        // batches, mostly): not even decoded.
                        if pos <= self.applied[p].load(Ordering::Relaxed) {
                            self.metrics.duplicates_dropped.inc();
                            continue;
                        }
                    }
                    let bytes: Option<Vec<u8>> = entry.get("b");
                    let batch = bytes
                        .ok_or(envelope::EnvelopeError::Empty)
                        .and_then(|b| envelope::decode(&b))
                        .and_then(|e| envelope::to_batch(e, self.compression));
                    match batch {
                        Ok(mut b) => {
                            b.partition = p as u32;
                            if self.events.send(Event::Batch(b)).is_err() {
                                return GroupEnd::Closed;
                            }
                        }
                        // Its positions are filled from the store.
                        Err(e) => tracing::warn!(
                            error = %e, id = %entry.id, "bus reader: entry skipped"
                        ),
                    }
                }
            }
        }
        GroupEnd::Stopped
    }
}

/// The `pos` of an entry id `<pos>-0`.
fn entry_pos(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
