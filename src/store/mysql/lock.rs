//! The MySQL store's process lock: a named lock (`GET_LOCK`) on the
//! writer's connection ([`WriterLock`]).
//!
//! - Without Redis (one instance per database): the whole-database lock
//!   `gatrix-chat:<db>` ([`lock_name`]): a second process on the database
//!   is refused.
//! - With Redis (several instances share the database): a lock per
//!   instance, `gatrix-chat:<db>/<SERVER_ID>` ([`instance_lock_name`]): a
//!   second process with the same SERVER_ID is refused (two would share
//!   Redis keys, leases and sessions), others are welcome. Such an
//!   instance also refuses to start (or, after a reconnect, to write)
//!   while the whole-database lock is held (`IS_USED_LOCK`): a server
//!   without Redis on the same database would not see the instances'
//!   messages nor they its.
//! - The other way round: each instance with Redis also holds one of
//!   [`SLOTS`] slot locks, `gatrix-chat-instance:<db>#<i>`
//!   ([`slot_lock_name`]), the first free one, so that a server without
//!   Redis, once it holds the whole-database lock, sees them (one
//!   `IS_USED_LOCK` query over the slots) and refuses to start while any
//!   is held. No table: a named lock ends with its connection, so a dead
//!   instance leaves nothing behind. Each side takes its own lock before
//!   it looks at the other's, so of two started at once one sees the
//!   other. Beyond [`SLOTS`] instances, one that finds every slot held
//!   takes none: the holders are seen instead (while they run).
//!
//! A named lock lives as long as the connection that took it, so it is
//! lost when that connection drops (a network cut, a database restart,
//! `wait_timeout`, `KILL`). The writer's [`super::connection::Connection`] therefore
//! takes it again on every reconnect, before any statement: when another
//! process holds it by then, the writer does not write (every write fails
//! with UNAVAILABLE and an error is logged at each attempt, backing off to
//! one every 5 s) until the lock is free again. It caches no seq: each
//! commit reads the counters another process may have raised meanwhile.
//!
//! Named locks are per server, not replicated: behind a Galera cluster or
//! a proxy that multiplexes connections (ProxySQL) they do not hold. The
//! several-instances work replaces this lock with real support.

use mysql::Conn;
use mysql::prelude::Queryable;

/// MySQL's longest lock name, in characters.
const MAX_NAME: usize = 64;
const PREFIX: &str = "gatrix-chat:";

/// The whole-database lock's name for database `db`: `gatrix-chat:<db>`,
/// or, when that is longer than MySQL allows, the name's start and a hash
/// of the whole.
pub(crate) fn lock_name(db: &str) -> String {
    // The hash of the database name alone, as earlier versions made it.
    fit(format!("{PREFIX}{db}"), db)
}

/// The per-instance lock's name: `gatrix-chat:<db>/<server_id>`, fitted
/// as [`lock_name`] is.
pub(crate) fn instance_lock_name(db: &str, server_id: &str) -> String {
    let name = format!("{PREFIX}{db}/{server_id}");
    fit(name.clone(), &name)
}

/// The slot locks an instance with Redis takes one of: this many per
/// database. Checked in one query by a server without Redis.
pub(crate) const SLOTS: usize = 32;

/// The name of slot `i` of database `db`: `gatrix-chat-instance:<db>#<i>`,
/// fitted as [`lock_name`] is.
pub(crate) fn slot_lock_name(db: &str, i: usize) -> String {
    let name = format!("gatrix-chat-instance:{db}#{i}");
    fit(name.clone(), &name)
}

/// The migration lock's name: `gatrix-chat-migrate:<db>`, fitted as
/// [`lock_name`] is. Held while one process migrates, so instances started
/// together on a fresh database migrate one after the other (their own
/// locks, per SERVER_ID, do not exclude each other).
pub(crate) fn migration_lock_name(db: &str) -> String {
    let name = format!("gatrix-chat-migrate:{db}");
    fit(name.clone(), &name)
}

