//! Deliveries over time, for `fanout --outage-*` (docs/benchmarks.md,
//! "Catch-up after an outage"): in bins of [`BIN_MS`] from the measured
//! phase's start, the messages sent (by scheduled send time), the
//! deliveries received (by receive time) and the largest latency among
//! them. What a delivery is owed is known from the sends alone (each
//! message goes to every member of its channel), so a delivery that never
//! arrives keeps the backlog up instead of vanishing from the figures.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Width of a bin.
pub const BIN_MS: u64 = 20;
const BIN_NS: u64 = BIN_MS * 1_000_000;

/// The shared, lock-free bins; one `record_*` per send and per delivery.
pub struct Timeline {
    sent: Vec<AtomicU64>,
    received: Vec<AtomicU64>,
    max_latency_us: Vec<AtomicU64>,
    sum_latency_us: Vec<AtomicU64>,
}

/// A copy of the bins after the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bins {
    pub sent: Vec<u64>,
    pub received: Vec<u64>,
    pub max_latency_us: Vec<u64>,
    pub sum_latency_us: Vec<u64>,
}

impl Timeline {
    /// Bins covering `window_s` seconds (later events go to the last bin).
    pub fn new(window_s: f64) -> Timeline {
        let n = ((window_s * 1000.0 / BIN_MS as f64).ceil() as usize).max(1) + 1;
        let bins = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Timeline {
            sent: bins(),
            received: bins(),
            max_latency_us: bins(),
            sum_latency_us: bins(),
        }
    }

    fn bin(&self, start_ns: u64, at_ns: u64) -> usize {
        ((at_ns.saturating_sub(start_ns) / BIN_NS) as usize).min(self.sent.len() - 1)
    }

    /// One message sent, scheduled at `sched_ns`.
    pub fn record_sent(&self, start_ns: u64, sched_ns: u64) {
        self.sent[self.bin(start_ns, sched_ns)].fetch_add(1, Relaxed);
    }

    /// One delivery received at `now_ns` of a message scheduled at `sched_ns`.
    pub fn record_received(&self, start_ns: u64, sched_ns: u64, now_ns: u64) {
        let b = self.bin(start_ns, now_ns);
        let us = now_ns.saturating_sub(sched_ns) / 1000;
        self.received[b].fetch_add(1, Relaxed);
        self.max_latency_us[b].fetch_max(us, Relaxed);
        self.sum_latency_us[b].fetch_add(us, Relaxed);
    }

    pub fn bins(&self) -> Bins {
        let get = |v: &[AtomicU64]| v.iter().map(|a| a.load(Relaxed)).collect();
        Bins {
            sent: get(&self.sent),
            received: get(&self.received),
            max_latency_us: get(&self.max_latency_us),
            sum_latency_us: get(&self.sum_latency_us),
        }
    }
}

/// When the outage began and ended, in ms from the measured phase's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Marks {
    /// The down command returned (Redis stopped).
    pub down_ms: f64,
    /// The up command was started.
    pub up_start_ms: f64,
    /// The up command returned (Redis answering again).
    pub up_ms: f64,
    /// The last scheduled send.
    pub sends_end_ms: f64,
}

/// What the bins say about the outage and the catch-up after it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatchUp {
    /// The backlog (deliveries owed and not yet received, at a bin's
    /// end) that 90% of the bins before the outage stayed at or under:
    /// the level to get back to (a percentile, so that one slow moment
    /// before the outage does not set it).
    pub baseline_backlog: u64,
    /// Mean latency of the deliveries received before the down, from the
    /// down to the level, and after the level (ms).
    pub mean_latency_ms: [Option<f64>; 3],
    /// The largest backlog from the down to the up.
    pub outage_max_backlog: u64,
    /// The largest latency of a delivery received from the down to the
    /// level (to the end when never level), ms.
    pub outage_max_latency_ms: f64,
    /// The backlog when Redis answered again (at the start of that bin).
    pub backlog_at_up: u64,
    /// From Redis answering again to the end of the first bin whose
    /// backlog is back at the baseline; `None`: never.
    pub level_after_ms: Option<f64>,
    /// Deliveries received from the up bin to the level bin, and their
    /// rate (per s; `None` when nothing beyond the baseline was owed at
    /// the up, or never level).
    pub caught_up_deliveries: u64,
    pub catch_up_rate_per_s: Option<f64>,
    /// After the level, to the end of the sends: the largest backlog (a
    /// relapse shows here) and the largest latency (ms).
    pub after_max_backlog: u64,
    pub after_max_latency_ms: f64,
}

