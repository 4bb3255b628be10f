//! `sweep`: fanout at rising rates until p99 passes a bound (or messages are
//! lost, or connections fail): the highest passing rate is the sustainable
//! throughput.

use super::fanout::{FanoutArgs, measure};
use crate::Common;
use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

#[derive(Args, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub fanout: FanoutArgs,
    /// Highest aggregate send rate to try, messages/s.
    #[arg(long, default_value_t = 100_000.0)]
    pub max_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// p99 end-to-end latency bound, ms.
    #[arg(long, default_value_t = 10.0)]
    pub p99_ms: f64,
}

pub fn run(common: &Common, a: &SweepArgs, nofile: u64) -> Result<()> {
    let mut steps: Vec<Value> = Vec::new();
    let mut best: Option<f64> = None;
    let mut rate = a.fanout.rate;
    println!(
        "{:>12} {:>14} {:>10} {:>10} {:>10} {:>6} {:>6}",
        "rate msg/s", "delivered/s", "p50 ms", "p99 ms", "max ms", "lost", "fail"
    );
    while rate <= a.max_rate {
        let mut f = a.fanout.clone();
        f.rate = rate;
        let (doc, _) = measure(common, &f, nofile, true)?;
        let p = |k: &str| doc["latency"][k].as_f64().unwrap_or(f64::INFINITY);
        let (p99, lost, failed) = (
            p("p99_ms"),
            doc["lost"].as_u64().unwrap_or(0),
            doc["failed_connections"].as_u64().unwrap_or(0),
        );
        let delivered = doc["delivered_per_s"].as_f64().unwrap_or(0.0);
        println!(
            "{rate:>12.0} {delivered:>14.0} {:>10.3} {p99:>10.3} {:>10.3} {lost:>6} {failed:>6}",
            p("p50_ms"),
            p("max_ms")
        );
        steps.push(doc);
        if p99 > a.p99_ms || lost > 0 || failed > 0 {
            break;
        }
        best = Some(delivered);
        rate *= a.factor;
    }
    match best {
        Some(d) => println!(
            "  sustainable: {d:.0} deliveries/s with p99 <= {} ms",
            a.p99_ms
        ),
        None => println!("  no rate met p99 <= {} ms", a.p99_ms),
    }
    if let Some(p) = &common.json {
        let doc = json!({"scenario": "sweep", "p99_bound_ms": a.p99_ms, "sustainable_deliveries_per_s": best, "steps": steps});
        std::fs::write(p, serde_json::to_string_pretty(&doc)? + "\n")?;
    }
    Ok(())
}
