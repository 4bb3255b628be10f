//! Identifiers: random session tokens, and message ids that are unique
//! across shards (and across restarts, being time-ordered).

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;

/// A random URL-safe token of `bytes` random bytes (Engine.IO `sid`,
/// Socket.IO socket ids).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Milliseconds since 2024-01-01T00:00:00Z, the id epoch.
const EPOCH_MS: u64 = 1_704_067_200_000;
const SHARD_BITS: u32 = 10;
const COUNTER_BITS: u32 = 12;

/// The smallest id an [`IdGen`] can make at `unix_ms` (milliseconds since
/// the Unix epoch): ids compare like the times they were made at, so an id
/// bound is a time bound. The MySQL store partitions messages by it.
pub fn first_id_at(unix_ms: u64) -> u64 {
    unix_ms.saturating_sub(EPOCH_MS) << (SHARD_BITS + COUNTER_BITS)
}

/// When an id was made, in milliseconds since the Unix epoch (the inverse of
/// [`first_id_at`] for the time part).
pub fn unix_ms_of(id: u64) -> u64 {
    (id >> (SHARD_BITS + COUNTER_BITS)) + EPOCH_MS
}

/// Snowflake-style message ids: 41 bits of milliseconds, 10 bits of shard,
/// 12 bits of counter. Larger than 2^53, so they travel as JSON strings.
/// One generator per shard; no coordination needed.
pub struct IdGen {
    shard: u64,
    last_ms: Cell<u64>,
    counter: Cell<u64>,
}

impl IdGen {
    pub fn new(shard: usize) -> Self {
        Self {
            shard: (shard as u64) & ((1 << SHARD_BITS) - 1),
            last_ms: Cell::new(0),
            counter: Cell::new(0),
        }
    }

    pub fn next(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .saturating_sub(EPOCH_MS);
        // Never go backwards, even if the wall clock does.
        let mut ms = now.max(self.last_ms.get());
        let mut counter = if ms == self.last_ms.get() {
            self.counter.get() + 1
        } else {
            0
        };
        if counter >= 1 << COUNTER_BITS {
            ms += 1; // borrow from the next millisecond
            counter = 0;
        }
        self.last_ms.set(ms);
        self.counter.set(counter);
        (ms << (SHARD_BITS + COUNTER_BITS)) | (self.shard << COUNTER_BITS) | counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_increasing_per_shard() {
        let g = IdGen::new(3);
        let mut seen = HashSet::new();
        let mut last = 0;
        for _ in 0..20_000 {
            let id = g.next();
            assert!(id > last);
            last = id;
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn shards_never_collide() {
        let (a, b) = (IdGen::new(0), IdGen::new(1));
        let ids: HashSet<u64> = (0..5000).flat_map(|_| [a.next(), b.next()]).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            a.next() > (1u64 << 53),
            "ids exceed 2^53 and must be strings"
        );
    }

    #[test]
    fn ids_map_to_times_and_back() {
        assert_eq!(first_id_at(EPOCH_MS), 0);
        assert_eq!(first_id_at(0), 0, "before the epoch saturates");
        assert_eq!(first_id_at(EPOCH_MS + 1), 1 << 22);
        let id = IdGen::new(1023).next();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(first_id_at(unix_ms_of(id)) <= id);
        assert!(id < first_id_at(unix_ms_of(id) + 1));
        assert!(unix_ms_of(id).abs_diff(now) < 1000);
    }

    #[test]
    fn tokens_are_random() {
        assert_ne!(random_token(15), random_token(15));
        assert_eq!(random_token(15).len(), 20);
    }
}
