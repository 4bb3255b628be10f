//! Store suite: Reads.

use super::*;

// ---------------------------------------------------------------------------
// Reads

pub(super) fn history_pages_latest_before_after(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    // 25 in c-a, interleaved with c-b's, in batches of different sizes.
    let mut all_a = Vec::new();
    for (k, size) in [7u64, 1, 9, 8].into_iter().enumerate() {
        all_a.extend(fill(s, &clock, "c-a", 1000 * (k as u64 + 1), size));
        fill(s, &clock, "c-b", 100 * (k as u64 + 1), 2);
    }
    assert_eq!(seqs(&all_a), (1..=25).collect::<Vec<_>>());
    let page =
        |s: &mut dyn Store, p: Page, limit: usize| s.history("c-a", p, limit).expect("history");

    // Latest: the newest, ascending.
    let (latest, more) = page(s, Page::Latest, 10);
    assert_eq!(seqs(&latest), (16..=25).collect::<Vec<_>>());
    assert!(more);
    assert_eq!(latest, all_a[15..], "records as stored");
    let (everything, more) = page(s, Page::Latest, 100);
    assert_eq!(everything, all_a);
    assert!(!more, "hasMore with everything on the page");
    let (exact, more) = page(s, Page::Latest, 25);
    assert_eq!(exact.len(), 25);
    assert!(!more, "hasMore when the page holds exactly all");

    // Before: walking back from the newest page.
    let (older, more) = page(s, Page::Before(16), 10);
    assert_eq!(seqs(&older), (6..=15).collect::<Vec<_>>());
    assert!(more);
    let (oldest, more) = page(s, Page::Before(6), 10);
    assert_eq!(seqs(&oldest), (1..=5).collect::<Vec<_>>());
    assert!(!more);
    let (none, more) = page(s, Page::Before(1), 10);
    assert!(none.is_empty() && !more);
    let (tail, more) = page(s, Page::Before(1000), 3);
    assert_eq!(seqs(&tail), [23, 24, 25]);
    assert!(more);

    // After: walking forward from the start.
    let (first, more) = page(s, Page::After(0), 10);
    assert_eq!(seqs(&first), (1..=10).collect::<Vec<_>>());
    assert!(more);
    let (mid, more) = page(s, Page::After(10), 10);
    assert_eq!(seqs(&mid), (11..=20).collect::<Vec<_>>());
    assert!(more);
    let (last, more) = page(s, Page::After(20), 10);
    assert_eq!(seqs(&last), (21..=25).collect::<Vec<_>>());
    assert!(!more);
    let (none, more) = page(s, Page::After(25), 10);
    assert!(none.is_empty() && !more);
    let (exact, more) = page(s, Page::After(15), 10);
    assert_eq!(seqs(&exact), (16..=25).collect::<Vec<_>>());
    assert!(!more, "hasMore when the page ends at the newest");

    // One at a time.
    let (one, more) = page(s, Page::After(24), 1);
    assert_eq!(seqs(&one), [25]);
    assert!(!more);
    let (one, more) = page(s, Page::Before(2), 1);
    assert_eq!(seqs(&one), [1]);
    assert!(!more);

    // Other channels: their own seqs; unknown ones are empty.
    let (b, more) = s.history("c-b", Page::Latest, 100).expect("history");
    assert_eq!(seqs(&b), (1..=8).collect::<Vec<_>>());
    assert!(!more);
    assert!(b.iter().all(|m| m.channel_id == "c-b"));
    let (unknown, more) = s.history("c-unknown", Page::Latest, 10).expect("history");
    assert!(unknown.is_empty() && !more);

    // The same from a new connection.
    let mut again = db.open();
    assert_eq!(
        again.history("c-a", Page::After(10), 10).expect("history"),
        (mid, true)
    );
}

pub(super) fn history_leaves_deleted_out(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let all = fill(s, &clock, "c-a", 1, 12);
    // Delete seqs 1-3 (the oldest), 6, 7 and 12 (the newest).
    for seq in [1u64, 2, 3, 6, 7, 12] {
        s.delete_message(all[seq as usize - 1].id, &clock.at(100))
            .expect("delete")
            .expect("deleted");
    }
    let page = |s: &mut dyn Store, p: Page, limit: usize| {
        let (m, more) = s.history("c-a", p, limit).expect("history");
        (seqs(&m), more)
    };
    assert_eq!(
        page(s, Page::Latest, 100),
        (vec![4, 5, 8, 9, 10, 11], false)
    );
    // A full page of visible messages; what is beyond is visible too.
    assert_eq!(page(s, Page::Latest, 3), (vec![9, 10, 11], true));
    assert_eq!(
        page(s, Page::Before(9), 3),
        (vec![4, 5, 8], false),
        "only deleted ones left"
    );
    assert_eq!(page(s, Page::Before(8), 2), (vec![4, 5], false));
    assert_eq!(page(s, Page::Before(4), 10), (vec![], false));
    assert_eq!(page(s, Page::After(0), 2), (vec![4, 5], true));
    assert_eq!(
        page(s, Page::After(5), 4),
        (vec![8, 9, 10, 11], false),
        "only deleted beyond"
    );
    assert_eq!(page(s, Page::After(11), 4), (vec![], false));
    assert_eq!(
        page(db.open().as_mut(), Page::After(3), 3),
        (vec![4, 5, 8], true)
    );
}

