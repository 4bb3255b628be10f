//! Connection side of chat ([`ConnSide`]): authentication at CONNECT, and
//! commands from the shard's own connections, checked here and sent on to
//! the channel owner. What comes back and what is delivered to them is in
//! `deliver.rs` and `commit.rs`; recovery in `recovery.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::commands;
use super::mail::ToUserOwner;
use super::message::reply_frame;
use super::recovery::SessionStore;
use super::recovery::offset::Positions;
use super::{ChatError, ErrorCode, Hub};
use crate::protocol::{
    CloseReason, DisconnectReason, Event, Handshake, Link, Pace, PaceLimits, Refusal, Verdict,
};

/// How far a connection's join of a channel got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinState {
    /// Sent to the channel owner, not yet confirmed: nothing is delivered.
    Joining,
    /// Confirmed: the connection is among the shard's subscribers.
    Delivering,
}

/// One authenticated connection on the main namespace.
pub(crate) struct ChatConn {
    pub link: Rc<Link>,
    pub user: Arc<str>,
    /// Channels of this connection, and how far each join got.
    pub(super) channels: RefCell<HashMap<Arc<str>, JoinState>>,
    /// Private session id for connection state recovery (a refused
    /// recovery replaces the claimed one).
    pub(super) pid: RefCell<String>,
    /// Replay positions for this session if the client has no offset.
    pub(super) start_pos: RefCell<Positions>,
    /// Set while a recovered session is being restored.
    pub(super) recovery: RefCell<Option<super::recovery::Recovery>>,
    /// Cleared when a recovery could not be completed: the session is then
    /// not kept again, or the client would retry the same failing recovery
    /// forever; it starts fresh and catches up through history.
    pub(super) resumable: Cell<bool>,
    /// With Redis: which connection holds the pid (a random token), so
    /// that a stale connection elsewhere on the same pid cannot overwrite
    /// the session once this one has claimed it. Empty without Redis.
    pub(super) owner: Box<str>,
    /// Speaks the Gatrix dialect (its token was the Gatrix backend's):
    /// `gatrix/`. Such a connection is never recovered (the Gatrix client
    /// does not ask) and subscribes in `ConnSide::gx_subs`.
    pub(super) gatrix: bool,
    /// False while a Gatrix CONNECT waits for the directory to know its
    /// user (`gatrix_require_known_users`, `gatrix/known.rs`): its CONNECT
    /// reply is held on the link, it is not counted nor online, and its
    /// events are refused.
    pub(super) admitted: Cell<bool>,
    /// The sid of a held CONNECT reply, for `connected` once admitted.
    pub(super) held_sid: RefCell<Option<Box<str>>>,
}

/// The connection side of one shard: its authenticated connections,
/// their subscriptions, and delivery to them (`deliver.rs`,
/// [`ConnSide::committed`]), and their recovery (`recovery.rs`).
pub(super) struct ConnSide {
    pub(super) hub: Rc<Hub>,
    pub(super) sessions: SessionStore,
    /// With Redis: when this shard last renewed its sessions' TTLs.
    pub(super) refreshed: Cell<Instant>,
    /// With Redis: every live session is to be written again at the next
    /// refresh (Redis came back, or a write was dropped on a full queue).
    pub(super) rewrite_due: Cell<bool>,
    /// One clock for every connection's rate limiter: creating a clock
    /// calibrates it (cpuid, TSC), far too slow to do per connection.
    clock: governor::clock::DefaultClock,
    /// This shard's authenticated connections.
    pub(super) conns: RefCell<HashMap<u64, Rc<ChatConn>>>,
    /// Local subscribers per channel.
    pub(super) subs: RefCell<HashMap<Arc<str>, Vec<Rc<Link>>>>,
    /// Local subscribers per channel that speak the Gatrix dialect: sent
    /// the same events translated, once per frame (`gatrix/frames.rs`).
    pub(super) gx_subs: RefCell<HashMap<Arc<str>, Vec<Rc<Link>>>>,
    /// The numbers of the channels Gatrix connections here use.
    pub(super) nums: RefCell<super::gatrix::Nums>,
    /// The last seq this shard has seen committed per channel; a join
    /// ack's lastSeq is exact against it.
    pub(super) seen: RefCell<HashMap<Arc<str>, u64>>,
    /// The highest commit position seen in each sequencing partition,
    /// where a new session's replay would start.
    pub(super) last_pos: RefCell<Vec<u64>>,
    /// `last_pos` as last handed out: shared by the sessions started
    /// until the next batch changes it.
    snapshot: RefCell<Option<Positions>>,
    /// Restored connections whose offset is ahead of this shard
    /// (`recovery::floor`).
    pub(super) floors: RefCell<super::recovery::Floors>,
}

