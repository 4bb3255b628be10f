//! The log's one write: a Lua script that appends a batch to its
//! partition's stream only in `pos` order.
//!
//! Each entry is one committed batch, its id `<last pos>-0` and its one
//! field `b` the envelope. The script compares the batch's `pos` range with
//! the stream's last entry:
//!
//! - it continues the stream (`first <= last + 1 < last'`): appended, and
//!   then every parked batch it reaches, in order;
//! - everything in it is in the stream already: a repeat, ignored (so
//!   re-publishing is idempotent);
//! - it starts after a gap: parked, in a hash bounded in size and expiring,
//!   until its predecessor comes (a gap nobody fills expires; readers find
//!   the missing `pos` in the store);
//! - the stream is empty (a new or emptied Redis): appended, whatever its
//!   `pos`; readers fill what lies before it from the store;
//! - `force` (the publisher's batches have been parked for the gap wait:
//!   the stream lost entries every reader has already, after a failover or
//!   a restore, and nobody will re-publish them): appended after the gap,
//!   the parked batches it passed dropped. Readers that lack the gap read
//!   it from the store.
//!
//! Stream entries may overlap (a gap fill read by `pos` need not end where
//! a commit ended), never go back and never skip: readers drop what they
//! applied. The stream is trimmed with `MAXLEN ~`. Numbers stay strings
//! in Lua where they are written back (Lua 5.1 would print a large `pos`
//! as `1.2e+14`); they are compared as doubles, exact below 2^53.

use std::sync::LazyLock;

use crate::redis_link::slots::spread_tag;

/// A partition's keys, under one hash tag (the script touches both, and a
/// Redis Cluster runs a script only on keys of one slot): the stream
/// `gatrix:bus:{<tag>}:log:<partition>` and its parked batches
/// `gatrix:bus:{<tag>}:parked:<partition>`. The tag is the partition's
/// [`spread_tag`], so partitions spread evenly over a cluster's masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionKeys {
    pub(crate) stream: String,
    pub(crate) parked: String,
}

impl PartitionKeys {
    /// The keys of `partition` of `partitions`.
    pub(crate) fn new(partition: u32, partitions: u32) -> Self {
        let tag = spread_tag(partition, partitions);
        let prefix = super::KEY_PREFIX;
        Self {
            stream: format!("{prefix}{{{tag}}}:log:{partition}"),
            parked: format!("{prefix}{{{tag}}}:parked:{partition}"),
        }
    }

    /// The keys of every partition, by partition.
    pub(crate) fn all(partitions: u32) -> Vec<Self> {
        (0..partitions).map(|p| Self::new(p, partitions)).collect()
    }
}

const APPEND: &str = r#"
local stream, parked = KEYS[1], KEYS[2]
local first, last, payload = ARGV[1], ARGV[2], ARGV[3]
local maxlen, ttl, max_parked = ARGV[4], ARGV[5], tonumber(ARGV[6])
local force = ARGV[7] == '1'

local function stream_last()
  local e = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #e == 0 then return nil end
  local id = e[1][1]
  return string.sub(id, 1, string.find(id, '-', 1, true) - 1)
end

local cur = stream_last()
if cur and tonumber(last) <= tonumber(cur) then
  return {0, cur}
end
if cur and tonumber(first) > tonumber(cur) + 1 and not force then
  if redis.call('HEXISTS', parked, first) == 0 and redis.call('HLEN', parked) >= max_parked then
    return {3, cur}
  end
  redis.call('HSET', parked, first, last .. ':' .. payload)
  redis.call('PEXPIRE', parked, ttl)
  return {2, cur}
end
redis.call('XADD', stream, 'MAXLEN', '~', maxlen, last .. '-0', 'b', payload)
cur = last
local progress = true
while progress do
  progress = false
  for _, f in ipairs(redis.call('HKEYS', parked)) do
    if tonumber(f) <= tonumber(cur) + 1 then
      -- Released (appended or, covered by what was appended, dropped).
      local v = redis.call('HGET', parked, f)
      redis.call('HDEL', parked, f)
      local sep = string.find(v, ':', 1, true)
      local plast = string.sub(v, 1, sep - 1)
      if tonumber(plast) > tonumber(cur) then
        redis.call('XADD', stream, 'MAXLEN', '~', maxlen, plast .. '-0', 'b', string.sub(v, sep + 1))
        cur = plast
        progress = true
      end
    end
  end