pub(super) fn message_by_id(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut rows = vec![
        MessageRecord {
            kind: "image".into(),
            reply_to: Some(id(1).to_string()),
            client_message_id: Some("cm-2".into()),
            ..message(2, "c-a", 1, "alice", None, "a picture", &clock.at(2))
        },
        message(3, "c-a", 2, "bob", None, "", &clock.at(3)),
    ];
    s.insert_messages(&mut rows).expect("insert");
    assert_eq!(
        s.message(rows[0].id).expect("message").as_ref(),
        Some(&rows[0])
    );
    assert_eq!(
        s.message(rows[1].id).expect("message").as_ref(),
        Some(&rows[1]),
        "empty content"
    );
    assert_eq!(s.message(id(99)).expect("message"), None);
    assert_eq!(s.message(0).expect("message"), None);
    // The largest id the server can make (63 bits).
    let mut big = vec![MessageRecord {
        id: (1 << 63) - 1,
        ..message(0, "c-a", 3, "bob", None, "big id", &clock.at(4))
    }];
    s.insert_messages(&mut big).expect("insert");
    assert_eq!(
        db.open().message((1 << 63) - 1).expect("message").as_ref(),
        Some(&big[0])
    );
    // Deleted: gone for readers.
    s.delete_message(rows[1].id, &clock.at(10)).expect("delete");
    assert_eq!(s.message(rows[1].id).expect("message"), None);
    assert_eq!(db.open().message(rows[1].id).expect("message"), None);
}

pub(super) fn edit_message_sets_edited_at(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let rows = fill(s, &clock, "c-a", 1, 3);
    let edited = s
        .edit_message(rows[1].id, "better words", &clock.at(500))
        .expect("edit")
        .expect("edited");
    assert_eq!(
        edited,
        MessageRecord {
            content: "better words".into(),
            edited_at: Some(clock.at(500)),
            ..rows[1].clone()
        },
        "only content and editedAt change"
    );
    assert_eq!(
        s.message(rows[1].id).expect("message").as_ref(),
        Some(&edited)
    );
    let (history, _) = s.history("c-a", Page::Latest, 10).expect("history");
    assert_eq!(history[1], edited);

    // Edited again: the latest edit wins.
    let again = s
        .edit_message(rows[1].id, "best words", &clock.at(600))
        .expect("edit")
        .expect("edited");
    assert_eq!(
        (again.content.as_str(), again.edited_at.as_deref()),
        ("best words", Some(clock.at(600).as_str()))
    );
    assert_eq!(db.open().message(rows[1].id).expect("message"), Some(again));

    // Unknown and deleted messages are not edited.
    assert_eq!(
        s.edit_message(id(99), "x", &clock.at(700)).expect("edit"),
        None
    );
    s.delete_message(rows[2].id, &clock.at(700))
        .expect("delete");
    assert_eq!(
        s.edit_message(rows[2].id, "x", &clock.at(800))
            .expect("edit"),
        None
    );
    // The untouched one is untouched.
    assert_eq!(
        s.message(rows[0].id).expect("message").as_ref(),
        Some(&rows[0])
    );
}

pub(super) fn delete_message_is_soft(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut rows = vec![
        message(1, "c-a", 1, "alice", Some("cm-1"), "one", &clock.at(1)),
        message(2, "c-a", 2, "alice", Some("cm-2"), "two", &clock.at(2)),
    ];
    s.insert_messages(&mut rows).expect("insert");
    let deleted = s
        .delete_message(rows[0].id, &clock.at(100))
        .expect("delete")
        .expect("deleted");
    assert_eq!(
        deleted,
        MessageRecord {
            deleted_at: Some(clock.at(100)),
            pinned: None,
            ..rows[0].clone()
        },
        "the deleted message as stored"
    );
    assert_eq!(
        s.delete_message(rows[0].id, &clock.at(200))
            .expect("delete"),
        None,
        "deleted twice"
    );
    assert_eq!(
        s.delete_message(id(99), &clock.at(200)).expect("delete"),
        None
    );

    let mut again = db.open();
    assert_eq!(again.message(rows[0].id).expect("message"), None);
    let (history, more) = again.history("c-a", Page::Latest, 10).expect("history");
    assert_eq!((history, more), (vec![rows[1].clone()], false));
    // Soft: the row keeps its seq and clientMessageId.
    assert_eq!(again.last_seq("c-a").expect("last_seq"), 2);
    let kept = again
        .find_by_client_id("alice", "cm-1")
        .expect("find")
        .expect("kept");
    assert_eq!(kept.deleted_at.as_deref(), Some(clock.at(100).as_str()));
}