/// The value `q` (0..=1) of the way up the sorted values (0 when none).
fn percentile(v: &[u64], q: f64) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).saturating_sub(1);
    v.get(i).copied().unwrap_or(0)
}

fn bin_of(ms: f64) -> usize {
    (ms.max(0.0) / BIN_MS as f64) as usize
}

/// The backlog at each bin's end: `members` deliveries per message sent
/// so far, less the deliveries received so far.
pub fn backlog(b: &Bins, members: u64) -> Vec<u64> {
    let (mut owed, mut got) = (0u64, 0u64);
    b.sent
        .iter()
        .zip(&b.received)
        .map(|(s, r)| {
            owed += s * members;
            got += r;
            owed.saturating_sub(got)
        })
        .collect()
}

/// The catch-up after the outage `m`. The first second (at most the first
/// half before the down) is left out of the baseline (connections' first
/// sends, the server warming up).
pub fn catch_up(b: &Bins, members: u64, m: Marks) -> CatchUp {
    let backlog = backlog(b, members);
    let last = backlog.len().saturating_sub(1);
    let (down, up, end) = (
        bin_of(m.down_ms).min(last),
        bin_of(m.up_ms).min(last),
        bin_of(m.sends_end_ms).min(last),
    );
    let warm = (1000 / BIN_MS as usize).min(down / 2);
    let baseline_backlog = percentile(&backlog[warm..down], 0.9);
    let max_of = |v: &[u64], r: std::ops::RangeInclusive<usize>| {
        let (a, z) = (*r.start(), (*r.end()).min(last));
        if a > z {
            0
        } else {
            v[a..=z].iter().copied().max().unwrap_or(0)
        }
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let backlog_at_up = if up > 0 { backlog[up - 1] } else { 0 };
    let level = (up..=last).find(|&i| backlog[i] <= baseline_backlog);
    let level_after_ms = level.map(|i| (((i + 1) as u64 * BIN_MS) as f64 - m.up_ms).max(0.0));
    let caught_up_deliveries = level.map_or(0, |i| b.received[up..=i].iter().sum());
    let catch_up_rate_per_s = level_after_ms
        .filter(|&t| t > 0.0 && backlog_at_up > baseline_backlog)
        .map(|t| caught_up_deliveries as f64 / (t / 1000.0));
    let mean = |a: usize, z: usize| {
        let (a, z) = (a.min(last + 1), z.min(last + 1));
        let n: u64 = b.received[a..z].iter().sum();
        let sum: u64 = b.sum_latency_us.get(a..z).map_or(0, |v| v.iter().sum());
        (n > 0).then(|| sum as f64 / n as f64 / 1000.0)
    };
    let to_level = level.map_or(last + 1, |i| i + 1);
    CatchUp {
        baseline_backlog,
        mean_latency_ms: [
            mean(warm, down),
            mean(down, to_level),
            mean(to_level, last + 1),
        ],
        outage_max_backlog: max_of(&backlog, down..=up),
        outage_max_latency_ms: ms(max_of(&b.max_latency_us, down..=level.unwrap_or(last))),
        backlog_at_up,
        level_after_ms,
        caught_up_deliveries,
        catch_up_rate_per_s,
        after_max_backlog: level.map_or(0, |i| max_of(&backlog, i + 1..=end)),
        after_max_latency_ms: level.map_or(0.0, |i| ms(max_of(&b.max_latency_us, i + 1..=last))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_by_send_and_receive_time() {
        let t = Timeline::new(1.0);
        let n = (1000 / BIN_MS) as usize + 1;
        let (s, bin) = (1_000_000_000, BIN_NS);
        t.record_sent(s, s + bin / 2);
        t.record_received(s, s + bin / 2, s + 2 * bin + bin / 2);
        t.record_received(s, s + bin / 2, s + 5_000_000_000); // past the window
        let b = t.bins();
        assert_eq!(b.sent.len(), n);
        assert_eq!(b.sent[0], 1);
        assert_eq!(b.received[2], 1);
        assert_eq!(b.max_latency_us[2], 2 * bin / 1000);
        assert_eq!(b.received[n - 1], 1, "late events go to the last bin");
    }

    #[test]
    fn backlog_counts_members_per_message() {
        let b = Bins {
            sent: vec![2, 1, 0],
            received: vec![10, 5, 15],
            max_latency_us: vec![0; 3],
            sum_latency_us: vec![0; 3],
        };
        assert_eq!(backlog(&b, 10), vec![10, 15, 0]);
    }

    /// Marks in bins: down at bin 20, the up command at 24, Redis
    /// answering in the middle of bin 25, the last send in bin 39.
    fn marks() -> Marks {
        let b = BIN_MS as f64;
        Marks {
            down_ms: 20.0 * b,
            up_start_ms: 24.0 * b,
            up_ms: 25.5 * b,
            sends_end_ms: 39.9 * b,
        }
    }

    /// 40 bins: one message per bin to 10 members, delivered in its bin,
    /// except during the outage (bins 20..=25, nothing); after the up the
    /// owed 60 and the new 20 come in bins 26 and 27.
    fn outage_bins() -> Bins {
        let n = 40;
        let mut b = Bins {
            sent: vec![1; n],
            received: vec![10; n],
            max_latency_us: vec![1_000; n],
            sum_latency_us: vec![10_000; n],
        };
        for i in 20..26 {
            b.received[i] = 0;
            b.max_latency_us[i] = 0;
            b.sum_latency_us[i] = 0;
        }
        b.received[26] = 40;
        b.received[27] = 40;
        b.max_latency_us[26] = 600_000;
        b.sum_latency_us[26] = 40 * 500_000;
        b.sum_latency_us[27] = 40 * 200_000;
        b
    }

    #[test]
    fn catch_up_measures_from_up_to_level() {
        let c = catch_up(&outage_bins(), 10, marks());
        let bin = BIN_MS as f64;
        assert_eq!(c.baseline_backlog, 0);
        assert_eq!(c.outage_max_backlog, 60);
        assert_eq!(c.backlog_at_up, 50, "at the start of bin 25");
        // Level at the end of bin 27: 2.5 bins after the up.
        assert_eq!(c.level_after_ms, Some(2.5 * bin));
        assert_eq!(c.caught_up_deliveries, 80);
        assert_eq!(c.catch_up_rate_per_s, Some(80.0 / (2.5 * bin / 1000.0)));
        assert_eq!(c.outage_max_latency_ms, 600.0);
        assert_eq!((c.after_max_backlog, c.after_max_latency_ms), (0, 1.0));
        // 1 ms before and after; during, 80 deliveries at 500 and 200 ms.
        assert_eq!(c.mean_latency_ms, [Some(1.0), Some(350.0), Some(1.0)]);
    }

    #[test]
    fn one_slow_moment_before_does_not_set_the_level() {
        let mut b = outage_bins();
        // Bin 12 (of the 10 baseline bins 10..20) delivers nothing, 13
        // makes up for it: a backlog of 10 in one bin of ten.
        b.received[12] = 0;
        b.received[13] = 20;
        let c = catch_up(&b, 10, marks());
        assert_eq!(c.baseline_backlog, 0);
        assert_eq!(c.level_after_ms, Some(2.5 * BIN_MS as f64));
    }

    #[test]
    fn percentile_of_bins() {
        assert_eq!(percentile(&[], 0.9), 0);
        assert_eq!(percentile(&[5], 0.9), 5);
        let v: Vec<u64> = (1..=10).rev().collect();
        assert_eq!(percentile(&v, 0.9), 9);
        assert_eq!(percentile(&v, 1.0), 10);
    }

    #[test]
    fn never_level_when_deliveries_are_lost() {
        let mut b = outage_bins();
        b.received[27] = 30; // 10 deliveries never arrive
        let c = catch_up(&b, 10, marks());
        assert_eq!(c.level_after_ms, None);
        assert_eq!(c.catch_up_rate_per_s, None);
    }

    #[test]
    fn a_relapse_after_the_level_is_reported() {
        let mut b = outage_bins();
        b.received[30] = 0;
        b.received[31] = 20;
        let c = catch_up(&b, 10, marks());
        assert_eq!(c.level_after_ms, Some(2.5 * BIN_MS as f64));
        assert_eq!(c.after_max_backlog, 10);
    }

    #[test]
    fn level_at_once_when_nothing_is_owed() {
        let b = Bins {
            sent: vec![1; 40],
            received: vec![10; 40],
            max_latency_us: vec![1_000; 40],
            sum_latency_us: vec![10_000; 40],
        };
        let c = catch_up(&b, 10, marks());
        assert_eq!(c.backlog_at_up, 0);
        // The up bin (25) is level: measured to its end.
        assert_eq!(c.level_after_ms, Some(0.5 * BIN_MS as f64));
        assert_eq!(c.caught_up_deliveries, 10);
        assert_eq!(c.catch_up_rate_per_s, None, "nothing was owed");
    }
}
