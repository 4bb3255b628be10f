//! Where `seq` and `pos` come from on MySQL: counters in the database,
//! read and locked inside each commit transaction, so that several writers
//! on one database (issue 13) stay gapless and in commit order.
//!
//! A commit, in this order:
//! 1. locks the `sequencer` rows of the sequencing partitions its batch
//!    writes to (`SELECT ... FOR UPDATE`, ascending partition order, the
//!    same in every writer): commits of one partition queue here, one at
//!    a time, until the holder commits;
//! 2. looks up the batch's (user, clientMessageId) pairs: a consistent
//!    read whose snapshot is taken after the lock (InnoDB makes a
//!    REPEATABLE READ transaction's read view at its first consistent
//!    read, and the transaction does not start WITH CONSISTENT SNAPSHOT),
//!    so it sees every commit that held those partitions before: a repeat
//!    from another writer is a duplicate here, not a second row;
//!    Then, only for a batch with replies in threads, reads and locks
//!    their heads (`lock_heads`) and counts the replies into them;
//! 3. locks the written channels' rows (`channels.last_seq ... FOR
//!    UPDATE`) in sorted id order, the same order in every writer, after
//!    the partition rows: no two writers wait for each other in a cycle;
//! 4. gives out seqs after each channel's `last_seq`, positions after
//!    each partition's `last_pos` and the ids made of them
//!    (`crate::ids`), inserts, raises the counters (and writes the heads'
//!    thread counts), commits (which releases the locks).
//!
//! A unique key cannot enforce (user, clientMessageId) here: every unique
//! key of `messages`, PARTITIONed BY RANGE (id), must contain `id`. Step 1
//! serialises the writers of a partition, which is what makes step 2
//! exact for a repeat to the same channel (a retry: one partition). With
//! several partitions, the same (user, clientMessageId) sent at the same
//! moment to two channels of different partitions through two instances
//! can be stored twice; one instance's writer commits one batch at a time,
//! so that needs two instances.

use std::collections::{BTreeMap, HashMap};

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts, Value};

use super::batch::find_by_client_ids;
use super::rows::{all, chunks, first, insert_sql};
use crate::store::append::Head;
use crate::store::sequencing::partition_of;
use crate::store::{Appended, MessageRecord, Thread, append};

/// Most channels whose counters one statement locks or raises: a batch
/// (COMMIT_BATCH_MAX, 100 by default) usually needs one of each.
pub(super) const CHANNELS_PER_STATEMENT: usize = 128;

/// The writer's commit ([`crate::store::Store::append`]) on MySQL, with
/// `partitions` sequencing partitions.
pub(super) fn append(
    c: &mut Conn,
    batch: &[&MessageRecord],
    partitions: u32,
) -> mysql::Result<Appended> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    let mut last_pos = lock_partitions(&mut tx, &append::partitions(batch, partitions))?;
    let keys = append::client_keys(batch);
    let earlier = if keys.is_empty() {
        HashMap::new()
    } else {
        let unique: Vec<&(String, String)> = keys.iter().collect();
        find_by_client_ids(&mut tx, &unique)?
    };
    let mut out = append::dedupe(batch, &earlier);
    let parents = append::parents(&out.rows);
    let mut heads = HashMap::new();
    if !parents.is_empty() {
        heads = lock_heads(&mut tx, &parents, &append::channels(&out.rows))?;
        append::thread_replies(&mut out, &mut heads);
    }
    if out.rows.is_empty() {
        tx.commit()?;
        return Ok(out);
    }
    let mut last = lock_channels(&mut tx, &append::channels(&out.rows))?;
    append::assign_seqs(&mut out.rows, &mut last);
    append::assign_positions(&mut out.rows, partitions, &mut last_pos, true);
    insert(&mut tx, &out.rows, partitions)?;
    keep_counters(&mut tx, &last, &last_pos)?;
    keep_heads(&mut tx, &heads)?;
    tx.commit()?;
    Ok(out)
}

