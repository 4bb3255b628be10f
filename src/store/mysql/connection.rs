//! One store thread's connection to MySQL/MariaDB, kept alive: connects on
//! demand, drops the connection when it breaks, and reconnects with
//! exponential backoff so a database that is down is not hammered.
//!
//! While the database is unreachable every call fails at once with
//! [`StoreError::Unavailable`] (what clients see as UNAVAILABLE); the first
//! call after the backoff delay tries again, and the store resumes by itself
//! when the database is back.

use std::time::{Duration, Instant};

use mysql::{Conn, Opts, OptsBuilder, consts::CapabilityFlags};

use super::error::{is_broken, map_error};
use super::lock::{self, Acquired, WriterLock};
use crate::store::lock::StoreLocked;
use crate::store::{Result, StoreError};

/// Delay before the second connection attempt; doubles up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between connection attempts while the database is down.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection idle this long is pinged before use: the database may have
/// restarted (or its wait_timeout, a proxy or a firewall closed the
/// connection) meanwhile, and a ping failure costs a reconnect instead of a
/// failed request. Under load connections are never idle this long, so the
/// round trip is only paid by a quiet server.
const IDLE_PING: Duration = Duration::from_secs(1);

/// Bounds on waiting for the network: a hung database fails requests
/// instead of stalling a store thread forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Prepared statements kept per connection: the fixed ones plus, on the
/// writer's, one multi-row INSERT per batch size up to
/// [`super::MAX_INSERT_ROWS`], one lookup per key count up to
/// [`super::MAX_LOOKUP_KEYS`], and a channel lock and a channel counter
/// update per channel count up to `sequence::CHANNELS_PER_STATEMENT`,
/// and a partition lock per partition count up to 32.
const STMT_CACHE: usize = super::MAX_INSERT_ROWS
    + super::MAX_LOOKUP_KEYS
    + 2 * super::sequence::CHANNELS_PER_STATEMENT
    + crate::store::sequencing::MAX_SEQUENCER_PARTITIONS as usize
    + 64;

/// Session settings, so behaviour does not depend on the server's defaults:
/// utf8mb4 on the wire; strict mode (a value that does not fit is an error,
/// never silently truncated); lock waits bounded so a stuck transaction
/// surfaces as UNAVAILABLE instead of stalling the writer for the default 50 s.
const SESSION_INIT: &[&str] = &[
    "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'",
    "SET SESSION innodb_lock_wait_timeout = 10",
];

/// The options of a store connection: the operator's (address, account,
/// TLS) plus the store's own settings.
pub(crate) fn store_opts(opts: &Opts) -> Opts {
    OptsBuilder::from_opts(opts.clone())
        .init(SESSION_INIT.to_vec())
        // UPDATE reports matched rows, as SQLite does, not changed ones.
        .additional_capabilities(CapabilityFlags::CLIENT_FOUND_ROWS)
        .stmt_cache_size(STMT_CACHE)
        .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
        .read_timeout(Some(IO_TIMEOUT))
        .write_timeout(Some(IO_TIMEOUT))
        .tcp_keepalive_time_ms(Some(60_000))
        .into()
}

/// Where a connection goes, for logs and messages: never the password.
pub fn describe(opts: &Opts) -> String {
    let db = opts.get_db_name().unwrap_or("");
    match opts.get_socket() {
        Some(socket) => format!("mysql socket {socket} database {db:?}"),
        None => format!(
            "mysql://{}@{}:{}/{db}",
            opts.get_user().unwrap_or(""),
            opts.get_ip_or_hostname(),
            opts.get_tcp_port()
        ),
    }
}

pub(crate) struct Connection {
    opts: Opts,
    conn: Option<Conn>,
    last_used: Instant,
    /// When the next connection attempt may be made, after a failed one.
    retry_at: Option<Instant>,
    backoff: Duration,
    last_error: String,
    /// The writer's: the store lock, taken on every (re)connect.
    lock: Option<StoreLock>,
}

/// The process lock a writer's connection holds (see [`super::lock`]).
#[derive(Debug)]
struct StoreLock {
    lock: WriterLock,
    /// How many database connections of this one have taken it.
    taken: u64,
    /// Who held it (or the lock that excludes it) at the last attempt,
    /// when that attempt was refused.
    refused_by: Option<Refusal>,
}

