//! The log reader thread: XREAD BLOCK on every partition's stream, on a
//! connection of its own, from what this instance applied; each entry
//! decoded (rkyv, zstd) into a batch for the applier.
//!
//! It tells the applier when Redis goes away ([`Event::Down`]: the applier
//! polls the store) and when it is back ([`Event::Up`]), and reconnects
//! with backoff by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use redis::Commands as _;
use redis::streams::{StreamReadOptions, StreamReadReply};

use super::batch::Batch;
use super::envelope;
use super::script::PartitionKeys;
use crate::metrics::BusMetrics;
use crate::protocol::deflate::Settings;
use crate::redis_link::{Backoff, Conn, Fault, Target, Timeouts};

/// Entries taken per XREAD and stream.
const READ_COUNT: usize = 256;

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
    pub compression: Settings,
    pub metrics: BusMetrics,
    pub stop: Arc<AtomicBool>,
}

impl Reader {
    pub(crate) fn run(self) {
        // One XREAD over every stream: on a Redis Cluster that needs them
        // in one slot, which holds while Redis allows one partition
        // (`Config::bus_problems`).
        let keys: Vec<String> = PartitionKeys::all(self.applied.len() as u32)
            .into_iter()
            .map(|k| k.stream)
            .collect();
        // Per partition, the last entry id read (a `pos`).
        let mut cursors: Vec<u64> = vec![0; keys.len()];
        let mut conn: Option<Conn> = None;
        let mut backoff = Backoff::new();
        // Down until the first connection: the applier polls meanwhile.
        let mut up = false;
        let block_ms = self.block.as_millis().max(1) as usize;
        let options = StreamReadOptions::default()
            .block(block_ms)
            .count(READ_COUNT);
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_mut() else {
                let now = Instant::now();
                if !backoff.ready(now) {
                    // Short naps: the stop flag is checked between them.
                    std::thread::sleep(backoff.remaining(now).min(self.block));
                    continue;
                }
                let timeouts = Timeouts {
                    read: self.block + self.timeout,
                    ..Timeouts::all(self.timeout)
                };
                match self.target.connect(timeouts) {
                    Ok(c) => {
                        backoff.succeeded();
                        conn = Some(c);
                        if !up && self.events.send(Event::Up).is_err() {
                            return;
                        }
                        up = true;
                        self.metrics.connected.set(1);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, fault = %Fault::of(&e), "bus reader: Redis unreachable");
                        backoff.failed(now);
                    }
                }
                continue;
            };
            let ids: Vec<String> = cursors
                .iter()
                .zip(self.applied.iter())
                .map(|(read, applied)| {
                    format!("{}-0", (*read).max(applied.load(Ordering::Relaxed)))
                })
                .collect();
            match c.xread_options(&keys, &ids, &options) {
                Ok(Some(StreamReadReply { keys: streams })) => {
                    for stream in streams {
                        let Some(p) = keys.iter().position(|k| *k == stream.key) else {
                            continue;
                        };
                        for entry in stream.ids {
                            if let Some(pos) = entry_pos(&entry.id) {
                                cursors[p] = cursors[p].max(pos);
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
                                        return;
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
                Ok(None) => {} // nothing new within the block time
                Err(e) => {
                    tracing::warn!(error = %e, fault = %Fault::of(&e), "bus reader: Redis lost; the store is polled until it is back");
                    conn = None;
                    backoff.failed(Instant::now());
                    self.metrics.connected.set(0);
                    if up && self.events.send(Event::Down).is_err() {
                        return;
                    }
                    up = false;
                }
            }
        }
    }
}

/// The `pos` of an entry id `<pos>-0`.
fn entry_pos(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}
