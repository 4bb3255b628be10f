//! Partition upkeep while the server runs: once at start (after the
//! migrations) and then daily, on a thread of its own with its own short
//! connection.
//!
//! Not on the writer thread: the ALTERs wait for the writer's transactions
//! anyway (a metadata lock), and a failure here (no ALTER privilege, the
//! database away) must not touch the writer's connection or its backoff.
//! Missing upkeep is never an outage: the catch-all partition takes any
//! message, so a failed run is logged and retried the next day.

use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use mysql::Opts;

use super::partitions::{Partition, PartitionPolicy, Plan};
use super::{MysqlStore, describe};
use crate::store::Result;

const EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One upkeep pass now, logged; returns the partitions before and the plan.
pub(crate) fn run_once(opts: &Opts, policy: PartitionPolicy) -> Result<(Vec<Partition>, Plan)> {
    let mut store = MysqlStore::open(opts)?;
    let (before, plan) = store.maintain_partitions(policy, now_unix_ms(), false)?;
    if !plan.is_empty() {
        let created: Vec<&str> = plan.create.iter().map(|p| p.name.as_str()).collect();
        tracing::info!(
            database = %describe(opts),
            ?created,
            dropped = ?plan.drop,
            "message partitions maintained"
        );
    }
    Ok((before, plan))
}

/// The daily upkeep thread; [`Upkeep::stop`] ends it.
pub(crate) struct Upkeep {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Upkeep {
    pub(crate) fn start(opts: Opts, policy: PartitionPolicy) -> std::io::Result<Self> {
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("gatrix-store-partitions".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    if let Err(e) = run_once(&opts, policy) {
                        tracing::error!(error = %e, "message partition upkeep failed; retrying tomorrow");
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Ends the thread (after the pass it may be running).
    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}