/// Why the last attempt to take the lock was refused.
#[derive(Debug, Clone)]
enum Refusal {
    /// Another process holds the same lock: who.
    Taken(String),
    /// A server without Redis holds the whole-database lock: who.
    Excluded(String),
    /// A server without Redis: instances with Redis run on the database
    /// (one holds a slot lock): which one.
    Instances(String),
}

impl Connection {
    /// A connection that connects on first use (see [`Connection::conn`]).
    fn unconnected(opts: Opts) -> Self {
        Self {
            opts,
            conn: None,
            last_used: Instant::now(),
            retry_at: None,
            backoff: FIRST_BACKOFF,
            last_error: String::new(),
            lock: None,
        }
    }

    /// Connects now and takes the store lock on the connection (and
    /// again on every reconnect). Fails with [`StoreLocked`] when another
    /// connection holds it (or the lock that excludes it), and as
    /// [`Connection::open`] does otherwise.
    pub(crate) fn open_locked(opts: Opts, lock: WriterLock) -> anyhow::Result<Self> {
        let mut connection = Self::unconnected(opts);
        let name = lock.name.clone();
        connection.lock = Some(StoreLock {
            lock,
            taken: 0,
            refused_by: None,
        });
        match connection.conn() {
            Ok(_) => Ok(connection),
            Err(e) => {
                match connection.lock.as_mut().and_then(|l| l.refused_by.take()) {
                    Some(Refusal::Taken(holder)) => {
                        let instance = name.contains('/');
                        Err(StoreLocked {
                        store: format!("{} (MySQL named lock {name:?})", describe(&connection.opts)),
                        holder,
                        fix: if instance {
                            "another instance runs with this SERVER_ID: give each instance \
                             its own SERVER_ID, or stop that one; when the holder is gone but \
                             its connection lingers, end it with KILL <id> on the database"
                        } else {
                            "stop it first, or point this process at another database; when the \
                             holder is gone but its connection lingers, end it with KILL <id> on \
                             the database"
                        }
                        .to_owned(),
                    }
                    .into())
                    }
                    Some(Refusal::Excluded(holder)) => Err(StoreLocked {
                        store: describe(&connection.opts),
                        holder: format!("a gatrix-chat without Redis, {holder}"),
                        fix: "a server without REDIS_URL does not share its database: stop it, or \
                          restart it with the same REDIS_URL as the instances"
                            .to_owned(),
                    }
                    .into()),
                    Some(Refusal::Instances(holder)) => Err(StoreLocked {
                        store: describe(&connection.opts),
                        holder: format!("gatrix-chat instances with Redis, {holder} among them"),
                        fix:
                            "a server without REDIS_URL does not share its database and would not \
                          see the instances' messages nor they its: give every process of one \
                          database the same REDIS_URL, or stop the instances first"
                                .to_owned(),
                    }
                    .into()),
                    None => Err(e.into()),
                }
            }
        }
    }

    /// How many times this connection took the store lock (0 without one): a
    /// change means the database connection was replaced and another process may
    /// have written meanwhile.
    pub(crate) fn lock_epoch(&self) -> u64 {
        self.lock.as_ref().map_or(0, |l| l.taken)
    }

    /// Connects now; fails with `Unavailable` when the database cannot be
    /// reached or refuses the account.
    pub(crate) fn open(opts: Opts) -> Result<Self> {
        let mut connection = Self::unconnected(opts);
        connection.conn()?;
        Ok(connection)
    }

