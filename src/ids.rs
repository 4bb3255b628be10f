//! Identifiers: random session tokens, channel ids, and the layout of
//! message ids, which the store's commit makes from its counters
//! (docs/architecture.md, "Message ids").
//!
//! A message id is made inside the commit transaction from the same
//! counters as the message's `pos`, so it is unique across every instance
//! on one database without any coordination of its own, and it stays below
//! 2^53 (a plain JSON number):
//!
//! ```text
//! id = month << 43 | ((pos << 5 | partition) mod 2^43)
//!      10 bits        43 bits: the low 38 bits of pos, 5 bits of partition
//! ```
//!
//! - `month`: whole months from 2024-01 (the id epoch) to the message's
//!   `created_at` (UTC), 0..=1023: ids of a month lie in
//!   `[month << 43, (month + 1) << 43)`, so a month is an id range and the
//!   MySQL store partitions `messages` by it (`month_start`).
//! - `partition`: the message's sequencing partition (0..32), `pos` its
//!   position in that partition (gapless, unique per partition).
//!
//! Unique: two messages of one partition have different `pos`; their ids
//! could only meet if their positions differed by a multiple of 2^38 in one
//! month, that is if one partition committed 2^38 (275 billion) messages in
//! a month. Limits: months past 2109-04 (index 1023) all share the last
//! month's range (ids stay unique by the rule above, retention no longer
//! tells them apart); a month's ids are not in commit order across
//! partitions (order is `pos`'s job, per partition).

use base64::Engine as _;
use rand::RngCore;

/// A random URL-safe token of `bytes` random bytes (Engine.IO `sid`,
/// Socket.IO socket ids).
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A new channel id: 128 random bits (22 URL-safe characters). Made by
/// whichever instance serves the request, with no counter to share: two
/// instances (or two shards) meet with probability about n²/2^129, nil
/// in practice, and the database's primary key refuses a repeat (the
/// request fails, nothing is overwritten).
pub fn channel_id() -> String {
    random_token(16)
}

/// The first year of the id epoch (month index 0 is January of it).
pub const EPOCH_YEAR: i32 = 2024;
/// Bits below the month in an id.
pub const MONTH_SHIFT: u32 = 43;
/// Bits of the sequencing partition, the lowest of an id.
pub const PARTITION_BITS: u32 = 5;
/// Sequencing partitions an id can tell apart (SEQUENCER_PARTITIONS'
/// upper bound).
pub const MAX_PARTITIONS: u32 = 1 << PARTITION_BITS;
/// The last month index (10 bits: ids stay below 2^53).
pub const MAX_MONTH: u32 = (1 << (53 - MONTH_SHIFT)) - 1;
const LOW_MASK: u64 = (1 << MONTH_SHIFT) - 1;

/// The id of the message committed at position `pos` of `partition`
/// (below [`MAX_PARTITIONS`]) in month index `month` (see
/// [`month_index`]).
pub fn message_id(month: u32, partition: u32, pos: u64) -> u64 {
    let month = u64::from(month.min(MAX_MONTH));
    let partition = u64::from(partition) & u64::from(MAX_PARTITIONS - 1);
    (month << MONTH_SHIFT) | (((pos << PARTITION_BITS) | partition) & LOW_MASK)
}

/// The month index of (`year`, `month` 1..=12): months since 2024-01,
/// 0 before it, [`MAX_MONTH`] after 2109-04.
pub fn month_index(year: i32, month: u8) -> u32 {
    let n = (i64::from(year) - i64::from(EPOCH_YEAR)) * 12 + i64::from(month) - 1;
    n.clamp(0, i64::from(MAX_MONTH)) as u32
}

/// The (year, month) of a month index.
pub fn year_month(index: u32) -> (i32, u8) {
    (EPOCH_YEAR + (index / 12) as i32, (index % 12) as u8 + 1)
}

/// The month index of an RFC 3339 timestamp as the server writes them
/// (`2026-12-05T14:08:20.000Z`: only `YYYY-MM` is read); `None` when it
/// does not start that way.
pub fn month_index_of_timestamp(ts: &str) -> Option<u32> {
    let b = ts.as_bytes();
    if b.len() < 7 || b[4] != b'-' {
        return None;
    }
    let year: i32 = ts.get(0..4)?.parse().ok()?;
    let month: u8 = ts.get(5..7)?.parse().ok()?;
    (1..=12).contains(&month).then(|| month_index(year, month))
}

