//! Recovery sessions in Redis, so that a client may come back through any
//! instance: one thread with its own connection does every Redis command;
//! shards hand it requests over a bounded queue and never wait for it
//! (a claim's answer comes back through [`Mesh::post_external`]).
//!
//! The lifetime of a session (docs/architecture.md, "Recovery across
//! instances"): written at CONNECT, join and leave, with a TTL of the
//! recovery window plus one refresh period; the instance holding the
//! connection renews the TTLs of its live sessions every refresh period,
//! one pipeline per shard. Nothing is written at disconnect, so a session
//! outlives the instance that held it: it expires between one window and
//! one window plus a period after its connection ended, however it ended
//! (`kill -9` included).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use redis::Script;

use super::entry::{self, Entry};
use crate::chat::Mail;
use crate::chat::mail::{ReplayStep, ToConnShard, shard_of_conn};
use crate::mailbox::Mesh;
use crate::metrics::RecoveryMetrics;
use crate::redis_link::{Backoff, Conn, Fault, Target, Timeouts};

/// The scripts (sent once per connection, then called by their hash).
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(entry::CLAIM));
static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(entry::PUT));

/// Commands per pipeline when refreshing TTLs.
const REFRESH_CHUNK: usize = 1_000;

/// The refresh period for a recovery window: a quarter of it, between
/// 250 ms and 30 s. A session's TTL is the window plus this.
pub(crate) fn refresh_period(window: Duration) -> Duration {
    (window / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

/// What a shard asks of the Redis thread.
pub(crate) enum Request {
    /// Write (or, with `value` None, delete) a session if it is absent or
    /// still `owner`'s.
    Put {
        pid: Box<str>,
        owner: Box<str>,
        value: Option<Vec<u8>>,
    },
    /// Claim `pid` for `user` under a new owner; the answer goes to the
    /// connection `conn` as [`ReplayStep::Claimed`].
    Claim {
        pid: Box<str>,
        user: Box<str>,
        owner: Box<str>,
        conn: u64,
    },
    /// Renew the TTLs of these (live) sessions.
    Refresh(Vec<Box<str>>),
    /// Write these sessions (pid, owner, value) as [`Request::Put`] does,
    /// pipelined: a shard's live sessions after Redis came back or after
    /// a write of the shard was dropped.
    PutMany(Vec<(Box<str>, Box<str>, Vec<u8>)>),
    /// A connection ended and its session is kept for the window: counted
    /// against `recovery_max_sessions` (beyond it, the oldest is deleted).
    Dropped { pid: Box<str>, owner: Box<str> },
}

/// The shards' handle on the Redis thread.
pub(crate) struct Shared {
    tx: Sender<Request>,
    metrics: RecoveryMetrics,
    pub(crate) period: Duration,
}

/// The thread's settings (docs/configuration.md).
pub(crate) struct Settings {
    /// `recovery_window_ms`.
    pub window: Duration,
    /// `recovery_max_sessions`: sessions of ended connections kept.
    pub max_dropped: usize,
    /// `recovery_redis_queue`: requests the thread holds at most; a full
    /// queue answers a claim "not recovered" at once and drops a write.
    pub queue: usize,
    /// `recovery_redis_timeout_ms`: the longest wait for Redis on one
    /// command (and to connect): a stopped Redis holds claims (so their
    /// CONNECT replies) twice this at most (the command under way when
    /// the claim came, then its own), then they are not recovered.
    pub timeout: Duration,
    /// `redis_reconnect_max_ms`: the cap of the reconnect backoff.
    pub reconnect_max: Duration,
}

impl Shared {
    /// Starts the thread.
    pub(crate) fn start(
        target: impl Into<Target>,
        mesh: Arc<Mesh<Mail>>,
        settings: &Settings,
        metrics: RecoveryMetrics,
    ) -> std::io::Result<Arc<Self>> {
        let period = refresh_period(settings.window);
        let (tx, rx) = crossbeam_channel::bounded(settings.queue.max(1));
        let mut worker = Worker::new(target, mesh, settings);
        worker.metrics = metrics.clone();
        std::thread::Builder::new()
            .name("redis-sessions".into())
            .spawn(move || worker.run(&rx))?;
        Ok(Arc::new(Self {
            tx,
            metrics,
            period,
        }))
    }

    /// Queues a request; false if the queue is full (or the thread gone).
    pub(crate) fn send(&self, r: Request) -> bool {
        match self.tx.try_send(r) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.metrics.redis_dropped.inc();
                tracing::warn!("recovery sessions: Redis queue full, request dropped");
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

struct Worker {
    target: Target,
    con: Option<Conn>,
    backoff: Backoff,
    mesh: Arc<Mesh<Mail>>,
    ttl_ms: u64,
    /// Sessions whose connection ended, oldest first, with when: at most
    /// `max_dropped`, forgotten after the TTL.
    dropped: VecDeque<(Box<str>, Box<str>, Instant)>,
    max_dropped: usize,
    /// Redis errors since the last one logged (logged on a state change).
    errors: u64,
    /// Sessions whose last write failed (pid → owner): Redis may hold an
    /// older version (fewer channels). Deleted when Redis is back, before
    /// the shards write their live ones again, so a connection that ended
    /// meanwhile leaves no session that would restore the wrong channels.
    /// At most `queue` of them.
    unsure: HashMap<Box<str>, Box<str>>,
    queue: usize,
    timeout: Duration,
    metrics: RecoveryMetrics,
}

impl Worker {
    fn new(target: impl Into<Target>, mesh: Arc<Mesh<Mail>>, settings: &Settings) -> Self {
        let ttl = settings.window + refresh_period(settings.window);
        Self {
            target: target.into(),
            con: None,
            backoff: Backoff::new(settings.reconnect_max),
            mesh,
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            dropped: VecDeque::new(),
            max_dropped: settings.max_dropped,
            errors: 0,
            unsure: HashMap::new(),
            queue: settings.queue.max(1),
            timeout: settings.timeout,
            metrics: RecoveryMetrics::default(),
        }
    }

    fn run(mut self, rx: &Receiver<Request>) {
        // Ends when every shard (every sender) is gone.
        while let Ok(r) = rx.recv() {
            self.handle(r);
        }
    }

    fn handle(&mut self, r: Request) {
        match r {
            Request::Claim {
                pid,
                user,
                owner,
                conn,
            } => {
                let entry = self.claim(&pid, &user, &owner);
                let step = ReplayStep::Claimed { owner, entry };
                self.mesh.post_external(
                    shard_of_conn(conn),
                    ToConnShard::Replayed { conn, step }.into(),
                );
            }
            Request::Put { pid, owner, value } => self.put(&pid, &owner, value.as_deref()),
            Request::Refresh(pids) => self.refresh(&pids),
            Request::PutMany(puts) => self.put_many(&puts),
            Request::Dropped { pid, owner } => {
                let now = Instant::now();
                let ttl = Duration::from_millis(self.ttl_ms);
                while self
                    .dropped
                    .front()
                    .is_some_and(|(_, _, at)| now.duration_since(*at) > ttl)
                {
                    self.dropped.pop_front();
                }
                self.dropped.push_back((pid, owner, now));
                while self.dropped.len() > self.max_dropped {
                    if let Some((pid, owner, _)) = self.dropped.pop_front() {
                        self.put(&pid, &owner, None);
                    }
                }
            }
        }
    }

    /// The session of `pid`, if it is `user`'s, now `owner`'s; None if
    /// there is none, it is another user's, or Redis failed.
    fn claim(&mut self, pid: &str, user: &str, owner: &str) -> Option<Entry> {
        let (script, ttl) = (&*CLAIM, self.ttl_ms);
        let raw: Option<Vec<u8>> = self.with(|con| {
            script
                .key(entry::key(pid))
                .arg(entry::user_part(user))
                .arg(owner)
                .arg(ttl)
                .invoke(con)
        })?;
        match entry::decode(&raw?) {
            Ok(e) if e.user == user => Some(e),
            _ => {
                tracing::warn!("recovery sessions: an unreadable session in Redis; not recovered");
                None
            }
        }
    }

    fn put(&mut self, pid: &str, owner: &str, value: Option<&[u8]>) {
        let (script, ttl) = (&*PUT, self.ttl_ms);
        let done: Option<i64> = self.with(|con| {
            script
                .key(entry::key(pid))
                .arg(owner)
                .arg(value.unwrap_or_default())
                .arg(ttl)
                .invoke(con)
        });
        if done.is_none() {
            self.unsure(pid, owner);
        }
    }

    fn unsure(&mut self, pid: &str, owner: &str) {
        if self.unsure.len() < self.queue {
            self.unsure.insert(pid.into(), owner.into());
        }
    }

    /// Deletes the sessions whose write failed (if still their owner's),
    /// on a connection just made.
    fn forget_unsure(&mut self, con: &mut Conn) -> redis::RedisResult<()> {
        let unsure: Vec<_> = self.unsure.drain().collect();
        for chunk in unsure.chunks(REFRESH_CHUNK) {
            let cmds = chunk
                .iter()
                .map(|(pid, owner)| {
                    let mut call = PUT.key(entry::key(pid));
                    call.arg(&**owner).arg("").arg(self.ttl_ms);
                    redis::Cmd::invoke_script(&call)
                })
                .collect();
            if let Err(e) = con
                .load_script(&PUT)
                .and_then(|()| con.exec_pipelined(cmds))
            {
                // Still unsure: tried again at the next reconnect.
                self.unsure.extend(unsure);
                return Err(e);
            }
        }
        Ok(())
    }

    fn refresh(&mut self, pids: &[Box<str>]) {
        let ttl = self.ttl_ms;
        for chunk in pids.chunks(REFRESH_CHUNK) {
            let done = self.with(|con| {
                let cmds = chunk
                    .iter()
                    .map(|pid| redis::Cmd::pexpire(entry::key(pid), ttl as i64))
                    .collect();
                con.exec_pipelined(cmds)
            });
            if done.is_none() {
                return; // Redis away: the next period tries again
            }
        }
    }

    fn put_many(&mut self, puts: &[(Box<str>, Box<str>, Vec<u8>)]) {
        let ttl = self.ttl_ms;
        for (n, chunk) in puts.chunks(REFRESH_CHUNK).enumerate() {
            let done = self.with(|con| {
                let cmds = chunk
                    .iter()
                    .map(|(pid, owner, value)| {
                        let mut call = PUT.key(entry::key(pid));
                        call.arg(&**owner).arg(value.as_slice()).arg(ttl);
                        redis::Cmd::invoke_script(&call)
                    })
                    .collect();
                // The pipeline calls the script by its hash: a Redis that
                // restarted has to learn it first.
                con.load_script(&PUT)?;
                con.exec_pipelined(cmds)
            });
            if done.is_none() {
                // Redis away: what was not written is deleted when it is
                // back, and the live ones written again.
                for (pid, owner, _) in &puts[n * REFRESH_CHUNK..] {
                    self.unsure(pid, owner);
                }
                return;
            }
        }
    }

    /// Runs `f` on the connection, (re)connecting first if due. None when
    /// Redis is unreachable or failed: the connection is dropped and
    /// retried after a backoff; meanwhile requests fail at once.
    fn with<T>(&mut self, f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>) -> Option<T> {
        if self.con.is_none() {
            if !self.backoff.ready(Instant::now()) {
                return None;
            }
            match self.connect().and_then(|mut con| {
                if self.errors > 0 {
                    self.forget_unsure(&mut con)?;
                }
                Ok(con)
            }) {
                Ok(con) => {
                    if self.errors > 0 {
                        tracing::info!(
                            errors = self.errors,
                            "recovery sessions: Redis reachable again; live sessions rewritten"
                        );
                        // Writes and refreshes failed meanwhile, and Redis
                        // may have restarted empty: every shard writes its
                        // live sessions again.
                        for shard in 0..self.mesh.shards() {
                            self.mesh
                                .post_external(shard, ToConnShard::RewriteSessions.into());
                        }
                    }
                    self.errors = 0;
                    self.backoff.succeeded();
                    self.con = Some(con);
                }
                Err(e) => {
                    self.failed(&e);
                    return None;
                }
            }
        }
        let con = self.con.as_mut()?;
        match f(con) {
            Ok(v) => Some(v),
            Err(e) => {
                self.failed(&e);
                None
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<Conn> {
        self.target.connect(Timeouts::all(self.timeout))
    }

    fn failed(&mut self, e: &redis::RedisError) {
        if self.errors == 0 {
            // The first error of an outage is logged; the count comes
            // with the recovery.
            tracing::warn!(error = %e, fault = %Fault::of(e), "recovery sessions: Redis failed; sessions are not recovered meanwhile");
        }
        self.errors += 1;
        self.metrics.redis_errors.inc();
        self.con = None;
        self.backoff.failed(Instant::now());
    }
}

#[cfg(test)]
mod tests;
