//! Unit tests of the MySQL store that need no server, plus a few checks
//! against a real one, ignored unless GATRIX_TEST_MYSQL_URL names a server
//! where they may create databases (scripts/test starts one). The store test suite in tests/ covers the behaviour shared with
//! SQLite; these cover what only this backend does.

use super::rows::{chunks, insert_sql};
use super::*;
use mysql::Conn;

fn msg(id: u64, channel: &str, seq: u64, content: &str) -> MessageRecord {
    MessageRecord {
        id,
        pos: 0,
        channel_id: channel.into(),
        seq,
        user_id: "u".into(),
        content: content.into(),
        kind: "text".into(),
        client_message_id: None,
        reply_to: None,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        edited_at: None,
        deleted_at: None,
        pinned: None,
        thread: Default::default(),
    }
}

#[test]
fn insert_statements_have_one_row_of_placeholders_per_message() {
    let sql = insert_sql(3);
    assert_eq!(sql.matches('?').count(), 42);
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    assert!(sql.ends_with(&format!("{row}, {row}, {row}")));
}

#[test]
fn batches_are_split_by_rows_and_by_bytes() {
    let small: Vec<_> = (0..300).map(|i| msg(i, "c", i, "hi")).collect();
    assert_eq!(chunks(&small), [0..128, 128..256, 256..300]);
    assert_eq!(chunks(&small[..1]).len(), 1);
    assert!(chunks(&[]).is_empty());
    let big = "x".repeat(1 << 20);
    let large: Vec<_> = (0..9).map(|i| msg(i, "c", i, &big)).collect();
    // About 4 MiB per statement: three 1 MiB messages each.
    assert_eq!(chunks(&large), [0..3, 3..6, 6..9]);
    // A single message larger than the budget still goes, alone.
    let huge = vec![msg(1, "c", 1, &"y".repeat(5 << 20)), msg(2, "c", 2, "z")];
    assert_eq!(chunks(&huge), vec![0..1, 1..2]);
}

/// A new, migrated database on the server GATRIX_TEST_MYSQL_URL names
/// ([`scratch_empty`], migrated).
fn scratch() -> Opts {
    let opts = scratch_empty();
    migrate(&opts).unwrap();
    opts
}

