//! Where `seq` and `pos` come from on MySQL: counters in the database,
//! read and locked inside each commit transaction, so that several writers
//! on one database (issue 13) stay gapless and in commit order.
//!
//! A commit, in this order:
//! 1. locks its sequencing partition's row of `sequencer`
//!    (`SELECT last_pos ... FOR UPDATE`): commits of one partition queue
//!    here, one at a time, until the holder commits;
//! 2. looks up the batch's (user, clientMessageId) pairs: a consistent
//!    read whose snapshot is taken after the lock (InnoDB makes a
//!    REPEATABLE READ transaction's read view at its first consistent
//!    read, and the transaction does not start WITH CONSISTENT SNAPSHOT),
//!    so it sees every commit that held the partition before: a repeat
//!    from another writer is a duplicate here, not a second row;
//! 3. locks the written channels' rows (`channels.last_seq ... FOR
//!    UPDATE`) in sorted id order, the same order in every writer, after
//!    the partition row: no two writers wait for each other in a cycle;
//! 4. gives out seqs after each channel's `last_seq` and positions after
//!    `last_pos`, inserts, raises the counters, commits (which releases
//!    the locks).
//!
//! A unique key cannot enforce (user, clientMessageId) here: every unique
//! key of `messages`, PARTITIONed BY RANGE (id), must contain `id`. Step 1
//! serialises the writers of a partition, which is what makes step 2
//! exact; with more than one partition a user's messages will have to
//! stay in one partition (later steps of issue 13).

use std::collections::HashMap;

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts, Value};

use super::batch::find_by_client_ids;
use super::rows::{all, chunks, first, insert_sql};
use crate::store::{Appended, MessageRecord, append};

/// The sequencing partition every writer uses (one, for now).
pub(super) const PARTITION: u32 = 0;

/// Most channels whose counters one statement locks or raises: a batch
/// (COMMIT_BATCH_MAX, 100 by default) usually needs one of each.
pub(super) const CHANNELS_PER_STATEMENT: usize = 128;

/// The writer's commit ([`crate::store::Store::append`]) on MySQL.
pub(super) fn append(c: &mut Conn, batch: &[&MessageRecord]) -> mysql::Result<Appended> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    let last_pos = lock_partition(&mut tx)?;
    let keys = append::client_keys(batch);
    let earlier = if keys.is_empty() {
        HashMap::new()
    } else {
        let unique: Vec<&(String, String)> = keys.iter().collect();
        find_by_client_ids(&mut tx, &unique)?
    };
    let mut out = append::dedupe(batch, &earlier);
    if out.rows.is_empty() {
        tx.commit()?;
        return Ok(out);
    }
    let mut last = lock_channels(&mut tx, &append::channels(&out.rows))?;
    append::assign_seqs(&mut out.rows, &mut last);
    insert(&mut tx, &mut out.rows, last_pos)?;
    keep_counters(&mut tx, &last, last_pos + out.rows.len() as u64)?;
    tx.commit()?;
    Ok(out)
}

/// [`crate::store::Store::insert_messages`]: rows whose seqs are given;
/// positions from the partition's counter, channel counters raised to
/// the seqs inserted.
pub(super) fn insert_messages(c: &mut Conn, messages: &mut [MessageRecord]) -> mysql::Result<()> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    let last_pos = lock_partition(&mut tx)?;
    insert(&mut tx, messages, last_pos)?;
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in messages.iter() {
        let seq = last.entry(m.channel_id.clone()).or_insert(0);
        *seq = (*seq).max(m.seq);
    }
    keep_counters(&mut tx, &last, last_pos + messages.len() as u64)?;
    tx.commit()
}

/// Step 1: the partition's last position, its row locked until commit.
fn lock_partition(tx: &mut impl Queryable) -> mysql::Result<u64> {
    first::<u64>(
        tx,
        "SELECT last_pos FROM sequencer WHERE partition_id = ? FOR UPDATE",
        (PARTITION,),
    )?
    .ok_or_else(|| {
        mysql::Error::MySqlError(mysql::MySqlError {
            state: "HY000".into(),
            code: 0,
            message: format!(
                "the sequencer has no row for partition {PARTITION}: run `gatrix-chat migrate`"
            ),
        })
    })
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

/// Inserts `messages` with the positions after `last_pos`, in order:
/// multi-row INSERTs of at most [`super::MAX_INSERT_ROWS`] rows.
fn insert(
    tx: &mut impl Queryable,
    messages: &mut [MessageRecord],
    last_pos: u64,
) -> mysql::Result<()> {
    for (i, m) in messages.iter_mut().enumerate() {
        m.pos = last_pos + 1 + i as u64;
    }
    for range in chunks(messages) {
        let rows = &messages[range];
        let mut params: Vec<Value> = Vec::with_capacity(rows.len() * 10);
        for m in rows {
            params.extend([
                m.id.into(),
                m.pos.into(),
                m.channel_id.as_str().into(),
                m.seq.into(),
                m.user_id.as_str().into(),
                m.content.as_str().into(),
                m.kind.as_str().into(),
                m.client_message_id.as_deref().into(),
                m.reply_to.as_deref().into(),
                m.created_at.as_str().into(),
            ]);
        }
        tx.exec_drop(insert_sql(rows.len()), params)?;
    }
    Ok(())
}

/// Step 4: raises each channel's counter to its new last seq (never
/// lowers it) and the partition's to `last_pos`: one UPDATE per
/// [`CHANNELS_PER_STATEMENT`] channels (a statement per channel was most
/// of a commit's time with many channels in a batch).
fn keep_counters(
    tx: &mut impl Queryable,
    last: &HashMap<String, u64>,
    last_pos: u64,
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
    tx.exec_drop(
        "UPDATE sequencer SET last_pos = ? WHERE partition_id = ?",
        (last_pos, PARTITION),
    )
}
