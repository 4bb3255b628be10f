//! The coalescing of presence announcements per user ([`Herald`]): at
//! most one per `presence_interval_ms`, the final status announced.

use std::time::{Duration, Instant};

/// What others were last told about one user's status, and when.
#[derive(Debug, Default)]
pub(crate) struct Herald {
    /// The status last announced (offline before any).
    pub(super) online: bool,
    /// When it was announced.
    at: Option<Instant>,
    /// A change waits for the interval after `at` to end.
    pub(super) pending: bool,
}

impl Herald {
    /// The user's status changed to `online` at `now`: whether to announce
    /// it at once. If not, [`Herald::settle`] decides at the interval's end.
    pub(super) fn changed(&mut self, online: bool, now: Instant, every: Duration) -> bool {
        if self.pending {
            return false;
        }
        if self.at.is_some_and(|at| now < at + every) {
            self.pending = true;
            return false;
        }
        // A real edge out of the interval is announced even if it repeats
        // the last status recorded: with one process that cannot happen
        // (edges alternate, and a settle records the real status), but with
        // several a reaper announces an offline it never told online.
        self.online = online;
        self.at = Some(now);
        true
    }

    /// At or after the end of the interval of a pending change: whether the
    /// status `online` (the user's status now) is to be announced; `None`
    /// while it is not time yet or nothing is pending.
    pub(super) fn settle(&mut self, online: bool, now: Instant, every: Duration) -> Option<bool> {
        let due = self.at.map_or(now, |at| at + every);
        if !self.pending || now < due {
            return None;
        }
        self.pending = false;
        self.announce(online, now).then_some(online)
    }

    /// Whether a pending change's interval has ended at `now`.
    pub(super) fn due(&self, now: Instant, every: Duration) -> bool {
        self.pending && self.at.is_none_or(|at| now >= at + every)
    }

    /// Another instance announced `online` at `now`: that is what the
    /// recipients were last told, and the interval runs from it.
    pub(super) fn heard(&mut self, online: bool, now: Instant) {
        self.online = online;
        self.at = Some(now);
    }

    /// Records `online` as announced at `now`, unless it is what was last
    /// announced (the user flapped back): then there is nothing to say.
    fn announce(&mut self, online: bool, now: Instant) -> bool {
        if online == self.online {
            return false;
        }
        self.online = online;
        self.at = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Herald;
    use std::time::{Duration, Instant};

    const EVERY: Duration = Duration::from_secs(1);

    #[test]
    fn first_change_is_announced_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY), "first online");
        // Offline 10 ms later: waits for the interval's end.
        assert!(!h.changed(false, t0 + EVERY / 100, EVERY));
        assert_eq!(h.settle(false, t0 + EVERY / 2, EVERY), None, "not yet");
        assert_eq!(h.settle(false, t0 + EVERY, EVERY), Some(false));
        assert!(!h.pending);
        // Long after: at once again.
        assert!(h.changed(true, t0 + 5 * EVERY, EVERY));
    }

    #[test]
    fn flapping_is_coalesced_into_the_final_status() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY));
        // Thousands of changes within the interval: none announced.
        let mut online = true;
        for i in 1..=2000u32 {
            online = !online;
            assert!(!h.changed(online, t0 + EVERY * i / 4000, EVERY));
        }
        // Ended online (an even count of flips), as announced: nothing to say.
        assert!(online);
        assert_eq!(h.settle(online, t0 + EVERY, EVERY), None);
        assert!(!h.pending);
        // Ending offline instead is announced once, at the interval's end.
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY));
        for i in 1..=2001u32 {
            online = i % 2 == 0;
            h.changed(online, t0 + EVERY * i / 4002, EVERY);
        }
        assert!(!online);
        assert_eq!(h.settle(online, t0 + EVERY, EVERY), Some(false));
    }

    #[test]
    fn another_instances_announcement_counts_as_the_last_one() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        assert!(h.changed(true, t0, EVERY), "online, announced here");
        // Another instance announced offline: an online edge here within
        // the interval waits, and is then announced (it differs).
        h.heard(false, t0 + EVERY / 2);
        assert!(!h.changed(true, t0 + EVERY * 3 / 4, EVERY));
        assert!(
            !h.due(t0 + EVERY, EVERY),
            "the interval runs from the remote one"
        );
        assert!(h.due(t0 + EVERY * 3 / 2, EVERY));
        assert_eq!(h.settle(true, t0 + EVERY * 3 / 2, EVERY), Some(true));
        assert!(!h.due(t0 + 10 * EVERY, EVERY), "nothing pending");
    }

    #[test]
    fn an_edge_out_of_the_interval_is_announced_even_as_a_repeat() {
        let t0 = Instant::now();
        // A reaping instance never announced the user online.
        let mut h = Herald::default();
        assert!(h.changed(false, t0, EVERY));
        assert!(!h.online);
    }

    #[test]
    fn zero_interval_announces_every_change() {
        let t0 = Instant::now();
        let mut h = Herald::default();
        for i in 0..10u32 {
            assert!(h.changed(i % 2 == 0, t0, Duration::ZERO));
        }
    }
}
