//! What the writer's commit does to a batch of new messages, whichever the
//! backend: [`Store::append`](super::Store::append) runs these steps inside
//! its transaction, with the counters it read (and, on MySQL, locked) there.
//!
//! 1. `dedupe`: a (user, clientMessageId) already stored, or already
//!    earlier in the batch, is not inserted again (so it burns no seq).
//!    `thread_replies`: a reply in a thread (schema 8) whose head is no
//!    live message of its channel, or a reply itself, is refused (burns no
//!    seq either); the others are counted into their heads, read (on
//!    MySQL locked) in the transaction: only a batch with replies reads
//!    and writes heads.
//! 2. `assign_seqs`: each channel's next seqs, after its last one.
//! 3. `assign_positions`: each row's next `pos` in its channel's
//!    sequencing partition ([`partition_of`]), after the partition's last
//!    one, and its id, made of the two (`crate::ids`): ids are known only
//!    once committed.
//!
//! The last positions are the backend's: SQLite's AUTOINCREMENT counter,
//! MySQL's `sequencer` rows.

use std::collections::{BTreeMap, HashMap};

use super::sequencing::partition_of;
use super::{MessageRecord, Thread};
use crate::ids;

/// A batch of new messages as one commit stored it.
#[derive(Debug, Default)]
pub struct Appended {
    /// The rows inserted, with their seq and pos, in commit order.
    pub rows: Vec<MessageRecord>,
    /// Per message of the batch, in order, where it went.
    pub placed: Vec<Placed>,
}

/// Where one message of a batch went.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    /// It is `rows[i]`: the first message with that index was stored, a
    /// later one repeats it within the batch.
    Row(usize),
    /// Its (user, clientMessageId) was stored by an earlier commit: that
    /// message.
    Earlier(Box<MessageRecord>),
    /// Not stored, and why: a reply whose thread head is not one
    /// (`thread_replies`).
    Refused(String),
}

/// A thread head a batch replies to, as the commit read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub channel_id: String,
    /// It is a reply itself (no thread head).
    pub reply: bool,
    pub deleted: bool,
    /// Its thread: `count` and `last_at` (`parent` unused).
    pub thread: Thread,
    /// Some reply of the batch was counted into it: its row is written.
    pub counted: bool,
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
                out.placed.push(Placed::Row(i)); // same message again in this batch
                continue;
            }
            if let Some(first) = earlier.get(&key) {
                out.placed.push(Placed::Earlier(Box::new(first.clone())));
                continue;
            }
            in_batch.insert(key, out.rows.len());
        }
        out.placed.push(Placed::Row(out.rows.len()));
        out.rows.push((*m).clone());
    }
    out
}

