//! Store suite: The writer thread on each backend.

use super::*;

// ---------------------------------------------------------------------------
// The writer thread on each backend

type Batches = Receiver<Vec<(Outcome, usize)>>;

/// Starts the store threads (`store::handle::start`) on `db`; every batch
/// of outcomes the writer hands on comes out of the receiver.
pub(super) fn start_writer(
    db: &dyn Backend,
    max_batch: usize,
    window: Duration,
) -> (
    gatrix_chat::store::StoreHandle<usize>,
    gatrix_chat::store::StoreThreads,
    Batches,
) {
    start_partitioned_writer(db, 1, max_batch, window)
}

/// [`start_writer`] with `partitions` sequencing partitions.
pub(super) fn start_partitioned_writer(
    db: &dyn Backend,
    partitions: u32,
    max_batch: usize,
    window: Duration,
) -> (
    gatrix_chat::store::StoreHandle<usize>,
    gatrix_chat::store::StoreThreads,
    Batches,
) {
    let settings = StoreSettings {
        writer: WriterSettings { max_batch, window },
        writer_queue: 10_000,
        readers: 1,
        reader_queue: 100,
        metrics: gatrix_chat::metrics::StoreMetrics::detached(),
    };
    let (tx, rx) = unbounded();
    let (handle, threads) = handle::start(
        &settings,
        || Ok(db.open_partitioned(partitions)),
        move |batch: Vec<(Outcome, usize)>| {
            let _ = tx.send(batch);
        },
    )
    .expect("start the store threads");
    (handle, threads, rx)
}

/// Blocks the writer (a job that waits on a barrier) so that what is
/// appended next queues up; returns the barrier that lets it go.
pub(super) fn hold_writer(handle: &gatrix_chat::store::StoreHandle<usize>) -> Arc<Barrier> {
    let (entered, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let (e, r) = (entered.clone(), release.clone());
    // The answer (a oneshot) is not needed.
    let _answer = handle
        .write(move |_s| {
            e.wait();
            r.wait();
        })
        .expect("queue a write");
    entered.wait();
    release
}

/// Receives outcomes until `count` are in; returns them by reply index,
/// with the size of each batch.
pub(super) fn collect(rx: &Batches, count: usize) -> (Vec<Option<Outcome>>, Vec<usize>) {
    let mut outcomes = vec![None; count];
    let mut sizes = Vec::new();
    let mut seen = 0;
    while seen < count {
        let batch = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("only {seen} of {count} outcomes within 30 s"));
        sizes.push(batch.len());
        for (outcome, i) in batch {
            assert!(
                outcomes[i].replace(outcome).is_none(),
                "two outcomes for {i}"
            );
            seen += 1;
        }
    }
    (outcomes, sizes)
}

/// The id the commit makes of a message's month and position (one
/// sequencing partition: 0).
pub(super) fn made_id(m: &MessageRecord) -> u64 {
    gatrix_chat::ids::message_id(gatrix_chat::ids::month_index_at(&m.created_at), 0, m.pos)
}

pub(super) fn new_message(
    n: u64,
    channel: &str,
    user: &str,
    cmid: Option<&str>,
    at: &str,
) -> Box<MessageRecord> {
    Box::new(message(
        n,
        channel,
        0,
        user,
        cmid,
        &format!("message {n}"),
        at,
    ))
}

