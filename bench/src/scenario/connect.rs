//! `connect`: connection set-up rate and failures; with `--server-pid`, the
//! server's user-space memory per idle connection (VmRSS) and, separately,
//! the kernel's TCP socket memory (/proc/net/sockstat).

use super::{check_nofile, start_progress};
use crate::Common;
use crate::client::Conn;
use crate::report::{latency_json, latency_text, write_outputs};
use crate::runner::{self, Counters, Kind, record};
use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// Connections to open and hold.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: usize,
    /// Server pid, to read its VmRSS before and after.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to hold the idle connections after the last one is up.
    #[arg(long, default_value_t = 3.0)]
    pub hold: f64,
}

/// VmRSS of a process, KiB.
fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// TCP sockets in use and their memory (pages) from /proc/net/sockstat.
fn sockstat() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = s.lines().find(|l| l.starts_with("TCP:"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| {
        f.iter()
            .position(|x| *x == k)
            .and_then(|i| f.get(i + 1)?.parse().ok())
    };
    Some((get("inuse")?, get("mem")?))
}

pub fn run(common: &Common, a: &ConnectArgs, nofile: u64) -> Result<()> {
    let targets = common.targets()?;
    check_nofile(a.connections, nofile)?;
    let rss0 = a.server_pid.and_then(vm_rss_kib);
    let sock0 = sockstat();
    let c = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(common.connect_concurrency.max(1)));
    let (done, prog) = start_progress(&c);
    let t0 = Instant::now();
    let (c2, common2) = (c.clone(), common.clone());
    let workers = runner::spawn(common.threads.max(1), a.connections, move |i| {
        let (c, gate, common) = (c2.clone(), gate.clone(), common2.clone());
        // Connection i on instance i mod N.
        let t = targets[i % targets.len()].clone();
        async move {
            let permit = gate.acquire().await;
            let s = Instant::now();
            match Conn::open(&t, i, &common.user(i)).await {
                Ok(mut conn) => {
                    record(Kind::Main, s.elapsed().as_micros() as u64);
                    drop(permit);
                    Counters::add(&c.connected, 1);
                    Counters::add(&c.finished, 1);
                    // Stay idle (answering pings) until told to stop.
                    let mut tick = tokio::time::interval(Duration::from_millis(200));
                    loop {
                        tokio::select! {
                            f = conn.next_text() => if f.is_err() { break },
                            _ = tick.tick() => if c.stopped() { break },
                        }
                    }
                    conn.close().await;
                }
                Err(e) => {
                    c.first_error.set(format!("{e:#}"));
                    Counters::add(&c.failed, 1);
                    Counters::add(&c.finished, 1);
                }
            }
        }
    });
    while Counters::get(&c.finished) < a.connections as u64 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let setup = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2)); // let the server settle
    let rss1 = a.server_pid.and_then(vm_rss_kib);
    let sock1 = sockstat();
    std::thread::sleep(Duration::from_secs_f64(a.hold));
    c.stop.store(true, Relaxed);
    let [lat, ..] = runner::join(workers);
    done.store(true, Relaxed);
    let _ = prog.join();

    let ok = Counters::get(&c.connected);
    let failed = Counters::get(&c.failed);
    let rate = ok as f64 / setup;
    println!(
        "Connect @ {}: {ok} connected, {failed} failed in {setup:.2}s ({rate:.0} connections/s)",
        common.servers()
    );
    print!(
        "{}",
        latency_text(
            "Connection set-up time (TCP + upgrade + OPEN + CONNECT)",
            &lat
        )
    );
    let per_conn = |b: Option<u64>, a: Option<u64>, unit: u64| match (b, a) {
        (Some(b), Some(a)) if ok > 0 => Some((a.saturating_sub(b) * unit) as f64 / ok as f64),
        _ => None,
    };
    let rss_per = per_conn(rss0, rss1, 1024);
    if let (Some(b), Some(a), Some(p)) = (rss0, rss1, rss_per) {
        println!(
            "  server VmRSS {b} KiB -> {a} KiB: {:.0} bytes per idle connection (user space)",
            p
        );
    }
    let sock_per = per_conn(sock0.map(|s| s.1), sock1.map(|s| s.1), 4096);
    if let (Some(b), Some(a)) = (sock0, sock1) {
        println!(
            "  kernel TCP sockets {} -> {}, socket memory {} -> {} pages: {:.0} bytes per connection (both ends, kernel)",
            b.0,
            a.0,
            b.1,
            a.1,
            sock_per.unwrap_or(0.0)
        );
    }
    if let Some(e) = c.first_error.get() {
        println!("  first error: {e}");
    }
    let doc = json!({
        "scenario": "connect", "server": common.servers(), "connections": a.connections,
        "connected": ok, "failed": failed, "setup_s": setup, "connections_per_s": rate,
        "server_rss_kib_before": rss0, "server_rss_kib_after": rss1,
        "server_rss_bytes_per_conn": rss_per,
        "sockstat_before": sock0.map(|s| json!({"inuse": s.0, "mem_pages": s.1})),
        "sockstat_after": sock1.map(|s| json!({"inuse": s.0, "mem_pages": s.1})),
        "kernel_sock_bytes_per_conn": sock_per,
        "first_error": c.first_error.get(), "connect_latency": latency_json(&lat),
    });
    write_outputs(common, &doc, &lat);
    Ok(())
}
