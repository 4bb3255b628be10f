//! Store suite: Messages: the writer's methods.

use super::*;

// ---------------------------------------------------------------------------
// Messages: the writer's methods

pub(super) fn insert_fills_pos_in_commit_order(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    // Interleaved channels in one batch: pos follows the slice order.
    let mut first: Vec<MessageRecord> = (0..6)
        .map(|i| {
            let ch = if i % 2 == 0 { "c-a" } else { "c-b" };
            message(
                i,
                ch,
                i / 2 + 1,
                "u",
                None,
                &format!("m{i}"),
                &clock.at(i as i64),
            )
        })
        .collect();
    s.insert_messages(&mut first).expect("insert");
    let pos: Vec<u64> = first.iter().map(|m| m.pos).collect();
    assert!(
        pos[0] > 0,
        "pos starts above 0 (0 is the empty offset): {pos:?}"
    );
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "pos not in slice order: {pos:?}"
    );

    // A later batch only gets larger positions.
    let mut second = vec![
        message(10, "c-b", 4, "u", None, "later b", &clock.at(10)),
        message(11, "c-a", 4, "u", None, "later a", &clock.at(11)),
    ];
    s.insert_messages(&mut second).expect("insert");
    assert!(
        second[0].pos > pos[5] && second[1].pos > second[0].pos,
        "{second:?}"
    );

    // An empty batch is fine.
    s.insert_messages(&mut []).expect("insert nothing");

    // Stored exactly as given, pos included, for any connection.
    let mut again = db.open();
    for m in first.iter().chain(&second) {
        assert_eq!(again.message(m.id).expect("message").as_ref(), Some(m));
    }
    // A new connection (a restart) continues after the stored positions.
    let mut third = vec![message(20, "c-c", 1, "u", None, "new", &clock.at(20))];
    again.insert_messages(&mut third).expect("insert");
    assert!(third[0].pos > second[1].pos, "{third:?}");
}

pub(super) fn insert_is_all_or_nothing(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let stored = fill(s, &clock, "c-a", 1, 2); // ids 1, 2; seqs 1, 2

    // A batch whose last row reuses a stored message id: the rows before
    // it, in other channels too, are not kept.
    let mut batch = vec![
        message(10, "c-b", 1, "u", Some("cm-10"), "b1", &clock.at(10)),
        message(11, "c-a", 3, "u", Some("cm-11"), "a3", &clock.at(11)),
        message(2, "c-a", 4, "u", Some("cm-12"), "id 2 again", &clock.at(12)),
    ];
    let err = s.insert_messages(&mut batch);
    assert!(err.is_err(), "a batch reusing id 2 was stored: {batch:?}");
    let assert_none_kept = |s: &mut dyn Store, batch: &[MessageRecord]| {
        for m in batch.iter().filter(|m| m.id != stored[1].id) {
            assert_eq!(
                s.message(m.id).expect("message"),
                None,
                "kept from a failed batch: {m:?}"
            );
            if let Some(cmid) = &m.client_message_id {
                assert_eq!(s.find_by_client_id(&m.user_id, cmid).expect("find"), None);
            }
        }
    };
    assert_none_kept(s, &batch);
    assert_eq!(s.last_seq("c-a").expect("last_seq"), 2);
    assert_eq!(s.last_seq("c-b").expect("last_seq"), 0);
    assert_eq!(
        s.message(stored[1].id).expect("message").as_ref(),
        Some(&stored[1]),
        "the stored message with that id was changed"
    );

    // Two rows with one id inside a batch fail it as well.
    let mut batch = vec![
        message(20, "c-a", 3, "u", None, "a3", &clock.at(20)),
        message(20, "c-b", 1, "v", None, "b1", &clock.at(21)),
    ];
    assert!(
        s.insert_messages(&mut batch).is_err(),
        "two rows with one id stored"
    );
    assert_none_kept(s, &batch);

    // A large batch (more rows than one INSERT statement may carry) whose
    // very last row fails: none of it is kept.
    let mut batch: Vec<MessageRecord> = (0..300)
        .map(|i| {
            let ch = ["c-a", "c-b", "c-c"][i % 3];
            let seq = if ch == "c-a" {
                3 + i as u64 / 3
            } else {
                1 + i as u64 / 3
            };
            message(
                100 + i as u64,
                ch,
                seq,
                "u",
                Some(&format!("big-{i}")),
                "x",
                &clock.at(100),
            )
        })
        .collect();
    batch[299].id = stored[0].id;
    assert!(
        s.insert_messages(&mut batch).is_err(),
        "a large batch with a bad last row was stored"
    );
    assert_none_kept(db.open().as_mut(), &batch[..299]);
    assert_eq!(s.last_seq("c-c").expect("last_seq"), 0);

    // The connection is still good: the same rows, fixed, go in.
    let mut batch = vec![
        message(30, "c-b", 1, "u", Some("cm-10"), "b1", &clock.at(30)),
        message(31, "c-a", 3, "u", Some("cm-11"), "a3", &clock.at(31)),
    ];
    s.insert_messages(&mut batch)
        .expect("insert after a failed batch");
    let mut again = db.open();
    assert_eq!(again.last_seq("c-a").expect("last_seq"), 3);
    let (history, _) = again.history("c-a", Page::Latest, 10).expect("history");
    assert_eq!(seqs(&history), [1, 2, 3]);
    assert_eq!(history[2], batch[1]);
    assert!(history[2].pos > stored[1].pos);
}

