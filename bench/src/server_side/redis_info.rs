//! Redis's cost over a run, from `INFO stats` (total_commands_processed,
//! total_net_input_bytes, total_net_output_bytes), `INFO commandstats`
//! (calls per command) and `INFO cpu` (used_cpu_sys + used_cpu_user), read
//! before and after it on one connection per node: one Redis, or each
//! master of a Redis Cluster (the run's cost is their sum; each node's is
//! reported too, to show how evenly the cluster carries it).
//!
//! One reading is one `INFO stats commandstats cpu` (Redis 7; older
//! servers: three INFO commands), so the totals and the calls per command
//! are counted at the same instant even while other clients run commands. Reading is
//! itself a command with a reply of a few KB, which the after-run reading
//! sees: two readings back to back before the run measure its bytes, and
//! they and the INFO calls are taken off the run's deltas (other clients'
//! commands between those two readings are not: only INFO's own count is
//! subtracted).

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// One reading of the counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snap {
    pub commands: u64,
    pub net_in: u64,
    pub net_out: u64,
    /// Calls per command (`cmdstat_<name>`, name as Redis spells it).
    pub calls: BTreeMap<String, u64>,
    /// CPU seconds the server used (system + user, main thread and
    /// children).
    pub cpu: f64,
}

impl Snap {
    /// Parses the text of `INFO stats`, `INFO commandstats` and `INFO cpu`.
    pub fn parse(stats: &str, commandstats: &str, cpu: &str) -> Snap {
        let seconds = |key: &str| -> f64 {
            cpu.lines()
                .find_map(|l| {
                    l.trim_end()
                        .strip_prefix(key)?
                        .strip_prefix(':')?
                        .parse()
                        .ok()
                })
                .unwrap_or(0.0)
        };
        let field = |key: &str| {
            stats
                .lines()
                .find_map(|l| {
                    l.trim_end()
                        .strip_prefix(key)?
                        .strip_prefix(':')?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        let calls = commandstats
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.trim_end().parse().ok()?))
            })
            .collect();
        Snap {
            commands: field("total_commands_processed"),
            net_in: field("total_net_input_bytes"),
            net_out: field("total_net_output_bytes"),
            calls,
            cpu: seconds("used_cpu_sys") + seconds("used_cpu_user"),
        }
    }

    /// `self - before - overhead`, each field at least 0.
    pub fn delta(&self, before: &Snap, overhead: &Snap) -> Snap {
        let d = |a: u64, b: u64, o: u64| a.saturating_sub(b).saturating_sub(o);
        let calls = self
            .calls
            .iter()
            .map(|(k, &v)| {
                let g = |s: &Snap| s.calls.get(k).copied().unwrap_or(0);
                (k.clone(), d(v, g(before), g(overhead)))
            })
            .filter(|(_, v)| *v > 0)
            .collect();
        Snap {
            commands: d(self.commands, before.commands, overhead.commands),
            net_in: d(self.net_in, before.net_in, overhead.net_in),
            net_out: d(self.net_out, before.net_out, overhead.net_out),
            calls,
            // A reading's CPU is not measurable apart (microseconds).
            cpu: (self.cpu - before.cpu).max(0.0),
        }
    }

    /// The sum of several nodes' deltas.
    fn add(&mut self, other: &Snap) {
        self.commands += other.commands;
        self.net_in += other.net_in;
        self.net_out += other.net_out;
        self.cpu += other.cpu;
        for (k, v) in &other.calls {
            *self.calls.entry(k.clone()).or_default() += v;
        }
    }
}

fn read(con: &mut redis::Connection) -> Result<Snap> {
    // Both sections in one command: one snapshot (Redis runs commands one
    // at a time), so no command falls between the totals and the calls.
    if let Ok(text) = redis::cmd("INFO")
        .arg("stats")
        .arg("commandstats")
        .arg("cpu")
        .query::<String>(con)
    {
        return Ok(Snap::parse(&text, &text, &text));
    }
    let stats: String = redis::cmd("INFO").arg("stats").query(con)?;
    let commandstats: String = redis::cmd("INFO").arg("commandstats").query(con)?;
    let cpu: String = redis::cmd("INFO").arg("cpu").query(con)?;
    Ok(Snap::parse(&stats, &commandstats, &cpu))
}

