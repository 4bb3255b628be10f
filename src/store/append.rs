//! What the writer's commit does to a batch of new messages, whichever the
//! backend: [`Store::append`](super::Store::append) runs these steps inside
//! its transaction, with the counters it read (and, on MySQL, locked) there.
//!
//! 1. `dedupe`: a (user, clientMessageId) already stored, or already
//!    earlier in the batch, is not inserted again (so it burns no seq).
//! 2. `assign_seqs`: each channel's next seqs, after its last one.
//!
//! `pos` is the backend's: SQLite's AUTOINCREMENT, MySQL's sequencer row.

use std::collections::HashMap;

use super::MessageRecord;

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
}
