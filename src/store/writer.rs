//! The writer thread: the only place messages are written, in one order.
//!
//! Messages queue on a bounded channel (full = the caller answers
//! UNAVAILABLE at once). The thread takes what is queued, up to
//! BROADCAST_BATCH_SIZE messages or until the commit window passes, and
//! commits them in one transaction (group commit): [`Store::append`], which
//! assigns each channel's next `seq` and the commit position `pos` inside
//! that transaction, from counters in the database (nothing is cached
//! here, so another writer on the same database cannot make them stale),
//! and checks clientMessageIds in the same transaction, so a repeat never
//! burns a seq and a failed batch assigns nothing.
//!
//! Each commit's outcomes go, in commit order, to the [`Fanout`]: in one
//! process the chat layer's mesh, which encodes each broadcast once and
//! sends it to every shard.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};

use super::{Appended, Fanout, MessageRecord, Placed, Store};

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
    /// Not stored, and never will be as it is: why (a reply to a message
    /// that heads no thread of its channel).
    Refused(String),
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
        metrics.queue_depth.set(jobs.len() as i64);
        metrics.batch_size.observe(batch.len() as u64);
        let started = Instant::now();
        let outcomes = commit(store, &mut batch);
        metrics.commit_latency.observe_duration(started.elapsed());
        fanout.send(outcomes);
    }
}

/// Sequences and commits one batch ([`Store::append`]). On any store
/// error nothing is kept: every message fails.
fn commit<R>(store: &mut dyn Store, batch: &mut Vec<(Box<MessageRecord>, R)>) -> Vec<(Outcome, R)> {
    let appended = {
        let records: Vec<&MessageRecord> = batch.iter().map(|(m, _)| &**m).collect();
        store.append(&records)
    };
    let drained = batch.drain(..).map(|(_, r)| r);
    match appended {
        Ok(Appended { rows, placed }) => {
            // A repeat inside the batch points at its first row: the first
            // occurrence is Stored, the repeats are Duplicates of it.
            let mut seen = vec![false; rows.len()];
            placed
                .into_iter()
                .zip(drained)
                .map(|(p, r)| match p {
                    Placed::Row(i) if !seen[i] => {
                        seen[i] = true;
                        (Outcome::Stored(rows[i].clone()), r)
                    }
                    Placed::Row(i) => (Outcome::Duplicate(rows[i].clone()), r),
                    Placed::Earlier(first) => (Outcome::Duplicate(*first), r),
                    Placed::Refused(why) => (Outcome::Refused(why), r),
                })
                .collect()
        }
        Err(e) => {
            let n = drained.len();
            tracing::warn!(error = %e, messages = n, "message batch not stored");
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
            pinned: None,
            thread: Default::default(),
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
                Outcome::Refused(why) => format!("refused: {why}"),
            })
            .collect()
    }

    #[test]
    fn seqs_are_gapless_per_channel_and_repeats_burn_none() {
        let (d, mut s) = store();
        let mut batch = vec![
            (msg(1, "a", "u", Some("x")), 0u32),
            (msg(2, "b", "u", None), 1),
            (msg(3, "a", "u", Some("x")), 2),
            (msg(4, "a", "v", Some("x")), 3),
        ];
        let out = commit(&mut s, &mut batch);
        assert_eq!(seqs_of(&out), ["a#1", "b#1", "dup a#1", "a#2"]);
        let mut batch = vec![
            (msg(5, "a", "u", Some("x")), 0u32),
            (msg(6, "a", "u", None), 1),
        ];
        let out = commit(&mut s, &mut batch);
        assert_eq!(seqs_of(&out), ["dup a#1", "a#3"]);
        // A new writer (restart) continues from the store.
        let mut s = SqliteStore::open(d.path()).unwrap();
        let out = commit(&mut s, &mut vec![(msg(7, "a", "u", None), 0u32)]);
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
        let out = commit(&mut s, &mut vec![(msg(0, "a", "u", None), 0u32)]);
        assert_eq!(seqs_of(&out), ["a#1"]);
        // A row (an import: its id given) holding the id that position 4
        // will make: position 2 is its own.
        let month = crate::ids::month_index_at("2026-01-01T00:00:00.000Z");
        let mut trap = [*msg(crate::ids::message_id(month, 0, 4), "t", "u", None)];
        trap[0].seq = 1;
        s.insert_messages(&mut trap).unwrap();
        assert_eq!(trap[0].pos, 2);
        // Positions 3 and 4: the second row's id is taken, the whole batch
        // fails.
        let out = commit(
            &mut s,
            &mut vec![(msg(0, "a", "u", None), 0u32), (msg(0, "b", "u", None), 1)],
        );
        assert_eq!(seqs_of(&out), ["failed", "failed"]);
        // Nothing was given out: the next message takes a's seq 2 and
        // position 3.
        let out = commit(&mut s, &mut vec![(msg(0, "a", "u", None), 0u32)]);
        assert_eq!(seqs_of(&out), ["a#2"]);
        let Outcome::Stored(m) = &out[0].0 else {
            panic!("{out:?}")
        };
        assert_eq!((m.pos, m.id), (3, crate::ids::message_id(month, 0, 3)));
    }
}