/// `name`, or when longer than MySQL allows, its start and a hash of
/// `hashed`.
fn fit(name: String, hashed: &str) -> String {
    if name.chars().count() <= MAX_NAME {
        return name;
    }
    // FNV-1a: stable across builds and processes (unlike std's hasher).
    let hash = crate::store::sequencing::fnv1a64(hashed.as_bytes());
    let suffix = format!("~{hash:016x}");
    let keep = MAX_NAME - suffix.len();
    let mut short: String = name.chars().take(keep).collect();
    short.push_str(&suffix);
    short
}

/// The lock a writer's connection takes, on every (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriterLock {
    /// The lock held.
    pub(crate) name: String,
    /// A lock that must be free meanwhile (an instance with Redis: the
    /// whole-database lock of a server without).
    pub(crate) excluded_by: Option<String>,
    /// The instances' slot locks ([`SLOTS`]): an instance with Redis takes
    /// the first free one; a server without refuses while any is held.
    pub(crate) slots: Vec<String>,
    /// Whether this is an instance with Redis.
    pub(crate) instance: bool,
}

impl WriterLock {
    /// The lock of a writer on database `db`: with `server_id` (Redis is
    /// configured) the instance's own, else the whole database's.
    pub(crate) fn for_database(db: &str, server_id: Option<&str>) -> Self {
        let slots = (0..SLOTS).map(|i| slot_lock_name(db, i)).collect();
        match server_id {
            None => Self {
                name: lock_name(db),
                excluded_by: None,
                slots,
                instance: false,
            },
            Some(id) => Self {
                name: instance_lock_name(db, id),
                excluded_by: Some(lock_name(db)),
                slots,
                instance: true,
            },
        }
    }
}

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// This connection holds the lock now.
    Held,
    /// Another connection holds it: which one, as far as the server says.
    Taken(String),
    /// The lock that must be free is held (a server without Redis): by
    /// which connection.
    Excluded(String),
    /// A server without Redis: instances with Redis run on the database
    /// (a slot lock is held): by which connection.
    Instances(String),
}

/// Tries to take `lock` on `conn` without waiting. Its own lock first,
/// then (an instance) a slot, then a look at the other side's: of two
/// processes started at once, the later to look sees the other. A refusal
/// releases what was taken (the connection is dropped too).
pub(crate) fn acquire(conn: &mut Conn, lock: &WriterLock) -> mysql::Result<Acquired> {
    let got: Option<i64> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (&lock.name,))?
        .flatten();
    if got != Some(1) {
        return Ok(Acquired::Taken(holder(conn, &lock.name)));
    }
    if lock.instance {
        take_slot(conn, &lock.slots)?;
    } else if let Some(held) = held_slot(conn, &lock.slots)? {
        let who = holder(conn, &held);
        release_all(conn, lock)?;
        return Ok(Acquired::Instances(who));
    }
    if let Some(other) = &lock.excluded_by {
        let used: Option<u64> = conn
            .exec_first("SELECT IS_USED_LOCK(?)", (other,))?
            .flatten();
        if used.is_some() {
            let who = holder(conn, other);
            release_all(conn, lock)?;
            return Ok(Acquired::Excluded(who));
        }
    }
    Ok(Acquired::Held)
}

/// Takes the first free slot lock; none when every one is held (by other
/// instances, which a server without Redis then sees).
fn take_slot(conn: &mut Conn, slots: &[String]) -> mysql::Result<()> {
    for slot in slots {
        let got: Option<i64> = conn.exec_first("SELECT GET_LOCK(?, 0)", (slot,))?.flatten();
        if got == Some(1) {
            return Ok(());
        }
    }
    tracing::warn!(
        slots = slots.len(),
        "every instance slot lock is held: this instance takes none (a server without Redis \
         is still refused while the holders run)"
    );
    Ok(())
}

