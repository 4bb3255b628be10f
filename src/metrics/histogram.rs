//! A histogram that observes with three relaxed atomic adds and no lock.
//!
//! prometheus-client's own `Histogram` takes a write lock per observation;
//! uncontended it is cheap, but the broadcast latency is observed on a
//! shard's delivery path, where the rule is one atomic add per event and
//! never a lock. Bucket bounds are fixed integers in the metric's own unit
//! (nanoseconds for latencies, items for sizes), so finding the bucket is an
//! integer comparison; the scale turns them into the exposed unit (seconds)
//! only when scraped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

#[derive(Debug)]
struct Inner {
    /// Upper bounds (inclusive), ascending, in units.
    bounds: &'static [u64],
    /// One count per bound, then the +Inf bucket.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
    /// Units per exposed unit (1e9 for nanoseconds → seconds).
    scale: f64,
}

/// Clones share the same counts (one instance per shard).
#[derive(Debug, Clone)]
pub struct AtomicHistogram(Arc<Inner>);

impl AtomicHistogram {
    pub fn new(bounds: &'static [u64], scale: f64) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self(Arc::new(Inner {
            bounds,
            counts,
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
            scale,
        }))
    }

    /// Records one value, in units.
    #[inline]
    pub fn observe(&self, units: u64) {
        let i = self.0.bounds.partition_point(|&b| b < units);
        self.0.counts[i].fetch_add(1, Ordering::Relaxed);
        self.0.sum.fetch_add(units, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration (for histograms in nanoseconds).
    #[inline]
    pub fn observe_duration(&self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// (sum in the exposed unit, count, per-bucket counts with bounds).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &self.0;
        let mut buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .zip(inner.counts.iter())
            .map(|(&b, c)| (b as f64 / inner.scale, c.load(Ordering::Relaxed)))
            .collect();
        let inf = inner.counts[inner.bounds.len()].load(Ordering::Relaxed);
        buckets.push((f64::INFINITY, inf));
        // The count is derived from the buckets so that a scrape racing an
        // observation never shows a count that disagrees with them.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = inner.sum.load(Ordering::Relaxed) as f64 / inner.scale;
        (sum, count, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        static BOUNDS: [u64; 3] = [10, 20, 30];
        let h = AtomicHistogram::new(&BOUNDS, 10.0);
        for v in [0, 10, 11, 30, 31, 1000] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 6);
        assert!((sum - 108.2).abs() < 1e-9, "{sum}");
        assert_eq!(
            buckets,
            vec![(1.0, 2), (2.0, 1), (3.0, 1), (f64::INFINITY, 2)]
        );
    }

    #[test]
    fn clones_share_their_counts() {
        static BOUNDS: [u64; 1] = [1_000];
        let h = AtomicHistogram::new(&BOUNDS, 1e9);
        h.clone().observe_duration(Duration::from_micros(2));
        let (_, count, buckets) = h.snapshot();
        assert_eq!(count, 1);
        assert_eq!(buckets[1], (f64::INFINITY, 1));
    }
}