    /// The connection, (re)connecting first when there is none and the
    /// backoff allows.
    pub(crate) fn conn(&mut self) -> Result<&mut Conn> {
        if let Some(conn) = &mut self.conn
            && self.last_used.elapsed() > IDLE_PING
            && conn.ping().is_err()
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.connect()?;
            // The writer's new connection holds the lock again, but what
            // the writer knows (the next seq of each channel) may be stale:
            // this call fails, so no statement runs on that knowledge, and
            // the writer, seeing the epoch change, forgets it.
            if self.lock_epoch() > 1 {
                self.last_used = Instant::now();
                return Err(StoreError::Unavailable(
                    "the writer's database connection was replaced; retry".into(),
                ));
            }
        }
        self.last_used = Instant::now();
        match &mut self.conn {
            Some(conn) => Ok(conn),
            None => Err(StoreError::Unavailable("not connected".into())),
        }
    }

    fn connect(&mut self) -> Result<()> {
        let now = Instant::now();
        if let Some(at) = self.retry_at
            && now < at
        {
            return Err(StoreError::Unavailable(format!(
                "database unreachable ({}); next attempt in {} ms",
                self.last_error,
                (at - now).as_millis()
            )));
        }
        let attempt = Conn::new(self.opts.clone()).and_then(|mut conn| {
            let acquired = match &self.lock {
                Some(l) => lock::acquire(&mut conn, &l.lock)?,
                None => Acquired::Held,
            };
            Ok((conn, acquired))
        });
        let refusal = match &attempt {
            Ok((_, Acquired::Taken(holder))) => Some(Refusal::Taken(holder.clone())),
            Ok((_, Acquired::Excluded(holder))) => Some(Refusal::Excluded(holder.clone())),
            Ok((_, Acquired::Instances(holder))) => Some(Refusal::Instances(holder.clone())),
            _ => None,
        };
        if let Some(refusal) = refusal
            && let Some(l) = &mut self.lock
        {
            let holder = match &refusal {
                Refusal::Taken(h) => h.clone(),
                Refusal::Excluded(h) => format!("a gatrix-chat without Redis, {h}"),
                Refusal::Instances(h) => {
                    format!("gatrix-chat instances with Redis, {h} among them")
                }
            };
            // Never write without the lock: refuse, loudly, and try again
            // after the backoff (the other process may stop).
            if l.taken > 0 {
                tracing::error!(
                    database = %describe(&self.opts),
                    lock = %l.lock.name,
                    %holder,
                    "the store lock was lost with the database connection and another process \
                     holds it now (or, for an instance with Redis, the whole-database lock): \
                     not writing (every write fails) until it is free; one gatrix-chat per \
                     database, or with Redis one per SERVER_ID"
                );
            }
            l.refused_by = Some(refusal);
            self.last_error = format!("the store lock is held by {holder}");
            self.retry_at = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            return Err(StoreError::Unavailable(format!(
                "another process holds the store lock ({holder})"
            )));
        }
        match attempt {
            Ok((conn, _)) => {
                if let Some(l) = &mut self.lock {
                    l.taken += 1;
                    l.refused_by = None;
                }
                if self.retry_at.is_some() {
                    tracing::info!(database = %describe(&self.opts), "database reconnected");
                }
                self.conn = Some(conn);
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                Ok(())
            }
            Err(e) => {
                if self.retry_at.is_none() {
                    tracing::warn!(database = %describe(&self.opts), error = %e, "cannot connect to the database; retrying with backoff");
                }
                self.last_error = e.to_string();
                self.retry_at = Some(now + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(StoreError::Unavailable(format!(
                    "connecting to the database: {e}"
                )))
            }
        }
    }

    /// Runs `f` on the connection; a connection that broke is dropped, so
    /// the next call reconnects.
    pub(crate) fn run<T>(&mut self, f: impl FnOnce(&mut Conn) -> mysql::Result<T>) -> Result<T> {
        let conn = self.conn()?;
        match f(conn) {
            Ok(v) => Ok(v),
            Err(e) => {
                if is_broken(&e) {
                    tracing::warn!(error = %e, "database connection lost");
                    self.conn = None;
                }
                Err(map_error(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_never_show_the_password() {
        let opts = Opts::from_url("mysql://chat:s3cret@db.example:3307/gatrix").unwrap();
        let d = describe(&opts);
        assert_eq!(d, "mysql://chat@db.example:3307/gatrix");
        assert!(!describe(&store_opts(&opts)).contains("s3cret"));
    }

    #[test]
    fn a_down_database_is_retried_with_capped_backoff() {
        // Port 1 on loopback: refused at once.
        let opts = store_opts(&Opts::from_url("mysql://u:p@127.0.0.1:1/db").unwrap());
        let Err(e) = Connection::open(opts.clone()) else {
            panic!("connected to port 1?")
        };
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        let mut connection = Connection::unconnected(opts);
        assert!(connection.conn().is_err());
        let retry_at = connection.retry_at.expect("backoff armed");
        // Within the backoff, no attempt is made: the error says so.
        match connection.conn() {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("next attempt"), "{m}"),
            _ => panic!("expected Unavailable"),
        }
        assert_eq!(connection.retry_at, Some(retry_at));
        for _ in 0..10 {
            connection.retry_at = Some(Instant::now());
            let _ = connection.conn();
        }
        assert_eq!(connection.backoff, MAX_BACKOFF);
    }
}
