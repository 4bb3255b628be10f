//! `fanout`: C channels x M members, S senders at an open-loop aggregate rate
//! R. Each message carries its *scheduled* send time, so a late send (the
//! client or server fell behind) counts against latency: no coordinated
//! omission.

use super::{channels, check_nofile, start_progress, wait_ready};
use crate::Common;
use crate::client::{Conn, Target, WIRE_BYTES, now_ns};
use crate::proto;
use crate::report::{latency_json, latency_text, write_outputs};
use crate::runner::{self, Counters, Kind, record};
use crate::track::SeqTracker;
use anyhow::Result;
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
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
    /// Server pid, to report its CPU time per delivery (/proc/PID/stat).
    #[arg(long)]
    pub server_pid: Option<u32>,
}

struct Shared {
    c: Arc<Counters>,
    t: Target,
    common: Common,
    a: FanoutArgs,
    ids: Vec<String>,
    /// Highest acked seq per channel.
    final_seq: Vec<AtomicU64>,
    gate: Semaphore,
}

pub fn run(common: &Common, a: &FanoutArgs, nofile: u64) -> Result<()> {
    let (doc, lat) = measure(common, a, nofile, false)?;
    write_outputs(common, &doc, &lat);
    Ok(())
}

/// One fanout run: its JSON result and end-to-end latency histogram; prints
/// the human summary unless `quiet`.
pub fn measure(
    common: &Common,
    a: &FanoutArgs,
    nofile: u64,
    quiet: bool,
) -> Result<(serde_json::Value, Histogram<u64>)> {
    let t = common.target()?;
    let receivers = a.channels * a.members;
    let total = receivers + a.senders;
    check_nofile(total, nofile)?;
    let ids = channels(common, &t, a.channels)?;
    let c = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        c: c.clone(),
        t,
        common: common.clone(),
        a: a.clone(),
        final_seq: ids.iter().map(|_| AtomicU64::new(0)).collect(),
        ids,
        gate: Semaphore::new(common.connect_concurrency.max(1)),
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
    let start = now_ns() + 200_000_000;
    let cpu0 = a.server_pid.and_then(super::proc_cpu_secs);
    let own0 = super::proc_cpu_secs(std::process::id());
    let wire0 = WIRE_BYTES.load(Relaxed);
    c.start_ns.store(start, Relaxed);
    std::thread::sleep(Duration::from_secs_f64(0.2 + a.duration + a.drain));
    let cpu1 = a.server_pid.and_then(super::proc_cpu_secs);
    let own1 = super::proc_cpu_secs(std::process::id());
    let wire = WIRE_BYTES.load(Relaxed) - wire0;
    c.stop.store(true, Relaxed);
    let [lat, ack] = runner::join(workers);
    done.store(true, Relaxed);
    let _ = prog.join();

    let get = |x: &AtomicU64| Counters::get(x);
    let delivered = get(&c.delivered);
    let rate = delivered as f64 / a.duration;
    let expected = get(&c.expected);
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let window = 0.2 + a.duration + a.drain;
    let bench_cpu = own0.zip(own1).map(|(a, b)| b - a);
    let cpu_per_delivery = server_cpu
        .filter(|_| delivered > 0)
        .map(|s| s * 1e6 / delivered as f64);
    // Everything the server sent over the phase (deliveries, acks, pings,
    // frame headers) per delivery.
    let wire_per_delivery = (delivered > 0).then(|| wire as f64 / delivered as f64);
    let doc = json!({
        "scenario": "fanout", "server": common.server,
        "channels": a.channels, "members": a.members, "senders": a.senders,
        "rate": a.rate, "size": a.size, "duration_s": a.duration,
        "sent": get(&c.sent), "acked": get(&c.acked), "refused": get(&c.nacked),
        "delivered": delivered, "expected": expected, "delivered_per_s": rate,
        "lost": get(&c.lost), "duplicated": get(&c.duplicated), "out_of_order": get(&c.out_of_order),
        "failed_connections": get(&c.failed), "first_error": c.first_error.get(),
        "latency": latency_json(&lat), "ack_latency": latency_json(&ack),
        "bench_cpu_s": bench_cpu, "window_s": window,
        "server_cpu_s": server_cpu, "server_cpu_us_per_delivery": cpu_per_delivery,
        "deflate": common.deflate, "wire_bytes": wire, "wire_bytes_per_delivery": wire_per_delivery,
    });
    if !quiet {
        println!(
            "Running {:.1}s fanout @ {}\n  {} channels x {} members, {} senders, {} msg/s aggregate ({} deliveries/s target), {} B",
            a.duration,
            common.server,
            a.channels,
            a.members,
            a.senders,
            a.rate,
            a.rate * a.members as f64,
            a.size
        );
        print!(
            "{}",
            latency_text(
                "End-to-end latency from scheduled send time (corrected for coordinated omission)",
                &lat
            )
        );
        print!(
            "{}",
            latency_text("Send ack latency from scheduled send time", &ack)
        );
        println!(
            "  sent {}, acked {}, refused {}, delivered {} of {} expected ({:.0}/s)\n  lost {}, duplicated {}, out of order {}, failed connections {}",
            get(&c.sent),
            get(&c.acked),
            get(&c.nacked),
            delivered,
            expected,
            rate,
            get(&c.lost),
            get(&c.duplicated),
            get(&c.out_of_order),
            get(&c.failed)
        );
        if let Some(cpu) = bench_cpu {
            println!(
                "  benchmark CPU {cpu:.2} s in the {window:.1} s measured phase and drain ({:.0}% of one core)",
                cpu / window * 100.0
            );
        }
        if let (Some(cpu), Some(per)) = (server_cpu, cpu_per_delivery) {
            println!(
                "  server CPU {cpu:.2} s during the measured phase and drain: {per:.3} us per delivery"
            );
        }
        if let Some(per) = wire_per_delivery {
            println!(
                "  read from the server {wire} B in the measured phase and drain: {per:.1} B per delivery{}",
                if common.deflate {
                    " (permessage-deflate)"
                } else {
                    ""
                }
            );
        }
        if let Some(e) = c.first_error.get() {
            println!("  first error: {e}");
        }
    }
    Ok((doc, lat))
}

async fn open_join(sh: &Shared, idx: usize, channel: &str) -> Result<(Conn, u64)> {
    let permit = sh.gate.acquire().await?;
    let mut conn = Conn::open(&sh.t, idx, &sh.common.user(idx)).await?;
    Counters::add(&sh.c.connected, 1);
    let last = conn.join(channel).await?;
    drop(permit);
    Counters::add(&sh.c.joined, 1);
    Ok((conn, last))
}

async fn sender(sh: &Shared, i: usize) -> Result<()> {
    let ch = i % sh.ids.len();
    let (mut conn, _) = open_join(sh, i, &sh.ids[ch]).await?;
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
                    let content = proto::make_content(sched, sh.a.size);
                    conn.send(proto::send_frame(id, &sh.ids[ch], &content)).await?;
                    pending.insert(id, sched);
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
    let (mut conn, last) = open_join(sh, idx, &sh.ids[ch]).await?;
    let mut track = SeqTracker::new(last);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut unreported = 0u64;
    loop {
        tokio::select! {
            f = conn.next_text() => {
                let f = f?;
                if let Some((seq, content)) = proto::parse_message(f) {
                    if let Some(at) = proto::content_sched(content) {
                        record(Kind::Main, now_ns().saturating_sub(at) / 1000);
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