/// A new, empty database on the server GATRIX_TEST_MYSQL_URL names
/// (`mysql://user:pass@host:port`, as scripts/test exports it; the user may
/// create `gatrix_%` databases); fails the test when it is not set.
fn scratch_empty() -> Opts {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("GATRIX_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .expect("needs MariaDB: run scripts/test (or set GATRIX_TEST_MYSQL_URL)");
    let server = Opts::from_url(&url).expect("GATRIX_TEST_MYSQL_URL is a mysql:// URL");
    let name = format!(
        "gatrix_unit_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut conn = Conn::new(mysql::OptsBuilder::from_opts(server.clone()).db_name(None::<String>))
        .expect("connect to GATRIX_TEST_MYSQL_URL");
    conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
        .unwrap();
    conn.query_drop(format!(
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
    ))
    .unwrap();
    let opts: Opts = mysql::OptsBuilder::from_opts(server)
        .db_name(Some(name))
        .into();
    opts
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn positions_are_consecutive_commit_order_across_partitions() {
    let opts = scratch();
    let mut s = MysqlStore::open(&opts).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let policy = PartitionPolicy {
        months_ahead: 2,
        retention_days: 0,
    };
    s.maintain_partitions(policy, now, false).unwrap();
    assert!(s.partitions().unwrap().len() >= 4);
    // Ids spread over months (and so partitions), batches of every size.
    let mut next_id = partitions::month_start(2024, 3);
    let step = (partitions::month_start(2027, 1) - next_id) / 5000;
    let (mut seq, mut last_pos) = (0, 0);
    for size in [1usize, 2, 3, 7, 100, 128, 129, 300, 1, 5] {
        let mut batch: Vec<_> = (0..size)
            .map(|_| {
                next_id += step;
                seq += 1;
                msg(next_id, "c", seq, "😀 héllo")
            })
            .collect();
        s.insert_messages(&mut batch).unwrap();
        for m in &batch {
            assert_eq!(m.pos, last_pos + 1, "pos follows commit order");
            last_pos = m.pos;
            let stored = s.message(m.id).unwrap().unwrap();
            assert_eq!(stored.pos, m.pos);
            assert_eq!(stored.content, "😀 héllo");
        }
    }
    let mut batch = vec![
        msg(next_id + 1, "c", seq + 1, "a"),
        msg(next_id + 2, "c", seq + 2, "b"),
    ];
    s.insert_messages(&mut batch).unwrap();
    assert_eq!([batch[0].pos, batch[1].pos], [last_pos + 1, last_pos + 2]);
    // A duplicate id fails the whole batch.
    let mut dup = vec![
        msg(next_id + 3, "c", seq + 3, "x"),
        msg(next_id + 1, "c", seq + 4, "y"),
    ];
    assert!(matches!(
        s.insert_messages(&mut dup),
        Err(StoreError::Conflict(_))
    ));
    assert!(s.message(next_id + 3).unwrap().is_none());
    // A failed batch gives out no position: no gap after it.
    let mut after = vec![msg(next_id + 4, "c", seq + 3, "z")];
    s.insert_messages(&mut after).unwrap();
    assert_eq!(after[0].pos, last_pos + 3);
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn upkeep_creates_months_ahead_and_drops_expired_ones() {
    let opts = scratch();
    let mut s = MysqlStore::open(&opts).unwrap();
    // As if it were 2025-03-10, keeping 2 months ahead.
    let then = 1_741_564_800_000;
    let policy = PartitionPolicy {
        months_ahead: 2,
        retention_days: 0,
    };
    let (before, plan) = s.maintain_partitions(policy, then, false).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(plan.create.len(), 3);
    let names: Vec<String> = s
        .partitions()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["p202503", "p202504", "p202505", "pmax"]);
    let mut old = vec![msg(partitions::month_start(2025, 3) + 5, "c", 1, "old")];
    s.insert_messages(&mut old).unwrap();
    // A dry run changes nothing.
    let later = then + 90 * 86_400_000;
    let retained = PartitionPolicy {
        months_ahead: 1,
        retention_days: 30,
    };
    let (_, plan) = s.maintain_partitions(retained, later, true).unwrap();
    assert_eq!(plan.drop, ["p202503", "p202504"]);
    assert_eq!(s.partitions().unwrap().len(), 4);
    s.maintain_partitions(retained, later, false).unwrap();
    let names: Vec<String> = s
        .partitions()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["p202505", "p202506", "p202507", "pmax"]);
    assert!(
        s.message(old[0].id).unwrap().is_none(),
        "dropped with its month"
    );
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn client_ids_are_looked_up_in_one_go() {
    let opts = scratch();
    let mut s = MysqlStore::open(&opts).unwrap();
    let mut batch: Vec<_> = (1..=3)
        .map(|i| {
            let mut m = msg(i, "c", i, "x");
            m.client_message_id = Some(format!("k{i}"));
            m
        })
        .collect();
    batch[2].user_id = "v".into();
    s.insert_messages(&mut batch).unwrap();
    let key = |u: &str, k: &str| (u.to_owned(), k.to_owned());
    let keys = [
        key("u", "k1"),
        key("u", "k2"),
        key("u", "k1"),
        key("u", "k3"),
        key("v", "k3"),
    ];
    let found = s.find_by_client_ids(&keys).unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[&key("u", "k2")].id, 2);
    assert_eq!(found[&key("v", "k3")].id, 3);
    assert!(!found.contains_key(&key("u", "k3")));
    let many: Vec<_> = (0..200).map(|i| key("u", &format!("k{i}"))).collect();
    assert_eq!(s.find_by_client_ids(&many).unwrap().len(), 2, "chunked");
    assert_eq!(s.find_by_client_id("v", "k3").unwrap().unwrap().id, 3);
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn schemas_2_and_3_counters_and_ids_follow_a_schema_1_database() {
    let opts = scratch_empty();
    migrate::migrate_to(&opts, 1).unwrap();
    let mut c = Conn::new(opts.clone()).unwrap();
    for ch in ["a", "b", "empty"] {
        c.exec_drop(
            "INSERT INTO channels (id, name, type, owner_id, created_at, updated_at)
             VALUES (?, ?, 'public', 'u', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            (ch, ch),
        )
        .unwrap();
    }
    // Schema 1: pos from AUTO_INCREMENT. "ghost" has messages but no row.
    let v1 = [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("ghost", 5),
        ("a", 3),
        ("b", 2),
    ];
    // Snowflake ids (above 2^53); the fifth replies to the first, the
    // sixth to something that is not a stored id.
    let snowflake = |i: u64| (1u64 << 60) + i;
    for (i, (ch, seq)) in v1.iter().enumerate() {
        let reply = match i {
            4 => Some(snowflake(0).to_string()),
            5 => Some("not-an-id".to_owned()),
            _ => None,
        };
        c.exec_drop(
            "INSERT INTO messages (id, channel_id, seq, user_id, content, type, reply_to, created_at)
             VALUES (?, ?, ?, 'u', 'x', 'text', ?, '2026-01-01T00:00:00.000Z')",
            (snowflake(i as u64), ch, seq, reply),
        )
        .unwrap();
    }
    assert_eq!(
        migrate(&opts).unwrap(),
        6,
        "V2, V3, V5, V6, V7 and V8 applied"
    );

    let last: Vec<(String, u64)> = c
        .query("SELECT id, last_seq FROM channels ORDER BY id")
        .unwrap();
    let expected = [("a", 3), ("b", 2), ("empty", 0)].map(|(c, s)| (c.to_owned(), s));
    assert_eq!(last, expected);
    let pos: Vec<(u32, u64)> = c
        .query("SELECT partition_id, last_pos FROM sequencer")
        .unwrap();
    assert_eq!(pos, [(0, 6)]);
    let (_, create): (String, String) = c
        .query_first("SHOW CREATE TABLE messages")
        .unwrap()
        .unwrap();
    assert!(!create.contains("AUTO_INCREMENT"), "{create}");

    // V3: ids of the new layout (2026-01, partition 0, pos), reply_to
    // following its message, the rest as they were.
    let month = crate::ids::month_index(2026, 1);
    let rows: Vec<(u64, u32, u64, Option<String>)> = c
        .query("SELECT id, partition_id, pos, reply_to FROM messages ORDER BY pos")
        .unwrap();
    let expected: Vec<(u64, u32, u64, Option<String>)> = (1..=6u64)
        .map(|pos| {
            let reply = match pos {
                5 => Some(crate::ids::message_id(month, 0, 1).to_string()),
                6 => Some("not-an-id".to_owned()),
                _ => None,
            };
            (crate::ids::message_id(month, 0, pos), 0, pos, reply)
        })
        .collect();
    assert_eq!(rows, expected);

    // The writer continues every counter.
    let mut s = MysqlStore::open(&opts).unwrap();
    let new = [
        msg(2000, "a", 0, "x"),
        msg(2001, "ghost", 0, "y"),
        msg(2002, "empty", 0, "z"),
    ];
    let batch: Vec<&MessageRecord> = new.iter().collect();
    let out = s.append(&batch).unwrap();
    let got: Vec<(&str, u64, u64)> = out
        .rows
        .iter()
        .map(|m| (m.channel_id.as_str(), m.seq, m.pos))
        .collect();
    assert_eq!(got, [("a", 4, 7), ("ghost", 6, 8), ("empty", 1, 9)]);
    for m in &out.rows {
        assert_eq!(m.id, crate::ids::message_id(month, 0, m.pos));
    }
}

/// A schema 3 that fails past its first statement (a stored created_at
/// that is no timestamp: the renumbering's CAST fails in strict mode) is
/// refused by the check after the migrations, not left half-applied
/// unnoticed.
/// Instances started together on a fresh database migrate one after the
/// other: without the migration lock one of them failed with "Table
/// 'channels' already exists".
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn concurrent_migrations_of_a_fresh_database_all_succeed() {
    for _ in 0..3 {
        let opts = scratch_empty();
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let opts = opts.clone();
                std::thread::spawn(move || migrate(&opts).map_err(|e| e.to_string()))
            })
            .collect();
        let applied: Vec<usize> = runs
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap()
                    .expect("every concurrent migrate succeeds")
            })
            .collect();
        // One runner applied every migration, the others found none.
        let total = applied.iter().filter(|&&n| n > 0).count();
        assert_eq!(total, 1, "{applied:?}");
    }
}

