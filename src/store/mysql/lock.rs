//! The MySQL store's one-process lock: a named lock (`GET_LOCK`) on the
//! writer's connection, derived from the database name.
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

/// The lock's name for database `db`: `gatrix-chat:<db>`, or, when that is
/// longer than MySQL allows, the name's start and a hash of the whole.
pub(crate) fn lock_name(db: &str) -> String {
    let name = format!("{PREFIX}{db}");
    if name.chars().count() <= MAX_NAME {
        return name;
    }
    // FNV-1a: stable across builds and processes (unlike std's hasher).
    let hash = crate::store::sequencing::fnv1a64(db.as_bytes());
    let suffix = format!("~{hash:016x}");
    let keep = MAX_NAME - suffix.len();
    let mut short: String = name.chars().take(keep).collect();
    short.push_str(&suffix);
    short
}

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// This connection holds the lock now.
    Held,
    /// Another connection holds it: which one, as far as the server says.
    Taken(String),
}

/// Tries to take lock `name` on `conn` without waiting.
pub(crate) fn acquire(conn: &mut Conn, name: &str) -> mysql::Result<Acquired> {
    let got: Option<i64> = conn.exec_first("SELECT GET_LOCK(?, 0)", (name,))?.flatten();
    if got == Some(1) {
        return Ok(Acquired::Held);
    }
    Ok(Acquired::Taken(holder(conn, name)))
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
}
