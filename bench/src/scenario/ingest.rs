//! `ingest`: acked sends/s. Each connection keeps a window of outstanding
//! sends (closed loop); ack latency is measured from each send.

use super::{channels, check_nofile, start_progress, wait_ready};
use crate::Common;
use crate::client::{Conn, Target, now_ns};
use crate::proto;
use crate::report::{latency_json, latency_text, write_outputs};
use crate::runner::{self, Counters, Kind, record};
use crate::server_side::{Probe, ServerArgs};
use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Args, Clone)]
pub struct IngestArgs {
    /// Sending connections.
    #[arg(short = 'n', long, default_value_t = 10)]
    pub connections: usize,
    /// Channels (connection i sends to channel i % C); default: one each.
    #[arg(short = 'c', long)]
    pub channels: Option<usize>,
    /// Outstanding (unacked) sends per connection.
    #[arg(short = 'w', long, default_value_t = 16)]
    pub window: usize,
    /// Message content size, bytes.
    #[arg(short = 'b', long, default_value_t = 100)]
    pub size: usize,
    /// Measured duration, seconds.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    #[command(flatten)]
    pub server_side: ServerArgs,
}

struct Shared {
    c: Arc<Counters>,
    /// One per `--server`: connection i is on instance i mod N.
    targets: Vec<Target>,
    common: Common,
    a: IngestArgs,
    ids: Vec<String>,
    gate: Semaphore,
}

pub fn run(common: &Common, a: &IngestArgs, nofile: u64) -> Result<()> {
    let targets = common.targets()?;
    check_nofile(a.connections, nofile)?;
    let nch = a.channels.unwrap_or(a.connections).max(1);
    let ids = channels(common, &targets[0], nch)?;
    let c = Arc::new(Counters::default());
    let sh = Arc::new(Shared {
        c: c.clone(),
        targets,
        common: common.clone(),
        a: a.clone(),
        ids,
        gate: Semaphore::new(common.connect_concurrency.max(1)),
    });
    let (done, prog) = start_progress(&c);
    let s2 = sh.clone();
    let workers = runner::spawn(common.threads.max(1), a.connections, move |i| {
        let sh = s2.clone();
        async move {
            if let Err(e) = conn_task(&sh, i).await {
                sh.c.first_error.set(format!("{e:#}"));
                Counters::add(&sh.c.failed, 1);
            }
        }
    });
    wait_ready(&c, a.connections as u64, Duration::from_secs(120))?;
    let probe = Probe::start(&a.server_side)?;
    c.start_ns.store(now_ns(), Relaxed);
    std::thread::sleep(Duration::from_secs_f64(a.duration));
    let acked_in_window = Counters::get(&c.acked);
    let server = probe.finish().report(a.duration, acked_in_window, None);
    c.stop.store(true, Relaxed);
    let [_, ack, ..] = runner::join(workers);
    done.store(true, Relaxed);
    let _ = prog.join();

    let rate = acked_in_window as f64 / a.duration;
    println!(
        "Running {:.1}s ingest @ {}\n  {} connections, window {}, {} channels, {} B",
        a.duration,
        common.servers(),
        a.connections,
        a.window,
        nch,
        a.size
    );
    if common.server.len() > 1 {
        println!(
            "  {} instances: connection i on instance i mod {}",
            common.server.len(),
            common.server.len()
        );
    }
    print!(
        "{}",
        latency_text("Ack latency (closed loop, from each send)", &ack)
    );
    println!(
        "  sent {}, acked {} in {:.1}s ({:.0} acked sends/s), refused {}, failed connections {}",
        Counters::get(&c.sent),
        acked_in_window,
        a.duration,
        rate,
        Counters::get(&c.nacked),
        Counters::get(&c.failed)
    );
    for line in &server.lines {
        println!("{line}");
    }
    if let Some(e) = c.first_error.get() {
        println!("  first error: {e}");
    }
    let mut doc = json!({
        "scenario": "ingest", "server": common.servers(), "connections": a.connections,
        "window": a.window, "channels": nch, "size": a.size, "duration_s": a.duration,
        "sent": Counters::get(&c.sent), "acked": acked_in_window, "acked_per_s": rate,
        "refused": Counters::get(&c.nacked), "failed_connections": Counters::get(&c.failed),
        "first_error": c.first_error.get(), "ack_latency": latency_json(&ack),
    });
    if let Some(m) = doc.as_object_mut() {
        m.extend(server.json);
    }
    write_outputs(common, &doc, &ack);
    Ok(())
}

async fn conn_task(sh: &Shared, i: usize) -> Result<()> {
    let ch = &sh.ids[i % sh.ids.len()];
    let instance = i % sh.targets.len();
    let permit = sh.gate.acquire().await?;
    let mut conn = Conn::open(&sh.targets[instance], i, &sh.common.user(i)).await?;
    Counters::add(&sh.c.connected, 1);
    conn.join(ch).await?;
    drop(permit);
    Counters::add(&sh.c.joined, 1);
    sh.c.wait_start().await;
    let mut pending: HashMap<u64, u64> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        while !sh.c.stopped() && pending.len() < sh.a.window {
            let id = conn.take_ack_id();
            let now = now_ns();
            conn.send(proto::send_frame(
                id,
                ch,
                &proto::make_content(now, instance, sh.a.size),
            ))
            .await?;
            pending.insert(id, now);
            Counters::add(&sh.c.sent, 1);
        }
        if sh.c.stopped() && pending.is_empty() {
            break;
        }
        tokio::select! {
            f = conn.next_text() => {
                let f = f?;
                if let Some((id, body)) = proto::parse_ack(f)
                    && let Some(at) = pending.remove(&id)
                {
                    if body.contains("\"ok\":true") {
                        if !sh.c.stopped() {
                            record(Kind::Ack, now_ns().saturating_sub(at) / 1000);
                        }
                        Counters::add(&sh.c.acked, 1);
                    } else {
                        Counters::add(&sh.c.nacked, 1);
                        sh.c.first_error.set(format!("send refused: {body:.200}"));
                    }
                }
            }
            _ = tick.tick() => {
                // After stop, give outstanding acks a moment, then give up.
                if sh.c.stopped() && pending.values().all(|&at| now_ns().saturating_sub(at) > 5_000_000_000) {
                    break;
                }
            }
        }
    }
    conn.close().await;
    Ok(())
}