/// Another instance's partition upkeep (`ALTER TABLE messages REORGANIZE
/// PARTITION`, right after its own migrations) while this one checks the
/// schema: `information_schema.COLUMNS` skips a table being altered, and
/// the check once said `messages.partition_id missing` of a good schema
/// (two of three instances started together refused to start).
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn the_schema_check_beside_partition_upkeep_passes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let opts = scratch_empty();
    migrate(&opts).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let upkeep = {
        let (opts, stop) = (opts.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut c = Conn::new(opts).unwrap();
            let mut alters = 0;
            while !stop.load(Ordering::Relaxed) {
                c.query_drop(
                    "ALTER TABLE messages REORGANIZE PARTITION pmax INTO \
                     (PARTITION p1 VALUES LESS THAN (1000), PARTITION pmax VALUES LESS THAN MAXVALUE)",
                )
                .unwrap();
                c.query_drop("ALTER TABLE messages DROP PARTITION p1")
                    .unwrap();
                alters += 2;
            }
            alters
        })
    };
    let failures: Vec<String> = (0..300)
        .filter_map(|_| migrate(&opts).err().map(|e| e.to_string()))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let alters = upkeep.join().unwrap();
    assert!(alters > 0, "the upkeep thread altered nothing");
    assert!(
        failures.is_empty(),
        "{} of 300 checks failed beside {alters} ALTERs, the first: {}",
        failures.len(),
        failures[0]
    );
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn a_failed_schema_3_is_caught() {
    let opts = scratch_empty();
    migrate::migrate_to(&opts, 2).unwrap();
    let mut c = Conn::new(opts.clone()).unwrap();
    c.exec_drop(
        "INSERT INTO messages (id, pos, channel_id, seq, user_id, content, type, created_at)
         VALUES (1, 1, 'c', 1, 'u', 'x', 'text', 'not a time')",
        (),
    )
    .unwrap();
    let err = migrate(&opts).expect_err("a half-applied schema 3 passed");
    assert!(err.to_string().contains("schema is incomplete"), "{err:#}");
}