/// A held slot lock, if any: one query over them all.
fn held_slot(conn: &mut Conn, slots: &[String]) -> mysql::Result<Option<String>> {
    if slots.is_empty() {
        return Ok(None);
    }
    let columns = vec!["IS_USED_LOCK(?) IS NOT NULL"; slots.len()].join(", ");
    let row: Option<mysql::Row> = conn.exec_first(format!("SELECT {columns}"), slots.to_vec())?;
    let Some(row) = row else {
        return Ok(None);
    };
    for (i, slot) in slots.iter().enumerate() {
        if row.get::<Option<bool>, _>(i).flatten() == Some(true) {
            return Ok(Some(slot.clone()));
        }
    }
    Ok(None)
}

/// Releases the locks `acquire` may have taken on `conn`.
fn release_all(conn: &mut Conn, lock: &WriterLock) -> mysql::Result<()> {
    conn.exec_drop("SELECT RELEASE_LOCK(?)", (&lock.name,))?;
    if lock.instance {
        for slot in &lock.slots {
            conn.exec_drop("SELECT RELEASE_LOCK(?)", (slot,))?;
        }
    }
    Ok(())
}

/// Who holds `name`: its connection id (`IS_USED_LOCK`) and, when this
/// account may see it, where that connection comes from.
fn holder(conn: &mut Conn, name: &str) -> String {
    let id: Option<u64> = conn
        .exec_first("SELECT IS_USED_LOCK(?)", (name,))
        .ok()
        .flatten()
        .flatten();
    let Some(id) = id else {
        return "it was released a moment ago; try again".to_owned();
    };
    let from: Option<(String, String)> = conn
        .exec_first(
            "SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = ?",
            (id,),
        )
        .ok()
        .flatten();
    match from {
        Some((user, host)) => format!("database connection {id} of {user}@{host}"),
        None => format!("database connection {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_mysql_and_stay_distinct() {
        assert_eq!(lock_name("gatrix"), "gatrix-chat:gatrix");
        let long_a = "a".repeat(64);
        let mut long_b = "a".repeat(63);
        long_b.push('b');
        let (a, b) = (lock_name(&long_a), lock_name(&long_b));
        assert_eq!(a.chars().count(), 64);
        assert_eq!(b.chars().count(), 64);
        assert_ne!(a, b);
        assert_eq!(a, lock_name(&long_a), "stable");
    }

    #[test]
    fn instances_lock_their_own_name_and_exclude_the_database_lock() {
        assert_eq!(
            WriterLock::for_database("gatrix", None),
            WriterLock {
                name: "gatrix-chat:gatrix".into(),
                excluded_by: None,
                slots: (0..SLOTS)
                    .map(|i| format!("gatrix-chat-instance:gatrix#{i}"))
                    .collect(),
                instance: false,
            }
        );
        assert_eq!(
            WriterLock::for_database("gatrix", Some("chat-1")),
            WriterLock {
                name: "gatrix-chat:gatrix/chat-1".into(),
                excluded_by: Some("gatrix-chat:gatrix".into()),
                slots: (0..SLOTS)
                    .map(|i| format!("gatrix-chat-instance:gatrix#{i}"))
                    .collect(),
                instance: true,
            }
        );
        // A 64-character SERVER_ID: fitted, and distinct per instance.
        let (a, b) = ("a".repeat(64), format!("{}b", "a".repeat(63)));
        let (la, lb) = (
            instance_lock_name("gatrix", &a),
            instance_lock_name("gatrix", &b),
        );
        assert_eq!(la.chars().count(), 64);
        assert_ne!(la, lb);
        assert_ne!(la, lock_name("gatrix"));
        // Slots of a long database name: fitted, distinct per slot.
        let db = "d".repeat(64);
        let slots: std::collections::HashSet<String> =
            (0..SLOTS).map(|i| slot_lock_name(&db, i)).collect();
        assert_eq!(slots.len(), SLOTS);
        assert!(slots.iter().all(|s| s.chars().count() <= MAX_NAME));
    }
}
