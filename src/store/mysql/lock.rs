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
//!   messages nor they its. Not caught: a server without Redis started
//!   while instances with Redis run (they hold no lock it can see); the
//!   deployment must give every process of one database the same
//!   REDIS_URL (docs/operations.md).
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
}

impl WriterLock {
    /// The lock of a writer on database `db`: with `server_id` (Redis is
    /// configured) the instance's own, else the whole database's.
    pub(crate) fn for_database(db: &str, server_id: Option<&str>) -> Self {
        match server_id {
            None => Self {
                name: lock_name(db),
                excluded_by: None,
            },
            Some(id) => Self {
                name: instance_lock_name(db, id),
                excluded_by: Some(lock_name(db)),
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
}

/// Tries to take `lock` on `conn` without waiting.
pub(crate) fn acquire(conn: &mut Conn, lock: &WriterLock) -> mysql::Result<Acquired> {
    if let Some(other) = &lock.excluded_by {
        let used: Option<u64> = conn
            .exec_first("SELECT IS_USED_LOCK(?)", (other,))?
            .flatten();
        if used.is_some() {
            return Ok(Acquired::Excluded(holder(conn, other)));
        }
    }
    let got: Option<i64> = conn
        .exec_first("SELECT GET_LOCK(?, 0)", (&lock.name,))?
        .flatten();
    if got == Some(1) {
        return Ok(Acquired::Held);
    }
    Ok(Acquired::Taken(holder(conn, &lock.name)))
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
                excluded_by: None
            }
        );
        assert_eq!(
            WriterLock::for_database("gatrix", Some("chat-1")),
            WriterLock {
                name: "gatrix-chat:gatrix/chat-1".into(),
                excluded_by: Some("gatrix-chat:gatrix".into())
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
    }
}
