//! `fanout`: C channels x M members, S senders at an open-loop aggregate rate
//! R. Each message carries its *scheduled* send time, so a late send (the
//! client or server fell behind) counts against latency: no coordinated
//! omission.
//!
//! With several `--server`s (instances of one cluster), sender i connects
//! to instance i mod N and member m of every channel to instance m mod N;
//! each content names its sender's instance, so a receiver counts each
//! delivery as same-instance or cross-instance.

pub mod outage;
mod summary;

use super::{channels, check_nofile, start_progress, wait_ready};
use crate::Common;
use crate::client::{Conn, Target, WIRE_BYTES, now_ns};
use crate::proto;
use crate::report::write_outputs_with;
use crate::runner::{self, Counters, Hists, Kind, record};
use crate::server_side::{Probe, ServerArgs, proc_cpu_secs};
use crate::timeline::Timeline;
use crate::track::SeqTracker;
use anyhow::Result;
use clap::Args;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Args, Clone)]
pub struct FanoutArgs {
    /// Channels.
    #[arg(short = 'c', long, default_value_t = 10)]
    pub channels: usize,
    /// Receiving members per channel.
    #[arg(short = 'm', long, default_value_t = 100)]
    pub members: usize,
    /// Sending connections (sender i sends to channel i % C).
    #[arg(short = 's', long, default_value_t = 10)]
    pub senders: usize,
    /// Aggregate send rate, messages/s (deliveries/s = rate x members).
    #[arg(short = 'r', long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Message content size, bytes.
    #[arg(short = 'b', long, default_value_t = 100)]
    pub size: usize,
    /// Measured duration, seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Time to wait for the last deliveries after the last send, seconds.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    #[command(flatten)]
    pub server_side: ServerArgs,
    #[command(flatten)]
    pub outage: outage::OutageArgs,
}

/// The instance (index into `--server`) of sender `i`.
pub fn sender_instance(i: usize, instances: usize) -> usize {
    i % instances.max(1)
}

/// The instance of receiver `r` (member `r % members` of channel
/// `r / members`): members are spread over the instances in every channel.
pub fn receiver_instance(r: usize, members: usize, instances: usize) -> usize {
    (r % members.max(1)) % instances.max(1)
}

struct Shared {
    c: Arc<Counters>,
    /// One per `--server`.
    targets: Vec<Target>,
    common: Common,
    a: FanoutArgs,
    ids: Vec<String>,
    /// Highest acked seq per channel.
    final_seq: Vec<AtomicU64>,
    gate: Semaphore,
    /// Sends and deliveries over time: with an outage only.
    timeline: Option<Timeline>,
}

pub fn run(common: &Common, a: &FanoutArgs, nofile: u64) -> Result<()> {
    let (doc, h) = measure(common, a, nofile, false)?;
    let [lat, _, same, cross] = &h;
    let series: &[(&str, &hdrhistogram::Histogram<u64>)] = if common.server.len() > 1 {
        &[("same instance", same), ("cross instance", cross)]
    } else {
        &[]
    };
    write_outputs_with(common, &doc, lat, series);
    Ok(())
}

/// One fanout run: its JSON result and histograms (by [`Kind`]); prints
/// the human summary unless `quiet`.
pub fn measure(
    common: &Common,
    a: &FanoutArgs,
    nofile: u64,
    quiet: bool,
) -> Result<(serde_json::Value, Hists)> {
    a.outage.check(a.duration)?;
    let targets = common.targets()?;
    let receivers = a.channels * a.members;
    let total = receivers + a.senders;
    check_nofile(total, nofile)?;
    let ids = channels(common, &targets[0], a.channels)?;
    let c = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        c: c.clone(),
        targets,
        common: common.clone(),
        a: a.clone(),
        final_seq: ids.iter().map(|_| AtomicU64::new(0)).collect(),
        ids,
        gate: Semaphore::new(common.connect_concurrency.max(1)),
        timeline: a
            .outage
            .enabled()
            .then(|| Timeline::new(0.2 + a.duration + a.drain)),
    });
    let (done, prog) = start_progress(&c);
    let s2 = sh.clone();
    let workers = runner::spawn(common.threads.max(1), total, move |i| {
        let sh = s2.clone();
        async move {
            let r = if i < sh.a.senders {
                sender(&sh, i).await
            } else {
                receiver(&sh, i - sh.a.senders).await
            };
            if let Err(e) = r {
                sh.c.first_error.set(format!("{e:#}"));
                Counters::add(&sh.c.failed, 1);
            }
            Counters::add(&sh.c.finished, 1);
        }
    });
    wait_ready(&c, total as u64, Duration::from_secs(120))?;
    let probe = Probe::start(&a.server_side)?;
    let start = now_ns() + 200_000_000;
    let own0 = proc_cpu_secs(std::process::id());
    let wire0 = WIRE_BYTES.load(Relaxed);
    c.start_ns.store(start, Relaxed);
    let outage = outage::spawn(&a.outage, start);
    std::thread::sleep(Duration::from_secs_f64(0.2 + a.duration + a.drain));
    // The up command may still be waiting for Redis: the catch-up needs
    // its time.
    let outage_times = outage.and_then(|h| h.join().ok());
    let own1 = proc_cpu_secs(std::process::id());
    let wire = WIRE_BYTES.load(Relaxed) - wire0;
    let ended = probe.finish();
    c.stop.store(true, Relaxed);
    let h = runner::join(workers);
    done.store(true, Relaxed);
    let _ = prog.join();
    let server = ended.report(
        a.duration,
        Counters::get(&c.acked),
        Some(Counters::get(&c.delivered)),
    );
    let outage = outage_times.zip(sh.timeline.as_ref()).map(|(t, tl)| {
        let bins = tl.bins();
        let (marks, catch_up) = outage::report(t, start, a.duration, &bins, a.members as u64);
        (marks, catch_up, bins)
    });
    let run = summary::Run {
        common,
        a,
        c: &c,
        h: &h,
        bench_cpu: own0.zip(own1).map(|(a, b)| b - a),
        wire,
        server,
        outage,
    };
    let doc = run.json();
    if !quiet {
        run.print();
    }
    Ok((doc, h))
}

