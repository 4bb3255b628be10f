//! The publisher thread: appends this instance's batches (its commits and
//! its gap fills) to the log, one script call each ([`super::script`]).
//!
//! It is fed over a bounded channel that the writer never waits on: when
//! it is behind, or Redis is away (it then drops what comes until its next
//! reconnect attempt), a batch is dropped and counted, and the readers
//! fill the gap from the store. Nothing here delays an ack.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::batch::Span;
use super::envelope;
use super::script::{self, Appended, Limits, PartitionKeys};
use crate::metrics::BusMetrics;
use crate::redis_link::{Backoff, Conn, Fault, Target, Timeouts};

pub(crate) struct Publisher {
    pub target: Target,
    /// Bounded in batches and bytes ([`super::queue`]).
    pub batches: super::queue::PublishRx,
    /// The sequencing partitions (their keys' hash tags depend on it).
    pub partitions: u32,
    pub limits: Limits,
    pub zstd_threshold: usize,
    pub timeout: Duration,
    /// How long this publisher's batches may stay parked behind a gap
    /// before the next one is forced past it.
    pub gap_wait: Duration,
    /// REDIS_RECONNECT_MAX_MS: the cap of its reconnect backoff.
    pub reconnect_max: Duration,
    pub metrics: BusMetrics,
}

impl Publisher {
    /// Runs until every sender of `batches` is gone.
    pub(crate) fn run(self) {
        let mut conn: Option<Conn> = None;
        let mut backoff = Backoff::new(self.reconnect_max);
        // Per partition: since when this publisher's batches are parked.
        let mut stalled: HashMap<u32, Instant> = HashMap::new();
        let keys = PartitionKeys::all(self.partitions);
        for batch in self.batches.iter() {
            let now = Instant::now();
            if conn.is_none() && backoff.ready(now) {
                match self.target.connect(Timeouts::all(self.timeout)) {
                    Ok(c) => {
                        backoff.succeeded();
                        conn = Some(c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, fault = %Fault::of(&e), "bus publisher: Redis unreachable");
                        backoff.failed(now);
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                self.metrics.publishes_dropped.inc();
                continue;
            };
            let payload = match envelope::encode(&batch, self.zstd_threshold) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "bus publisher: batch not encoded");
                    self.metrics.publishes_dropped.inc();
                    continue;
                }
            };
            // Parked for the gap wait and still parked: the stream lost
            // entries nobody re-publishes (every reader had them).
            let p = batch.partition;
            let Some(keys) = keys.get(p as usize) else {
                // Not a partition of this configuration: nowhere to go.
                self.metrics.publishes_dropped.inc();
                continue;
            };
            let force = stalled
                .get(&p)
                .is_some_and(|since| since.elapsed() >= self.gap_wait);
            match script::append(c, keys, batch.span(), &payload, self.limits, force) {
                Ok((Appended::Parked, _)) => {
                    stalled.entry(p).or_insert_with(Instant::now);
                    self.metrics.publishes.inc();
                }
                Ok((Appended::ParkFull, _)) => {
                    stalled.entry(p).or_insert_with(Instant::now);
                    self.metrics.publishes_dropped.inc();
                }
                Ok((Appended::Added | Appended::Repeat, _)) => {
                    if force {
                        tracing::warn!(
                            partition = p,
                            "bus: the log lost entries; appended past the gap"
                        );
                    }
                    stalled.remove(&p);
                    self.metrics.publishes.inc();
                }
                Err(e) => {
                    tracing::warn!(error = %e, fault = %Fault::of(&e), "bus publisher: append failed; reconnecting");
                    self.metrics.publishes_dropped.inc();
                    conn = None;
                    backoff.failed(Instant::now());
                }
            }
        }
    }
}
