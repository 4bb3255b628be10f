//! Server-side counters around a measured phase, for one instance or
//! several behind a load balancer: the servers' CPU time (/proc/PID/stat),
//! each instance's store-writer commits (its /metrics) and the shared
//! Redis's commands and bytes (INFO). Read before and after the run; the
//! report holds the deltas.

mod metrics;
mod redis_info;

use anyhow::Result;
use clap::Args;
use serde_json::{Map, Value, json};

#[derive(Args, Clone, Debug, Default)]
pub struct ServerArgs {
    /// Server pid, to report its CPU time (/proc/PID/stat) per delivery;
    /// repeat it (or a comma list) for several instances: their sum.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// An instance's metrics URL (`http://host:port/metrics`, or
    /// `host:port`), repeat it per instance: store-writer commits/s.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// The Redis the instances share (`host:port` or a `redis://` URL):
    /// its commands, bytes and CPU per 1,000 messages over the run (INFO);
    /// repeat it (or a comma list) for each master of a Redis Cluster:
    /// their sum, and each node's.
    #[arg(long, value_delimiter = ',')]
    pub redis: Vec<String>,
}

/// The counters as read before the run.
pub struct Probe {
    pids: Vec<u32>,
    cpu0: Vec<Option<f64>>,
    metrics: Vec<(String, metrics::Scrape)>,
    redis: Vec<redis_info::Before>,
}

/// The counters read again after the run.
pub struct Finished {
    pids: Vec<u32>,
    /// CPU seconds per pid over the run.
    cpu: Vec<Option<f64>>,
    metrics: Vec<(String, Result<Vec<metrics::Window>>)>,
    redis: Vec<Result<redis_info::After>>,
}

/// What the run cost on the server side: JSON fields for the result
/// document and lines for the text summary.
pub struct Report {
    pub json: Map<String, Value>,
    pub lines: Vec<String>,
}

impl Probe {
    /// Reads every counter once; fails when a /metrics URL or the Redis
    /// cannot be read (better before the run than a report without them).
    pub fn start(a: &ServerArgs) -> Result<Probe> {
        let mut pids = a.server_pid.clone();
        // One process listed twice (one server as two instances) counts once.
        pids.sort_unstable();
        pids.dedup();
        let metrics = a
            .metrics
            .iter()
            .map(|u| Ok((u.clone(), metrics::scrape(u)?)))
            .collect::<Result<Vec<_>>>()?;
        let redis = a
            .redis
            .iter()
            .map(|r| redis_info::Before::read(r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Probe {
            cpu0: pids.iter().map(|&p| proc_cpu_secs(p)).collect(),
            pids,
            metrics,
            redis,
        })
    }

    /// Reads the counters again, at the end of the measured phase.
    pub fn finish(self) -> Finished {
        Finished {
            cpu: self
                .pids
                .iter()
                .zip(&self.cpu0)
                .map(|(&p, b)| Some(proc_cpu_secs(p)? - (*b)?))
                .collect(),
            pids: self.pids,
            metrics: self
                .metrics
                .into_iter()
                .map(|(url, before)| {
                    let w = metrics::scrape(&url).map(|after| metrics::windows(&before, &after));
                    (url, w)
                })
                .collect(),
            redis: self
                .redis
                .into_iter()
                .map(redis_info::Before::finish)
                .collect(),
        }
    }
}

impl Finished {
    /// The report. `duration_s` is the measured phase (the rates'
    /// denominator), `messages` the messages committed (acked) and
    /// `deliveries` what receivers got (None: CPU per message instead).
    pub fn report(&self, duration_s: f64, messages: u64, deliveries: Option<u64>) -> Report {
        let mut r = Report {
            json: Map::new(),
            lines: Vec::new(),
        };
        self.cpu(&mut r, messages, deliveries);
        let mut instances = Vec::new();
        for (i, (url, windows)) in self.metrics.iter().enumerate() {
            match windows {
                Ok(windows) => {
                    for w in windows {
                        r.lines.push(format!(
                            "  instance {i} writer{}: {} commits ({:.1}/s), {} messages per commit  [{url}]",
                            if w.labels.is_empty() {
                                String::new()
                            } else {
                                format!(" {}", w.labels)
                            },
                            w.commits,
                            w.commits as f64 / duration_s.max(1e-9),
                            w.messages_per_commit()
                                .map_or("-".to_string(), |m| format!("{m:.1}"))
                        ));
                    }
                    let writer: Vec<Value> = windows.iter().map(|w| w.json(duration_s)).collect();
                    instances.push(json!({"metrics": url, "writer": writer}));
                }
                Err(e) => {
                    r.lines.push(format!("  instance {i}: {e:#}"));
                    instances.push(json!({"metrics": url, "error": format!("{e:#}")}));
                }
            }
        }
        if !instances.is_empty() {
            r.json
                .insert("server_metrics".into(), Value::Array(instances));
        }
        // Every node or none: a sum missing a node would mislead.
        match self
            .redis
            .iter()
            .map(|r| r.as_ref())
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(nodes) if nodes.is_empty() => {}
            Ok(nodes) => {
                let nodes: Vec<redis_info::After> = nodes.into_iter().cloned().collect();
                let cost = redis_info::cost(&nodes, messages, self.commits());
                r.lines.extend(cost.lines());
                r.json.insert("redis".into(), cost.json());
            }
            Err(e) => {
                r.lines.push(format!("  Redis: {e:#}"));
                r.json
                    .insert("redis".into(), json!({"error": format!("{e:#}")}));
            }
        }
        r
    }