pub(super) fn last_seq_per_channel(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    assert_eq!(s.last_seq("c-a").expect("last_seq"), 0, "no messages");
    fill(s, &clock, "c-a", 1, 5);
    fill(s, &clock, "c-b", 100, 2);
    assert_eq!(s.last_seq("c-a").expect("last_seq"), 5);
    assert_eq!(s.last_seq("c-b").expect("last_seq"), 2);
    // Deleted messages keep their seq taken.
    s.delete_message(id(5), &clock.at(50)).expect("delete");
    assert_eq!(s.last_seq("c-a").expect("last_seq"), 5);
    // A prefix of another channel's id is another channel.
    assert_eq!(s.last_seq("c-").expect("last_seq"), 0);
    assert_eq!(db.open().last_seq("c-a").expect("last_seq"), 5);
}

pub(super) fn find_by_client_id_per_user(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut rows = vec![
        message(1, "c-a", 1, "alice", Some("same"), "alice's", &clock.at(1)),
        message(2, "c-a", 2, "bob", Some("same"), "bob's", &clock.at(2)),
        message(3, "c-b", 1, "alice", Some("other"), "in b", &clock.at(3)),
        message(4, "c-a", 3, "alice", None, "no cmid", &clock.at(4)),
        message(5, "c-a", 4, "alice", None, "no cmid either", &clock.at(5)),
    ];
    s.insert_messages(&mut rows).expect("insert");

    let find = |s: &mut dyn Store, user: &str, cmid: &str| {
        s.find_by_client_id(user, cmid).expect("find_by_client_id")
    };
    assert_eq!(find(s, "alice", "same").as_ref(), Some(&rows[0]));
    assert_eq!(find(s, "bob", "same").as_ref(), Some(&rows[1]));
    assert_eq!(
        find(s, "alice", "other").as_ref(),
        Some(&rows[2]),
        "any channel"
    );
    assert_eq!(find(s, "bob", "other"), None);
    assert_eq!(find(s, "carol", "same"), None);
    assert_eq!(find(s, "alice", "unknown"), None);
    assert_eq!(find(s, "alice", ""), None);
    // Case matters in ids.
    assert_eq!(find(s, "alice", "SAME"), None);
    assert_eq!(find(s, "Alice", "same"), None);

    // A deleted message still holds its clientMessageId (a retry must not
    // bring it back as a new message).
    s.delete_message(rows[0].id, &clock.at(100))
        .expect("delete");
    let found = find(s, "alice", "same").expect("still found after delete");
    assert_eq!(found.id, rows[0].id);
    assert_eq!(found.deleted_at.as_deref(), Some(clock.at(100).as_str()));

    assert_eq!(
        find(db.open().as_mut(), "bob", "same").as_ref(),
        Some(&rows[1])
    );
}

/// The batch lookup the writer makes once per batch: for many (user,
/// clientMessageId) pairs, exactly what `find_by_client_id` gives for each
/// (deleted ones included), keyed by the pair asked for; repeated and
/// missing pairs, and more pairs than one query carries.
pub(super) fn find_by_client_ids_agrees_with_one_at_a_time(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let users = ["alice", "bob", "Bob", "ünï 🦀"];
    let mut rows: Vec<MessageRecord> = (0..200u64)
        .map(|i| {
            let user = users[i as usize % users.len()];
            let cmid = if i % 9 == 8 {
                None
            } else {
                Some(format!("cm-{}", i / 2))
            };
            message(
                i + 1,
                "c-a",
                i + 1,
                user,
                cmid.as_deref(),
                "x",
                &clock.at(i as i64),
            )
        })
        .collect();
    s.insert_messages(&mut rows).expect("insert");
    s.delete_message(rows[10].id, &clock.at(1000))
        .expect("delete")
        .expect("deleted");

    let mut keys: Vec<(String, String)> = Vec::new();
    for i in 0..120u64 {
        for user in users {
            keys.push((user.to_owned(), format!("cm-{i}"))); // found or not
        }
    }
    keys.push(("alice".into(), "cm-0".into())); // asked twice
    keys.push(("carol".into(), "cm-0".into())); // no such user
    keys.push(("alice".into(), String::new()));
    let mut expected: HashMap<(String, String), MessageRecord> = HashMap::new();
    for (user, cmid) in &keys {
        if let Some(m) = s.find_by_client_id(user, cmid).expect("find_by_client_id") {
            expected.insert((user.clone(), cmid.clone()), m);
        }
    }
    assert!(expected.len() > 150, "only {} found", expected.len());
    let deleted_key = (
        rows[10].user_id.clone(),
        rows[10].client_message_id.clone().unwrap(),
    );
    assert!(expected[&deleted_key].deleted_at.is_some());

    let found = db
        .open()
        .find_by_client_ids(&keys)
        .expect("find_by_client_ids");
    let mut missing: Vec<&(String, String)> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .collect();
    missing.sort();
    let mut extra: Vec<&(String, String)> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    extra.sort();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "find_by_client_ids: missing {missing:?}, extra {extra:?}"
    );
    for (key, m) in &expected {
        assert_eq!(&found[key], m, "{key:?}");
    }
    assert!(s.find_by_client_ids(&[]).expect("no keys").is_empty());
}