/// What one reading costs: its INFO calls (in the totals and the calls)
/// and the bytes between two readings back to back; the other clients'
/// commands in between are not the reading's.
fn reading_cost(first: &Snap, second: &Snap) -> Snap {
    let d = second.delta(first, &Snap::default());
    let info = d.calls.get("info").copied().unwrap_or(0);
    Snap {
        commands: info,
        net_in: d.net_in,
        net_out: d.net_out,
        calls: [("info".to_owned(), info)].into(),
        cpu: 0.0,
    }
}

/// The readings taken before the run.
pub struct Before {
    addr: String,
    con: redis::Connection,
    snap: Snap,
    /// What one reading costs, as the next reading sees it.
    overhead: Snap,
}

impl Before {
    /// `addr` is `host:port` or a `redis://` / `rediss://` / `unix://` URL.
    pub fn read(addr: &str) -> Result<Before> {
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("redis://{addr}")
        };
        let client =
            redis::Client::open(url.as_str()).with_context(|| format!("--redis {addr}"))?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .with_context(|| format!("connecting to Redis at {addr}"))?;
        let first = read(&mut con)?;
        let snap = read(&mut con)?;
        let overhead = reading_cost(&first, &snap);
        Ok(Before {
            addr: addr.to_owned(),
            con,
            snap,
            overhead,
        })
    }

    /// Reads the counters after the run.
    pub fn finish(mut self) -> Result<After> {
        let after = read(&mut self.con).context("reading Redis INFO after the run")?;
        Ok(After {
            delta: after.delta(&self.snap, &self.overhead),
            addr: self.addr,
        })
    }
}

/// The run's deltas.
#[derive(Clone)]
pub struct After {
    addr: String,
    delta: Snap,
}

/// The run's cost over every node read: their sum, and each one's (when
/// there are several) per 1,000 `messages`, and per writer commit when the
/// instances' `commits` are known.
pub fn cost(nodes: &[After], messages: u64, commits: Option<u64>) -> RedisCost {
    let mut delta = Snap::default();
    for n in nodes {
        delta.add(&n.delta);
    }
    let each = |n: &After| RedisCost {
        addr: n.addr.clone(),
        delta: n.delta.clone(),
        messages,
        commits,
        nodes: Vec::new(),
    };
    RedisCost {
        addr: nodes
            .iter()
            .map(|n| n.addr.as_str())
            .collect::<Vec<_>>()
            .join(","),
        delta,
        messages,
        commits,
        nodes: if nodes.len() > 1 {
            nodes.iter().map(each).collect()
        } else {
            Vec::new()
        },
    }
}

pub struct RedisCost {
    addr: String,
    delta: Snap,
    messages: u64,
    /// Writer commits of every instance over the run (from --metrics).
    commits: Option<u64>,
    /// Each node's own cost, when several were read.
    nodes: Vec<RedisCost>,
}

impl RedisCost {
    fn per_1k(&self, n: u64) -> Option<f64> {
        self.per_1k_f(n as f64)
    }

    fn per_1k_f(&self, x: f64) -> Option<f64> {
        (self.messages > 0).then(|| x * 1000.0 / self.messages as f64)
    }

    fn per_commit(&self, n: u64) -> Option<f64> {
        self.commits.filter(|&c| c > 0).map(|c| n as f64 / c as f64)
    }