pub(super) fn replay_caps_seq_per_channel_in_pos_order(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    // Three channels, interleaved over several batches.
    let mut all: Vec<MessageRecord> = Vec::new();
    for round in 0..5u64 {
        for (k, ch) in ["c-a", "c-b", "c-c"].into_iter().enumerate() {
            all.extend(fill(s, &clock, ch, 1000 * round + 10 * k as u64, 2));
        }
    }
    assert!(all.windows(2).all(|w| w[0].pos < w[1].pos));
    let channels = |caps: &[(&str, u64)], after: u64| -> Vec<ReplayRange> {
        caps.iter()
            .map(|(c, n)| range(c, after, u64::MAX, *n))
            .collect()
    };
    // What replay should give: the not deleted ones of `all`.
    let expected = |all: &[MessageRecord], after: u64, caps: &[(&str, u64)], limit: usize| {
        all.iter()
            .filter(|m| m.deleted_at.is_none())
            .filter(|m| m.pos > after)
            .filter(|m| caps.iter().any(|(c, n)| m.channel_id == *c && m.seq <= *n))
            .take(limit)
            .cloned()
            .collect::<Vec<_>>()
    };

    // Everything in two channels, in pos order, the third left out.
    let caps = [("c-a", 100), ("c-c", 100)];
    let got = s.replay(&channels(&caps, 0), 1000).expect("replay");
    assert_eq!(got, expected(&all, 0, &caps, 1000));
    assert_eq!(got.len(), 20);

    // After an offset, each channel only up to its seq.
    let after = all[8].pos;
    let caps = [("c-a", 7), ("c-b", 10), ("c-c", 4)];
    let got = s.replay(&channels(&caps, after), 1000).expect("replay");
    assert_eq!(got, expected(&all, after, &caps, 1000));
    assert!(got.iter().all(|m| m.pos > after));
    assert!(
        got.windows(2).all(|w| w[0].pos < w[1].pos),
        "not in pos order"
    );

    // The limit keeps the first by pos, across channels.
    let caps = [("c-a", 100), ("c-b", 100), ("c-c", 100)];
    let got = s.replay(&channels(&caps, 0), 7).expect("replay");
    assert_eq!(got, expected(&all, 0, &caps, 7));
    assert_eq!(got, all[..7]);

    // Deleted ones are left out; cap 0, unknown channels and no channels
    // give nothing.
    let victim = all
        .iter()
        .find(|m| m.channel_id == "c-b" && m.seq == 3)
        .unwrap()
        .clone();
    s.delete_message(victim.id, &clock.at(9999))
        .expect("delete");
    for m in all.iter_mut().filter(|m| m.id == victim.id) {
        m.deleted_at = Some(clock.at(9999));
    }
    let got = s
        .replay(&channels(&[("c-b", 100)], 0), 1000)
        .expect("replay");
    assert_eq!(seqs(&got), [1, 2, 4, 5, 6, 7, 8, 9, 10]);
    assert!(
        s.replay(&channels(&[("c-a", 0)], 0), 100)
            .expect("replay")
            .is_empty()
    );
    assert!(
        s.replay(&channels(&[("c-x", 100)], 0), 100)
            .expect("replay")
            .is_empty()
    );
    assert!(s.replay(&[], 100).expect("replay").is_empty());
    let last = all.last().unwrap().pos;
    assert!(
        s.replay(&channels(&caps, last), 100)
            .expect("replay")
            .is_empty()
    );

    // The same from a new connection.
    let caps = [("c-a", 5), ("c-b", 5)];
    assert_eq!(
        db.open()
            .replay(&channels(&caps, all[3].pos), 4)
            .expect("replay"),
        expected(&all, all[3].pos, &caps, 4)
    );
}

