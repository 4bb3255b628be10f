//! Store suite: seqs and positions from the database's counters (issue
//! 13 item 1): a channel keeps its seq when all of its messages are gone,
//! and several writers on one MySQL database (two store threads with their
//! own connections, as two instances will have) give out one gapless order.

use super::*;

/// A writer's outcomes, by reply index.
fn stored(outcomes: &[Option<Outcome>]) -> Vec<&MessageRecord> {
    outcomes
        .iter()
        .map(|o| match o {
            Some(Outcome::Stored(m)) => m,
            other => panic!("not stored: {other:?}"),
        })
        .collect()
}

/// Every message of `channels` in the database, by seq.
fn all_messages(s: &mut dyn Store, channels: &[&str]) -> Vec<MessageRecord> {
    let mut out = Vec::new();
    for ch in channels {
        let (rows, more) = s.history(ch, Page::After(0), 100_000).expect("history");
        assert!(!more);
        out.extend(rows);
    }
    out
}

/// Each channel's seqs are 1..=k in pos order, and the positions of all
/// are 1..=n: no gap, no repeat, one order.
fn assert_one_gapless_order(rows: &[MessageRecord]) {
    let mut by_pos: Vec<&MessageRecord> = rows.iter().collect();
    by_pos.sort_by_key(|m| m.pos);
    let positions: Vec<u64> = by_pos.iter().map(|m| m.pos).collect();
    let expected: Vec<u64> = (1..=rows.len() as u64).collect();
    assert_eq!(positions, expected, "positions are not 1..=n");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for m in by_pos {
        let seq = last.entry(m.channel_id.as_str()).or_insert(0);
        assert_eq!(
            m.seq,
            *seq + 1,
            "{} out of order at pos {}",
            m.channel_id,
            m.pos
        );
        *seq = m.seq;
    }
}

fn create_channels(s: &mut dyn Store, clock: &Clock, ids: &[&str]) {
    for ch in ids {
        s.create_channel(
            &channel(ch, ChannelType::Public, "owner", &clock.at(0)),
            &[],
        )
        .expect("create_channel");
    }
}

pub(super) fn seq_outlives_the_messages(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    create_channels(s, &clock, &["c-r"]);
    let (handle, threads, rx) = start_writer(db, 16, Duration::ZERO);
    for i in 0..3 {
        handle
            .append(
                new_message(i + 1, "c-r", "u", None, &clock.at(i as i64)),
                i as usize,
            )
            .unwrap_or_else(|_| panic!("queue"));
    }
    let (first, _) = collect(&rx, 3);
    let first = stored(&first);
    assert_eq!(
        seqs(&first.iter().map(|m| (*m).clone()).collect::<Vec<_>>()),
        [1, 2, 3]
    );
    let last_pos = first[2].pos;
    drop(handle);
    threads.join();

    db.expire_all_messages();
    let (rows, _) = s.history("c-r", Page::Latest, 10).expect("history");
    assert!(rows.is_empty(), "retention left {rows:?}");
    assert_eq!(
        s.last_seq("c-r").expect("last_seq"),
        3,
        "the seq went with the messages"
    );

    // A new writer (a restart) continues the channel's seq and the positions.
    let (handle, threads, rx) = start_writer(db, 16, Duration::ZERO);
    handle
        .append(new_message(10, "c-r", "u", None, &clock.at(10)), 0)
        .unwrap_or_else(|_| panic!("queue"));
    let (next, _) = collect(&rx, 1);
    let next = stored(&next);
    assert_eq!(next[0].seq, 4, "the channel's seq started again");
    assert!(next[0].pos > last_pos, "a position was reused: {next:?}");
    drop(handle);
    threads.join();
}

