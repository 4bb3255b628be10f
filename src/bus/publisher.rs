//! The publisher thread: appends this instance's batches (its commits and
//! its gap fills) to the log, one script call each ([`super::script`]).
//!
//! It is fed over a bounded channel that the writer never waits on: when
//! it is behind, or Redis is away (it then drops what comes until its next
//! reconnect attempt), a batch is dropped and counted, and the readers
//! fill the gap from the store. Nothing here delays an ack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::backoff::Backoff;
use super::batch::{Batch, Span};
use super::script::{self, Appended, Limits};
use super::{connect, envelope};
use crate::metrics::BusMetrics;

pub(crate) struct Publisher {
    pub client: redis::Client,
    pub batches: Receiver<Arc<Batch>>,
    pub limits: Limits,
    pub zstd_threshold: usize,
    pub timeout: Duration,
    pub metrics: BusMetrics,
}

impl Publisher {
    /// Runs until every sender of `batches` is gone.
    pub(crate) fn run(self) {
        let mut conn: Option<redis::Connection> = None;
        let mut backoff = Backoff::new();
        for batch in self.batches.iter() {
            let now = Instant::now();
            if conn.is_none() && backoff.ready(now) {
                match connect(&self.client, self.timeout, self.timeout) {
                    Ok(c) => {
                        backoff.succeeded();
                        conn = Some(c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "bus publisher: Redis unreachable");
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
            match script::append(c, batch.partition, batch.span(), &payload, self.limits) {
                Ok((Appended::ParkFull, _)) => {
                    self.metrics.publishes_dropped.inc();
                }
                Ok(_) => {
                    self.metrics.publishes.inc();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bus publisher: append failed; reconnecting");
                    self.metrics.publishes_dropped.inc();
                    conn = None;
                    backoff.failed(Instant::now());
                }
            }
        }
    }
}
