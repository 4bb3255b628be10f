//! Store suite: sequencing partitions and reads by position (issue 13):
//! each partition one gapless order even with two writers committing
//! batches that span partitions, and the reads the bus's gap fill and
//! polling use.

use super::*;
use gatrix_chat::ids;
use gatrix_chat::store::sequencing::partition_of;

/// The writer's outcomes, by reply index, all stored.
fn stored(outcomes: &[Option<Outcome>]) -> Vec<MessageRecord> {
    outcomes
        .iter()
        .map(|o| match o {
            Some(Outcome::Stored(m)) => m.clone(),
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

/// Through the writer: `count` messages over `channels`, one batch; the
/// stored messages in send order.
fn send(
    db: &dyn Backend,
    clock: &Clock,
    channels: &[&str],
    first_n: u64,
    count: usize,
) -> Vec<MessageRecord> {
    let (handle, threads, rx) = start_writer(db, 1000, Duration::ZERO);
    let release = hold_writer(&handle);
    for i in 0..count {
        let n = first_n + i as u64;
        let m = new_message(
            n,
            channels[i % channels.len()],
            "u",
            None,
            &clock.at(n as i64),
        );
        handle.append(m, i).unwrap_or_else(|_| panic!("queue"));
    }
    release.wait();
    let (outcomes, _) = collect(&rx, count);
    drop(handle);
    threads.join();
    stored(&outcomes)
}

pub(super) fn reads_by_position(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    assert_eq!(s.last_pos(0).expect("last_pos"), 0, "an empty store");
    assert!(s.partition_messages(0, 0, 10).expect("read").is_empty());
    let sent = send(db, &clock, &["c-a", "c-b", "c-c"], 1, 30);
    let last = sent.last().expect("sent").pos;
    assert_eq!(s.last_pos(0).expect("last_pos"), last);
    // Every message, in pos order, deleted ones too (with deleted_at).
    let victim = sent[4].clone();
    let deleted = s
        .delete_message(victim.id, &clock.at(999))
        .expect("delete")
        .expect("deleted");
    let all = s.partition_messages(0, 0, 100).expect("read");
    let mut expected = sent.clone();
    expected[4] = deleted;
    assert_eq!(all, expected);
    assert!(all[4].deleted_at.is_some());
    // After a position, bounded by the limit, pages that meet exactly.
    let page = s.partition_messages(0, sent[9].pos, 7).expect("read");
    assert_eq!(page, expected[10..17]);
    let rest = s.partition_messages(0, page[6].pos, 100).expect("read");
    assert_eq!(rest, expected[17..]);
    assert!(s.partition_messages(0, last, 100).expect("read").is_empty());
    assert!(s.partition_messages(0, 0, 0).expect("read").is_empty());
    // A partition nothing was committed in.
    assert_eq!(s.last_pos(1).expect("last_pos"), 0);
    assert!(s.partition_messages(1, 0, 10).expect("read").is_empty());
    // Another connection (a reader thread) sees the same.
    assert_eq!(db.open().last_pos(0).expect("last_pos"), last);
}

/// Two partitions, two writers (two instances' writers on one database)
/// committing batches that span both partitions at the same time: no
/// deadlock (every message stored), each partition's positions 1..=k
/// gapless and each writer's in its commit order, each channel's seqs
/// gapless in pos order, and ids made of (month, partition, pos).
pub(super) fn two_partitions_two_writers_each_gapless_in_commit_order(
    s: &mut dyn Store,
    db: &dyn Backend,
) {
    const PER_WRITER: usize = 600;
    let clock = Clock::new();
    let channels = ["c-0", "c-1", "c-2", "c-3", "c-4", "c-5"];
    let parts: Vec<u32> = channels.iter().map(|c| partition_of(c, 2)).collect();
    assert!(
        parts.contains(&0) && parts.contains(&1),
        "the channels cover both partitions: {parts:?}"
    );
    for ch in channels {
        s.create_channel(
            &channel(ch, ChannelType::Public, "owner", &clock.at(0)),
            &[],
        )
        .expect("create_channel");
    }
    let writers: Vec<_> = (0..2)
        .map(|_| start_partitioned_writer(db, 2, 16, Duration::from_millis(1)))
        .collect();
    std::thread::scope(|scope| {
        for (w, (handle, _, _)) in writers.iter().enumerate() {
            let clock = &clock;
            scope.spawn(move || {
                for i in 0..PER_WRITER {
                    let n = (w * PER_WRITER + i + 1) as u64;
                    // Consecutive messages alternate channels (and so
                    // partitions): every batch spans both.
                    let ch = channels[(i + w) % channels.len()];
                    handle
                        .append(
                            new_message(n, ch, &format!("u{w}"), None, &clock.at(i as i64)),
                            i,
                        )
                        .unwrap_or_else(|_| panic!("queue"));
                }
            });
        }
    });
    let mut all: Vec<MessageRecord> = Vec::new();
    for (handle, threads, rx) in writers {
        let (outcomes, _) = collect(&rx, PER_WRITER);
        let mine = stored(&outcomes);
        // A writer commits in queue order: per partition, its positions
        // only grow.
        for p in 0..2 {
            let positions: Vec<u64> = mine
                .iter()
                .filter(|m| partition_of(&m.channel_id, 2) == p)
                .map(|m| m.pos)
                .collect();
            assert!(
                positions.is_sorted(),
                "partition {p}: a writer's commits out of order: {positions:?}"
            );
        }
        all.extend(mine);
        drop(handle);
        threads.join();
    }
    assert_eq!(all.len(), 2 * PER_WRITER);
    for p in 0..2u32 {
        let mut rows: Vec<&MessageRecord> = all
            .iter()
            .filter(|m| partition_of(&m.channel_id, 2) == p)
            .collect();
        rows.sort_by_key(|m| m.pos);
        let positions: Vec<u64> = rows.iter().map(|m| m.pos).collect();
        let expected: Vec<u64> = (1..=rows.len() as u64).collect();
        assert_eq!(positions, expected, "partition {p}: positions not 1..=k");
        let mut last: HashMap<&str, u64> = HashMap::new();
        for m in &rows {
            let seq = last.entry(m.channel_id.as_str()).or_insert(0);
            assert_eq!(
                m.seq,
                *seq + 1,
                "{} out of order at pos {}",
                m.channel_id,
                m.pos
            );
            *seq = m.seq;
            let month = ids::month_index_at(&m.created_at);
            assert_eq!(m.id, ids::message_id(month, p, m.pos));
            assert_eq!(ids::partition_of_id(m.id), p);
        }
        // The store agrees: reads by position, and the counter.
        let read = s
            .partition_messages(p, 0, 10 * PER_WRITER)
            .expect("partition_messages");
        let want: Vec<MessageRecord> = rows.iter().map(|m| (*m).clone()).collect();
        assert_eq!(read, want, "partition {p} as read");
        assert_eq!(s.last_pos(p).expect("last_pos"), rows.len() as u64);
    }
    let ids: BTreeSet<u64> = all.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), all.len(), "an id given twice");
}
