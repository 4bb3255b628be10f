//! Unit tests of the SQLite store's own migrations and counters; the store
//! test suite in tests/ covers the behaviour shared with MySQL.

use super::*;
use crate::ids;

/// Schema 4: stored snowflake ids become ids of the counters' layout
/// (month of created_at, partition 0, pos), reply_to follows its message,
/// and the writer goes on from there.
#[test]
fn schema_4_renumbers_stored_ids_and_their_replies() {
    let dir = tempfile::tempdir().unwrap();
    migrate_to(dir.path(), 3).unwrap();
    let conn = open_connection(&db_path(dir.path())).unwrap();
    // Snowflakes, above 2^53 but one: the second's (a snowflake of
    // 2024-01-01, 14 hours in) is the id the first is renumbered to, a
    // collision while the renumbering is under way.
    let (jan, feb) = (ids::month_index(2026, 1), ids::month_index(2026, 2));
    let first = ids::message_id(jan, 0, 1);
    let rows: [(i64, &str, Option<&str>, &str); 4] = [
        ((1 << 60) + 1, "a", None, "2026-01-31T23:59:59.999Z"),
        (first as i64, "a", None, "2026-02-01T00:00:00.000Z"),
        (
            (1 << 60) + 3,
            "b",
            Some("1152921504606846977"),
            "2026-02-02T00:00:00.000Z",
        ),
        (
            (1 << 60) + 4,
            "b",
            Some("somewhere"),
            "2023-05-01T00:00:00.000Z",
        ),
    ];
    for (i, (id, ch, reply, at)) in rows.iter().enumerate() {
        conn.execute(
            "INSERT INTO messages (id, channel_id, seq, user_id, content, type, reply_to, created_at)
             VALUES (?1, ?2, ?3, 'u', 'x', 'text', ?4, ?5)",
            params![id, ch, i as i64 + 1, reply, at],
        )
        .unwrap();
    }
    assert_eq!(
        migrate(dir.path()).unwrap(),
        5,
        "V4, V5, V6, V7 and V8 applied"
    );
    let got: Vec<(i64, i64, Option<String>)> = conn
        .prepare("SELECT pos, id, reply_to FROM messages ORDER BY pos")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected = vec![
        (1, first as i64, None),
        (2, ids::message_id(feb, 0, 2) as i64, None),
        (
            3,
            ids::message_id(feb, 0, 3) as i64,
            Some(first.to_string()),
        ),
        (
            4,
            ids::message_id(0, 0, 4) as i64,
            Some("somewhere".to_owned()),
        ),
    ];
    assert_eq!(got, expected);

    // The writer's next message: position 5, its id made of it.
    let mut s = SqliteStore::open(dir.path()).unwrap();
    let mut m = MessageRecord {
        id: 0,
        pos: 0,
        channel_id: "a".into(),
        seq: 0,
        user_id: "u".into(),
        content: "new".into(),
        kind: "text".into(),
        client_message_id: None,
        reply_to: None,
        created_at: "2026-02-03T00:00:00.000Z".into(),
        edited_at: None,
        deleted_at: None,
        pinned: None,
        thread: Default::default(),
    };
    let out = s.append(&[&m]).unwrap();
    m.pos = 5;
    m.seq = 3;
    m.id = ids::message_id(feb, 0, 5);
    assert_eq!(out.rows, [m]);
}

/// Schema 5: channels created before it get distinct numbers, and the next
/// channel created gets a number after them.
#[test]
fn schema_5_numbers_existing_channels() {
    let dir = tempfile::tempdir().unwrap();
    migrate_to(dir.path(), 4).unwrap();
    let conn = open_connection(&db_path(dir.path())).unwrap();
    for id in ["c-b", "c-a", "c-c"] {
        conn.execute(
            "INSERT INTO channels (id, name, type, owner_id, created_at, updated_at)
             VALUES (?1, 'n', 'public', 'o', 't', 't')",
            [id],
        )
        .unwrap();
    }
    assert_eq!(migrate(dir.path()).unwrap(), 4, "V5, V6, V7 and V8 applied");
    let mut store = SqliteStore::open(dir.path()).unwrap();
    let mut nums: Vec<u64> = ["c-a", "c-b", "c-c"]
        .iter()
        .map(|id| store.channel(id).unwrap().unwrap().num)
        .collect();
    nums.sort_unstable();
    nums.dedup();
    assert_eq!(nums.len(), 3, "{nums:?}");
    assert!(nums[0] > 0);
    let new = ChannelRecord {
        id: "c-new".into(),
        name: "n".into(),
        kind: crate::store::ChannelType::Public,
        description: None,
        owner_id: "o".into(),
        created_at: "t".into(),
        updated_at: "t".into(),
        num: 0,
        settings: None,
        max_members: None,
    };
    store.create_channel(&new, &[]).unwrap();
    let num = store.channel("c-new").unwrap().unwrap().num;
    assert!(num > nums[2], "{num} after {nums:?}");
    assert_eq!(
        store.channel_id_by_num(num).unwrap().as_deref(),
        Some("c-new")
    );
}

/// Schema 7 rebuilds channel_members to admit admins: every row and column
/// of schema 6 stays, the index on user_id is back, the foreign key still
/// holds, and an unknown role is still refused.
#[test]
fn schema_7_admits_admins_and_keeps_the_members() {
    let dir = tempfile::tempdir().unwrap();
    migrate_to(dir.path(), 6).unwrap();
    let conn = open_connection(&db_path(dir.path())).unwrap();
    conn.execute_batch(
        "INSERT INTO channels (id, name, type, owner_id, created_at, updated_at)
         VALUES ('c', 'n', 'public', 'o', 't', 't');
         INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq,
                                      last_read_at, last_read_message_id)
         VALUES ('c', 'o', 'owner', 't1', 4, 'r1', 77), ('c', 'm', 'member', 't2', 0, NULL, NULL);",
    )
    .unwrap();
    let admin = "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
                 VALUES ('c', 'a', 'admin', 't3')";
    assert!(
        conn.execute(admin, []).is_err(),
        "schema 6 admitted an admin"
    );
    assert_eq!(migrate(dir.path()).unwrap(), 2, "V7 and V8 applied");
    conn.execute(admin, []).unwrap();
    for bad in [
        "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
         VALUES ('c', 'x', 'moderator', 't4')",
        "INSERT INTO channel_members (channel_id, user_id, joined_at) VALUES ('nope', 'x', 't4')",
    ] {
        assert!(conn.execute(bad, []).is_err(), "admitted: {bad}");
    }
    type Member = (String, String, String, i64, Option<String>, Option<i64>);
    let rows: Vec<Member> = conn
        .prepare(
            "SELECT user_id, role, joined_at, last_read_seq, last_read_at, last_read_message_id
             FROM channel_members ORDER BY user_id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
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
    let index: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
             AND name = 'channel_members_by_user' AND tbl_name = 'channel_members'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(index, 1);
    conn.execute(
        "UPDATE channels SET settings = '{\"a\":1}', max_members = 5 WHERE id = 'c'",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO messages (id, channel_id, seq, user_id, content, type, created_at,
                               pinned_at, pinned_by)
         VALUES (1, 'c', 1, 'o', 'x', 'text', 't', 'p', 'a')",
        [],
    )
    .unwrap();
}