impl ConnSide {
    pub(super) fn new(hub: Rc<Hub>, sessions: SessionStore) -> Self {
        // With Redis, the bus starts applying after the database's last
        // positions: a session made before the first batch must not start
        // from 0. Without Redis: 0, as always.
        let start = hub.limits.start_positions.to_vec();
        Self {
            hub,
            sessions,
            refreshed: Cell::new(Instant::now()),
            rewrite_due: Cell::new(false),
            clock: governor::clock::DefaultClock::default(),
            conns: RefCell::default(),
            subs: RefCell::default(),
            gx_subs: RefCell::default(),
            nums: RefCell::default(),
            seen: RefCell::default(),
            last_pos: RefCell::new(start),
            snapshot: RefCell::default(),
            floors: RefCell::default(),
        }
    }

    /// The number of sequencing partitions (the length of every offset).
    pub(super) fn partitions(&self) -> usize {
        self.hub.limits.start_positions.len()
    }

    /// What this shard has applied, per partition, as a shared snapshot.
    pub(super) fn positions(&self) -> Positions {
        self.snapshot
            .borrow_mut()
            .get_or_insert_with(|| Positions::from(self.last_pos.borrow().as_slice()))
            .clone()
    }

    /// A committed message of `partition` at `pos` was applied.
    pub(super) fn applied(&self, partition: u32, pos: u64) {
        if let Some(p) = self.last_pos.borrow_mut().get_mut(partition as usize)
            && *p < pos
        {
            *p = pos;
            self.snapshot.borrow_mut().take();
        }
    }

    /// Number of connections, for logs.
    pub(super) fn len(&self) -> usize {
        self.conns.borrow().len()
    }

