//! The store: durable channels, memberships and messages, behind one
//! blocking interface ([`Store`]) that only store threads call. A shard
//! never blocks on it: it hands work to [`StoreHandle`] and gets the answer
//! back through its mailbox or a oneshot.
//!
//! - [`sqlite`]: the embedded default (rusqlite, bundled, WAL) under DATA_DIR.
//! - [`mysql`]: the production store (MySQL/MariaDB), chosen by DATABASE_URL
//!   or DB_HOST; messages in monthly partitions.
//! - [`writer`]: the one writer thread: group commit of messages, in commit
//!   order; each commit's [`Store::append`] takes `seq` and `pos` from
//!   counters in the database ([`append`]: the steps shared by backends).
//! - [`fanout`]: the seam after the writer: [`Fanout`], a committed batch
//!   delivered to every shard (in one process, chat's mesh).
//! - [`handle`]: what shards hold: the writer's bounded queue and the reader
//!   threads.
//! - `open`: the store the server runs on, opened in one call
//!   (`open()`: lock, migrations, background thread, store threads),
//!   held by a `StoreGuard`.
//! - [`lock`]: one process per store: the lock taken at start (a file lock
//!   in DATA_DIR; MySQL's is the writer connection's named lock).

pub mod append;
pub mod fanout;
pub mod gatrix;
pub mod handle;
pub mod lock;
pub mod mysql;
mod open;
pub mod sequencing;
pub mod sqlite;
pub mod users;
pub mod writer;

use std::collections::HashMap;

use serde::Serialize;

pub use append::{Appended, Placed};
pub use fanout::Fanout;
pub use gatrix::{MemberRole, Pin};
pub use handle::{Busy, StoreHandle, StoreSettings, StoreThreads};
pub(crate) use open::{last_positions, open};
pub use users::{ReadState, UserRecord};

/// `public` (anyone may join), `private` (members only), `direct`
/// (members only, usually two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Public,
    Private,
    Direct,
}

impl ChannelType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "public" => Self::Public,
            "private" => Self::Private,
            "direct" => Self::Direct,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelRecord {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ChannelType,
    pub description: Option<String>,
    pub owner_id: String,
    pub created_at: String,
    pub updated_at: String,
    /// The channel's number (schema 5), unique in the store and below 2^53:
    /// its id in the Gatrix dialect. Given by the store at creation (0 in a
    /// record not yet created); native clients never see it.
    #[serde(skip)]
    pub num: u64,
    /// The Gatrix channel settings (schema 7): a JSON object as the
    /// frontend sent it, kept as text; native clients never see it.
    #[serde(skip)]
    pub settings: Option<String>,
    /// Most members the channel takes (schema 7); `None`: no limit. A join
    /// beyond it is refused (both dialects).
    #[serde(skip)]
    pub max_members: Option<u32>,
}

/// A message as stored. `id` is made by the commit from `pos`, its
/// sequencing partition and the month of `created_at` (`crate::ids`: below
/// 2^53); `pos` is its commit position in its partition, the recovery
/// offset.
/// What clients see of it is chat's (`chat::json`).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: u64,
    pub pos: u64,
    pub channel_id: String,
    pub seq: u64,
    pub user_id: String,
    pub content: String,
    pub kind: String,
    pub client_message_id: Option<String>,
    pub reply_to: Option<String>,
    pub created_at: String,
    pub edited_at: Option<String>,
    pub deleted_at: Option<String>,
    /// Pinned (schema 7, `PATCH /messages/:id/pin` of the Gatrix REST):
    /// when and by whom. Written by `set_pin` and by `insert_messages`
    /// (imports); a commit stores none.
    pub pinned: Option<Pin>,
    /// Its thread (schema 8), if any.
    pub thread: Thread,
}