end
return {1, cur}
"#;

/// Loaded once per connection by the first EVALSHA that finds it missing
/// (the `redis` crate sends EVALSHA, and EVAL once on NOSCRIPT).
static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPEND));

/// What the script did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appended {
    /// In the stream (with the parked batches it reached).
    Added,
    /// Every `pos` of it was in the stream already.
    Repeat,
    /// After a gap: parked until its predecessor comes.
    Parked,
    /// After a gap, and the parking hash is full: left to the gap fill.
    ParkFull,
}

/// How the script bounds what it keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// `MAXLEN ~` of each stream, in entries (batches).
    pub stream_max_len: usize,
    /// How long an unfilled parked batch is kept.
    pub parked_ttl_ms: u64,
    /// How many batches a partition may have parked.
    pub max_parked: usize,
}

/// Appends one batch (`first..=last`, its envelope `payload`): one
/// command. Returns what became of it and the stream's last `pos` after.
/// `force` appends it after a gap instead of parking it.
pub(crate) fn append(
    conn: &mut impl redis::ConnectionLike,
    keys: &PartitionKeys,
    (first, last): (u64, u64),
    payload: &[u8],
    limits: Limits,
    force: bool,
) -> redis::RedisResult<(Appended, u64)> {
    let (status, cur): (i64, String) = SCRIPT
        .key(&keys.stream)
        .key(&keys.parked)
        .arg(first)
        .arg(last)
        .arg(payload)
        .arg(limits.stream_max_len)
        .arg(limits.parked_ttl_ms)
        .arg(limits.max_parked)
        .arg(if force { "1" } else { "0" })
        .invoke(conn)?;
    let what = match status {
        0 => Appended::Repeat,
        1 => Appended::Added,
        2 => Appended::Parked,
        _ => Appended::ParkFull,
    };
    Ok((what, cur.parse().unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::redis::RedisServer;

    /// Partition 0 of 1.
    fn keys() -> PartitionKeys {
        PartitionKeys::new(0, 1)
    }

    #[test]
    fn a_partitions_keys_share_one_slot_and_partitions_spread() {
        use crate::redis_link::slots::slot;
        let k = PartitionKeys::new(3, 8);
        let tag = spread_tag(3, 8);
        assert_eq!(k.stream, format!("gatrix:bus:{{{tag}}}:log:3"));
        assert_eq!(k.parked, format!("gatrix:bus:{{{tag}}}:parked:3"));
        assert_eq!(slot(k.stream.as_bytes()), slot(k.parked.as_bytes()));
        let slots: Vec<u16> = PartitionKeys::all(8)
            .iter()
            .map(|k| slot(k.stream.as_bytes()))
            .collect();
        assert!(slots.windows(2).all(|w| w[0] < w[1]), "{slots:?}");
        // The one partition of today's deployments (docs/operations.md).
        assert_eq!(PartitionKeys::new(0, 1).stream, "gatrix:bus:{fjl}:log:0");
    }

    const LIMITS: Limits = Limits {
        stream_max_len: 10_000,
        parked_ttl_ms: 60_000,
        max_parked: 4,
    };

    /// The stream's entries: (id's pos, payload).
    fn entries(conn: &mut redis::Connection) -> Vec<(u64, String)> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(keys().stream)
            .arg("-")
            .arg("+")
            .query(conn)
            .unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| {
                let pos = e.id.split('-').next().unwrap().parse().unwrap();
                let b: String = e.get("b").unwrap();
                (pos, b)
            })
            .collect()
    }

    fn put(conn: &mut redis::Connection, first: u64, last: u64) -> (Appended, u64) {
        append(
            conn,
            &keys(),
            (first, last),
            format!("{first}..{last}").as_bytes(),
            LIMITS,
            false,
        )
        .unwrap()
    }

    #[test]
    #[ignore = "needs redis-server: run scripts/test"]
    fn appends_in_order_ignores_repeats_and_parks_early_batches() {
        let redis = RedisServer::start();
        let mut c = redis.connection();
        assert_eq!(
            put(&mut c, 5, 7),
            (Appended::Added, 7),
            "an empty stream takes any start"
        );
        assert_eq!(put(&mut c, 8, 8), (Appended::Added, 8));
        assert_eq!(put(&mut c, 5, 7), (Appended::Repeat, 8));
        assert_eq!(put(&mut c, 8, 8), (Appended::Repeat, 8));
        assert_eq!(put(&mut c, 12, 13), (Appended::Parked, 8));
        assert_eq!(put(&mut c, 10, 11), (Appended::Parked, 8));
        assert_eq!(
            put(&mut c, 12, 13),
            (Appended::Parked, 8),
            "a parked repeat"
        );
        // 9 comes: it, then 10..=11, then 12..=13.
        assert_eq!(put(&mut c, 9, 9), (Appended::Added, 13));
        assert_eq!(
            entries(&mut c),
            [
                (7, "5..7".into()),
                (8, "8..8".into()),
                (9, "9..9".into()),
                (11, "10..11".into()),
                (13, "12..13".into())
            ]
        );
        let parked: usize = redis::cmd("HLEN").arg(keys().parked).query(&mut c).unwrap();
        assert_eq!(parked, 0);
    }

    #[test]
    #[ignore = "needs redis-server: run scripts/test"]
    fn an_overlapping_fill_continues_the_stream_and_releases_what_it_covers() {
        let redis = RedisServer::start();
        let mut c = redis.connection();
        put(&mut c, 1, 2);
        assert_eq!(put(&mut c, 4, 5), (Appended::Parked, 2));
        assert_eq!(put(&mut c, 6, 9), (Appended::Parked, 2));
        // A fill read from the store: 2..=6 overlaps both ends.
        assert_eq!(put(&mut c, 2, 6), (Appended::Added, 9));
        let ids: Vec<u64> = entries(&mut c).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            ids,
            [2, 6, 9],
            "4..=5 was covered by the fill, 6..=9 follows it"
        );
    }

    #[test]
    #[ignore = "needs redis-server: run scripts/test"]
    fn a_forced_batch_goes_past_a_gap_nobody_fills() {
        let redis = RedisServer::start();
        let mut c = redis.connection();
        put(&mut c, 1, 2);
        assert_eq!(put(&mut c, 5, 5), (Appended::Parked, 2));
        // The stream lost 3..=4 for good: the next batch is forced.
        let forced = append(&mut c, &keys(), (6, 7), b"6..7", LIMITS, true).unwrap();
        assert_eq!(forced, (Appended::Added, 7));
        let ids: Vec<u64> = entries(&mut c).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            ids,
            [2, 7],
            "5 was passed: readers read 3..=5 from the store"
        );
        let parked: usize = redis::cmd("HLEN").arg(keys().parked).query(&mut c).unwrap();
        assert_eq!(parked, 0);
        // And the stream goes on in order.
        assert_eq!(put(&mut c, 8, 8), (Appended::Added, 8));
        assert_eq!(put(&mut c, 4, 5), (Appended::Repeat, 8));
    }

    #[test]
    #[ignore = "needs redis-server: run scripts/test"]
    fn parking_is_bounded_and_expires() {
        let redis = RedisServer::start();
        let mut c = redis.connection();
        put(&mut c, 1, 1);
        for p in [3, 5, 7, 9] {
            assert_eq!(put(&mut c, p, p), (Appended::Parked, 1));
        }
        assert_eq!(put(&mut c, 11, 11), (Appended::ParkFull, 1));
        let ttl: i64 = redis::cmd("PTTL").arg(keys().parked).query(&mut c).unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
    }

    #[test]
    #[ignore = "needs redis-server: run scripts/test"]
    fn large_positions_keep_their_digits_and_the_stream_is_trimmed() {
        let redis = RedisServer::start();
        let mut c = redis.connection();
        let base = (1u64 << 52) + 12_345;
        let limits = Limits {
            stream_max_len: 10,
            ..LIMITS
        };
        for p in base..base + 500 {
            append(&mut c, &keys(), (p, p), b"x", limits, false).unwrap();
        }
        let e = entries(&mut c);
        assert_eq!(e.last().unwrap().0, base + 499);
        assert!(e.len() < 500, "MAXLEN ~ trims ({} entries)", e.len());
        // Nothing lost in the digits: the last entry continues the first
        // appended one without a gap in between.
        assert!(e.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    }
}
