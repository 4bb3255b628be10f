//! The scenarios, and what they share: channel set-up and phase control.

pub mod connect;
pub mod fanout;
pub mod ingest;
pub mod sweep;

use crate::Common;
use crate::client::{Target, create_channel};
use crate::runner::Counters;
use anyhow::{Result, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The channel ids to use: created over REST, or given.
pub fn channels(common: &Common, t: &Target, n: usize) -> Result<Vec<String>> {
    if !common.create_channels {
        if common.channel_ids.len() < n {
            bail!("--create-channels=false needs {n} --channel-ids");
        }
        return Ok(common.channel_ids[..n].to_vec());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stamp = crate::client::now_ns() / 1_000_000;
    rt.block_on(async {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(create_channel(t, &format!("bench-{stamp}-{i}")).await?);
        }
        Ok(ids)
    })
}

/// Fails early when this process cannot open that many sockets.
pub fn check_nofile(conns: usize, nofile: u64) -> Result<()> {
    if conns as u64 + 64 > nofile {
        bail!(
            "{conns} connections need more than the open-files limit {nofile}: \
             split them over several processes (see docs/benchmarks.md)"
        );
    }
    Ok(())
}

/// Waits until every connection has joined or failed (or `limit` passes).
pub fn wait_ready(c: &Counters, total: u64, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let joined = Counters::get(&c.joined);
        let failed = Counters::get(&c.failed);
        if joined + failed >= total {
            let retries = crate::client::JOIN_RETRIES.load(std::sync::atomic::Ordering::Relaxed);
            if retries > 0 {
                eprintln!("note: {retries} join_channel calls were retried after UNAVAILABLE");
            }
            if failed > 0 {
                eprintln!(
                    "warning: {failed} of {total} connections failed: {}",
                    c.first_error.get().unwrap_or_default()
                );
            }
            return Ok(());
        }
        if t0.elapsed() > limit {
            bail!("only {joined} of {total} connections ready after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the progress line; returns its stop flag and handle.
pub fn start_progress(
    c: &Arc<Counters>,
) -> (
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let h = crate::report::progress(c.clone(), done.clone());
    (done, h)
}
