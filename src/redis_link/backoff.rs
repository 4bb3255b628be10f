//! Reconnecting to Redis without hammering it, the one backoff of the
//! bus, the recovery sessions and presence: each failure doubles the
//! wait before the next attempt, up to a cap; a success resets it.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Backoff {
    wait: Duration,
    next: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            wait: FIRST,
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
        self.next = Some(now + self.wait);
        self.wait = (self.wait * 2).min(MAX);
    }

    pub(crate) fn succeeded(&mut self) {
        self.wait = FIRST;
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new();
        let t = Instant::now();
        assert!(b.ready(t));
        b.failed(t);
        assert!(!b.ready(t));
        assert!(b.ready(t + FIRST));
        b.failed(t);
        assert_eq!(b.remaining(t), FIRST * 2);
        for _ in 0..20 {
            b.failed(t);
        }
        assert_eq!(b.remaining(t), MAX);
        b.succeeded();
        assert!(b.ready(t));
    }
}
