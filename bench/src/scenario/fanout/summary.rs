//! A fanout run's result: the JSON document and the text summary.

use super::{FanoutArgs, receiver_instance, sender_instance};
use crate::Common;
use crate::report::{latency_json, latency_line, latency_text};
use crate::runner::{Counters, Hists};
use crate::server_side::Report;
use crate::timeline::{Bins, CatchUp, Marks};
use serde_json::{Value, json};
use std::sync::atomic::AtomicU64;

fn get(x: &AtomicU64) -> u64 {
    Counters::get(x)
}

pub struct Run<'a> {
    pub common: &'a Common,
    pub a: &'a FanoutArgs,
    pub c: &'a Counters,
    pub h: &'a Hists,
    pub bench_cpu: Option<f64>,
    pub wire: u64,
    pub server: Report,
    /// With `--outage-*`: its marks, the catch-up and the timeline.
    pub outage: Option<(Marks, CatchUp, Bins)>,
}

impl Run<'_> {
    fn window(&self) -> f64 {
        0.2 + self.a.duration + self.a.drain
    }

    fn delivered(&self) -> u64 {
        get(&self.c.delivered)
    }

    /// Senders and receivers per instance (the round-robin rule).
    fn placement(&self) -> Vec<(usize, usize)> {
        let n = self.common.server.len().max(1);
        let mut p = vec![(0, 0); n];
        for i in 0..self.a.senders {
            p[sender_instance(i, n)].0 += 1;
        }
        for r in 0..self.a.channels * self.a.members {
            p[receiver_instance(r, self.a.members, n)].1 += 1;
        }
        p
    }

    pub fn json(&self) -> Value {
        let (a, c) = (self.a, self.c);
        let [lat, ack, same, cross] = self.h;
        let delivered = self.delivered();
        // Everything the server sent over the phase (deliveries, acks,
        // pings, frame headers) per delivery.
        let wire_per_delivery = (delivered > 0).then(|| self.wire as f64 / delivered as f64);
        let mut doc = json!({
            "scenario": "fanout", "server": self.common.servers(),
            "channels": a.channels, "members": a.members, "senders": a.senders,
            "rate": a.rate, "size": a.size, "duration_s": a.duration,
            "sent": get(&c.sent), "acked": get(&c.acked), "refused": get(&c.nacked),
            "delivered": delivered, "expected": get(&c.expected),
            "delivered_per_s": delivered as f64 / a.duration,
            "lost": get(&c.lost), "duplicated": get(&c.duplicated),
            "out_of_order": get(&c.out_of_order),
            "failed_connections": get(&c.failed), "first_error": c.first_error.get(),
            "latency": latency_json(lat), "ack_latency": latency_json(ack),
            "bench_cpu_s": self.bench_cpu, "window_s": self.window(),
            "deflate": self.common.deflate, "wire_bytes": self.wire,
            "wire_bytes_per_delivery": wire_per_delivery,
        });
        let m = doc.as_object_mut().expect("an object");
        if self.common.server.len() > 1 {
            let placement: Vec<Value> = self
                .placement()
                .iter()
                .zip(&self.common.server)
                .map(|(&(s, r), server)| json!({"server": server, "senders": s, "receivers": r}))
                .collect();
            m.insert("instances".into(), json!(placement));
            m.insert("latency_same_instance".into(), latency_json(same));
            m.insert("latency_cross_instance".into(), latency_json(cross));
        }
        if let Some((marks, c, bins)) = &self.outage {
            m.insert("outage".into(), super::outage::json(marks, c, bins));
        }
        m.extend(self.server.json.clone());
        doc
    }

    pub fn print(&self) {
        let (a, c, common) = (self.a, self.c, self.common);
        let [lat, ack, same, cross] = self.h;
        println!(
            "Running {:.1}s fanout @ {}\n  {} channels x {} members, {} senders, {} msg/s aggregate ({} deliveries/s target), {} B",
            a.duration,
            common.servers(),
            a.channels,
            a.members,
            a.senders,
            a.rate,
            a.rate * a.members as f64,
            a.size
        );
        if common.server.len() > 1 {
            println!(
                "  {} instances: sender i on instance i mod {n}, member m of each channel on instance m mod {n}",
                common.server.len(),
                n = common.server.len()
            );
            for (i, ((s, r), server)) in self.placement().iter().zip(&common.server).enumerate() {
                println!("    instance {i} {server}: {s} senders, {r} receivers");
            }
        }
        print!(
            "{}",
            latency_text(
                "End-to-end latency from scheduled send time (corrected for coordinated omission)",
                lat
            )
        );
        if common.server.len() > 1 {
            println!(
                "{}",
                latency_line("same-instance deliveries ", same, lat.len())
            );
            println!(
                "{}",
                latency_line("cross-instance deliveries", cross, lat.len())
            );
        }
        print!(
            "{}",
            latency_text("Send ack latency from scheduled send time", ack)
        );
        let delivered = self.delivered();
        println!(
            "  sent {}, acked {}, refused {}, delivered {} of {} expected ({:.0}/s)\n  lost {}, duplicated {}, out of order {}, failed connections {}",
            get(&c.sent),
            get(&c.acked),
            get(&c.nacked),
            delivered,
            get(&c.expected),
            delivered as f64 / a.duration,
            get(&c.lost),
            get(&c.duplicated),
            get(&c.out_of_order),
            get(&c.failed)
        );
        if let Some(cpu) = self.bench_cpu {
            let window = self.window();
            println!(
                "  benchmark CPU {cpu:.2} s in the {window:.1} s measured phase and drain ({:.0}% of one core)",
                cpu / window * 100.0
            );
        }
        for line in &self.server.lines {
            println!("{line}");
        }
        if let Some((marks, c, _)) = &self.outage {
            for line in super::outage::lines(marks, c, a.members as u64) {
                println!("{line}");
            }
        }
        if delivered > 0 {
            println!(
                "  read from the server {} B in the measured phase and drain: {:.1} B per delivery{}",
                self.wire,
                self.wire as f64 / delivered as f64,
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
}