/// Step 1b: the thread heads `ids` replied to (ascending), those in the
/// batch's `channels` locked until commit, as the commit counts replies
/// into them. A plain read finds which exist and where first, so that the
/// locking read names only those: a locking read of a missing id would
/// lock the gap where new messages go, which two writers replying to
/// missing ids at once would then both wait on; a head of another channel
/// is refused without its row. A head and its replies are in one channel,
/// so one sequencing partition, whose lock (step 1) every writer holds
/// first: no two writers wait for each other here.
fn lock_heads(
    tx: &mut impl Queryable,
    ids: &[u64],
    channels: &[&str],
) -> mysql::Result<HashMap<u64, Head>> {
    let marks = |n: usize| vec!["?"; n].join(", ");
    let params = |ids: &[u64]| -> Vec<Value> { ids.iter().map(|id| (*id).into()).collect() };
    let sql = format!(
        "SELECT id, channel_id FROM messages WHERE id IN ({})",
        marks(ids.len())
    );
    let mut heads = HashMap::new();
    let mut found = Vec::new();
    for (id, channel_id) in all(tx.exec_opt::<(u64, String), _, _>(sql, params(ids))?)? {
        if channels.contains(&channel_id.as_str()) {
            found.push(id);
        } else {
            // Refused for its channel: nothing else of it is read.
            let head = Head {
                channel_id,
                reply: false,
                deleted: false,
                thread: Thread::default(),
                counted: false,
            };
            heads.insert(id, head);
        }
    }
    found.sort_unstable();
    if found.is_empty() {
        return Ok(heads);
    }
    let sql = format!(
        "SELECT id, channel_id, thread_id IS NOT NULL, deleted_at IS NOT NULL, thread_count, last_thread_at
         FROM messages WHERE id IN ({}) ORDER BY id FOR UPDATE",
        marks(found.len())
    );
    type HeadRow = (u64, String, bool, bool, u64, Option<String>);
    let rows = all(tx.exec_opt::<HeadRow, _, _>(sql, params(&found))?)?;
    heads.extend(
        rows.into_iter()
            .map(|(id, channel_id, reply, deleted, count, last_at)| {
                let thread = Thread {
                    parent: None,
                    count,
                    last_at,
                };
                let head = Head {
                    channel_id,
                    reply,
                    deleted,
                    thread,
                    counted: false,
                };
                (id, head)
            }),
    );
    Ok(heads)
}

/// Writes the new count and latest reply time of each head a reply was
/// counted into.
fn keep_heads(tx: &mut impl Queryable, heads: &HashMap<u64, Head>) -> mysql::Result<()> {
    for (id, h) in heads.iter().filter(|(_, h)| h.counted) {
        tx.exec_drop(
            "UPDATE messages SET thread_count = ?, last_thread_at = ? WHERE id = ?",
            (h.thread.count, h.thread.last_at.as_deref(), *id),
        )?;
    }
    Ok(())
}

/// [`crate::store::Store::insert_messages`]: rows whose ids and seqs are
/// given; positions from their partitions' counters, channel counters
/// raised to the seqs inserted.
pub(super) fn insert_messages(
    c: &mut Conn,
    messages: &mut [MessageRecord],
    partitions: u32,
) -> mysql::Result<()> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    let refs: Vec<&MessageRecord> = messages.iter().collect();
    let mut last_pos = lock_partitions(&mut tx, &append::partitions(&refs, partitions))?;
    append::assign_positions(messages, partitions, &mut last_pos, false);
    insert(&mut tx, messages, partitions)?;
    super::gatrix::insert_pins(&mut tx, messages)?;
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in messages.iter() {
        let seq = last.entry(m.channel_id.clone()).or_insert(0);
        *seq = (*seq).max(m.seq);
    }
    keep_counters(&mut tx, &last, &last_pos)?;
    tx.commit()
}

/// Makes the `sequencer` rows of partitions `0..partitions` that are
/// missing (a new SEQUENCER_PARTITIONS), each starting at 0.
pub(super) fn ensure_partitions(c: &mut impl Queryable, partitions: u32) -> mysql::Result<()> {
    for p in 0..partitions {
        c.exec_drop(
            "INSERT IGNORE INTO sequencer (partition_id, last_pos) VALUES (?, 0)",
            (p,),
        )?;
    }
    Ok(())
}

