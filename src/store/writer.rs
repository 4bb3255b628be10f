//! The writer thread: the only place messages are written, in one order.
//!
//! Messages queue on a bounded channel (full = the caller answers
//! UNAVAILABLE at once). The thread takes what is queued, up to
//! BROADCAST_BATCH_SIZE messages or until the commit window passes, and
//! commits them in one transaction (group commit). Because it is the one
//! writer, it is also where a channel's next `seq` is assigned: at commit
//! time, so a repeated clientMessageId (checked against the store in the
//! same pass) never burns a seq, and a failed batch assigns nothing.
//!
//! Each commit's outcomes go, in commit order, to the [`Fanout`]: in one
//! process the chat layer's mesh, which encodes each broadcast once and
//! sends it to every shard.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use super::{Fanout, MessageRecord, Store, StoreError};

/// Any work to run on a store thread with its connection.
pub type StoreJob = Box<dyn FnOnce(&mut dyn Store) + Send>;

/// Work for the writer thread.
pub enum Job<R> {
    /// A new message (seq and pos unset) and where its answer goes.
    Append(Box<MessageRecord>, R),
    /// Any other write, run in queue order between message batches.
    Run(StoreJob),
}

/// What became of one appended message.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Committed with its seq and pos.
    Stored(MessageRecord),
    /// Its (user, clientMessageId) was taken: the first message.
    Duplicate(MessageRecord),
    /// Nothing was stored; safe to retry.
    Failed(String),
}

#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub max_batch: usize,
    /// How long to wait for more messages once one is queued; zero takes
    /// only what is already queued (batches still form under load, while
    /// the previous commit runs).
    pub window: Duration,
}

/// Runs until every sender of `jobs` is gone; hands each commit's outcomes
/// to `fanout`, once per batch.
pub fn run<R>(
    store: &mut dyn Store,
    jobs: Receiver<Job<R>>,
    settings: WriterSettings,
    metrics: &crate::metrics::StoreMetrics,
    mut fanout: impl Fanout<R>,
) {
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut epoch = store.lock_epoch();
    let mut batch: Vec<(Box<MessageRecord>, R)> = Vec::with_capacity(settings.max_batch);
    let mut next: Option<Job<R>> = None;
    loop {
        let job = match next.take() {
            Some(j) => j,
            None => match jobs.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        match job {
            Job::Run(f) => {
                f(store);
                continue;
            }
            Job::Append(m, r) => batch.push((m, r)),
        }
        let deadline = Instant::now() + settings.window;
        while batch.len() < settings.max_batch {
            let more = match jobs.try_recv() {
                Ok(j) => Some(j),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) if settings.window.is_zero() => None,
                Err(TryRecvError::Empty) => jobs.recv_deadline(deadline).ok(),
            };
            match more {
                Some(Job::Append(m, r)) => batch.push((m, r)),
                Some(other) => {
                    next = Some(other); // after this batch, in order
                    break;
                }
                None => break,
            }
        }
        if store.lock_epoch() != epoch {
            // A new connection took the store lock again: channels may have
            // new messages from another process since their seqs were read.
            epoch = store.lock_epoch();
            seqs.clear();
        }
        metrics.queue_depth.set(jobs.len() as i64);
        metrics.batch_size.observe(batch.len() as u64);
        let started = Instant::now();
        let outcomes = commit(store, &mut seqs, &mut batch);
        metrics.commit_latency.observe_duration(started.elapsed());
        fanout.send(outcomes);
    }
}

