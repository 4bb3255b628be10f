//! Reconnecting to Redis without hammering it, the one backoff of the
//! bus, the recovery sessions and presence: each failure doubles the
//! wait before the next attempt, up to a cap (`REDIS_RECONNECT_MAX_MS`);
//! a success resets it.
//!
//! Each wait is jittered ("equal jitter": half the doubled wait plus a
//! random part of the other half). Without it every thread of every
//! instance retries on the same schedule after an outage and they all
//! reconnect in lockstep, a thundering herd on a Redis that just came
//! back. Half the wait stays fixed so that a Redis refusing at once
//! (connection refused) is never retried in a tight loop.

use std::time::{Duration, Instant};

/// The first wait before jitter: the first retry comes after 50–100 ms.
const FIRST: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct Backoff {
    /// The next wait before jitter: doubles per failure up to `max`.
    wait: Duration,
    max: Duration,
    next: Option<Instant>,
}

impl Backoff {
    /// A backoff whose waits grow up to `max` (`redis_reconnect_max_ms`);
    /// a `max` below the first wait caps that one too.
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            wait: FIRST.min(max),
            max,
            next: None,
        }
    }

    /// May we try now?
    pub(crate) fn ready(&self, now: Instant) -> bool {
        self.next.is_none_or(|n| now >= n)
    }

    /// How long until the next attempt (zero if it may be now).
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.next
            .map_or(Duration::ZERO, |n| n.saturating_duration_since(now))
    }

    pub(crate) fn failed(&mut self, now: Instant) {
        self.failed_with(now, |half| rand::random_range(Duration::ZERO..=half));
    }

    /// [`Backoff::failed`] with the random part drawn by `draw`, given
    /// the half of the wait it may add (at most that much: clamped).
    fn failed_with(&mut self, now: Instant, draw: impl FnOnce(Duration) -> Duration) {
        let half = self.wait / 2;
        let jitter = draw(half).min(half);
        self.next = Some(now + (self.wait - half) + jitter);
        self.wait = (self.wait * 2).min(self.max);
    }

    pub(crate) fn succeeded(&mut self) {
        self.wait = FIRST.min(self.max);
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(5);

    /// The waits with the least and the most jitter: each doubles up to
    /// the cap, half of it fixed.
    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        for (draw, first, second, last) in [
            (
                (|_| Duration::ZERO) as fn(Duration) -> Duration,
                FIRST / 2,
                FIRST,
                MAX / 2,
            ),
            (|half| half, FIRST, FIRST * 2, MAX),
            // A draw past the half is clamped to it.
            (|half| half * 3, FIRST, FIRST * 2, MAX),
        ] {
            let mut b = Backoff::new(MAX);
            let t = Instant::now();
            assert!(b.ready(t));
            b.failed_with(t, draw);
            assert!(!b.ready(t));
            assert_eq!(b.remaining(t), first);
            assert!(b.ready(t + first));
            b.failed_with(t, draw);
            assert_eq!(b.remaining(t), second);
            for _ in 0..20 {
                b.failed_with(t, draw);
            }
            assert_eq!(b.remaining(t), last);
            b.succeeded();
            assert!(b.ready(t));
            b.failed_with(t, draw);
            assert_eq!(b.remaining(t), first, "a success starts over");
        }
    }

    /// The real draw stays within each wait's bounds, and differs between
    /// tries (what spreads the instances' retries).
    #[test]
    fn random_waits_stay_within_their_bounds() {
        let t = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut b = Backoff::new(MAX);
            let mut wait = FIRST;
            for step in 0..12 {
                b.failed(t);
                let r = b.remaining(t);
                assert!(
                    r >= wait / 2 && r <= wait,
                    "step {step}: {r:?} for {wait:?}"
                );
                if step == 0 {
                    seen.insert(r);
                }
                wait = (wait * 2).min(MAX);
            }
        }
        assert!(seen.len() > 10, "the first waits hardly vary: {seen:?}");
    }

    /// The cap is the setting: a small one holds every wait under it,
    /// even the first.
    #[test]
    fn the_cap_is_configurable() {
        let t = Instant::now();
        let mut b = Backoff::new(Duration::from_secs(1));
        for _ in 0..20 {
            b.failed_with(t, |half| half);
        }
        assert_eq!(b.remaining(t), Duration::from_secs(1));
        let mut b = Backoff::new(Duration::from_millis(60));
        b.failed_with(t, |half| half);
        assert_eq!(b.remaining(t), Duration::from_millis(60));
        b.failed_with(t, |_| Duration::ZERO);
        assert_eq!(b.remaining(t), Duration::from_millis(30));
    }
}
