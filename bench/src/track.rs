//! Per-channel seq accounting on one receiver: loss, duplicates, reordering.

use std::collections::BTreeSet;

/// Tracks the seqs one receiver saw on one channel. Seqs are gapless per
/// channel, so a jump leaves holes; a hole filled later is out of order, a
/// seq seen twice is a duplicate, and holes left at the end (plus anything
/// beyond the highest seen, up to the highest acked) are lost.
#[derive(Debug, Default)]
pub struct SeqTracker {
    highest: u64,
    missing: BTreeSet<u64>,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl SeqTracker {
    /// Starts after `last_seq`, the channel's seq at join time.
    pub fn new(last_seq: u64) -> Self {
        Self {
            highest: last_seq,
            ..Self::default()
        }
    }

    pub fn observe(&mut self, seq: u64) {
        if seq > self.highest {
            // Bound the hole set: a huge jump means something is badly off.
            let from = (self.highest + 1).max(seq.saturating_sub(1_000_000));
            self.missing.extend(from..seq);
            self.highest = seq;
        } else if self.missing.remove(&seq) {
            self.out_of_order += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Seqs never seen, given the channel's final seq (highest acked).
    pub fn lost(&self, final_seq: u64) -> u64 {
        self.missing.len() as u64 + final_seq.saturating_sub(self.highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_no_loss() {
        let mut t = SeqTracker::new(10);
        for s in 11..=20 {
            t.observe(s);
        }
        assert_eq!((t.lost(20), t.duplicated, t.out_of_order), (0, 0, 0));
    }

    #[test]
    fn gaps_dups_reorder() {
        let mut t = SeqTracker::new(0);
        for s in [1, 2, 4, 5, 3, 5, 7] {
            t.observe(s);
        }
        assert_eq!(t.out_of_order, 1); // 3 came late
        assert_eq!(t.duplicated, 1); // 5 twice
        assert_eq!(t.lost(9), 3); // 6 never, 8 and 9 never
    }
}