    pub(super) fn connect(
        &self,
        link: &Rc<Link>,
        hs: &Handshake,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<Rc<ChatConn>, Refusal> {
        // The connection's rate limiter, from its first CONNECT (whatever
        // its outcome) for as long as the WebSocket lasts: commands and
        // namespace CONNECTs and DISCONNECTs share it.
        let l = &self.hub.limits;
        let limits = PaceLimits {
            per_sec: l.rate_per_sec,
            burst: l.rate_burst,
            disconnect_after: l.rate_disconnect_after,
        };
        link.pace_or_init(|| Pace::new(limits, &self.clock));
        if nsp != "/" {
            return Err(Refusal::InvalidNamespace);
        }
        let token = auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| hs.bearer.clone())
            .or_else(|| hs.query("token").map(str::to_owned))
            // An empty token (`auth: {token: ""}`, an unset variable) is
            // none: TOKEN_MISSING says more than TOKEN_INVALID.
            .filter(|t| !t.is_empty());
        // A token with the Gatrix backend's issuer is checked as one, and
        // the connection speaks its dialect (docs/protocol.md).
        let gatrix = token
            .as_deref()
            .and_then(|t| self.hub.auth.gatrix().filter(|g| g.claims_issuer(t)));
        let verified = match (token.as_deref(), gatrix) {
            (Some(t), Some(g)) => g.verify(t),
            (Some(t), None) => self.hub.auth.verify(t),
            (None, _) => Err(crate::auth::AuthError::Missing),
        };
        let gatrix = gatrix.is_some();
        let claims = match verified {
            Ok(c) => c,
            Err(e) => {
                self.hub.metrics.auth_failures_ws.inc();
                tracing::debug!(conn = link.id, peer = %link.peer, why = %e, "connect refused");
                self.hub.metrics.refusals.refused(
                    crate::metrics::Refused::token(&e),
                    link.peer.ip(),
                    || format!("Socket.IO CONNECT: {e}"),
                );
                // `message` stays what it always was (clients compare
                // it); `data.reason` says why (docs/protocol.md, Refusal).
                let mut data = serde_json::Map::new();
                data.insert("code".into(), ErrorCode::Unauthorized.as_str().into());
                e.refusal().add_to(&mut data);
                let message = match gatrix {
                    true => crate::auth::gatrix_refusal_message(&e),
                    false => "unauthorized",
                };
                return Err(Refusal::Refused {
                    message: message.into(),
                    data: Some(Value::Object(data)),
                });
            }
        };
        // A reconnect presenting a live session of the same user gets it
        // back: same pid, same channels, missed messages replayed.
        // The channels come back once the store has counted the gap (it
        // may be too large to replay: then this is a fresh session).
        // A Gatrix user the directory may not know: the store is asked,
        // and the CONNECT reply waits for its answer (`gatrix/known.rs`).
        let vetting = gatrix && self.vet_user(link, &claims.sub)?;
        let claim =
            super::recovery::Claim::from_auth(auth.as_ref(), self.partitions()).filter(|_| !gatrix);
        let owner: Box<str> = match &self.sessions {
            SessionStore::Shared(_) => super::recovery::new_owner().into(),
            SessionStore::Local(_) => Box::default(),
        };
        let restored = claim
            .as_ref()
            .and_then(|c| self.reclaim(c, &claims.sub, &owner, link));
        let (pid, start_pos, recovery) = match (claim, restored) {
            (Some(c), Some((r, after))) => (c.pid, after, Some(r)),
            _ => (crate::ids::random_token(15), self.positions(), None),
        };
        let conn = Rc::new(ChatConn {
            link: link.clone(),
            user: Arc::from(claims.sub.as_str()),
            channels: RefCell::new(HashMap::new()),
            pid: RefCell::new(pid),
            start_pos: RefCell::new(start_pos),
            recovery: RefCell::new(recovery),
            resumable: Cell::new(!gatrix),
            owner,
            gatrix,
            admitted: Cell::new(!vetting),
            held_sid: RefCell::default(),
        });
        self.conns.borrow_mut().insert(link.id, conn.clone());
        // The connection's span (shard::run) names its user from now on.
        tracing::Span::current().record("user", &*conn.user);
        if vetting {
            return Ok(conn);
        }
        self.admit(&conn);
        Ok(conn)
    }

    /// The connection counts from now on: metrics, its user online, its
    /// span. Its session was written (Redis) if it has one.
    pub(super) fn admit(&self, conn: &Rc<ChatConn>) {
        // Redis: a fresh session is written now (a claimed one once
        // restored), so that it survives this instance.
        self.write_session(conn);
        self.hub.metrics.connections.inc();
        let user = conn.user.clone();
        self.hub.post(
            self.hub.owner_shard(&user),
            ToUserOwner::Online {
                user,
                conn: conn.link.id,
            },
        );
    }