pub(super) fn writer_seqs_are_gapless_under_repeated_client_ids(
    _s: &mut dyn Store,
    db: &dyn Backend,
) {
    let clock = Clock::new();
    let (handle, threads, rx) = start_writer(db, 16, Duration::from_millis(2));

    // 300 messages over 3 channels from 3 users; every fifth repeats the
    // clientMessageId of an earlier one of its user (in the same batch or
    // an older one), some twice.
    const N: usize = 300;
    let channels = ["c-a", "c-b", "c-c"];
    let users = ["u1", "u2", "u3"];
    let mut first_of: Vec<usize> = Vec::with_capacity(N); // index of the original
    let mut sent: Vec<(String, &str, Option<String>)> = Vec::new();
    // Per user: the messages with a clientMessageId, to repeat.
    let mut originals: HashMap<&str, Vec<usize>> = HashMap::new();
    let release = hold_writer(&handle); // what comes first queues up
    for i in 0..N {
        let user = users[i % 3];
        let mine = originals.entry(user).or_default();
        let (channel, cmid, original) = if i % 5 == 4 && !mine.is_empty() {
            // Alternately the user's latest (likely in the same batch)
            // and one from long before.
            let j = if (i / 5) % 2 == 0 {
                mine[mine.len() - 1]
            } else {
                mine[(i / 10) % mine.len()]
            };
            (sent[j].0.clone(), sent[j].2.clone(), j)
        } else if i % 7 == 0 {
            (channels[(i / 3) % 3].to_owned(), None, i)
        } else {
            mine.push(i);
            (
                channels[(i / 3) % 3].to_owned(),
                Some(format!("cm-{user}-{i}")),
                i,
            )
        };
        first_of.push(original);
        sent.push((channel.clone(), user, cmid.clone()));
        handle
            .append(
                new_message(
                    i as u64 + 1,
                    &channel,
                    user,
                    cmid.as_deref(),
                    &clock.at(i as i64),
                ),
                i,
            )
            .unwrap_or_else(|_| panic!("queue full at {i}"));
        if i == 40 {
            release.wait();
        }
    }
    let repeats = (0..N).filter(|&i| first_of[i] != i).count();
    assert!(repeats >= 50, "only {repeats} repeats");
    let (outcomes, sizes) = collect(&rx, N);
    assert!(
        sizes.iter().all(|&n| n <= 16),
        "a batch over max_batch: {sizes:?}"
    );
    assert!(sizes.iter().any(|&n| n > 1), "no group commit: {sizes:?}");

    let mut stored: HashMap<usize, MessageRecord> = HashMap::new();
    let mut commit_order: Vec<u64> = Vec::new();
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome.as_ref().unwrap() {
            Outcome::Stored(m) => {
                assert_eq!(
                    first_of[i], i,
                    "message {i} repeats {} but was stored",
                    first_of[i]
                );
                assert_eq!(m.content, format!("message {}", i + 1));
                assert_eq!(m.id, made_id(m), "the id is made of the pos");
                commit_order.push(m.pos);
                stored.insert(i, m.clone());
            }
            Outcome::Duplicate(m) => {
                assert_ne!(
                    first_of[i], i,
                    "message {i} is new but came back a duplicate"
                );
                assert_eq!(
                    m.content,
                    format!("message {}", first_of[i] + 1),
                    "message {i}: not the first message"
                );
            }
            Outcome::Failed(e) | Outcome::Refused(e) => panic!("message {i} failed: {e}"),
        }
    }
    // Duplicates point at the stored original, exactly.
    for (i, outcome) in outcomes.iter().enumerate() {
        if let Some(Outcome::Duplicate(m)) = outcome {
            assert_eq!(m, &stored[&first_of[i]], "duplicate {i}");
        }
    }
    assert!(
        commit_order.windows(2).all(|w| w[0] < w[1]),
        "the stored messages' pos are not in send order"
    );

    // Per channel: seqs 1..=n in send order, and the store agrees.
    let mut s = db.open();
    for ch in channels {
        let mut mine: Vec<(usize, &MessageRecord)> = stored
            .iter()
            .filter(|(_, m)| m.channel_id == ch)
            .map(|(i, m)| (*i, m))
            .collect();
        mine.sort_by_key(|(i, _)| *i);
        let got: Vec<u64> = mine.iter().map(|(_, m)| m.seq).collect();
        assert_eq!(
            got,
            (1..=mine.len() as u64).collect::<Vec<_>>(),
            "{ch}: seqs"
        );
        let (history, more) = s.history(ch, Page::After(0), 1000).expect("history");
        assert!(!more);
        let expected: Vec<MessageRecord> = mine.iter().map(|(_, m)| (*m).clone()).collect();
        assert_eq!(
            history, expected,
            "{ch}: history != what the writer reported"
        );
        assert_eq!(s.last_seq(ch).expect("last_seq"), mine.len() as u64);
    }
    drop(handle);
    threads.join();

    // A new writer (a restart) continues each channel's seqs, and a
    // repeated clientMessageId still answers with the first message.
    let (handle, threads, rx) = start_writer(db, 16, Duration::ZERO);
    let repeat = (0..N)
        .find(|&i| first_of[i] == i && sent[i].2.is_some())
        .unwrap();
    let (rc, ru, rcmid) = sent[repeat].clone();
    handle
        .append(
            new_message(10_001, &rc, ru, rcmid.as_deref(), &clock.at(5000)),
            0,
        )
        .unwrap_or_else(|_| panic!("queue"));
    handle
        .append(
            new_message(10_002, "c-b", "u2", Some("fresh"), &clock.at(5001)),
            1,
        )
        .unwrap_or_else(|_| panic!("queue"));
    let (outcomes, _) = collect(&rx, 2);
    match &outcomes[0] {
        Some(Outcome::Duplicate(m)) => assert_eq!(m, &stored[&repeat]),
        other => panic!("repeat after restart: {other:?}"),
    }
    let b_count = stored.values().filter(|m| m.channel_id == "c-b").count() as u64;
    match &outcomes[1] {
        Some(Outcome::Stored(m)) => {
            assert_eq!(m.seq, b_count + 1, "seq after restart");
            assert!(m.pos > *commit_order.last().unwrap(), "pos after restart");
        }
        other => panic!("new message after restart: {other:?}"),
    }
    drop(handle);
    threads.join();
}

