//! One test suite for every store backend: each check is written once,
//! against `&mut dyn Store`, and runs against SQLite (a temp dir; always)
//! and MySQL/MariaDB (a fresh database on scripts/test's server; ignored
//! without it). The checks cover the semantics of every `Store` method, and
//! the writer thread (`store::handle::start`, group commit and seqs) on top
//! of each backend.
//!
//! A check gets a connection and a [`Backend`], which opens more
//! connections to the same database: "after a restart" means reading
//! through a new one.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crossbeam_channel::{Receiver, unbounded};
use gatrix_chat::store::writer::{Outcome, WriterSettings};
use gatrix_chat::store::{
    ChannelRecord, ChannelType, MessageRecord, Page, Store, StoreError, StoreSettings, handle,
};
use time::OffsetDateTime;
use time::macros::format_description;

// ---------------------------------------------------------------------------
// Backends

/// A database of one backend, migrated and empty.
trait Backend {
    /// A new connection to the database.
    fn open(&self) -> Box<dyn Store>;
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        gatrix_chat::store::sqlite::migrate(dir.path()).expect("migrate SQLite");
        Sqlite { dir }
    }
}

impl Backend for Sqlite {
    fn open(&self) -> Box<dyn Store> {
        Box::new(
            gatrix_chat::store::sqlite::SqliteStore::open(self.dir.path()).expect("open SQLite"),
        )
    }
}

struct Mysql {
    url: String,
}

impl Mysql {
    /// A fresh database on scripts/test's MariaDB, migrated.
    fn new() -> Self {
        let url = common::mysql::mysql_db();
        mysql_backend::migrate(&url);
        Mysql { url }
    }
}

impl Backend for Mysql {
    fn open(&self) -> Box<dyn Store> {
        mysql_backend::open(&self.url)
    }
}

/// How this suite reaches `store::mysql`: migrated, and its monthly
/// partitions made as the server does at start.
mod mysql_backend {
    use gatrix_chat::store::Store;
    use gatrix_chat::store::mysql::{MysqlStore, PartitionPolicy, migrate as migrate_db};
    use mysql::Opts;

    fn opts(url: &str) -> Opts {
        Opts::from_url(url).expect("a mysql:// URL")
    }

    pub fn migrate(url: &str) {
        migrate_db(&opts(url)).expect("migrate MySQL");
        let policy = PartitionPolicy {
            months_ahead: 2,
            retention_days: 0,
        };
        MysqlStore::open(&opts(url))
            .expect("open MySQL")
            .maintain_partitions(policy, super::now_ms(), false)
            .expect("make partitions");
    }

    pub fn open(url: &str) -> Box<dyn Store> {
        Box::new(MysqlStore::open(&opts(url)).expect("open MySQL"))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

fn run(backend: &dyn Backend, check: fn(&mut dyn Store, &dyn Backend)) {
    let mut store = backend.open();
    check(store.as_mut(), backend);
}

/// Every check, once per backend: `sqlite::<check>` and `mysql::<check>`.
macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $check() {
                    super::run(&super::Sqlite::new(), super::$check);
                }
            )*
        }
        mod mysql {
            $(
                #[test]
                #[ignore = "needs MariaDB: run scripts/test"]
                fn $check() {
                    super::run(&super::Mysql::new(), super::$check);
                }
            )*
        }
    };
}

suite!(
    ping_answers,
    channel_create_and_get,
    channel_create_twice_is_a_conflict,
    channel_update,
    channel_soft_delete,
    channels_of_a_user,
    members_add_is_idempotent_and_the_owner_stays,
    insert_fills_pos_in_commit_order,
    insert_is_all_or_nothing,
    last_seq_per_channel,
    find_by_client_id_per_user,
    find_by_client_ids_agrees_with_one_at_a_time,
    history_pages_latest_before_after,
    history_leaves_deleted_out,
    message_by_id,
    edit_message_sets_edited_at,
    delete_message_is_soft,
    replay_caps_seq_per_channel_in_pos_order,
    utf8mb4_round_trips,
    values_at_the_api_limits_round_trip,
    ids_are_compared_exactly,
    ids_differing_in_trailing_spaces_are_distinct,
    writer_seqs_are_gapless_under_repeated_client_ids,
    writer_failed_batch_stores_nothing,
);