    /// Commands by calls, most first.
    fn by_calls(&self) -> Vec<(&String, u64)> {
        let mut v: Vec<_> = self.delta.calls.iter().map(|(k, &v)| (k, v)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    pub fn json(&self) -> Value {
        let d = &self.delta;
        let calls: Map<String, Value> = self
            .by_calls()
            .into_iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!({"calls": v, "per_1k_messages": self.per_1k(v),
                        "per_commit": self.per_commit(v)}),
                )
            })
            .collect();
        json!({
            "addr": self.addr, "messages": self.messages,
            "commands": d.commands, "commands_per_1k_messages": self.per_1k(d.commands),
            "net_input_bytes": d.net_in, "net_input_bytes_per_1k_messages": self.per_1k(d.net_in),
            "net_output_bytes": d.net_out, "net_output_bytes_per_1k_messages": self.per_1k(d.net_out),
            "bytes_per_1k_messages": self.per_1k(d.net_in + d.net_out),
            "writer_commits": self.commits, "commands_per_commit": self.per_commit(d.commands),
            "cpu_seconds": d.cpu,
            "cpu_ms_per_1k_messages": self.per_1k_f(d.cpu * 1000.0),
            "commandstats": calls,
            "nodes": self.nodes.iter().map(RedisCost::json).collect::<Vec<_>>(),
        })
    }

    pub fn lines(&self) -> Vec<String> {
        let d = &self.delta;
        let k = |n: u64| match self.per_1k(n) {
            Some(x) => format!("{x:.1}"),
            None => "-".into(),
        };
        let cpu_ms = match self.per_1k_f(d.cpu * 1000.0) {
            Some(x) => format!("{x:.2}"),
            None => "-".into(),
        };
        let mut out = vec![format!(
            "  Redis {} over the run: {} commands, {} B in, {} B out, {:.2} CPU s; per 1,000 messages ({}): {} commands, {} B in, {} B out, {} CPU ms",
            self.addr,
            d.commands,
            d.net_in,
            d.net_out,
            d.cpu,
            self.messages,
            k(d.commands),
            k(d.net_in),
            k(d.net_out),
            cpu_ms
        )];
        let calls: Vec<String> = self
            .by_calls()
            .into_iter()
            .map(|(name, n)| format!("{name} {}", k(n)))
            .collect();
        if !calls.is_empty() {
            out.push(format!(
                "    commands per 1,000 messages: {}",
                calls.join(", ")
            ));
        }
        for n in &self.nodes {
            let nd = &n.delta;
            out.push(format!(
                "    node {}: {} commands, {} B in, {} B out, {:.2} CPU s",
                n.addr, nd.commands, nd.net_in, nd.net_out, nd.cpu
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_and_deltas() {
        let stats = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:120\r\n\
            instantaneous_ops_per_sec:0\r\ntotal_net_input_bytes:5000\r\ntotal_net_output_bytes:90000\r\n";
        let cs = "# Commandstats\r\ncmdstat_info:calls=10,usec=500,usec_per_call=50.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_xadd:calls=100,usec=900,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r\n";
        let cpu = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\nused_cpu_sys_children:0.000000\r\n";
        let after = Snap::parse(stats, cs, cpu);
        assert_eq!(after.cpu, 3.75);
        assert_eq!(
            (after.commands, after.net_in, after.net_out),
            (120, 5000, 90000)
        );
        assert_eq!(after.calls.get("xadd"), Some(&100));
        let before = Snap {
            commands: 16,
            net_in: 1000,
            net_out: 10000,
            calls: [("info".to_owned(), 8)].into(),
            cpu: 1.25,
        };
        let overhead = Snap {
            commands: 2,
            net_in: 60,
            net_out: 8000,
            calls: [("info".to_owned(), 2)].into(),
            cpu: 0.0,
        };
        let d = after.delta(&before, &overhead);
        assert_eq!((d.commands, d.net_in, d.net_out), (102, 3940, 72000));
        // The readings' own INFO calls are taken off: no `info` left.
        assert_eq!(d.calls, [("xadd".to_owned(), 100)].into());
        assert_eq!(d.cpu, 2.5);
        let one = After {
            addr: "r:1".into(),
            delta: d.clone(),
        };
        let j = cost(std::slice::from_ref(&one), 200, Some(50)).json();
        assert_eq!(j["cpu_ms_per_1k_messages"], 2500.0 * 5.0);
        assert_eq!(j["nodes"].as_array().map(Vec::len), Some(0));
        assert_eq!(j["commandstats"]["xadd"]["per_commit"], 2.0);
        assert_eq!(j["commands_per_commit"], 102.0 / 50.0);
        assert_eq!(j["commands_per_1k_messages"], 510.0);
        assert_eq!(j["commandstats"]["xadd"]["per_1k_messages"], 500.0);
        assert_eq!(j["bytes_per_1k_messages"], (3940.0 + 72000.0) * 5.0);
        // Two nodes: the sum, and each one apart.
        let other = After {
            addr: "r:2".into(),
            delta: Snap {
                commands: 8,
                net_in: 60,
                net_out: 0,
                calls: [("xadd".to_owned(), 4), ("get".to_owned(), 4)].into(),
                cpu: 0.5,
            },
        };
        let j = cost(&[one, other], 200, None).json();
        assert_eq!(j["addr"], "r:1,r:2");
        assert_eq!(j["commands"], 110);
        assert_eq!(j["cpu_seconds"], 3.0);
        assert_eq!(j["commandstats"]["xadd"]["calls"], 104);
        assert_eq!(j["commandstats"]["get"]["calls"], 4);
        assert_eq!(j["nodes"][1]["addr"], "r:2");
        assert_eq!(j["nodes"][1]["commands"], 8);
    }
}
