//! What the writer's commit does to a batch of new messages, whichever the
//! backend: [`Store::append`](super::Store::append) runs these steps inside
//! its transaction, with the counters it read (and, on MySQL, locked) there.
//!
//! 1. `dedupe`: a (user, clientMessageId) already stored, or already
//!    earlier in the batch, is not inserted again (so it burns no seq).
//! 2. `assign_seqs`: each channel's next seqs, after its last one.
//! 3. `assign_positions`: each row's next `pos` in its channel's
//!    sequencing partition ([`partition_of`]), after the partition's last
//!    one, and its id, made of the two (`crate::ids`): ids are known only
//!    once committed.
//!
//! The last positions are the backend's: SQLite's AUTOINCREMENT counter,
//! MySQL's `sequencer` rows.

use std::collections::{BTreeMap, HashMap};

use super::MessageRecord;
use super::sequencing::partition_of;
use crate::ids;

/// A batch of new messages as one commit stored it.
#[derive(Debug, Default)]
pub struct Appended {
    /// The rows inserted, with their seq and pos, in commit order.
    pub rows: Vec<MessageRecord>,
    /// Per message of the batch, in order: `Ok(i)`, it is `rows[i]` (the
    /// first message with that index was stored, a later one repeats it
    /// within the batch), or `Err(first)`, its (user, clientMessageId) was
    /// stored by an earlier commit.
    pub placed: Vec<std::result::Result<usize, MessageRecord>>,
}