// ---------------------------------------------------------------------------
// Helpers

/// Timestamps as clients see them (RFC 3339 UTC, milliseconds), from a
/// base taken at the start of a check: `at(ms)` is `ms` after it.
struct Clock(OffsetDateTime);

impl Clock {
    fn new() -> Self {
        let now = OffsetDateTime::now_utc();
        Clock(now.replace_millisecond(now.millisecond()).expect("millis"))
    }

    fn at(&self, ms: i64) -> String {
        (self.0 + time::Duration::milliseconds(ms))
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .expect("format timestamp")
    }
}

/// Message ids as the server makes them (snowflakes of about now: above
/// 2^53, in the current month's partition on MySQL): the `n`th of a check.
fn id(n: u64) -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| gatrix_chat::ids::first_id_at(now_ms())) + n
}

fn channel(id: &str, kind: ChannelType, owner: &str, at: &str) -> ChannelRecord {
    ChannelRecord {
        id: id.into(),
        name: format!("name of {id}"),
        kind,
        description: Some(format!("about {id}")),
        owner_id: owner.into(),
        created_at: at.into(),
        updated_at: at.into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn message(
    n: u64,
    channel: &str,
    seq: u64,
    user: &str,
    cmid: Option<&str>,
    content: &str,
    at: &str,
) -> MessageRecord {
    MessageRecord {
        id: id(n),
        pos: 0,
        channel_id: channel.into(),
        seq,
        user_id: user.into(),
        content: content.into(),
        kind: "text".into(),
        client_message_id: cmid.map(Into::into),
        reply_to: None,
        created_at: at.into(),
        edited_at: None,
        deleted_at: None,
    }
}

/// Inserts `count` messages into `channel` (seqs after `last_seq`), one
/// batch, and returns them with their pos.
fn fill(
    s: &mut dyn Store,
    clock: &Clock,
    channel: &str,
    first_n: u64,
    count: u64,
) -> Vec<MessageRecord> {
    let last = s.last_seq(channel).expect("last_seq");
    let mut rows: Vec<MessageRecord> = (0..count)
        .map(|i| {
            message(
                first_n + i,
                channel,
                last + 1 + i,
                "filler",
                None,
                &format!("{channel} #{}", last + 1 + i),
                &clock.at((last + i) as i64),
            )
        })
        .collect();
    s.insert_messages(&mut rows).expect("insert_messages");
    rows
}

fn seqs(messages: &[MessageRecord]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn member_set(s: &mut dyn Store, channel: &str) -> BTreeSet<String> {
    s.member_ids(channel)
        .expect("member_ids")
        .into_iter()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn channel_ids(channels: &[ChannelRecord]) -> Vec<&str> {
    channels.iter().map(|c| c.id.as_str()).collect()
}

// ---------------------------------------------------------------------------
// Channels and members

fn ping_answers(s: &mut dyn Store, db: &dyn Backend) {
    s.ping().expect("ping");
    db.open().ping().expect("ping on a second connection");
}

fn channel_create_and_get(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let kinds = [
        ("c-public", ChannelType::Public),
        ("c-private", ChannelType::Private),
        ("c-direct", ChannelType::Direct),
    ];
    for (i, (cid, kind)) in kinds.iter().enumerate() {
        let mut c = channel(cid, *kind, "owner", &clock.at(i as i64));
        if *kind == ChannelType::Private {
            c.description = None;
        }
        // The owner listed among the members again, and a member twice.
        let members = [
            "owner".to_owned(),
            "bob".into(),
            "carol".into(),
            "bob".into(),
        ];
        s.create_channel(&c, &members).expect("create_channel");
        assert_eq!(s.channel(cid).expect("channel").as_ref(), Some(&c));
        assert_eq!(member_set(s, cid), set(&["owner", "bob", "carol"]));
    }
    // A channel without members but its owner.
    let lonely = channel("c-lonely", ChannelType::Public, "solo", &clock.at(10));
    s.create_channel(&lonely, &[]).expect("create_channel");
    assert_eq!(member_set(s, "c-lonely"), set(&["solo"]));

    assert_eq!(s.channel("c-unknown").expect("channel"), None);
    assert_eq!(member_set(s, "c-unknown"), BTreeSet::new());

    // Everything is there for a new connection.
    let mut again = db.open();
    for (cid, kind) in kinds {
        let c = again.channel(cid).expect("channel").expect("stored");
        assert_eq!(c.kind, kind);
        assert_eq!(c.owner_id, "owner");
    }
    assert_eq!(again.channel("c-lonely").expect("channel"), Some(lonely));
}

fn channel_create_twice_is_a_conflict(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-1", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &["bob".into()]).expect("create");
    let mut other = channel("c-1", ChannelType::Private, "mallory", &clock.at(1));
    other.name = "taken over".into();
    match s.create_channel(&other, &["eve".into()]) {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("creating an existing channel id: {other:?}, not a Conflict"),
    }
    // Nothing of the second attempt was kept.
    assert_eq!(s.channel("c-1").expect("channel"), Some(c));
    assert_eq!(member_set(s, "c-1"), set(&["owner", "bob"]));
}

fn channel_update(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-1", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &[]).expect("create");

    // Name only.
    let u = s
        .update_channel("c-1", Some("renamed"), None, &clock.at(1000))
        .expect("update")
        .expect("a channel");
    assert_eq!(u.name, "renamed");
    assert_eq!(u.description, c.description, "description kept");
    assert_eq!(u.updated_at, clock.at(1000));
    assert_eq!(u.created_at, c.created_at, "created_at kept");
    assert_eq!(
        (u.id.as_str(), u.kind, u.owner_id.as_str()),
        ("c-1", c.kind, "owner")
    );

    // Description only.
    let u = s
        .update_channel("c-1", None, Some(Some("new words")), &clock.at(2000))
        .expect("update")
        .expect("a channel");
    assert_eq!(
        (u.name.as_str(), u.description.as_deref()),
        ("renamed", Some("new words"))
    );
    assert_eq!(u.updated_at, clock.at(2000));

    // Both; then the description cleared.
    let u = s
        .update_channel("c-1", Some("both"), Some(Some("and this")), &clock.at(3000))
        .expect("update")
        .expect("a channel");
    assert_eq!(
        (u.name.as_str(), u.description.as_deref()),
        ("both", Some("and this"))
    );
    let u = s
        .update_channel("c-1", None, Some(None), &clock.at(4000))
        .expect("update")
        .expect("a channel");
    assert_eq!((u.name.as_str(), u.description.as_deref()), ("both", None));
    assert_eq!(u.updated_at, clock.at(4000));

    assert_eq!(db.open().channel("c-1").expect("channel"), Some(u));

    // Unknown and deleted channels are not updated.
    assert_eq!(
        s.update_channel("c-unknown", Some("x"), None, &clock.at(5000))
            .expect("update"),
        None
    );
    assert!(s.delete_channel("c-1", &clock.at(6000)).expect("delete"));
    assert_eq!(
        s.update_channel("c-1", Some("x"), None, &clock.at(7000))
            .expect("update"),
        None
    );
}

fn channel_soft_delete(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let keep = channel("c-keep", ChannelType::Public, "owner", &clock.at(0));
    let gone = channel("c-gone", ChannelType::Public, "owner", &clock.at(1));
    s.create_channel(&keep, &["bob".into()]).expect("create");
    s.create_channel(&gone, &["bob".into()]).expect("create");
    let stored = fill(s, &clock, "c-gone", 1, 3);

    assert!(s.delete_channel("c-gone", &clock.at(100)).expect("delete"));
    assert!(
        !s.delete_channel("c-gone", &clock.at(200)).expect("delete"),
        "deleted twice"
    );
    assert!(
        !s.delete_channel("c-unknown", &clock.at(200))
            .expect("delete")
    );

    assert_eq!(s.channel("c-gone").expect("channel"), None);
    assert_eq!(s.channel("c-keep").expect("channel"), Some(keep.clone()));
    assert_eq!(
        channel_ids(&s.channels_of("bob").expect("channels_of")),
        ["c-keep"]
    );
    assert_eq!(
        channel_ids(&s.channels_of("owner").expect("channels_of")),
        ["c-keep"]
    );
    // Soft: the messages are still there (and their seqs still taken).
    assert_eq!(s.last_seq("c-gone").expect("last_seq"), 3);
    assert_eq!(
        s.message(stored[0].id).expect("message"),
        Some(stored[0].clone())
    );

    let mut again = db.open();
    assert_eq!(again.channel("c-gone").expect("channel"), None);
    assert_eq!(
        channel_ids(&again.channels_of("bob").expect("channels_of")),
        ["c-keep"]
    );
}

fn channels_of_a_user(s: &mut dyn Store, _db: &dyn Backend) {
    let clock = Clock::new();
    // Created out of id order: listed by creation time, then id.
    let specs = [
        ("c-3", "alice", 0, &["bob"][..]),
        ("c-1", "bob", 1000, &["alice", "carol"][..]),
        ("c-2", "carol", 2000, &[][..]),
        ("c-0", "dave", 2000, &["alice"][..]),
    ];
    let mut made = HashMap::new();
    for (cid, owner, at, members) in specs {
        let c = channel(cid, ChannelType::Private, owner, &clock.at(at));
        let members: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
        s.create_channel(&c, &members).expect("create");
        made.insert(cid, c);
    }
    let of = |s: &mut dyn Store, user: &str| s.channels_of(user).expect("channels_of");
    let alice = of(s, "alice");
    assert_eq!(channel_ids(&alice), ["c-3", "c-1", "c-0"]);
    assert_eq!(alice[1], made["c-1"], "records as created");
    assert_eq!(channel_ids(&of(s, "bob")), ["c-3", "c-1"]);
    assert_eq!(channel_ids(&of(s, "carol")), ["c-1", "c-2"]);
    assert_eq!(channel_ids(&of(s, "dave")), ["c-0"]);
    assert!(of(s, "nobody").is_empty());

    // Joining and leaving change the list.
    assert!(s.add_member("c-2", "dave", &clock.at(3000)).expect("add"));
    assert_eq!(channel_ids(&of(s, "dave")), ["c-0", "c-2"]);
    assert!(s.remove_member("c-1", "alice").expect("remove"));
    assert_eq!(channel_ids(&of(s, "alice")), ["c-3", "c-0"]);
}

fn members_add_is_idempotent_and_the_owner_stays(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = channel("c-1", ChannelType::Public, "owner", &clock.at(0));
    s.create_channel(&c, &["bob".into()]).expect("create");

    assert!(s.add_member("c-1", "carol", &clock.at(1)).expect("add"));
    assert!(
        !s.add_member("c-1", "carol", &clock.at(2))
            .expect("add again"),
        "a second add says added"
    );
    assert!(
        !s.add_member("c-1", "bob", &clock.at(3))
            .expect("add a creation member")
    );
    assert!(
        !s.add_member("c-1", "owner", &clock.at(4))
            .expect("add the owner")
    );
    assert_eq!(member_set(s, "c-1"), set(&["owner", "bob", "carol"]));

    assert!(s.remove_member("c-1", "carol").expect("remove"));
    assert!(!s.remove_member("c-1", "carol").expect("remove again"));
    assert!(
        !s.remove_member("c-1", "stranger")
            .expect("remove a non-member")
    );
    assert!(
        !s.remove_member("c-1", "owner").expect("remove the owner"),
        "the owner was removed"
    );
    assert_eq!(member_set(s, "c-1"), set(&["owner", "bob"]));

    // Back again after leaving.
    assert!(s.add_member("c-1", "carol", &clock.at(5)).expect("rejoin"));
    assert_eq!(
        member_set(db.open().as_mut(), "c-1"),
        set(&["owner", "bob", "carol"])
    );
}

// ---------------------------------------------------------------------------
// Messages: the writer's methods

fn insert_fills_pos_in_commit_order(s: &mut dyn Store, db: &dyn Backend) {
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

fn insert_is_all_or_nothing(s: &mut dyn Store, db: &dyn Backend) {
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

fn last_seq_per_channel(s: &mut dyn Store, db: &dyn Backend) {
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

fn find_by_client_id_per_user(s: &mut dyn Store, db: &dyn Backend) {
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
fn find_by_client_ids_agrees_with_one_at_a_time(s: &mut dyn Store, db: &dyn Backend) {
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

// ---------------------------------------------------------------------------
// Reads

fn history_pages_latest_before_after(s: &mut dyn Store, db: &dyn Backend) {
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

fn history_leaves_deleted_out(s: &mut dyn Store, db: &dyn Backend) {
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

fn message_by_id(s: &mut dyn Store, db: &dyn Backend) {
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

fn edit_message_sets_edited_at(s: &mut dyn Store, db: &dyn Backend) {
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

fn delete_message_is_soft(s: &mut dyn Store, db: &dyn Backend) {
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

fn replay_caps_seq_per_channel_in_pos_order(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    // Three channels, interleaved over several batches.
    let mut all: Vec<MessageRecord> = Vec::new();
    for round in 0..5u64 {
        for (k, ch) in ["c-a", "c-b", "c-c"].into_iter().enumerate() {
            all.extend(fill(s, &clock, ch, 1000 * round + 10 * k as u64, 2));
        }
    }
    assert!(all.windows(2).all(|w| w[0].pos < w[1].pos));
    let channels = |caps: &[(&str, u64)]| -> Vec<(String, u64)> {
        caps.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
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
    let got = s.replay(&channels(&caps), 0, 1000).expect("replay");
    assert_eq!(got, expected(&all, 0, &caps, 1000));
    assert_eq!(got.len(), 20);

    // After an offset, each channel only up to its seq.
    let after = all[8].pos;
    let caps = [("c-a", 7), ("c-b", 10), ("c-c", 4)];
    let got = s.replay(&channels(&caps), after, 1000).expect("replay");
    assert_eq!(got, expected(&all, after, &caps, 1000));
    assert!(got.iter().all(|m| m.pos > after));
    assert!(
        got.windows(2).all(|w| w[0].pos < w[1].pos),
        "not in pos order"
    );

    // The limit keeps the first by pos, across channels.
    let caps = [("c-a", 100), ("c-b", 100), ("c-c", 100)];
    let got = s.replay(&channels(&caps), 0, 7).expect("replay");
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
        .replay(&channels(&[("c-b", 100)]), 0, 1000)
        .expect("replay");
    assert_eq!(seqs(&got), [1, 2, 4, 5, 6, 7, 8, 9, 10]);
    assert!(
        s.replay(&channels(&[("c-a", 0)]), 0, 100)
            .expect("replay")
            .is_empty()
    );
    assert!(
        s.replay(&channels(&[("c-x", 100)]), 0, 100)
            .expect("replay")
            .is_empty()
    );
    assert!(s.replay(&[], 0, 100).expect("replay").is_empty());
    let last = all.last().unwrap().pos;
    assert!(
        s.replay(&channels(&caps), last, 100)
            .expect("replay")
            .is_empty()
    );

    // The same from a new connection.
    let caps = [("c-a", 5), ("c-b", 5)];
    assert_eq!(
        db.open()
            .replay(&channels(&caps), all[3].pos, 4)
            .expect("replay"),
        expected(&all, all[3].pos, &caps, 4)
    );
}

// ---------------------------------------------------------------------------
// Text

/// Emoji (4-byte UTF-8), supplementary-plane letters, ZWJ sequences,
/// combining marks, right-to-left text, and characters that look like SQL.
const TRICKY: &[&str] = &[
    "😀",
    "hello 👋🏽 world",
    "👨‍👩‍👧‍👦 family",
    "𝄞 𝕳𝖊𝖑𝖑𝖔 𠜎𠜱𠝹",
    "é vs e\u{301}",
    "مرحبا שלום",
    "漢字かなカナ한국어",
    "quotes ' \" ` \\ ; -- /* */ %_",
    "tab\tnewline\nnul-free end",
    "🏳️‍🌈🇫🇷🧑🏿‍🚀",
];

fn utf8mb4_round_trips(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let c = ChannelRecord {
        name: "général 🎉 𝄞".into(),
        description: Some("Ünïcödé 🌍 description 👨‍👩‍👧".into()),
        ..channel("c-😀", ChannelType::Public, "ôwner 🦀", &clock.at(0))
    };
    s.create_channel(&c, &["mémbre 🐍".into()]).expect("create");
    assert_eq!(s.channel("c-😀").expect("channel").as_ref(), Some(&c));
    assert_eq!(member_set(s, "c-😀"), set(&["ôwner 🦀", "mémbre 🐍"]));
    assert_eq!(
        channel_ids(&s.channels_of("mémbre 🐍").expect("channels_of")),
        ["c-😀"]
    );

    let mut rows: Vec<MessageRecord> = TRICKY
        .iter()
        .enumerate()
        .map(|(i, text)| {
            message(
                i as u64 + 1,
                "c-😀",
                i as u64 + 1,
                "ûser 🦊",
                Some(&format!("cm-{i}-🔑")),
                text,
                &clock.at(i as i64),
            )
        })
        .collect();
    s.insert_messages(&mut rows).expect("insert");

    let mut again = db.open();
    let (history, _) = again.history("c-😀", Page::Latest, 100).expect("history");
    assert_eq!(history, rows, "history changed the text");
    for (i, m) in rows.iter().enumerate() {
        assert_eq!(again.message(m.id).expect("message").as_ref(), Some(m));
        assert_eq!(
            again
                .find_by_client_id("ûser 🦊", &format!("cm-{i}-🔑"))
                .expect("find")
                .as_ref(),
            Some(m)
        );
    }
    // Different emoji are different keys (no collation folding them).
    assert_eq!(
        again.find_by_client_id("ûser 🦊", "cm-0-🔒").expect("find"),
        None
    );
    assert_eq!(
        again.find_by_client_id("ûser 🐺", "cm-0-🔑").expect("find"),
        None
    );

    let edited = again
        .edit_message(rows[0].id, "edited 🙂 → 🙃 𝄞", &clock.at(1000))
        .expect("edit")
        .expect("edited");
    assert_eq!(edited.content, "edited 🙂 → 🙃 𝄞");
    assert_eq!(
        s.message(rows[0].id).expect("message").unwrap().content,
        "edited 🙂 → 🙃 𝄞"
    );
    let u = s
        .update_channel(
            "c-😀",
            Some("renamed 🚀"),
            Some(Some("new 🌙")),
            &clock.at(2000),
        )
        .expect("update")
        .expect("a channel");
    assert_eq!(
        (u.name.as_str(), u.description.as_deref()),
        ("renamed 🚀", Some("new 🌙"))
    );
    let replayed = s
        .replay(&[("c-😀".to_owned(), 100)], 0, 100)
        .expect("replay");
    assert_eq!(replayed.len(), rows.len());
    assert_eq!(replayed[1..], rows[1..]);
}

/// The longest values the server accepts, made of 4-byte characters:
/// ids of MAX_ID_LEN (128) bytes, names of 100 characters, descriptions of
/// 1000, a message of MAX_MESSAGE_LENGTH (4000 by default) characters, a
/// type of 32 bytes.
fn values_at_the_api_limits_round_trip(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let id128 = |c: char| -> String { std::iter::repeat_n(c, 32).collect() };
    assert_eq!(id128('🦀').len(), 128);
    let (channel_id, owner, member, user, cmid) = (
        id128('📺'),
        id128('👑'),
        id128('👤'),
        id128('🦀'),
        id128('🔑'),
    );
    let c = ChannelRecord {
        name: "🎉".repeat(100),
        description: Some("📜".repeat(1000)),
        ..channel(&channel_id, ChannelType::Private, &owner, &clock.at(0))
    };
    s.create_channel(&c, std::slice::from_ref(&member))
        .expect("create a channel at the limits");
    let mut rows = vec![MessageRecord {
        kind: "k".repeat(32),
        reply_to: Some(id128('↩')),
        ..message(
            1,
            &channel_id,
            1,
            &user,
            Some(&cmid),
            &"𝄞".repeat(4000),
            &clock.at(1),
        )
    }];
    s.insert_messages(&mut rows)
        .expect("insert a message at the limits");

    let mut again = db.open();
    assert_eq!(again.channel(&channel_id).expect("channel"), Some(c));
    assert_eq!(
        member_set(again.as_mut(), &channel_id),
        set(&[&owner, &member])
    );
    assert_eq!(
        again.message(rows[0].id).expect("message").as_ref(),
        Some(&rows[0])
    );
    assert_eq!(
        again
            .find_by_client_id(&user, &cmid)
            .expect("find")
            .as_ref(),
        Some(&rows[0])
    );
    assert_eq!(again.last_seq(&channel_id).expect("last_seq"), 1);
    let long_edit = "✏".repeat(4000);
    let edited = again
        .edit_message(rows[0].id, &long_edit, &clock.at(2))
        .expect("edit")
        .expect("edited");
    assert_eq!(edited.content, long_edit);
}

/// User, channel and clientMessageIds are opaque strings: ids that differ
/// only in case, accents or which emoji are different ids (no collation
/// may fold them together).
fn ids_are_compared_exactly(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let users = ["bob", "Bob", "BOB", "böb", "bøb", "🦊", "🐺", "ｂｏｂ"];
    let c = channel("c-x", ChannelType::Public, "bob", &clock.at(0));
    let members: Vec<String> = users[1..].iter().map(|u| (*u).to_owned()).collect();
    s.create_channel(&c, &members).expect("create");
    assert_eq!(member_set(s, "c-x"), set(&users), "members folded together");
    assert!(
        s.channel("C-X").expect("channel").is_none(),
        "channel ids folded"
    );
    assert!(s.channels_of("bOb").expect("channels_of").is_empty());
    assert!(
        s.add_member("c-x", "boB", &clock.at(1)).expect("add"),
        "boB taken for bob"
    );
    assert!(s.remove_member("c-x", "BOB").expect("remove"));
    assert!(
        member_set(s, "c-x").contains("Bob"),
        "removing BOB removed Bob"
    );

    let c2 = channel("C-X", ChannelType::Public, "Bob", &clock.at(2));
    s.create_channel(&c2, &[])
        .expect("a channel id differing only in case");
    assert_eq!(s.channel("C-X").expect("channel"), Some(c2));

    let mut rows: Vec<MessageRecord> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            message(
                i as u64 + 1,
                "c-x",
                i as u64 + 1,
                u,
                Some("cm-😀"),
                u,
                &clock.at(i as i64),
            )
        })
        .collect();
    rows.push(message(
        50,
        "c-x",
        9,
        "bob",
        Some("CM-😀"),
        "upper",
        &clock.at(9),
    ));
    rows.push(message(
        51,
        "c-x",
        10,
        "bob",
        Some("cm-😃"),
        "other emoji",
        &clock.at(10),
    ));
    s.insert_messages(&mut rows)
        .expect("insert: ids differing in case are different");
    let mut again = db.open();
    for m in &rows {
        let found = again
            .find_by_client_id(&m.user_id, m.client_message_id.as_deref().unwrap())
            .expect("find")
            .unwrap_or_else(|| panic!("{} / {:?} not found", m.user_id, m.client_message_id));
        assert_eq!(
            &found, m,
            "found another user's or clientMessageId's message"
        );
    }
    assert_eq!(again.find_by_client_id("bob", "cm-😁").expect("find"), None);
    assert_eq!(
        again.last_seq("C-X").expect("last_seq"),
        0,
        "c-x's seqs counted for C-X"
    );
    let (history, _) = again.history("C-X", Page::Latest, 10).expect("history");
    assert!(history.is_empty(), "c-x's messages in C-X's history");
}

/// "bob" and "bob " are two users, "c-1" and "c-1 " two channels, "x" and
/// "x " two clientMessageIds (SQL's PAD SPACE collations compare them
/// equal). Every way it shows is listed before the check fails.
fn ids_differing_in_trailing_spaces_are_distinct(s: &mut dyn Store, db: &dyn Backend) {
    let clock = Clock::new();
    let mut problems: Vec<String> = Vec::new();
    let c = channel("c-1", ChannelType::Private, "bob", &clock.at(0));
    s.create_channel(&c, &["bob ".into()]).expect("create");
    let members = member_set(s, "c-1");
    if members != set(&["bob", "bob "]) {
        problems.push(format!(
            "members of c-1 created by \"bob\" with \"bob \": {members:?}"
        ));
    }
    if !s.channels_of("bob  ").expect("channels_of").is_empty() {
        problems.push("channels_of(\"bob  \") lists bob's channel".into());
    }
    if s.channel("c-1 ").expect("channel").is_some() {
        problems.push("channel(\"c-1 \") is c-1".into());
    }
    if !s
        .add_member("c-1", "bob  ", &clock.at(1))
        .expect("add_member")
    {
        problems.push("add_member(c-1, \"bob  \") says already a member".into());
    }
    let mut rows = vec![
        message(1, "c-1", 1, "bob", Some("x"), "bob's", &clock.at(1)),
        message(2, "c-1", 2, "bob ", Some("x"), "bob-space's", &clock.at(2)),
        message(
            3,
            "c-1",
            3,
            "bob",
            Some("x "),
            "bob's x-space",
            &clock.at(3),
        ),
    ];
    s.insert_messages(&mut rows).expect("insert");
    let mut again = db.open();
    for m in &rows {
        let (user, cmid) = (&m.user_id, m.client_message_id.as_deref().unwrap());
        let found = again.find_by_client_id(user, cmid).expect("find");
        if found.as_ref() != Some(m) {
            problems.push(format!(
                "find_by_client_id({user:?}, {cmid:?}) gave message {:?} of {:?}, not {} of {user:?}",
                found.as_ref().map(|f| f.seq),
                found.as_ref().map(|f| f.user_id.as_str()),
                m.seq
            ));
        }
    }
    let last = again.last_seq("c-1 ").expect("last_seq");
    if last != 0 {
        problems.push(format!("last_seq(\"c-1 \") = {last} (c-1's)"));
    }
    let (history, _) = again.history("c-1 ", Page::Latest, 10).expect("history");
    if !history.is_empty() {
        problems.push(format!(
            "history(\"c-1 \") holds {} of c-1's messages",
            history.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "ids that differ only in trailing spaces are taken for one another:\n  {}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// The writer thread on each backend

type Batches = Receiver<Vec<(Outcome, usize)>>;

/// Starts the store threads (`store::handle::start`) on `db`; every batch
/// of outcomes the writer hands on comes out of the receiver.
fn start_writer(
    db: &dyn Backend,
    max_batch: usize,
    window: Duration,
) -> (
    gatrix_chat::store::StoreHandle<usize>,
    gatrix_chat::store::StoreThreads,
    Batches,
) {
    let settings = StoreSettings {
        data_dir: std::env::temp_dir(),
        writer: WriterSettings { max_batch, window },
        writer_queue: 10_000,
        readers: 1,
        reader_queue: 100,
    };
    let (tx, rx) = unbounded();
    let (handle, threads) = handle::start(
        &settings,
        || Ok(db.open()),
        move |batch: Vec<(Outcome, usize)>| {
            let _ = tx.send(batch);
        },
    )
    .expect("start the store threads");
    (handle, threads, rx)
}

/// Blocks the writer (a job that waits on a barrier) so that what is
/// appended next queues up; returns the barrier that lets it go.
fn hold_writer(handle: &gatrix_chat::store::StoreHandle<usize>) -> Arc<Barrier> {
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
fn collect(rx: &Batches, count: usize) -> (Vec<Option<Outcome>>, Vec<usize>) {
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

fn new_message(
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

fn writer_seqs_are_gapless_under_repeated_client_ids(_s: &mut dyn Store, db: &dyn Backend) {
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
                assert_eq!(m.id, id(i as u64 + 1));
                commit_order.push(m.pos);
                stored.insert(i, m.clone());
            }
            Outcome::Duplicate(m) => {
                assert_ne!(
                    first_of[i], i,
                    "message {i} is new but came back a duplicate"
                );
                assert_eq!(
                    m.id,
                    id(first_of[i] as u64 + 1),
                    "message {i}: not the first message"
                );
            }
            Outcome::Failed(e) => panic!("message {i} failed: {e}"),
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

fn writer_failed_batch_stores_nothing(_s: &mut dyn Store, db: &dyn Backend) {
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

    let release = hold_writer(&handle);
    // The third message reuses the id of a stored one, so the batch fails
    // as a whole.
    let batch = [
        ("c-b", Some("b-1")),
        ("c-a", Some("a-4")),
        ("c-b", None),
        ("c-c", Some("c-1")),
    ];
    for (k, (ch, cmid)) in batch.iter().enumerate() {
        let n = if k == 2 { 2 } else { 100 + k as u64 };
        handle
            .append(new_message(n, ch, "u", *cmid, &clock.at(100 + k as i64)), k)
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
    for k in [0, 1, 3] {
        assert_eq!(
            check.message(id(100 + k)).expect("message"),
            None,
            "kept from a failed batch"
        );
    }
    let Some(Outcome::Stored(second)) = &first[1] else {
        panic!("{first:?}")
    };
    assert_eq!(
        check.message(id(2)).expect("message").as_ref(),
        Some(second),
        "the message whose id was reused changed"
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
    assert_eq!(a[3].id, id(201));
}
