//! Redis Cluster hash slots, and the hash tags that place keys on them.
//!
//! A Redis Cluster serves each key from the master that owns the key's
//! slot: CRC16 (XMODEM) of the key, or of its hash tag (the text between
//! the first `{` and the next `}`, when not empty), modulo 16384. Every
//! key of one command or script must lie in one slot, so keys used
//! together share a tag; and keys of different partitions should spread
//! over the masters, so their tags are chosen by [`spread_tag`].

/// The number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// Redis Cluster's slot of `key` (its hash tag's, if it has one).
pub(crate) fn slot(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// The hash tag of `key`, as Redis reads it.
fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|b| *b == b'{')?;
    let len = key[open + 1..].iter().position(|b| *b == b'}')?;
    let tag = &key[open + 1..open + 1 + len];
    (!tag.is_empty()).then_some(tag)
}

/// The tags tried: 1 to 3 characters of `0-9a-z`, shortest first, then in
/// alphabetical order (about 48,000 tags: all but a few slots have one
/// within a slot or two).
fn candidates() -> impl Iterator<Item = String> {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let one = ALPHABET.iter().map(|a| (*a as char).to_string());
    let two = ALPHABET
        .iter()
        .flat_map(|a| ALPHABET.iter().map(move |b| [*a, *b]))
        .map(|t| String::from_utf8_lossy(&t).into_owned());
    let three = ALPHABET
        .iter()
        .flat_map(|a| {
            ALPHABET
                .iter()
                .flat_map(move |b| ALPHABET.iter().map(move |c| [*a, *b, *c]))
        })
        .map(|t| String::from_utf8_lossy(&t).into_owned());
    one.chain(two).chain(three)
}

/// The hash tag of partition `p` of `n`: the first of the candidate tags
/// whose slot lies nearest the middle of the partition's share of the slot
/// space, `(p + 0.5) * 16384 / n`. Partitions' keys so spread evenly over
/// the slots, hence over the masters of a cluster whose slots are split
/// evenly (what `redis-cli --cluster create` does). A pure function: every
/// instance computes the same tags. `n` of 0 is taken as 1.
pub(crate) fn spread_tag(p: u32, n: u32) -> String {
    let n = u64::from(n.max(1));
    // (2p + 1) * 16384 / 2n: the middle, in integers.
    let target = ((2 * u64::from(p) + 1) * u64::from(SLOTS) / (2 * n)) as i64;
    let mut best: Option<(i64, String)> = None;
    for tag in candidates() {
        let d = (i64::from(slot(tag.as_bytes())) - target).abs();
        if best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            let exact = d == 0;
            best = Some((d, tag));
            if exact {
                break;
            }
        }
    }
    best.map(|(_, tag)| tag).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // CLUSTER KEYSLOT of Redis 7 for these keys.
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"), "an empty tag is no tag");
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"gatrix:bus:{b7}:log:3"), slot(b"b7"));
    }

    #[test]
    fn partitions_spread_evenly_over_the_slot_space() {
        for n in [1u32, 2, 3, 4, 7, 8, 16, 32] {
            let share = f64::from(SLOTS) / f64::from(n);
            let mut tags = Vec::new();
            for p in 0..n {
                let tag = spread_tag(p, n);
                assert!((1..=3).contains(&tag.len()), "{tag}");
                let s = f64::from(slot(tag.as_bytes()));
                let middle = (f64::from(p) + 0.5) * share;
                assert!(
                    (s - middle).abs() <= 3.0,
                    "n={n} p={p}: {tag} at {s}, not near {middle}"
                );
                tags.push(tag);
            }
            // Each in its own share, so over 3 masters of equal ranges
            // the partitions differ by at most one per master.
            let mut per_master = [0u32; 3];
            for t in &tags {
                let s = u32::from(slot(t.as_bytes()));
                per_master[(s * 3 / u32::from(SLOTS)) as usize] += 1;
            }
            let (lo, hi) = (per_master.iter().min(), per_master.iter().max());
            assert!(hi.unwrap() - lo.unwrap() <= 1, "n={n}: {per_master:?}");
        }
        assert_eq!(spread_tag(0, 1), spread_tag(0, 1), "pure");
        assert_eq!(spread_tag(0, 0), spread_tag(0, 1));
    }
}