/// The (user, clientMessageId) pairs of a batch, sorted, each once.
pub(crate) fn client_keys(batch: &[&MessageRecord]) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = batch
        .iter()
        .filter_map(|m| Some((m.user_id.clone(), m.client_message_id.clone()?)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Step 1: the rows to insert (seq and pos still unset) and where each
/// message of `batch` went, given the `earlier` messages found for its
/// [`client_keys`].
pub(crate) fn dedupe(
    batch: &[&MessageRecord],
    earlier: &HashMap<(String, String), MessageRecord>,
) -> Appended {
    let mut out = Appended {
        rows: Vec::with_capacity(batch.len()),
        placed: Vec::with_capacity(batch.len()),
    };
    let mut in_batch: HashMap<(String, String), usize> = HashMap::new();
    for m in batch {
        if let Some(cmid) = &m.client_message_id {
            let key = (m.user_id.clone(), cmid.clone());
            if let Some(&i) = in_batch.get(&key) {
                out.placed.push(Ok(i)); // same message again in this batch
                continue;
            }
            if let Some(first) = earlier.get(&key) {
                out.placed.push(Err(first.clone()));
                continue;
            }
            in_batch.insert(key, out.rows.len());
        }
        out.placed.push(Ok(out.rows.len()));
        out.rows.push((*m).clone());
    }
    out
}

/// The channels `rows` write to, sorted, each once: the order their
/// counter rows are locked in, the same in every writer (no deadlock).
pub(crate) fn channels(rows: &[MessageRecord]) -> Vec<&str> {
    let mut ids: Vec<&str> = rows.iter().map(|m| m.channel_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Step 2: gives each row the next seq of its channel; `last` holds each
/// channel's last seq (from the store; a channel missing from it starts
/// at 1) and ends with the new ones.
pub(crate) fn assign_seqs(rows: &mut [MessageRecord], last: &mut HashMap<String, u64>) {
    for row in rows {
        // The backends read every channel's counter first: no key to copy.
        if let Some(seq) = last.get_mut(&row.channel_id) {
            *seq += 1;
            row.seq = *seq;
        } else {
            row.seq = 1;
            last.insert(row.channel_id.clone(), 1);
        }
    }
}

/// The sequencing partitions `batch` writes to among `n`, ascending, each
/// once: the order their counter rows are locked in, in every writer.
pub(crate) fn partitions(batch: &[&MessageRecord], n: u32) -> Vec<u32> {
    let mut out: Vec<u32> = batch
        .iter()
        .map(|m| partition_of(&m.channel_id, n))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Step 3: gives each row, in order, the next position of its partition
/// among `n` (`last` holds each partition's last position, one for every
/// partition of the rows, and ends with the new ones) and, with `make_ids`,
/// its id (month of its `created_at`, partition, pos). Without, the ids
/// are the caller's (`Store::insert_messages`).
pub(crate) fn assign_positions(
    rows: &mut [MessageRecord],
    n: u32,
    last: &mut BTreeMap<u32, u64>,
    make_ids: bool,
) {
    for row in rows {
        let partition = partition_of(&row.channel_id, n);
        let pos = last.entry(partition).or_insert(0);
        *pos += 1;
        row.pos = *pos;
        if make_ids {
            row.id = ids::message_id(ids::month_index_at(&row.created_at), partition, row.pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, channel: &str, user: &str, cmid: Option<&str>) -> MessageRecord {
        MessageRecord {
            id,
            pos: 0,
            channel_id: channel.into(),
            seq: 0,
            user_id: user.into(),
            content: String::new(),
            kind: "text".into(),
            client_message_id: cmid.map(Into::into),
            reply_to: None,
            created_at: String::new(),
            edited_at: None,
            deleted_at: None,
            pinned: None,
        }
    }

    #[test]
    fn repeats_take_no_seq_and_channels_continue_from_their_counters() {
        let batch = [
            msg(1, "b", "u", Some("x")),
            msg(2, "a", "u", None),
            msg(3, "b", "u", Some("x")),
            msg(4, "b", "u", Some("y")),
            msg(5, "a", "v", Some("x")),
        ];
        let refs: Vec<&MessageRecord> = batch.iter().collect();
        let keys = client_keys(&refs);
        assert_eq!(keys.len(), 3, "{keys:?}");
        let earlier = HashMap::from([(("u".to_owned(), "y".to_owned()), msg(9, "b", "u", None))]);
        let mut out = dedupe(&refs, &earlier);
        let ids: Vec<u64> = out.rows.iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 2, 5]);
        assert_eq!(channels(&out.rows), ["a", "b"]);
        let mut last = HashMap::from([("a".to_owned(), 7), ("b".to_owned(), 0)]);
        assign_seqs(&mut out.rows, &mut last);
        let seqs: Vec<u64> = out.rows.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [1, 8, 9]);
        assert_eq!(
            last,
            HashMap::from([("a".to_owned(), 9), ("b".to_owned(), 1)])
        );
        let placed: Vec<std::result::Result<usize, u64>> = out
            .placed
            .into_iter()
            .map(|p| p.map_err(|m| m.id))
            .collect();
        assert_eq!(placed, [Ok(0), Ok(1), Ok(0), Err(9), Ok(2)]);
    }

    #[test]
    fn positions_are_per_partition_and_ids_are_made_of_them() {
        // "general" is in partition 1 of 2, "c-1" in 0 (FNV-1a).
        assert_eq!(partition_of("general", 2), 1);
        assert_eq!(partition_of("c-1", 2), 0);
        let mut rows = vec![
            msg(0, "general", "u", None),
            msg(0, "c-1", "u", None),
            msg(0, "general", "u", None),
        ];
        for m in &mut rows {
            m.created_at = "2026-12-05T14:08:20.000Z".into();
        }
        let refs: Vec<&MessageRecord> = rows.iter().collect();
        assert_eq!(partitions(&refs, 2), [0, 1]);
        assert_eq!(partitions(&refs, 1), [0]);
        let mut last = BTreeMap::from([(0, 10), (1, 4)]);
        assign_positions(&mut rows, 2, &mut last, true);
        let got: Vec<(u64, u64)> = rows.iter().map(|m| (m.pos, m.id)).collect();
        let month = ids::month_index(2026, 12);
        assert_eq!(
            got,
            [
                (5, ids::message_id(month, 1, 5)),
                (11, ids::message_id(month, 0, 11)),
                (6, ids::message_id(month, 1, 6)),
            ]
        );
        assert_eq!(last, BTreeMap::from([(0, 11), (1, 6)]));
        // Given ids stay.
        let mut given = vec![msg(77, "c-1", "u", None)];
        assign_positions(&mut given, 2, &mut last, false);
        assert_eq!((given[0].pos, given[0].id), (12, 77));
    }
}
