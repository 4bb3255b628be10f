//! The applier's order: batches in, strictly in `pos` order out.
//!
//! Batches come from two places that race (this instance's writer, the
//! log in Redis) and from the store (gap fills and polling), in any order
//! and any number of times. [`Order`] lets each `pos` through exactly once
//! and never one before its predecessor: a repeat is dropped, an overlap is
//! trimmed, an early batch is parked until the run before it is complete.
//! A gap that stays open is the applier's to fill from the store
//! ([`Order::gap`]). Pure logic: no I/O, the clock is passed in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::batch::Span;

/// What became of an offered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Applied (in `out`), with whatever it unblocked.
    Applied,
    /// Every `pos` of it was applied already.
    Duplicate,
    /// It starts after a gap: held until the gap is filled.
    Parked,
    /// It starts after a gap and too many batches are parked: left to the
    /// gap fill, which reads it from the store.
    Dropped,
}

/// One partition's order: the next `pos` to apply and the parked batches.
#[derive(Debug)]
pub(crate) struct Order<B> {
    next: u64,
    /// Parked batches by first `pos`.
    parked: BTreeMap<u64, B>,
    max_parked: usize,
    /// Since when the applier waits for the gap before the first parked
    /// batch.
    gap_since: Option<Instant>,
}

impl<B: Span> Order<B> {
    /// Everything up to `applied` counts as applied (at start: the store's
    /// last `pos`, which this instance's clients hold no offset beyond).
    pub(crate) fn new(applied: u64, max_parked: usize) -> Self {
        Self {
            next: applied + 1,
            parked: BTreeMap::new(),
            max_parked: max_parked.max(1),
            gap_since: None,
        }
    }