/// Step 1: the last position of each of `ids` (ascending), their rows
/// locked until commit, in that order.
fn lock_partitions(tx: &mut impl Queryable, ids: &[u32]) -> mysql::Result<BTreeMap<u32, u64>> {
    let found: BTreeMap<u32, u64> = match ids {
        [] => BTreeMap::new(),
        [one] => first::<u64>(
            tx,
            "SELECT last_pos FROM sequencer WHERE partition_id = ? FOR UPDATE",
            (*one,),
        )?
        .map(|pos| (*one, pos))
        .into_iter()
        .collect(),
        // One statement: InnoDB locks the rows as its scan of the primary
        // key meets them, in ascending order.
        _ => {
            let marks = vec!["?"; ids.len()].join(", ");
            let sql = format!(
                "SELECT partition_id, last_pos FROM sequencer WHERE partition_id IN ({marks})
                 ORDER BY partition_id FOR UPDATE"
            );
            let params: Vec<Value> = ids.iter().map(|p| (*p).into()).collect();
            all(tx.exec_opt::<(u32, u64), _, _>(sql, params)?)?
                .into_iter()
                .collect()
        }
    };
    if let Some(missing) = ids.iter().find(|p| !found.contains_key(p)) {
        return Err(mysql::Error::MySqlError(mysql::MySqlError {
            state: "HY000".into(),
            code: 0,
            message: format!(
                "the sequencer has no row for partition {missing}: run `gatrix-chat migrate` \
                 and start the server with this SEQUENCER_PARTITIONS"
            ),
        }));
    }
    Ok(found)
}

/// Step 3: each channel's last seq, its row locked until commit; `ids`
/// sorted (the lock order). A channel without a row (messages do not
/// reference channels: a partitioned table has no foreign keys) continues
/// after its highest message; a message is only sent to a channel that
/// exists, so that is for data written around the server.
fn lock_channels(tx: &mut impl Queryable, ids: &[&str]) -> mysql::Result<HashMap<String, u64>> {
    let mut last = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHANNELS_PER_STATEMENT) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT id, last_seq FROM channels WHERE id IN ({marks}) ORDER BY id FOR UPDATE"
        );
        let params: Vec<Value> = chunk.iter().map(|id| (*id).into()).collect();
        last.extend(all(tx.exec_opt::<(String, u64), _, _>(sql, params)?)?);
    }
    for id in ids {
        if !last.contains_key(*id) {
            let max = first::<Option<u64>>(
                tx,
                "SELECT MAX(seq) FROM messages WHERE channel_id = ?",
                (*id,),
            )?
            .flatten()
            .unwrap_or(0);
            last.insert((*id).to_owned(), max);
        }
    }
    Ok(last)
}

/// Inserts `messages` (ids and positions given), in order: multi-row
/// INSERTs of at most [`super::MAX_INSERT_ROWS`] rows.
fn insert(
    tx: &mut impl Queryable,
    messages: &[MessageRecord],
    partitions: u32,
) -> mysql::Result<()> {
    for range in chunks(messages) {
        let rows = &messages[range];
        let mut params: Vec<Value> = Vec::with_capacity(rows.len() * 14);
        for m in rows {
            params.extend([
                m.id.into(),
                partition_of(&m.channel_id, partitions).into(),
                m.pos.into(),
                m.channel_id.as_str().into(),
                m.seq.into(),
                m.user_id.as_str().into(),
                m.content.as_str().into(),
                m.kind.as_str().into(),
                m.client_message_id.as_deref().into(),
                m.reply_to.as_deref().into(),
                m.created_at.as_str().into(),
                m.thread.parent.into(),
                m.thread.count.into(),
                m.thread.last_at.as_deref().into(),
            ]);
        }
        tx.exec_drop(insert_sql(rows.len()), params)?;
    }
    Ok(())
}

/// Step 4: raises each channel's counter to its new last seq (never
/// lowers it) and each partition's to its `last_pos`: one UPDATE per
/// [`CHANNELS_PER_STATEMENT`] channels (a statement per channel was most
/// of a commit's time with many channels in a batch).
fn keep_counters(
    tx: &mut impl Queryable,
    last: &HashMap<String, u64>,
    last_pos: &BTreeMap<u32, u64>,
) -> mysql::Result<()> {
    let mut ids: Vec<(&String, &u64)> = last.iter().collect();
    ids.sort_unstable();
    for chunk in ids.chunks(CHANNELS_PER_STATEMENT) {
        let cases = " WHEN ? THEN ?".repeat(chunk.len());
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "UPDATE channels SET last_seq = GREATEST(last_seq, CASE id{cases} END) WHERE id IN ({marks})"
        );
        let mut params: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        for (id, seq) in chunk {
            params.extend([id.as_str().into(), (**seq).into()]);
        }
        params.extend(chunk.iter().map(|(id, _)| id.as_str().into()));
        tx.exec_drop(sql, params)?;
    }
    for (partition, pos) in last_pos {
        tx.exec_drop(
            "UPDATE sequencer SET last_pos = ? WHERE partition_id = ?",
            (*pos, *partition),
        )?;
    }
    Ok(())
}