/// A message's place in a thread (schema 8). A thread is a message of a
/// channel (its head) and the replies in it: messages of the same channel,
/// each with the head's id, none of them the head of a thread itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thread {
    /// A reply: the id of its thread's head.
    pub parent: Option<u64>,
    /// On a head: its replies not deleted. On a reply: its thread's count
    /// right after the reply was committed, this reply included (kept on
    /// the row, so that a broadcast rebuilt from the store is the one
    /// sent at commit).
    pub count: u64,
    /// On a head with replies: the `created_at` of its latest reply.
    pub last_at: Option<String>,
}

/// A page request for history: at most one of `before`/`after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// Messages with seq < n, newest first then returned ascending.
    Before(u64),
    /// Messages with seq > n, ascending.
    After(u64),
}

impl Page {
    /// Read newest first (then reversed): the latest page and `before`.
    pub fn descending(self) -> bool {
        !matches!(self, Page::After(_))
    }
}

/// Turns the `limit + 1` rows a backend read in the page's order into the
/// page in ascending seq and whether more exist in the paging direction.
pub fn finish_page(
    mut rows: Vec<MessageRecord>,
    limit: usize,
    page: Page,
) -> (Vec<MessageRecord>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    if page.descending() {
        rows.reverse();
    }
    (rows, more)
}

/// One channel's part of a recovery replay ([`Store::replay`]): its
/// messages with `after < pos <= upto_pos` and `seq <= max_seq`. With
/// several sequencing partitions each channel has its partition's bounds
/// (positions of different partitions are not comparable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRange {
    pub channel: String,
    pub after: u64,
    pub upto_pos: u64,
    pub max_seq: u64,
}

/// The backends' [`Store::replay`]: reads each channel's first `limit`
/// rows by `pos` (`read(range)`), then keeps the first `limit` of them all
/// by `pos` (ties by channel). Per partition that is a prefix of what is
/// left in it: a row is dropped only after every row kept of a smaller
/// `pos`, and a channel read short of its limit is complete up to its
/// last row. Bounded: at most `limit` rows per channel are held.
pub(crate) fn merge_replay<E>(
    ranges: &[ReplayRange],
    limit: usize,
    mut read: impl FnMut(&ReplayRange) -> std::result::Result<Vec<MessageRecord>, E>,
) -> std::result::Result<Vec<MessageRecord>, E> {
    let mut rows = Vec::new();
    for range in ranges {
        if range.after < range.upto_pos && range.max_seq > 0 {
            rows.extend(read(range)?);
        }
    }
    rows.sort_by(|a, b| (a.pos, &a.channel_id).cmp(&(b.pos, &b.channel_id)));
    rows.truncate(limit);
    Ok(rows)
}