pub(super) fn writer_failed_batch_stores_nothing(_s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let (handle, threads, rx) = start_writer(db, 100, Duration::ZERO);

    // c-a gets seqs 1-3 through the writer.
    for i in 0..3 {
        handle
            .append(
                new_message(i + 1, "c-a", "u", None, &clock.at(i as i64)),
                i as usize,
            )
            .unwrap_or_else(|_| panic!("queue"));
    }
    let (first, _) = collect(&rx, 3);
    assert!(
        first.iter().all(|o| matches!(o, Some(Outcome::Stored(_)))),
        "{first:?}"
    );

    // A row imported with its id given (`insert_messages`) holds the id
    // that the third message of the next batch will be made: that batch
    // fails as a whole. The import takes the next position; the batch
    // takes the four after it. The batch is dated 40 days ahead (a month
    // the retry below is not in, so the retry's ids differ).
    let ahead = 40 * 86_400_000;
    let Some(Outcome::Stored(third)) = &first[2] else {
        panic!("{first:?}")
    };
    let month = gatrix_chat::ids::month_index_at(&clock.at(ahead + 102));
    let mut trap = [message(
        0,
        "c-t",
        1,
        "importer",
        None,
        "imported",
        &clock.at(50),
    )];
    trap[0].id = gatrix_chat::ids::message_id(month, 0, third.pos + 4);
    db.open().insert_messages(&mut trap).expect("import");
    assert_eq!(trap[0].pos, third.pos + 1, "the import's position");

    let release = hold_writer(&handle);
    let batch = [
        ("c-b", Some("b-1")),
        ("c-a", Some("a-4")),
        ("c-b", None),
        ("c-c", Some("c-1")),
    ];
    for (k, (ch, cmid)) in batch.iter().enumerate() {
        let n = 100 + k as u64;
        handle
            .append(
                new_message(n, ch, "u", *cmid, &clock.at(ahead + 100 + k as i64)),
                k,
            )
            .unwrap_or_else(|_| panic!("queue"));
    }
    release.wait();
    let (failed, sizes) = collect(&rx, batch.len());
    assert_eq!(
        sizes,
        [batch.len()],
        "the queued messages were not one batch"
    );
    for (k, outcome) in failed.iter().enumerate() {
        assert!(
            matches!(outcome, Some(Outcome::Failed(_))),
            "message {k} of the failed batch: {outcome:?}"
        );
    }
    let mut check = db.open();
    for ch in ["c-a", "c-b", "c-c"] {
        let (history, _) = check.history(ch, Page::After(0), 100).expect("history");
        assert!(
            history.iter().all(|m| m.content.starts_with("message ")
                && m.content["message ".len()..]
                    .parse::<u64>()
                    .is_ok_and(|n| n <= 3)),
            "kept from a failed batch: {history:?}"
        );
    }
    assert_eq!(
        check.message(trap[0].id).expect("message").as_ref(),
        Some(&trap[0]),
        "the message whose id was taken changed"
    );
    assert_eq!(
        check.last_seq("c-a").expect("last_seq"),
        3,
        "c-a written by a failed batch"
    );
    assert_eq!(
        check.last_seq("c-b").expect("last_seq"),
        0,
        "c-b written by a failed batch"
    );
    assert_eq!(
        check.last_seq("c-c").expect("last_seq"),
        0,
        "c-c written by a failed batch"
    );
    assert_eq!(check.find_by_client_id("u", "b-1").expect("find"), None);

    // Retried with fresh ids: stored now, and the failed batch burned no
    // seq: c-a goes on at 4, c-b and c-c start at 1.
    for (k, (ch, cmid)) in batch.iter().enumerate() {
        handle
            .append(
                new_message(200 + k as u64, ch, "u", *cmid, &clock.at(200 + k as i64)),
                k,
            )
            .unwrap_or_else(|_| panic!("queue"));
    }
    let (retried, _) = collect(&rx, batch.len());
    let seq_of = |o: &Option<Outcome>| match o {
        Some(Outcome::Stored(m)) => (m.channel_id.clone(), m.seq),
        other => panic!("retry: {other:?}"),
    };
    let got: Vec<(String, u64)> = retried.iter().map(seq_of).collect();
    let want: Vec<(String, u64)> = [("c-b", 1), ("c-a", 4), ("c-b", 2), ("c-c", 1)]
        .iter()
        .map(|(c, n)| ((*c).to_owned(), *n))
        .collect();
    assert_eq!(got, want);
    drop(handle);
    threads.join();
    let (a, _) = check.history("c-a", Page::After(0), 100).expect("history");
    assert_eq!(seqs(&a), [1, 2, 3, 4]);
    assert_eq!(a[3].content, "message 201");
    assert_eq!(a[3].id, made_id(&a[3]));
    // After the import (+1) and the retried c-b (+2): no gap.
    assert_eq!(a[3].pos, third.pos + 3, "the failed batch left a gap");
}