/// The month index of an instant (milliseconds since the Unix epoch, UTC).
pub fn month_index_of_unix_ms(unix_ms: u64) -> u32 {
    let t = time::OffsetDateTime::from_unix_timestamp((unix_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    month_index(t.year(), u8::from(t.month()))
}

/// The month index of the message `created_at` (the writer's commit), or
/// of now when it is not a server timestamp.
pub fn month_index_at(created_at: &str) -> u32 {
    month_index_of_timestamp(created_at).unwrap_or_else(|| {
        month_index_of_unix_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    })
}

/// The smallest id of month index `month`: the bound below which the
/// months before it lie.
pub fn first_id_of_month(month: u32) -> u64 {
    u64::from(month.min(MAX_MONTH + 1)) << MONTH_SHIFT
}

/// The month index an id was made in.
pub fn month_of_id(id: u64) -> u32 {
    (id >> MONTH_SHIFT) as u32
}

/// The sequencing partition an id was committed in.
pub fn partition_of_id(id: u64) -> u32 {
    (id & u64::from(MAX_PARTITIONS - 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_layout_is_month_then_pos_then_partition() {
        assert_eq!(message_id(0, 0, 1), 32);
        assert_eq!(message_id(0, 3, 1), 35);
        assert_eq!(message_id(1, 0, 0), 1 << 43);
        // 2026-12 is month 35.
        assert_eq!(month_index(2026, 12), 35);
        assert_eq!(message_id(35, 31, 7), (35 << 43) | (7 << 5) | 31);
        assert_eq!(partition_of_id(message_id(35, 31, 7)), 31);
        assert_eq!(month_of_id(message_id(35, 31, 7)), 35);
        // pos wraps inside its 38 bits, never into the month.
        let wrapped = message_id(35, 2, (1 << 38) + 9);
        assert_eq!(wrapped, message_id(35, 2, 9));
        assert_eq!(month_of_id(wrapped), 35);
    }

    #[test]
    fn ids_stay_below_2_pow_53() {
        let largest = message_id(u32::MAX, 31, u64::MAX);
        assert_eq!(largest, (1 << 53) - 1);
        assert_eq!(month_index(3000, 1), MAX_MONTH);
        assert_eq!(month_index(2109, 4), MAX_MONTH);
        assert_eq!(month_index(2109, 3), MAX_MONTH - 1);
        assert_eq!(first_id_of_month(MAX_MONTH + 1), 1 << 53);
    }

    #[test]
    fn ids_of_one_month_are_unique_across_partitions_and_positions() {
        let ids: HashSet<u64> = (0..32)
            .flat_map(|p| (1..=2000).map(move |pos| message_id(40, p, pos)))
            .collect();
        assert_eq!(ids.len(), 32 * 2000);
        assert!(ids.iter().all(|&id| {
            first_id_of_month(40) <= id && id < first_id_of_month(41) && month_of_id(id) == 40
        }));
    }

    #[test]
    fn months_come_from_server_timestamps() {
        assert_eq!(
            month_index_of_timestamp("2024-01-31T23:59:59.999Z"),
            Some(0)
        );
        assert_eq!(
            month_index_of_timestamp("2024-02-01T00:00:00.000Z"),
            Some(1)
        );
        assert_eq!(
            month_index_of_timestamp("2023-12-01T00:00:00.000Z"),
            Some(0)
        );
        assert_eq!(month_index_of_timestamp("2026-13-01"), None);
        assert_eq!(month_index_of_timestamp("soon"), None);
        assert_eq!(month_index_of_timestamp("2026/12/01"), None);
        assert_eq!(year_month(35), (2026, 12));
        assert_eq!(year_month(month_index(2031, 7)), (2031, 7));
        // 2026-12-01T00:00:00Z = 1796083200 s since 1970.
        assert_eq!(month_index_of_unix_ms(1_796_083_200_000), 35);
        assert_eq!(month_index_of_unix_ms(1_796_083_200_000 - 1), 34);
        assert!(month_index_at("not a time") >= month_index(2026, 1));
    }

    #[test]
    fn tokens_are_random() {
        assert_ne!(random_token(15), random_token(15));
        assert_eq!(random_token(15).len(), 20);
        assert_ne!(channel_id(), channel_id());
        assert_eq!(channel_id().len(), 22);
    }
}
