//! `fanout --outage-down CMD --outage-up CMD`: an outage in the middle of
//! the measured phase (e.g. Redis stopped for 30 s, then started again),
//! and the catch-up after it, from the deliveries' timeline
//! ([`crate::timeline`]; docs/benchmarks.md, "Catch-up after an outage").

use crate::client::now_ns;
use crate::timeline::{Bins, CatchUp, Marks, catch_up};
use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Args, Clone, Default)]
pub struct OutageArgs {
    /// Shell command that starts the outage (e.g. stops Redis); run
    /// `--outage-at` seconds into the measured phase. With it, the run
    /// records the deliveries' timeline and reports the catch-up.
    #[arg(long, requires = "outage_up")]
    pub outage_down: Option<String>,
    /// Shell command that ends it (e.g. starts Redis and waits until it
    /// answers); run `--outage-secs` after the down command started.
    #[arg(long, requires = "outage_down")]
    pub outage_up: Option<String>,
    /// Seconds into the measured phase when the outage starts.
    #[arg(long, default_value_t = 10.0)]
    pub outage_at: f64,
    /// Seconds from the start of the down command to the up command.
    #[arg(long, default_value_t = 30.0)]
    pub outage_secs: f64,
}

impl OutageArgs {
    pub fn enabled(&self) -> bool {
        self.outage_down.is_some()
    }

    /// Refuses an outage that would not end inside the sends.
    pub fn check(&self, duration: f64) -> Result<()> {
        if self.enabled() && self.outage_at + self.outage_secs >= duration {
            bail!(
                "--outage-at {} + --outage-secs {} must end before the run's -d {duration}",
                self.outage_at,
                self.outage_secs
            );
        }
        Ok(())
    }
}

/// The outage's times, in Unix ns, as they happened.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    pub down_ns: u64,
    pub up_start_ns: u64,
    pub up_ns: u64,
}

fn sh(what: &str, cmd: &str) {
    match std::process::Command::new("sh").arg("-c").arg(cmd).status() {
        Ok(s) if s.success() => {}
        Ok(s) => eprintln!("warning: --outage-{what} exited {s}"),
        Err(e) => eprintln!("warning: --outage-{what} did not run: {e}"),
    }
}

/// Runs the outage on its own thread, timed from the phase's `start_ns`.
pub fn spawn(a: &OutageArgs, start_ns: u64) -> Option<JoinHandle<Times>> {
    let (down, up) = (a.outage_down.clone()?, a.outage_up.clone()?);
    let (at, secs) = (a.outage_at, a.outage_secs);
    Some(std::thread::spawn(move || {
        let sleep_until = |t: u64| {
            let now = now_ns();
            if t > now {
                std::thread::sleep(Duration::from_nanos(t - now));
            }
        };
        let begin = start_ns + (at * 1e9) as u64;
        sleep_until(begin);
        sh("down", &down);
        let down_ns = now_ns();
        sleep_until(begin + (secs * 1e9) as u64);
        let up_start_ns = now_ns();
        sh("up", &up);
        Times {
            down_ns,
            up_start_ns,
            up_ns: now_ns(),
        }
    }))
}

/// The catch-up of a run: its marks (ms from the phase's start) and the
/// figures.
pub fn report(
    t: Times,
    start_ns: u64,
    duration: f64,
    bins: &Bins,
    members: u64,
) -> (Marks, CatchUp) {
    let ms = |ns: u64| ns.saturating_sub(start_ns) as f64 / 1e6;
    let marks = Marks {
        down_ms: ms(t.down_ns),
        up_start_ms: ms(t.up_start_ns),
        up_ms: ms(t.up_ns),
        sends_end_ms: duration * 1000.0,
    };
    (marks, catch_up(bins, members, marks))
}

pub fn json(m: &Marks, c: &CatchUp, bins: &Bins) -> Value {
    json!({
        "down_ms": m.down_ms, "up_start_ms": m.up_start_ms, "up_ms": m.up_ms,
        "baseline_backlog": c.baseline_backlog,
        "mean_latency_ms": {"before": c.mean_latency_ms[0], "outage_to_level": c.mean_latency_ms[1], "after": c.mean_latency_ms[2]},
        "outage_max_backlog": c.outage_max_backlog,
        "outage_max_latency_ms": c.outage_max_latency_ms,
        "backlog_at_up": c.backlog_at_up,
        "level_after_ms": c.level_after_ms,
        "caught_up_deliveries": c.caught_up_deliveries,
        "catch_up_rate_per_s": c.catch_up_rate_per_s,
        "after_max_backlog": c.after_max_backlog,
        "after_max_latency_ms": c.after_max_latency_ms,
        "bin_ms": crate::timeline::BIN_MS,
        "bins": {"sent": bins.sent, "received": bins.received, "max_latency_us": bins.max_latency_us, "sum_latency_us": bins.sum_latency_us},
    })
}

pub fn lines(m: &Marks, c: &CatchUp, members: u64) -> Vec<String> {
    let mut out = vec![
        format!(
            "  outage: down at {:.1} s, up command at {:.1} s, answering at {:.1} s (from the phase's start)",
            m.down_ms / 1e3,
            m.up_start_ms / 1e3,
            m.up_ms / 1e3
        ),
        format!(
            "  backlog (deliveries owed, at a {} ms bin's end): before {} (90% of the bins at or under), during the outage {} at most, {} when answering again; latency up to {:.0} ms until level",
            crate::timeline::BIN_MS,
            c.baseline_backlog,
            c.outage_max_backlog,
            c.backlog_at_up,
            c.outage_max_latency_ms
        ),
        {
            let f = |m: Option<f64>| m.map_or("-".to_owned(), |m| format!("{m:.1} ms"));
            let [before, during, after] = c.mean_latency_ms;
            format!(
                "  mean latency: before the outage {}, from the down to the level {}, after the level {}",
                f(before),
                f(during),
                f(after)
            )
        },
    ];
    out.push(match (c.level_after_ms, c.catch_up_rate_per_s) {
        (None, _) => "  catch-up: the backlog never came back to its level before the sends ended".into(),
        (Some(t), Some(r)) => format!(
            "  catch-up: level {:.0} ms after Redis answered; {} deliveries in that time, {:.0} deliveries/s ({:.0} messages/s at {members} members); afterwards backlog at most {}, latency at most {:.1} ms",
            t,
            c.caught_up_deliveries,
            r,
            r / members.max(1) as f64,
            c.after_max_backlog,
            c.after_max_latency_ms
        ),
        (Some(t), None) => format!(
            "  catch-up: nothing beyond the usual backlog owed when Redis answered; level {:.0} ms after; afterwards backlog at most {}, latency at most {:.1} ms",
            t, c.after_max_backlog, c.after_max_latency_ms
        ),
    });
    out
}