/// The backends' [`Store::replay_count`]: counts channel by channel
/// (`count(channel, left)`, counting no further than `left`) and stops
/// once `limit` is reached.
pub(crate) fn count_replay<E>(
    channels: &[(String, u64)],
    limit: usize,
    mut count: impl FnMut(&str, u64, usize) -> std::result::Result<usize, E>,
) -> std::result::Result<usize, E> {
    let mut total = 0usize;
    for (channel, after) in channels {
        if total >= limit {
            break;
        }
        total += count(channel, *after, limit - total)?;
    }
    Ok(total)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store error: {0}")]
    Other(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::ConstraintViolation) => Self::Conflict(e.to_string()),
            Some(
                C::ReadOnly
                | C::CannotOpen
                | C::DiskFull
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure,
            ) => Self::Unavailable(e.to_string()),
            _ => Self::Other(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One connection to the database. Every method blocks; only store threads
/// call them.
pub trait Store: Send {
    /// Cheap round trip, for readiness.
    fn ping(&mut self) -> Result<()>;

    // ---- messages (the writer)
    /// The last seq given out in a channel (`channels.last_seq`, which
    /// outlives the messages), 0 when it has none.
    fn last_seq(&mut self, channel: &str) -> Result<u64>;
    fn find_by_client_id(
        &mut self,
        user: &str,
        client_message_id: &str,
    ) -> Result<Option<MessageRecord>>;
    /// [`Store::find_by_client_id`] for many (user, clientMessageId) pairs:
    /// the messages found, by pair. The writer asks once per batch; a store
    /// across a network answers in one round trip instead of one per
    /// message.
    fn find_by_client_ids(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), MessageRecord>> {
        let mut found = HashMap::new();
        for (user, cmid) in keys {
            if !found.contains_key(&(user.clone(), cmid.clone()))
                && let Some(m) = self.find_by_client_id(user, cmid)?
            {
                found.insert((user.clone(), cmid.clone()), m);
            }
        }
        Ok(found)
    }
    /// Inserts all of `messages` (their ids and seqs given: imports and
    /// tests) in one transaction and fills in their `pos`; on error nothing
    /// is inserted. A given id is the caller's to keep apart from the ids
    /// commits make (`crate::ids`): one equal to an id a later commit
    /// makes fails that commit.
    fn insert_messages(&mut self, messages: &mut [MessageRecord]) -> Result<()>;
    /// The writer's commit: in one transaction, leaves out the messages
    /// whose (user, clientMessageId) is stored or earlier in the batch,
    /// gives the others the next `seq` of their channel and the next `pos`
    /// from counters read in the transaction (on MySQL locked until it
    /// commits, so several writers on one database stay gapless and in
    /// commit order), and inserts them. On error nothing is stored.
    fn append(&mut self, batch: &[&MessageRecord]) -> Result<Appended>;
    fn edit_message(&mut self, id: u64, content: &str, at: &str) -> Result<Option<MessageRecord>>;
    fn delete_message(&mut self, id: u64, at: &str) -> Result<Option<MessageRecord>>;

    // ---- reads
    fn message(&mut self, id: u64) -> Result<Option<MessageRecord>>;
    /// A page of at most `limit` messages in ascending seq, and whether
    /// more exist in the paging direction. Deleted messages are left out.
    fn history(
        &mut self,
        channel: &str,
        page: Page,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, bool)>;
    /// The replies of the thread headed by message `head` (schema 8), not
    /// deleted, in seq order: at most `limit` after the first `offset`,
    /// and how many there are in all.
    fn thread(
        &mut self,
        head: u64,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<MessageRecord>, u64)>;
    /// How many messages of the given channels were committed after each
    /// channel's position (`(channel, after_pos)`; deleted ones left out),
    /// counting no further than `limit`: a recovery checks its size before
    /// reading anything.
    fn replay_count(&mut self, channels: &[(String, u64)], limit: usize) -> Result<usize>;
    /// One page of a recovery replay: of each channel's range (see
    /// [`ReplayRange`]), the first `limit` messages by `pos` of them all
    /// (see `merge_replay`). Per sequencing partition the page is a
    /// prefix of what is left, in `pos` order, so the next page starts, per
    /// partition, after the last `pos` of this one; every read is bounded
    /// by `limit` rows per channel.
    fn replay(&mut self, ranges: &[ReplayRange], limit: usize) -> Result<Vec<MessageRecord>>;

    // ---- reads by position (the bus's gap fill and polling fallback)
    /// The last position given out in sequencing partition `partition`
    /// (MySQL: its `sequencer` row; SQLite, one partition: AUTOINCREMENT's
    /// counter), 0 when none or no such partition. Every message up to it
    /// is committed and visible (the counter is raised in the same
    /// transaction as the rows).
    fn last_pos(&mut self, partition: u32) -> Result<u64>;
    /// The committed messages of sequencing partition `partition` with
    /// `pos > after_pos`, in pos order, at most `limit`. Deleted messages
    /// are included (`deleted_at` set), so that every stored position is
    /// seen; positions whose month retention dropped are missing.
    fn partition_messages(
        &mut self,
        partition: u32,
        after_pos: u64,
        limit: usize,
    ) -> Result<Vec<MessageRecord>>;

    // ---- channels and members
    fn channel(&mut self, id: &str) -> Result<Option<ChannelRecord>>;
    /// The id of the live channel numbered `num` (the Gatrix dialect's id).
    fn channel_id_by_num(&mut self, num: u64) -> Result<Option<String>>;
    fn channels_of(&mut self, user: &str) -> Result<Vec<ChannelRecord>>;
    fn member_ids(&mut self, channel: &str) -> Result<Vec<String>>;
    fn create_channel(&mut self, channel: &ChannelRecord, members: &[String]) -> Result<()>;
    fn update_channel(
        &mut self,
        id: &str,
        name: Option<&str>,
        description: Option<Option<&str>>,
        at: &str,
    ) -> Result<Option<ChannelRecord>>;
    fn delete_channel(&mut self, id: &str, at: &str) -> Result<bool>;
    /// Adds a member; false if already one.
    fn add_member(&mut self, channel: &str, user: &str, at: &str) -> Result<bool>;
    fn remove_member(&mut self, channel: &str, user: &str) -> Result<bool>;

    // ---- the Gatrix platform's roles, settings and pins (schema 7)
    /// The member's role: `Owner` for the channel's creator, whatever the
    /// row says; `None` for no member (or no live channel).
    fn member_role(&mut self, channel: &str, user: &str) -> Result<Option<MemberRole>>;
    /// Makes a member an admin or a member again (imports; there is no
    /// route for it, as in the original). The owner's row is never
    /// changed and `Owner` is never given: false then, and for no member.
    fn set_member_role(&mut self, channel: &str, user: &str, role: MemberRole) -> Result<bool>;
    /// Sets what is given of the channel's settings (`Some(None)` clears
    /// them) and member limit; `None` when there is no live channel.
    fn update_channel_settings(
        &mut self,
        id: &str,
        settings: Option<Option<&str>>,
        max_members: Option<Option<u32>>,
        at: &str,
    ) -> Result<Option<ChannelRecord>>;
    /// Pins (`Some`) or unpins a live message; the message as it is now,
    /// `None` when there is none.
    fn set_pin(&mut self, id: u64, pin: Option<&Pin>) -> Result<Option<MessageRecord>>;

    // ---- the user directory (schema 6)
    /// Inserts or updates each user in one transaction; an update keeps
    /// `created_at`, and the status when the record's is `None`.
    fn upsert_users(&mut self, users: &[UserRecord]) -> Result<()>;
    fn user(&mut self, id: &str) -> Result<Option<UserRecord>>;
    /// Users by id, `offset` and `limit` into those whose username, name or
    /// email contain `search`; with how many match in all.
    fn users_page(
        &mut self,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, u64)>;
    /// False when there is no such user.
    fn set_user_status(
        &mut self,
        id: &str,
        status: &str,
        custom_status: Option<&str>,
        at: &str,
    ) -> Result<bool>;
    fn delete_user(&mut self, id: &str) -> Result<bool>;

    // ---- read state per member (schema 6)
    /// `None` when `user` is no member of `channel`.
    fn read_state(&mut self, channel: &str, user: &str) -> Result<Option<ReadState>>;
    /// Moves the member's read mark forward to `seq` (never back); false
    /// when `user` is no member.
    fn mark_read(
        &mut self,
        channel: &str,
        user: &str,
        seq: u64,
        message_id: Option<u64>,
        at: &str,
    ) -> Result<bool>;
}

// Here rather than in `config`, which depends on no other module.
impl crate::config::Config {
    /// The store in use, in words and without a password: `SQLite
    /// ./data/gatrix-chat.db` or `MySQL mysql://user@host:3306/db`.
    pub fn store_description(&self) -> String {
        use crate::config::Backend;
        match self.backend() {
            Ok(Backend::Sqlite(dir)) => format!("SQLite {}", sqlite::db_path(&dir).display()),
            Ok(Backend::Mysql(opts)) => format!("MySQL {}", mysql::describe(&opts)),
            Err(_) => "MySQL (DATABASE_URL is not usable)".to_owned(),
        }
    }
}