async fn open_join(sh: &Shared, idx: usize, instance: usize, channel: &str) -> Result<(Conn, u64)> {
    let permit = sh.gate.acquire().await?;
    let mut conn = Conn::open(&sh.targets[instance], idx, &sh.common.user(idx)).await?;
    Counters::add(&sh.c.connected, 1);
    let last = conn.join(channel).await?;
    drop(permit);
    Counters::add(&sh.c.joined, 1);
    Ok((conn, last))
}

async fn sender(sh: &Shared, i: usize) -> Result<()> {
    let ch = i % sh.ids.len();
    let instance = sender_instance(i, sh.targets.len());
    let (mut conn, _) = open_join(sh, i, instance, &sh.ids[ch]).await?;
    let start = sh.c.wait_start().await;
    let interval = sh.a.senders as f64 / sh.a.rate * 1e9; // ns between this sender's sends
    let end = start + (sh.a.duration * 1e9) as u64;
    let mut k = 0u64;
    let mut sched = start + (interval * i as f64 / sh.a.senders as f64) as u64;
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let timer = crate::timer::PreciseTimer::new()?;
    loop {
        let sending = sched < end && start != 0;
        tokio::select! {
            f = conn.next_text() => {
                let f = f?;
                if let Some((id, body)) = proto::parse_ack(f) {
                    let Some(at) = pending.remove(&id) else { continue };
                    record(Kind::Ack, now_ns().saturating_sub(at) / 1000);
                    if body.contains("\"ok\":true") {
                        Counters::add(&sh.c.acked, 1);
                        if let Some(seq) = proto::find_seq(body) {
                            sh.final_seq[ch].fetch_max(seq, Relaxed);
                        }
                    } else {
                        Counters::add(&sh.c.nacked, 1);
                        sh.c.first_error.set(format!("send refused: {body:.200}"));
                    }
                }
            }
            r = timer.sleep_until_unix_ns(sched), if sending => {
                r?;
                // Send everything that is due (catch up if we fell behind).
                let now = now_ns();
                while sched <= now && sched < end {
                    let id = conn.take_ack_id();
                    let content = proto::make_content(sched, instance, sh.a.size);
                    conn.send(proto::send_frame(id, &sh.ids[ch], &content)).await?;
                    pending.insert(id, sched);
                    if let Some(t) = &sh.timeline {
                        t.record_sent(start, sched);
                    }
                    Counters::add(&sh.c.sent, 1);
                    k += 1;
                    sched = start + (interval * (k as f64 + i as f64 / sh.a.senders as f64)) as u64;
                }
            }
            _ = tick.tick() => {
                if sh.c.stopped() { break; }
            }
        }
    }
    conn.close().await;
    Ok(())
}

async fn receiver(sh: &Shared, r: usize) -> Result<()> {
    let ch = r / sh.a.members;
    let idx = sh.a.senders + r;
    let instance = receiver_instance(r, sh.a.members, sh.targets.len());
    // One instance: every delivery is same-instance, nothing to split.
    let split = sh.targets.len() > 1;
    let (mut conn, last) = open_join(sh, idx, instance, &sh.ids[ch]).await?;
    let mut track = SeqTracker::new(last);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut unreported = 0u64;
    loop {
        tokio::select! {
            f = conn.next_text() => {
                let f = f?;
                if let Some((seq, content)) = proto::parse_message(f) {
                    if let Some((at, from)) = proto::content_meta(content) {
                        let now = now_ns();
                        let us = now.saturating_sub(at) / 1000;
                        if let Some(t) = &sh.timeline {
                            t.record_received(sh.c.start_ns.load(Relaxed), at, now);
                        }
                        record(Kind::Main, us);
                        if split {
                            record(if from == instance { Kind::Same } else { Kind::Cross }, us);
                        }
                    }
                    track.observe(seq);
                    unreported += 1;
                    if unreported == 64 {
                        Counters::add(&sh.c.delivered, 64);
                        unreported = 0;
                    }
                }
            }
            _ = tick.tick() => {
                Counters::add(&sh.c.delivered, std::mem::take(&mut unreported));
                if sh.c.stopped() { break; }
            }
        }
    }
    Counters::add(&sh.c.delivered, unreported);
    let final_seq = sh.final_seq[ch].load(Relaxed);
    Counters::add(&sh.c.expected, final_seq.saturating_sub(last));
    Counters::add(&sh.c.lost, track.lost(final_seq));
    Counters::add(&sh.c.duplicated, track.duplicated);
    Counters::add(&sh.c.out_of_order, track.out_of_order);
    conn.close().await;
    Ok(())
}
