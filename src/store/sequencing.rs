//! Sequencing partitions: which `pos` counter a channel's messages take
//! (SEQUENCER_PARTITIONS, 1 by default). Each partition has its own row in
//! MySQL's `sequencer` table and its own gapless `pos`; a channel always
//! maps to the same partition, so its messages are in `pos` order within
//! one partition. The function is part of the stored data's meaning (a
//! message's partition is in its id and its row), so it never changes
//! between versions or machines: FNV-1a (64-bit) of the channel id's
//! bytes, modulo the partition count. Changing SEQUENCER_PARTITIONS moves
//! channels to other partitions from then on (their `seq` continues; what
//! is stored stays where it is).

use crate::ids::MAX_PARTITIONS;

/// The largest SEQUENCER_PARTITIONS: a partition is 5 bits of a message id.
pub const MAX_SEQUENCER_PARTITIONS: u32 = MAX_PARTITIONS;

/// FNV-1a, 64 bits: stable across builds, processes and machines (unlike
/// std's hasher, which is seeded).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The sequencing partition of `channel_id` among `partitions` (1..=32;
/// 0 is taken as 1): `fnv1a64(channel_id) % partitions`.
pub fn partition_of(channel_id: &str, partitions: u32) -> u32 {
    (fnv1a64(channel_id.as_bytes()) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned: a change here re-partitions every stored channel.
    #[test]
    fn partitions_are_pinned() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        let got: Vec<u32> = ["general", "random", "c-1", "c-2", "😀", ""]
            .iter()
            .map(|c| partition_of(c, 32))
            .collect();
        assert_eq!(got, PINNED_32);
        assert_eq!(partition_of("anything", 1), 0);
        assert_eq!(partition_of("anything", 0), 0);
        assert_eq!(partition_of("a", 2), (0xaf63_dc4c_8601_ec8c_u64 % 2) as u32);
    }

    // Computed apart from this code (Python, the FNV-1a reference).
    const PINNED_32: [u32; 6] = [11, 2, 20, 13, 8, 5];

    #[test]
    fn the_config_allows_exactly_the_partitions_an_id_holds() {
        let mysql = |n| crate::config::Config {
            sequencer_partitions: n,
            database_url: Some("mysql://u@h:3306/db".into()),
            ..Default::default()
        };
        assert!(mysql(MAX_SEQUENCER_PARTITIONS).problems().is_empty());
        assert_eq!(mysql(MAX_SEQUENCER_PARTITIONS + 1).problems().len(), 1);
        assert_eq!(MAX_SEQUENCER_PARTITIONS, 1 << crate::ids::PARTITION_BITS);
    }

    #[test]
    fn channels_spread_over_partitions() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[partition_of(&format!("channel-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n > 800), "{counts:?}");
    }
}