/// The thread heads `rows` reply to, ascending, each once: none for a
/// batch without replies (nothing more is read or written).
pub(crate) fn parents(rows: &[MessageRecord]) -> Vec<u64> {
    let mut ids: Vec<u64> = rows.iter().filter_map(|m| m.thread.parent).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Step 1b, after [`dedupe`]: the replies of `out.rows` whose head (in
/// `heads`, as read in the transaction: missing when there is no such
/// message) is a live message of the same channel and no reply are
/// counted into it, in order: each gets its thread's count after it, the
/// head its new count and latest reply time (`counted`: to be written).
/// The others are taken out of the rows and refused, with a repeat of
/// them in the batch.
pub(crate) fn thread_replies(out: &mut Appended, heads: &mut HashMap<u64, Head>) {
    let mut kept = Vec::with_capacity(out.rows.len());
    // Per row: its index among those kept, or why it was refused.
    let mut moved: Vec<std::result::Result<usize, String>> = Vec::with_capacity(out.rows.len());
    for mut row in std::mem::take(&mut out.rows) {
        if let Some(parent) = row.thread.parent {
            let refused = match heads.get_mut(&parent) {
                Some(h) if h.channel_id == row.channel_id && !h.deleted && !h.reply => {
                    h.thread.count += 1;
                    if h.thread.last_at.as_deref() < Some(row.created_at.as_str()) {
                        h.thread.last_at = Some(row.created_at.clone());
                    }
                    h.counted = true;
                    row.thread.count = h.thread.count;
                    None
                }
                Some(h) if h.channel_id == row.channel_id && !h.deleted => Some(format!(
                    "threadId {parent} is a reply in a thread; reply to the thread's first message"
                )),
                _ => Some(format!(
                    "threadId {parent} names no message of this channel"
                )),
            };
            if let Some(why) = refused {
                moved.push(Err(why));
                continue;
            }
        }
        moved.push(Ok(kept.len()));
        kept.push(row);
    }
    out.rows = kept;
    for p in &mut out.placed {
        if let Placed::Row(i) = p {
            *p = match &moved[*i] {
                Ok(j) => Placed::Row(*j),
                Err(why) => Placed::Refused(why.clone()),
            };
        }
    }
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
            thread: Thread::default(),
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
            .map(|p| match p {
                Placed::Row(i) => Ok(i),
                Placed::Earlier(m) => Err(m.id),
                Placed::Refused(why) => panic!("{why}"),
            })
            .collect();
        assert_eq!(placed, [Ok(0), Ok(1), Ok(0), Err(9), Ok(2)]);
    }

    #[test]
    fn replies_count_into_live_heads_of_their_channel_and_the_others_are_refused() {
        let reply = |id, channel: &str, cmid: Option<&str>, parent: u64, at: &str| {
            let mut m = msg(id, channel, "u", cmid);
            m.thread.parent = Some(parent);
            m.created_at = at.into();
            m
        };
        let batch = [
            reply(1, "a", Some("x"), 100, "t1"),
            msg(2, "a", "u", None),
            reply(3, "a", None, 200, "t3"), // a head in another channel
            reply(4, "a", Some("x"), 100, "t1"), // a repeat of 1
            reply(5, "a", Some("z"), 300, "t5"), // its head is a reply
            reply(6, "a", None, 400, "t6"), // no such message
            reply(7, "a", Some("w"), 500, "t7"), // a deleted head
            reply(8, "a", None, 100, "t8"),
        ];
        let refs: Vec<&MessageRecord> = batch.iter().collect();
        assert_eq!(parents(&batch), [100, 200, 300, 400, 500]);
        let head = |channel: &str, reply, deleted, count| Head {
            channel_id: channel.into(),
            reply,
            deleted,
            thread: Thread {
                parent: None,
                count,
                last_at: (count > 0).then(|| "t0".to_owned()),
            },
            counted: false,
        };
        let mut heads = HashMap::from([
            (100, head("a", false, false, 2)),
            (200, head("b", false, false, 0)),
            (300, head("a", true, false, 0)),
            (500, head("a", false, true, 0)),
        ]);
        let mut out = dedupe(&refs, &HashMap::new());
        thread_replies(&mut out, &mut heads);
        let ids: Vec<(u64, u64)> = out.rows.iter().map(|m| (m.id, m.thread.count)).collect();
        assert_eq!(ids, [(1, 3), (2, 0), (8, 4)]);
        let h = &heads[&100];
        assert_eq!(
            (h.thread.count, h.thread.last_at.as_deref(), h.counted),
            (4, Some("t8"), true)
        );
        assert!(!heads[&200].counted && !heads[&300].counted && !heads[&500].counted);
        let refused = |p: &Placed| match p {
            Placed::Refused(why) => why.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(out.placed[0], Placed::Row(0));
        assert_eq!(out.placed[1], Placed::Row(1));
        assert_eq!(
            refused(&out.placed[2]),
            "threadId 200 names no message of this channel"
        );
        assert_eq!(
            out.placed[3],
            Placed::Row(0),
            "the repeat of a stored reply"
        );
        assert_eq!(
            refused(&out.placed[4]),
            "threadId 300 is a reply in a thread; reply to the thread's first message"
        );
        assert_eq!(
            refused(&out.placed[5]),
            "threadId 400 names no message of this channel"
        );
        assert_eq!(
            refused(&out.placed[6]),
            "threadId 500 names no message of this channel"
        );
        assert_eq!(out.placed[7], Placed::Row(2));
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