/// Schema 5 numbers the channels created before it (AUTO_INCREMENT on the
/// shared database), and a new channel gets the next number.
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn schema_5_numbers_existing_channels() {
    let opts = scratch_empty();
    migrate::migrate_to(&opts, 3).unwrap();
    let mut c = Conn::new(opts.clone()).unwrap();
    for id in ["c-b", "c-a", "c-c"] {
        c.exec_drop(
            "INSERT INTO channels (id, name, type, owner_id, created_at, updated_at)
             VALUES (?, 'n', 'public', 'o', 't', 't')",
            (id,),
        )
        .unwrap();
    }
    migrate(&opts).unwrap();
    let mut nums: Vec<u64> = c.exec("SELECT num FROM channels", ()).unwrap();
    nums.sort_unstable();
    nums.dedup();
    assert_eq!(nums.len(), 3, "{nums:?}");
    assert!(nums[0] > 0);
    c.exec_drop(
        "INSERT INTO channels (id, name, type, owner_id, created_at, updated_at)
         VALUES ('c-new', 'n', 'public', 'o', 't', 't')",
        (),
    )
    .unwrap();
    let new: Option<u64> = c
        .exec_first("SELECT num FROM channels WHERE id = 'c-new'", ())
        .unwrap();
    assert!(new.is_some_and(|n| n > nums[2]), "{new:?} after {nums:?}");
}

/// Schema 7: a member may be an admin (the CHECK replaced, not dropped), a
/// channel has settings and a member limit, a message its pin; the rows
/// of schema 6 stay as they were.
#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn schema_7_admits_admins_and_keeps_the_members() {
    let opts = scratch_empty();
    migrate::migrate_to(&opts, 6).unwrap();
    let mut c = Conn::new(opts.clone()).unwrap();
    c.exec_drop(
        "INSERT INTO channels (id, name, type, owner_id, created_at, updated_at)
         VALUES ('c', 'n', 'public', 'o', 't', 't')",
        (),
    )
    .unwrap();
    c.exec_drop(
        "INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq,
                                      last_read_at, last_read_message_id)
         VALUES ('c', 'o', 'owner', 't1', 4, 'r1', 77), ('c', 'm', 'member', 't2', 0, NULL, NULL)",
        (),
    )
    .unwrap();
    let admin = "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
                 VALUES ('c', 'a', 'admin', 't3')";
    assert!(
        c.exec_drop(admin, ()).is_err(),
        "schema 6 admitted an admin"
    );
    assert_eq!(migrate(&opts).unwrap(), 2, "V7 and V8 applied");
    c.exec_drop(admin, ()).unwrap();
    let bad = "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
               VALUES ('c', 'x', 'moderator', 't4')";
    assert!(
        c.exec_drop(bad, ()).is_err(),
        "an unknown role was admitted"
    );
    type Member = (String, String, String, u64, Option<String>, Option<u64>);
    let rows: Vec<Member> = c
        .query(
            "SELECT user_id, role, joined_at, last_read_seq, last_read_at, last_read_message_id
             FROM channel_members ORDER BY user_id",
        )
        .unwrap();
    let s = |v: &str| v.to_owned();
    assert_eq!(
        rows,
        [
            (s("a"), s("admin"), s("t3"), 0, None, None),
            (s("m"), s("member"), s("t2"), 0, None, None),
            (s("o"), s("owner"), s("t1"), 4, Some(s("r1")), Some(77)),
        ]
    );
    c.exec_drop(
        "UPDATE channels SET settings = '{\"a\":1}', max_members = 5 WHERE id = 'c'",
        (),
    )
    .unwrap();
    let ch: Option<(Option<String>, Option<u32>)> = c
        .query_first("SELECT settings, max_members FROM channels WHERE id = 'c'")
        .unwrap();
    assert_eq!(ch, Some((Some(s("{\"a\":1}")), Some(5))));
    let pins: Option<(Option<String>, Option<String>)> = c
        .query_first("SELECT pinned_at, pinned_by FROM messages LIMIT 1")
        .unwrap();
    assert_eq!(pins, None, "no messages, but the columns exist");
}