/// Two writers (two threads, two connections, one database) commit
/// batches to the same channels at the same time.
pub(super) fn two_writers_give_out_one_gapless_order(s: &mut dyn Store, db: &dyn Backend) {
    const PER_WRITER: usize = 600;
    let clock = Clock::new();
    let channels = ["c-0", "c-1", "c-2", "c-3"];
    create_channels(s, &clock, &channels);
    let writers: Vec<_> = (0..2)
        .map(|_| start_writer(db, 16, Duration::from_millis(1)))
        .collect();
    std::thread::scope(|scope| {
        for (w, (handle, _, _)) in writers.iter().enumerate() {
            let clock = &clock;
            scope.spawn(move || {
                for i in 0..PER_WRITER {
                    let n = (w * PER_WRITER + i + 1) as u64;
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
    let mut runs = Vec::new();
    for (handle, threads, rx) in writers {
        let (outcomes, _) = collect(&rx, PER_WRITER);
        // A writer commits in queue order: its positions only grow.
        let positions: Vec<u64> = stored(&outcomes).iter().map(|m| m.pos).collect();
        assert!(
            positions.is_sorted(),
            "a writer's commits out of order: {positions:?}"
        );
        runs.push(positions);
        drop(handle);
        threads.join();
    }
    let rows = all_messages(s, &channels);
    assert_eq!(rows.len(), 2 * PER_WRITER);
    assert_one_gapless_order(&rows);
    // How interleaved the two writers' commits were (not asserted: timing).
    let mut owner: Vec<usize> = vec![0; 2 * PER_WRITER + 1];
    for (w, positions) in runs.iter().enumerate() {
        for p in positions {
            owner[*p as usize] = w;
        }
    }
    let switches = owner[1..].windows(2).filter(|p| p[0] != p[1]).count();
    eprintln!("two writers: {switches} switches between writers along pos");
}

/// The same (user, clientMessageId) sent through two writers at once is
/// stored once; the other is a duplicate of it, not a failed batch.
pub(super) fn two_writers_store_a_client_message_id_once(s: &mut dyn Store, db: &dyn Backend) {
    const KEYS: usize = 300;
    let clock = Clock::new();
    let channels = ["c-0", "c-1", "c-2"];
    create_channels(s, &clock, &channels);
    let writers: Vec<_> = (0..2)
        .map(|_| start_writer(db, 8, Duration::from_millis(1)))
        .collect();
    std::thread::scope(|scope| {
        for (w, (handle, _, _)) in writers.iter().enumerate() {
            let clock = &clock;
            scope.spawn(move || {
                for k in 0..KEYS {
                    let n = (w * KEYS + k + 1) as u64;
                    let (user, cmid) = (format!("u{}", k % 5), format!("cm-{k}"));
                    let m =
                        new_message(n, channels[k % 3], &user, Some(&cmid), &clock.at(k as i64));
                    handle.append(m, k).unwrap_or_else(|_| panic!("queue"));
                }
            });
        }
    });
    let mut results = Vec::new();
    for (handle, threads, rx) in writers {
        results.push(collect(&rx, KEYS).0);
        drop(handle);
        threads.join();
    }
    for (k, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
        let (stored, dup) = match (a, b) {
            (Some(Outcome::Stored(x)), Some(Outcome::Duplicate(y)))
            | (Some(Outcome::Duplicate(y)), Some(Outcome::Stored(x))) => (x, y),
            other => panic!("key {k}: not one stored and one duplicate: {other:?}"),
        };
        assert_eq!(
            stored, dup,
            "key {k}: the duplicate is not the stored message"
        );
        let found = s
            .find_by_client_id(&stored.user_id, &format!("cm-{k}"))
            .expect("find_by_client_id");
        assert_eq!(found.as_ref(), Some(stored), "key {k}");
    }
    let rows = all_messages(s, &channels);
    assert_eq!(rows.len(), KEYS, "a clientMessageId stored twice");
    assert_one_gapless_order(&rows);
}

/// The writer's commit rate on this backend, printed (not asserted): one
/// writer, messages queued as fast as they come, spread over 8 channels
/// (as `ingest -n 8` does) and then over 100 (every message of a batch
/// in its own channel: the most counters per commit).
pub(super) fn writer_commit_rate(s: &mut dyn Store, db: &dyn Backend) {
    const N: usize = 9_000; // below the writer queue (10,000): all queued at once
    let clock = Clock::new();
    for (round, spread) in [8usize, 100].into_iter().enumerate() {
        let names: Vec<String> = (0..spread).map(|i| format!("c-{spread}-{i}")).collect();
        let channels: Vec<&str> = names.iter().map(String::as_str).collect();
        create_channels(s, &clock, &channels);
        let (handle, threads, rx) = start_writer(db, 100, Duration::ZERO);
        let started = std::time::Instant::now();
        for i in 0..N {
            let n = (round * N + i) as u64 + 1;
            let m = new_message(n, channels[i % spread], "u", None, &clock.at(i as i64));
            handle.append(m, i).unwrap_or_else(|_| panic!("queue"));
        }
        let (outcomes, sizes) = collect(&rx, N);
        let elapsed = started.elapsed();
        assert_eq!(stored(&outcomes).len(), N);
        drop(handle);
        threads.join();
        eprintln!(
            "writer commit rate, {spread} channels: {N} messages in {:.3} s = {:.0}/s, {} commits (mean batch {:.1})",
            elapsed.as_secs_f64(),
            N as f64 / elapsed.as_secs_f64(),
            sizes.len(),
            N as f64 / sizes.len() as f64
        );
        let rows = all_messages(s, &channels);
        assert_eq!(rows.len(), N);
    }
}