    /// Writer commits over the run summed over the instances (an address
    /// listed twice counted once); None without --metrics or when one could
    /// not be read.
    fn commits(&self) -> Option<u64> {
        let mut seen = std::collections::BTreeSet::new();
        let mut total = 0;
        for (url, windows) in &self.metrics {
            let windows = windows.as_ref().ok()?;
            if seen.insert(url.trim_start_matches("http://")) {
                total += windows.iter().map(|w| w.commits).sum::<u64>();
            }
        }
        (!seen.is_empty()).then_some(total)
    }

    fn cpu(&self, r: &mut Report, messages: u64, deliveries: Option<u64>) {
        let (unit, n) = match deliveries {
            Some(d) => ("delivery", d),
            None => ("message", messages),
        };
        if self.pids.is_empty() {
            // The fields stay in the JSON (null), as before several pids.
            r.json.insert("server_cpu_s".into(), Value::Null);
            r.json
                .insert(format!("server_cpu_us_per_{unit}"), Value::Null);
            return;
        }
        let per_pid = &self.cpu;
        let total: Option<f64> = per_pid.iter().copied().sum();
        let per = total.filter(|_| n > 0).map(|s| s * 1e6 / n as f64);
        let by_pid: Map<String, Value> = self
            .pids
            .iter()
            .zip(per_pid)
            .map(|(p, s)| (p.to_string(), json!(s)))
            .collect();
        r.json.insert("server_cpu_s".into(), json!(total));
        r.json
            .insert(format!("server_cpu_us_per_{unit}"), json!(per));
        r.json
            .insert("server_cpu_s_by_pid".into(), Value::Object(by_pid));
        let mut line = match total {
            Some(cpu) => format!("  server CPU {cpu:.2} s during the measured phase and drain"),
            None => "  server CPU: a --server-pid could not be read".to_string(),
        };
        if self.pids.len() > 1 {
            let parts: Vec<String> = self
                .pids
                .iter()
                .zip(per_pid)
                .map(|(p, s)| match s {
                    Some(s) => format!("pid {p} {s:.2} s"),
                    None => format!("pid {p} ?"),
                })
                .collect();
            line.push_str(&format!(" ({})", parts.join(", ")));
        }
        if let Some(per) = per {
            line.push_str(&format!(": {per:.3} us per {unit}"));
        }
        r.lines.push(line);
    }
}

/// User + system CPU time of a process so far, seconds (/proc/PID/stat).
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}