    /// The last `pos` applied.
    pub(crate) fn applied(&self) -> u64 {
        self.next - 1
    }

    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        self.parked.len()
    }

    /// Offers one batch; what may be applied now is pushed onto `out`, in
    /// `pos` order (this batch, trimmed of what was applied, then the
    /// parked ones it unblocked).
    pub(crate) fn offer(&mut self, mut batch: B, now: Instant, out: &mut Vec<B>) -> Verdict {
        let (first, last) = batch.span();
        if last < self.next {
            return Verdict::Duplicate;
        }
        if first > self.next {
            return self.park(first, last, batch, now);
        }
        if first < self.next {
            batch.trim_before(self.next);
        }
        self.next = last + 1;
        out.push(batch);
        self.unpark(now, out);
        Verdict::Applied
    }

    fn park(&mut self, first: u64, last: u64, batch: B, now: Instant) -> Verdict {
        if let Some(held) = self.parked.get(&first) {
            if held.span().1 >= last {
                return Verdict::Parked; // a repeat of a parked batch
            }
        } else if self.parked.len() >= self.max_parked {
            // Keep the earliest: they are the ones applied first.
            match self.parked.last_key_value() {
                Some((&latest, _)) if latest > first => {
                    self.parked.remove(&latest);
                }
                _ => return Verdict::Dropped,
            }
        }
        self.parked.insert(first, batch);
        self.gap_since.get_or_insert(now);
        Verdict::Parked
    }

    /// Applies the parked batches the applied run has reached.
    fn unpark(&mut self, now: Instant, out: &mut Vec<B>) {
        let before = self.parked.len();
        while let Some(entry) = self.parked.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let mut batch = entry.remove();
            let (_, last) = batch.span();
            if last < self.next {
                continue; // covered by what was applied
            }
            batch.trim_before(self.next);
            self.next = last + 1;
            out.push(batch);
        }
        if self.parked.is_empty() {
            self.gap_since = None;
        } else if self.parked.len() != before {
            // A new gap, before the next parked batch: its own wait.
            self.gap_since = Some(now);
        }
    }

    /// Counts every position up to `to` as applied (the store no longer
    /// has them), and applies the parked batches that unblocks.
    pub(crate) fn skip_through(&mut self, to: u64, now: Instant, out: &mut Vec<B>) {
        if to >= self.next {
            self.next = to + 1;
            self.unpark(now, out);
        }
    }

    /// The gap to fill from the store, once it has been open for `wait`:
    /// the `pos` after [`Order::applied`] up to the one before the first
    /// parked batch.
    pub(crate) fn gap(&self, now: Instant, wait: Duration) -> Option<(u64, u64)> {
        let since = self.gap_since?;
        let (&first, _) = self.parked.first_key_value()?;
        (now.saturating_duration_since(since) >= wait).then_some((self.next, first - 1))
    }

    /// When [`Order::gap`] will answer, if a gap is open.
    pub(crate) fn gap_deadline(&self, wait: Duration) -> Option<Instant> {
        self.gap_since.map(|s| s + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of the positions `first..=last`.
    #[derive(Debug, Clone, PartialEq)]
    struct Run(u64, u64);

    impl Span for Run {
        fn span(&self) -> (u64, u64) {
            (self.0, self.1)
        }
        fn trim_before(&mut self, pos: u64) {
            self.0 = self.0.max(pos);
        }
    }

    fn offer(o: &mut Order<Run>, first: u64, last: u64) -> (Verdict, Vec<Run>) {
        let mut out = Vec::new();
        let v = o.offer(Run(first, last), Instant::now(), &mut out);
        (v, out)
    }

    #[test]
    fn in_order_batches_apply_at_once() {
        let mut o = Order::new(10, 8);
        assert_eq!(offer(&mut o, 11, 12), (Verdict::Applied, vec![Run(11, 12)]));
        assert_eq!(offer(&mut o, 13, 13), (Verdict::Applied, vec![Run(13, 13)]));
        assert_eq!(o.applied(), 13);
    }

    #[test]
    fn repeats_are_dropped_and_overlaps_trimmed() {
        let mut o = Order::new(0, 8);
        offer(&mut o, 1, 5);
        assert_eq!(offer(&mut o, 1, 5), (Verdict::Duplicate, vec![]));
        assert_eq!(offer(&mut o, 3, 4), (Verdict::Duplicate, vec![]));
        // A fill read by pos need not end where a commit ended.
        assert_eq!(offer(&mut o, 4, 7), (Verdict::Applied, vec![Run(6, 7)]));
        assert_eq!(o.applied(), 7);
    }

    #[test]
    fn an_early_batch_waits_for_its_predecessor() {
        let mut o = Order::new(0, 8);
        assert_eq!(offer(&mut o, 4, 6), (Verdict::Parked, vec![]));
        assert_eq!(offer(&mut o, 8, 9), (Verdict::Parked, vec![]));
        assert_eq!(o.applied(), 0);
        // The missing 1..=3 arrives: it, then 4..=6; 7 is still missing.
        assert_eq!(
            offer(&mut o, 1, 3),
            (Verdict::Applied, vec![Run(1, 3), Run(4, 6)])
        );
        assert_eq!(o.applied(), 6);
        assert_eq!(o.parked(), 1);
        assert_eq!(
            offer(&mut o, 7, 7),
            (Verdict::Applied, vec![Run(7, 7), Run(8, 9)])
        );
        assert_eq!(o.parked(), 0);
    }

    #[test]
    fn a_parked_batch_covered_by_a_fill_is_trimmed_or_dropped() {
        let mut o = Order::new(0, 8);
        offer(&mut o, 3, 4);
        offer(&mut o, 5, 8);
        // The store's read covers 1..=6: 3..=4 is inside it, 5..=8 overlaps.
        assert_eq!(
            offer(&mut o, 1, 6),
            (Verdict::Applied, vec![Run(1, 6), Run(7, 8)])
        );
        assert_eq!(o.applied(), 8);
    }

    #[test]
    fn a_repeat_of_a_parked_batch_is_held_once() {
        let mut o = Order::new(0, 8);
        offer(&mut o, 3, 4);
        assert_eq!(offer(&mut o, 3, 4), (Verdict::Parked, vec![]));
        assert_eq!(o.parked(), 1);
        assert_eq!(
            offer(&mut o, 1, 2),
            (Verdict::Applied, vec![Run(1, 2), Run(3, 4)])
        );
    }

    #[test]
    fn parking_is_bounded_and_keeps_the_earliest() {
        let mut o = Order::new(0, 2);
        offer(&mut o, 5, 5);
        offer(&mut o, 9, 9);
        assert_eq!(offer(&mut o, 12, 12), (Verdict::Dropped, vec![]));
        // An earlier one evicts the latest.
        assert_eq!(offer(&mut o, 7, 7), (Verdict::Parked, vec![]));
        assert_eq!(o.parked(), 2);
        let (v, out) = offer(&mut o, 1, 4);
        assert_eq!(v, Verdict::Applied);
        assert_eq!(out, vec![Run(1, 4), Run(5, 5)]);
        // 9 was evicted: 6 is missing, then 7.
        assert_eq!(
            o.gap(Instant::now() + Duration::from_secs(9), Duration::ZERO),
            Some((6, 6))
        );
    }

    #[test]
    fn positions_gone_from_the_store_are_skipped() {
        let mut o = Order::new(0, 8);
        offer(&mut o, 6, 7);
        let mut out = Vec::new();
        o.skip_through(3, Instant::now(), &mut out);
        assert!(out.is_empty(), "4..=5 still missing");
        assert_eq!(o.applied(), 3);
        o.skip_through(5, Instant::now(), &mut out);
        assert_eq!(out, vec![Run(6, 7)]);
        o.skip_through(2, Instant::now(), &mut out);
        assert_eq!(o.applied(), 7, "never backwards");
    }

    #[test]
    fn the_gap_is_reported_after_the_wait() {
        let mut o = Order::new(10, 8);
        let t0 = Instant::now();
        let wait = Duration::from_millis(100);
        assert_eq!(o.gap(t0, wait), None);
        o.offer(Run(14, 15), t0, &mut Vec::new());
        assert_eq!(o.gap(t0, wait), None, "not before the wait");
        assert_eq!(o.gap_deadline(wait), Some(t0 + wait));
        assert_eq!(o.gap(t0 + wait, wait), Some((11, 13)));
        // Filling part of it leaves the rest, with a fresh wait only once
        // a parked batch was applied.
        o.offer(Run(11, 12), t0 + wait, &mut Vec::new());
        assert_eq!(o.gap(t0 + wait, wait), Some((13, 13)));
        let mut out = Vec::new();
        o.offer(Run(13, 13), t0 + wait, &mut out);
        assert_eq!(out, vec![Run(13, 13), Run(14, 15)]);
        assert_eq!(o.gap(t0 + wait * 10, wait), None);
    }
}
