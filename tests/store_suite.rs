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
    ChannelRecord, ChannelType, MessageRecord, Page, ReplayRange, Store, StoreError, StoreSettings,
    handle,
};
use time::OffsetDateTime;
use time::macros::format_description;

// ---------------------------------------------------------------------------
// Backends

/// A database of one backend, migrated and empty.
trait Backend {
    /// A new connection to the database.
    fn open(&self) -> Box<dyn Store>;
    /// A new connection whose commits use `n` sequencing partitions
    /// (SEQUENCER_PARTITIONS; SQLite has one).
    fn open_partitioned(&self, n: u32) -> Box<dyn Store>;
    /// Every message gone, as retention takes them (counters stay).
    fn expire_all_messages(&self);
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

    fn open_partitioned(&self, n: u32) -> Box<dyn Store> {
        assert_eq!(n, 1, "SQLite has one sequencing partition");
        self.open()
    }

    /// SQLite has no retention: an operator's DELETE.
    fn expire_all_messages(&self) {
        let path = gatrix_chat::store::sqlite::db_path(self.dir.path());
        rusqlite::Connection::open(path)
            .and_then(|c| c.execute("DELETE FROM messages", []))
            .expect("delete the messages");
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

    fn open_partitioned(&self, n: u32) -> Box<dyn Store> {
        mysql_backend::open_partitioned(&self.url, n)
    }

    fn expire_all_messages(&self) {
        mysql_backend::expire_all(&self.url);
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

    /// Retention as upkeep applies it, 100 days from now with 30 days
    /// kept: this month's partition (every message here) is dropped.
    pub fn expire_all(url: &str) {
        let policy = PartitionPolicy {
            months_ahead: 2,
            retention_days: 30,
        };
        let (_, plan) = MysqlStore::open(&opts(url))
            .expect("open MySQL")
            .maintain_partitions(policy, super::now_ms() + 100 * 86_400_000, false)
            .expect("drop partitions");
        assert!(!plan.drop.is_empty(), "retention dropped nothing");
    }

    pub fn open(url: &str) -> Box<dyn Store> {
        Box::new(MysqlStore::open(&opts(url)).expect("open MySQL"))
    }

    pub fn open_partitioned(url: &str, n: u32) -> Box<dyn Store> {
        let mut s = MysqlStore::open(&opts(url)).expect("open MySQL");
        s.set_sequencer_partitions(n)
            .expect("make the sequencer rows");
        Box::new(s)
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
    channel_numbers_are_unique_and_found,
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
    replay_counts_bounded_and_pages_exactly,
    replay_bounds_are_per_channel,
    utf8mb4_round_trips,
    values_at_the_api_limits_round_trip,
    ids_are_compared_exactly,
    ids_differing_in_trailing_spaces_are_distinct,
    writer_seqs_are_gapless_under_repeated_client_ids,
    writer_failed_batch_stores_nothing,
    seq_outlives_the_messages,
    reads_by_position,
    writer_commit_rate,
    users_upsert_keep_created_and_status,
    users_page_search_and_delete,
    read_marks_move_forward_per_member,
    roles_owner_admin_member,
    channel_settings_and_member_limit,
    pins_set_clear_and_import,
    threads_count_replies_list_them_and_refuse_others,
);

/// Checks only MySQL runs: several writers on one database.
macro_rules! mysql_only {
    ($($check:ident),* $(,)?) => {
        mod mysql_only {
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

mysql_only!(
    two_writers_give_out_one_gapless_order,
    two_writers_store_a_client_message_id_once,
    two_partitions_two_writers_each_gapless_in_commit_order,
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

/// Message ids for `insert_messages` (which stores the ids it is given):
/// the `n`th id of this month's range (`gatrix_chat::ids`), so in the
/// current month's partition on MySQL.
fn id(n: u64) -> u64 {
    let month = gatrix_chat::ids::month_index_of_unix_ms(now_ms());
    gatrix_chat::ids::first_id_of_month(month) + n
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
        num: 0,
        settings: None,
        max_members: None,
    }
}

/// A channel read back, its number (given by the store) checked and taken
/// out, to compare with the record created.
fn unnumbered(c: Option<ChannelRecord>) -> Option<ChannelRecord> {
    c.map(|c| {
        assert!(
            c.num > 0 && c.num < 1 << 53,
            "channel {} has number {}",
            c.id,
            c.num
        );
        ChannelRecord { num: 0, ..c }
    })
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
        pinned: None,
        thread: Default::default(),
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

#[path = "store_suite/channels.rs"]
mod channels;
#[path = "store_suite/gatrix.rs"]
mod gatrix;
#[path = "store_suite/instances.rs"]
mod instances;
#[path = "store_suite/messages.rs"]
mod messages;
#[path = "store_suite/partitions.rs"]
mod partitions;
#[path = "store_suite/reads.rs"]
mod reads;
#[path = "store_suite/text.rs"]
mod text;
#[path = "store_suite/threads.rs"]
mod threads;
#[path = "store_suite/users.rs"]
mod users;
#[path = "store_suite/writer.rs"]
mod writer;
use channels::*;
use gatrix::*;
use instances::*;
use messages::*;
use partitions::*;
use reads::*;
use text::*;
use threads::*;
use users::*;
use writer::*;