/// Sequences and commits one batch. On any store error nothing is kept:
/// every message fails and the touched channels' seqs are reloaded later.
fn commit<R>(
    store: &mut dyn Store,
    seqs: &mut HashMap<String, u64>,
    batch: &mut Vec<(Box<MessageRecord>, R)>,
) -> Vec<(Outcome, R)> {
    let mut rows: Vec<MessageRecord> = Vec::with_capacity(batch.len());
    // Per message: Ok(index into rows) or Err(the earlier message).
    let mut plan: Vec<Result<usize, MessageRecord>> = Vec::with_capacity(batch.len());
    let mut in_batch: HashMap<(String, String), usize> = HashMap::new();
    let mut tentative: HashMap<String, u64> = HashMap::new();

    let sequenced: Result<(), StoreError> = (|| {
        // Earlier messages with this batch's clientMessageIds, in one lookup.
        let keys: Vec<(String, String)> = batch
            .iter()
            .filter_map(|(m, _)| {
                let cmid = m.client_message_id.as_ref()?;
                Some((m.user_id.clone(), cmid.clone()))
            })
            .collect();
        let earlier = if keys.is_empty() {
            HashMap::new()
        } else {
            store.find_by_client_ids(&keys)?
        };
        for (m, _) in batch.iter() {
            if let Some(cmid) = &m.client_message_id {
                let key = (m.user_id.clone(), cmid.clone());
                if let Some(&i) = in_batch.get(&key) {
                    plan.push(Ok(i)); // same message again in this batch
                    continue;
                }
                if let Some(first) = earlier.get(&key) {
                    plan.push(Err(first.clone()));
                    continue;
                }
                in_batch.insert(key, rows.len());
            }
            let last = match tentative
                .get(&m.channel_id)
                .or_else(|| seqs.get(&m.channel_id))
            {
                Some(&s) => s,
                None => store.last_seq(&m.channel_id)?,
            };
            let mut row = (**m).clone();
            row.seq = last + 1;
            tentative.insert(m.channel_id.clone(), row.seq);
            plan.push(Ok(rows.len()));
            rows.push(row);
        }
        if !rows.is_empty() {
            store.insert_messages(&mut rows)?;
        }
        Ok(())
    })();

    let drained = batch.drain(..).map(|(_, r)| r);
    match sequenced {
        Ok(()) => {
            seqs.extend(tentative);
            // A repeat inside the batch points at its first row: the first
            // occurrence is Stored, the repeats are Duplicates of it.
            let mut seen = vec![false; rows.len()];
            plan.into_iter()
                .zip(drained)
                .map(|(p, r)| match p {
                    Ok(i) if !seen[i] => {
                        seen[i] = true;
                        (Outcome::Stored(rows[i].clone()), r)
                    }
                    Ok(i) => (Outcome::Duplicate(rows[i].clone()), r),
                    Err(first) => (Outcome::Duplicate(first), r),
                })
                .collect()
        }
        Err(e) => {
            for channel in tentative.keys() {
                seqs.remove(channel);
            }
            tracing::warn!(error = %e, messages = plan.len().max(1), "message batch not stored");
            drained
                .map(|r| (Outcome::Failed(e.to_string()), r))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{SqliteStore, migrate};

    fn msg(id: u64, channel: &str, user: &str, cmid: Option<&str>) -> Box<MessageRecord> {
        Box::new(MessageRecord {
            id,
            pos: 0,
            channel_id: channel.into(),
            seq: 0,
            user_id: user.into(),
            content: format!("m{id}"),
            kind: "text".into(),
            client_message_id: cmid.map(Into::into),
            reply_to: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            edited_at: None,
            deleted_at: None,
        })
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        migrate(dir.path()).unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        (dir, s)
    }

    fn seqs_of(out: &[(Outcome, u32)]) -> Vec<String> {
        out.iter()
            .map(|(o, _)| match o {
                Outcome::Stored(m) => format!("{}#{}", m.channel_id, m.seq),
                Outcome::Duplicate(m) => format!("dup {}#{}", m.channel_id, m.seq),
                Outcome::Failed(_) => "failed".into(),
            })
            .collect()
    }

    #[test]
    fn seqs_are_gapless_per_channel_and_repeats_burn_none() {
        let (_d, mut s) = store();
        let mut seqs = HashMap::new();
        let mut batch = vec![
            (msg(1, "a", "u", Some("x")), 0u32),
            (msg(2, "b", "u", None), 1),
            (msg(3, "a", "u", Some("x")), 2),
            (msg(4, "a", "v", Some("x")), 3),
        ];
        let out = commit(&mut s, &mut seqs, &mut batch);
        assert_eq!(seqs_of(&out), ["a#1", "b#1", "dup a#1", "a#2"]);
        let mut batch = vec![
            (msg(5, "a", "u", Some("x")), 0u32),
            (msg(6, "a", "u", None), 1),
        ];
        let out = commit(&mut s, &mut seqs, &mut batch);
        assert_eq!(seqs_of(&out), ["dup a#1", "a#3"]);
        // A new writer (restart) continues from the store.
        let out = commit(
            &mut s,
            &mut HashMap::new(),
            &mut vec![(msg(7, "a", "u", None), 0u32)],
        );
        assert_eq!(seqs_of(&out), ["a#4"]);
        let positions: Vec<u64> = out
            .iter()
            .map(|(o, _)| if let Outcome::Stored(m) = o { m.pos } else { 0 })
            .collect();
        assert_eq!(positions, [5], "three rows, then one, then this one");
    }

    #[test]
    fn a_failed_batch_stores_nothing_and_assigns_nothing() {
        let (_d, mut s) = store();
        let mut seqs = HashMap::new();
        commit(&mut s, &mut seqs, &mut vec![(msg(1, "a", "u", None), 0u32)]);
        // Id 1 again violates the unique id: the whole batch fails.
        let out = commit(
            &mut s,
            &mut seqs,
            &mut vec![(msg(2, "a", "u", None), 0u32), (msg(1, "a", "u", None), 1)],
        );
        assert_eq!(seqs_of(&out), ["failed", "failed"]);
        let out = commit(&mut s, &mut seqs, &mut vec![(msg(3, "a", "u", None), 0u32)]);
        assert_eq!(seqs_of(&out), ["a#2"]);
    }
}