pub(super) fn replay_counts_bounded_and_pages_exactly(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    let mut all: Vec<MessageRecord> = Vec::new();
    for round in 0..4u64 {
        for (k, ch) in ["c-a", "c-b", "c-c"].into_iter().enumerate() {
            all.extend(fill(s, &clock, ch, 1000 * round + 10 * k as u64, 3));
        }
    }
    let victim = all
        .iter()
        .find(|m| m.channel_id == "c-a" && m.seq == 2)
        .unwrap()
        .clone();
    s.delete_message(victim.id, &clock.at(9999))
        .expect("delete");
    all.retain(|m| m.id != victim.id);
    let names = |chs: &[&str], after: u64| {
        chs.iter()
            .map(|c| ((*c).to_owned(), after))
            .collect::<Vec<_>>()
    };

    // The count: deleted ones left out, other channels left out, after
    // the offset only.
    let ab = |after| names(&["c-a", "c-b"], after);
    let in_ab = |after: u64| {
        all.iter()
            .filter(|m| m.pos > after && m.channel_id != "c-c")
            .count()
    };
    assert_eq!(in_ab(0), 23);
    assert_eq!(s.replay_count(&ab(0), 1000).expect("count"), 23);
    let after = all[10].pos;
    assert_eq!(
        s.replay_count(&ab(after), 1000).expect("count"),
        in_ab(after)
    );
    // It stops at the limit, across channels (never more than asked).
    for limit in [0, 1, 5, 11, 12, 22, 23] {
        assert_eq!(s.replay_count(&ab(0), limit).expect("count"), limit);
    }
    assert_eq!(s.replay_count(&names(&["c-x"], 0), 100).expect("count"), 0);
    assert_eq!(s.replay_count(&[], 100).expect("count"), 0);
    let last = all.last().unwrap().pos;
    assert_eq!(
        s.replay_count(&names(&["c-a", "c-b", "c-c"], last), 100)
            .expect("count"),
        0
    );

    // Paging by the last pos of each page gives every message once, in
    // commit order, whatever the page size.
    let caps = [("c-a", 100), ("c-b", 9), ("c-c", 100)];
    let expected: Vec<MessageRecord> = all
        .iter()
        .filter(|m| m.channel_id != "c-b" || m.seq <= 9)
        .cloned()
        .collect();
    for page in [1usize, 2, 5, 7, 100] {
        let (mut got, mut cursor) = (Vec::new(), 0);
        loop {
            let ranges: Vec<ReplayRange> = caps
                .iter()
                .map(|(c, n)| range(c, cursor, u64::MAX, *n))
                .collect();
            let rows = s.replay(&ranges, page).expect("replay");
            assert!(rows.len() <= page, "a page holds at most its limit");
            let Some(last) = rows.last() else { break };
            cursor = last.pos;
            let full = rows.len() == page;
            got.extend(rows);
            if !full {
                break;
            }
        }
        assert_eq!(got, expected, "page size {page}");
    }
}

/// A replay range (`after < pos <= upto_pos`, `seq <= max_seq`).
fn range(channel: &str, after: u64, upto_pos: u64, max_seq: u64) -> ReplayRange {
    ReplayRange {
        channel: channel.to_owned(),
        after,
        upto_pos,
        max_seq,
    }
}

/// Each channel its own bounds (as with several sequencing partitions,
/// whose positions are not comparable): the count and the replay take
/// each channel's own `after`, and the replay its own `upto_pos`.
pub(super) fn replay_bounds_are_per_channel(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    let mut all: Vec<MessageRecord> = Vec::new();
    for round in 0..4u64 {
        for (k, ch) in ["c-a", "c-b"].into_iter().enumerate() {
            all.extend(fill(s, &clock, ch, 1000 * round + 10 * k as u64, 3));
        }
    }
    let of =
        |ch: &str| -> Vec<&MessageRecord> { all.iter().filter(|m| m.channel_id == ch).collect() };
    let (a, b) = (of("c-a"), of("c-b"));
    // c-a after its 3rd message, up to its 10th; c-b after its 8th.
    let ranges = [
        range("c-a", a[2].pos, a[9].pos, 100),
        range("c-b", b[7].pos, u64::MAX, 100),
    ];
    let counted = s
        .replay_count(
            &[("c-a".to_owned(), a[2].pos), ("c-b".to_owned(), b[7].pos)],
            1000,
        )
        .expect("count");
    assert_eq!(counted, (12 - 3) + (12 - 8));
    let got = s.replay(&ranges, 1000).expect("replay");
    let mut expected: Vec<MessageRecord> = a[3..10]
        .iter()
        .chain(&b[8..])
        .map(|m| (*m).clone())
        .collect();
    expected.sort_by_key(|m| m.pos);
    assert_eq!(got, expected);
    // An empty range (after at or past upto_pos) gives nothing.
    let none = [range("c-a", a[5].pos, a[5].pos, 100)];
    assert!(s.replay(&none, 100).expect("replay").is_empty());
}