    pub(super) fn event(&self, conn: &Rc<ChatConn>, ev: Event) {
        match conn.link.pace_check() {
            Verdict::Allowed => {}
            Verdict::Refused => {
                self.hub.metrics.rate_limited.inc();
                return answer(conn, ev.ack_id, Err(&rate_error()));
            }
            Verdict::Exceeded => {
                self.hub.metrics.rate_limited.inc();
                return conn.link.close(CloseReason::RateLimited);
            }
        }
        if !conn.admitted.get() {
            let e = ChatError::new(
                ErrorCode::Unauthorized,
                "the CONNECT is not answered yet: wait for it",
            );
            return answer(conn, ev.ack_id, Err(&e));
        }
        if conn.gatrix {
            return self.gatrix_event(conn, ev);
        }
        let result = commands::parse(&ev.name, &ev.args, self.hub.limits.max_message_length)
            .and_then(|cmd| self.command(conn, cmd, ev.ack_id));
        if let Err(e) = result {
            answer(conn, ev.ack_id, Err(&e));
        }
    }

    pub(super) fn rate_limited(&self) -> Refusal {
        self.hub.metrics.rate_limited.inc();
        let e = rate_error();
        Refusal::Refused {
            message: e.message.clone(),
            data: Some(json!({"code": e.code.as_str()})),
        }
    }

    pub(super) fn pid(&self, conn: &Rc<ChatConn>) -> Option<String> {
        (!conn.gatrix).then(|| conn.pid.borrow().clone())
    }

    /// After the CONNECT reply: a Gatrix connection is told `connected`,
    /// and its user is looked up in the directory when not there yet (one
    /// store read per connection, so that its messages carry its name;
    /// never one per message). A busy store skips it.
    pub(super) fn connected(&self, conn: &Rc<ChatConn>, sid: &str) {
        if !conn.admitted.get() {
            // Said once admitted (`gatrix/known.rs`), never if refused.
            *conn.held_sid.borrow_mut() = Some(sid.into());
            return;
        }
        if conn.gatrix {
            let frame = super::gatrix::connected_frame(&self.hub.limits.server_id, sid);
            let _ = conn.link.push_text(frame);
            let dir = &self.hub.limits.directory;
            if !dir.contains(&conn.user) {
                let (dir, user) = (dir.clone(), conn.user.clone());
                let _ = self.hub.store.read_then(move |s| {
                    if let Ok(Some(u)) = s.user(&user) {
                        dir.put(&u);
                    }
                });
            }
        }
    }

    pub(super) fn disconnect(&self, conn: Rc<ChatConn>, reason: DisconnectReason) {
        self.conns.borrow_mut().remove(&conn.link.id);
        if !conn.admitted.get() {
            // Never counted, never online, in no channel (`gatrix/known.rs`).
            return;
        }
        self.floors.borrow_mut().remove(&conn.link.id);
        self.hub.metrics.connections.dec();
        let channels: Vec<(Arc<str>, JoinState)> = conn.channels.borrow_mut().drain().collect();
        // A dropped connection may come back; one that said goodbye (`41`)
        // will not.
        if reason != DisconnectReason::ClientDisconnect && conn.resumable.get() {
            self.keep_session(&conn, channels.iter().map(|(c, _)| c.clone()).collect());
        } else {
            self.forget_session(&conn);
        }
        self.end_recovery(&conn);
        for (channel, state) in channels {
            // Even a pending join is undone: the owner handles our Join
            // before this Leave, so its counts stay right.
            self.unsubscribe(&conn, channel, state, None);
        }
        let user = conn.user.clone();
        self.hub.post(
            self.hub.owner_shard(&user),
            ToUserOwner::Offline {
                user,
                conn: conn.link.id,
            },
        );
    }

    pub(super) fn closed(&self, reason: CloseReason) {
        self.hub.metrics.disconnected(reason);
    }
}

fn rate_error() -> ChatError {
    ChatError::new(ErrorCode::RateLimited, "too many commands; slow down")
}

/// Queues a command's reply on the connection itself.
pub(super) fn answer(conn: &ChatConn, ack: Option<u64>, result: Result<&str, &ChatError>) {
    if let Some(frame) = reply_frame(ack, result) {
        let _ = conn.link.push_text(frame);
    }
}
