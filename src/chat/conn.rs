//! Connection side of chat: authentication at CONNECT, commands from the
//! shard's own connections, and delivery of frames to them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::protocol::Text as Utf8Bytes;
use serde_json::{Value, json};

use super::commands::{self, Command};
use super::mail::{Mail, Origin, Publish, ReplyTo, shard_of_conn};
use super::message::reply_frame;
use super::{Chat, ChatError, ErrorCode};
use crate::protocol::{
    CloseReason, DisconnectReason, Event, Frame, Handler, Handshake, Link, Pace, PaceLimits,
    Refusal, Verdict,
};

/// One authenticated connection on the main namespace.
pub(crate) struct ChatConn {
    pub link: Rc<Link>,
    pub user: Arc<str>,
    /// Channels of this connection: `false` while the owner has not yet
    /// confirmed the subscription, `true` once delivering.
    pub(super) channels: RefCell<HashMap<Arc<str>, bool>>,
    /// Private session id for connection state recovery (a refused
    /// recovery replaces the claimed one).
    pub(super) pid: RefCell<String>,
    /// Replay position for this session if the client has no offset.
    pub(super) start_pos: Cell<u64>,
    /// Set while a recovered session is being restored.
    pub(super) recovery: RefCell<Option<super::recovery::Recovery>>,
    /// Cleared when a recovery could not be completed: the session is then
    /// not kept again, or the client would retry the same failing recovery
    /// forever; it starts fresh and catches up through history.
    pub(super) resumable: Cell<bool>,
}

impl Handler for Chat {
    type Socket = Rc<ChatConn>;

    fn connect(
        &self,
        link: &Rc<Link>,
        hs: &Handshake,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<Rc<ChatConn>, Refusal> {
        // The connection's rate limiter, from its first CONNECT (whatever
        // its outcome) for as long as the WebSocket lasts: commands and
        // namespace CONNECTs and DISCONNECTs share it.
        let l = &self.limits;
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
        let verified = match token.as_deref() {
            Some(t) => self.auth.verify(t),
            None => Err(crate::auth::AuthError::Missing),
        };
        let claims = match verified {
            Ok(c) => c,
            Err(e) => {
                self.metrics.auth_failures_ws.inc();
                tracing::debug!(conn = link.id, peer = %link.peer, why = %e, "connect refused");
                self.metrics.refusals.refused(
                    crate::metrics::Refused::token(&e),
                    link.peer.ip(),
                    || format!("Socket.IO CONNECT: {e}"),
                );
                // `message` stays what it always was (clients compare
                // it); `data.reason` says why (docs/protocol.md, Refusal).
                let mut data = serde_json::Map::new();
                data.insert("code".into(), ErrorCode::Unauthorized.as_str().into());
                e.refusal().add_to(&mut data);
                return Err(Refusal::Refused {
                    message: "unauthorized".into(),
                    data: Some(Value::Object(data)),
                });
            }
        };
        // A reconnect presenting a live session of the same user gets it
        // back: same pid, same channels, missed messages replayed.
        // The channels come back once the store has counted the gap (it
        // may be too large to replay: then this is a fresh session).
        let claim = super::recovery::Claim::from_auth(auth.as_ref());
        let restored = claim
            .as_ref()
            .and_then(|c| self.reclaim(c, &claims.sub, link));
        let (pid, start_pos, recovery) = match (claim, restored) {
            (Some(c), Some((r, after))) => (c.pid, after, Some(r)),
            _ => (crate::ids::random_token(15), self.last_pos.get(), None),
        };
        let conn = Rc::new(ChatConn {
            link: link.clone(),
            user: Arc::from(claims.sub.as_str()),
            channels: RefCell::new(HashMap::new()),
            pid: RefCell::new(pid),
            start_pos: Cell::new(start_pos),
            recovery: RefCell::new(recovery),
            resumable: Cell::new(true),
        });
        self.conns.borrow_mut().insert(link.id, conn.clone());
        self.metrics.connections.inc();
        // The connection's span (shard::run) names its user from now on.
        tracing::Span::current().record("user", &*conn.user);
        let user = conn.user.clone();
        self.post(
            self.owner(&user),
            Mail::Online {
                user,
                conn: link.id,
            },
        );
        Ok(conn)
    }

    fn event(&self, conn: &Rc<ChatConn>, ev: Event) {
        match conn.link.pace_check() {
            Verdict::Allowed => {}
            Verdict::Refused => {
                self.metrics.rate_limited.inc();
                return answer(conn, ev.ack_id, Err(&rate_error()));
            }
            Verdict::Exceeded => {
                self.metrics.rate_limited.inc();
                return conn.link.close(CloseReason::RateLimited);
            }
        }
        let result = commands::parse(&ev.name, &ev.args, self.limits.max_message_length)
            .and_then(|cmd| self.command(conn, cmd, ev.ack_id));
        if let Err(e) = result {
            answer(conn, ev.ack_id, Err(&e));
        }
    }

    fn rate_limited(&self) -> Refusal {
        self.metrics.rate_limited.inc();
        let e = rate_error();
        Refusal::Refused {
            message: e.message.clone(),
            data: Some(json!({"code": e.code.as_str()})),
        }
    }

    fn pid(&self, conn: &Rc<ChatConn>) -> Option<String> {
        Some(conn.pid.borrow().clone())
    }

    fn disconnect(&self, conn: Rc<ChatConn>, reason: DisconnectReason) {
        self.conns.borrow_mut().remove(&conn.link.id);
        self.metrics.connections.dec();
        let channels: Vec<(Arc<str>, bool)> = conn.channels.borrow_mut().drain().collect();
        // A dropped connection may come back; one that said goodbye (`41`)
        // will not.
        if reason != DisconnectReason::ClientDisconnect && conn.resumable.get() {
            self.keep_session(&conn, channels.iter().map(|(c, _)| c.clone()).collect());
        }
        self.end_recovery(&conn);
        for (channel, delivering) in channels {
            // Even a pending join is undone: the owner handles our Join
            // before this Leave, so its counts stay right.
            self.unsubscribe(&conn, channel, delivering, None);
        }
        let user = conn.user.clone();
        self.post(
            self.owner(&user),
            Mail::Offline {
                user,
                conn: conn.link.id,
            },
        );
    }

    fn closed(&self, reason: CloseReason) {
        self.metrics.disconnected(reason);
    }
}

fn rate_error() -> ChatError {
    ChatError::new(ErrorCode::RateLimited, "too many commands; slow down")
}

/// Queues a command's reply on the connection itself.
fn answer(conn: &ChatConn, ack: Option<u64>, result: Result<&str, &ChatError>) {
    if let Some(frame) = reply_frame(ack, result) {
        let _ = conn.link.push_text(frame);
    }
}

impl Chat {
    /// Runs a parsed command: checks what this shard can check, then asks
    /// the owner. Errors returned here are replied to by the caller.
    fn command(
        &self,
        conn: &Rc<ChatConn>,
        cmd: Command,
        ack: Option<u64>,
    ) -> Result<(), ChatError> {
        let reply_to = ReplyTo {
            conn: conn.link.id,
            ack,
        };
        match cmd {
            Command::Join { channel } => {
                let channel: Arc<str> = channel.into();
                // A repeat join (joined or joining already) only wants the
                // ack with lastSeq: the owner goes by its own count.
                {
                    let mut chans = conn.channels.borrow_mut();
                    if !chans.contains_key(&channel) {
                        let max = self.limits.max_channels_per_connection;
                        if chans.len() >= max {
                            return Err(ChatError::new(
                                ErrorCode::Forbidden,
                                format!("a connection may join at most {max} channels"),
                            ));
                        }
                        chans.insert(channel.clone(), false);
                    }
                }
                self.send_join(conn, channel, reply_to);
            }
            Command::Leave { channel } => {
                let Some(delivering) = conn.channels.borrow_mut().remove(channel.as_str()) else {
                    answer(conn, ack, Ok(r#"{"ok":true}"#));
                    return Ok(());
                };
                self.unsubscribe(conn, channel.into(), delivering, Some(reply_to));
            }
            Command::Send(m) => {
                let channel = self.joined(conn, &m.channel)?;
                let owner = self.owner(&channel);
                self.post(
                    owner,
                    Mail::Publish(Box::new(Publish {
                        channel,
                        user: conn.user.clone(),
                        content: m.content,
                        kind: m.kind,
                        client_message_id: m.client_message_id,
                        reply_to: m.reply_to,
                        origin: Origin::Conn(reply_to),
                        received: std::time::Instant::now(),
                    })),
                );
            }
            Command::Typing { channel, typing } => {
                let channel = self.joined(conn, &channel)?;
                let owner = self.owner(&channel);
                self.post(
                    owner,
                    Mail::Typing {
                        channel,
                        user: conn.user.clone(),
                        typing,
                        reply: reply_to,
                    },
                );
            }
        }
        Ok(())
    }

    /// The connection's own handle on a channel it joined (or is joining:
    /// the owner sees the Join first, so sending right after is fine).
    fn joined(&self, conn: &ChatConn, channel: &str) -> Result<Arc<str>, ChatError> {
        conn.channels
            .borrow()
            .get_key_value(channel)
            .map(|(k, _)| k.clone())
            .ok_or_else(|| ChatError::new(ErrorCode::Forbidden, "join the channel first"))
    }

    /// Asks the channel's owner to count this connection in.
    pub(super) fn send_join(&self, conn: &ChatConn, channel: Arc<str>, reply: ReplyTo) {
        let owner = self.owner(&channel);
        let user = conn.user.clone();
        self.post(
            owner,
            Mail::Join {
                channel,
                user,
                reply,
            },
        );
    }

    /// Stops delivering `channel` to the connection and tells the owner.
    fn unsubscribe(
        &self,
        conn: &ChatConn,
        channel: Arc<str>,
        delivering: bool,
        reply: Option<ReplyTo>,
    ) {
        if delivering {
            self.unsubscribe_local(&channel, conn.link.id);
        }
        let owner = self.owner(&channel);
        let (user, id) = (conn.user.clone(), conn.link.id);
        self.post(
            owner,
            Mail::Leave {
                channel,
                user,
                conn: id,
                reply,
            },
        );
    }

    fn unsubscribe_local(&self, channel: &str, conn: u64) {
        let mut subs = self.subs.borrow_mut();
        if let Some(list) = subs.get_mut(channel) {
            list.retain(|l| l.id != conn);
            if list.is_empty() {
                subs.remove(channel);
            }
        }
    }

    /// The owner confirmed a subscription: deliver from now on, and ack.
    pub(super) fn conn_joined(
        &self,
        channel: Arc<str>,
        channel_json: &str,
        last_seq: u64,
        reply: ReplyTo,
    ) {
        let Some(conn) = self.conns.borrow().get(&reply.conn).cloned() else {
            return; // gone meanwhile; its disconnect already sent the Leave
        };
        if self.recovery_joined(&conn, &channel, Some(last_seq)) {
            return;
        }
        let newly = match conn.channels.borrow_mut().get_mut(&channel) {
            Some(delivering) if !*delivering => {
                *delivering = true;
                true
            }
            _ => false,
        };
        if newly {
            self.subs
                .borrow_mut()
                .entry(channel.clone())
                .or_default()
                .push(conn.link.clone());
        }
        // Every message with a higher seq reaches this shard after now, and
        // so the connection; every lower one already passed.
        let seen = self.seen.borrow().get(&channel).copied().unwrap_or(0);
        let last_seq = last_seq.max(seen);
        let body = format!(r#"{{"ok":true,"channel":{channel_json},"lastSeq":{last_seq}}}"#);
        answer(&conn, reply.ack, Ok(&body));
    }

    /// The owner refused a join: drop the pending subscription, answer.
    pub(super) fn conn_join_failed(&self, channel: Arc<str>, error: ChatError, reply: ReplyTo) {
        let Some(conn) = self.conns.borrow().get(&reply.conn).cloned() else {
            return;
        };
        {
            let mut chans = conn.channels.borrow_mut();
            if chans.get(&channel) == Some(&false) {
                chans.remove(&channel);
            }
        }
        if self.recovery_joined(&conn, &channel, None) {
            return;
        }
        answer(&conn, reply.ack, Err(&error));
    }

    /// A broadcast frame for this shard's subscribers of a channel. The
    /// same bytes go to every recipient.
    pub(super) fn deliver(&self, channel: &str, frame: Utf8Bytes, except: Option<u64>) {
        let subs = self.subs.borrow();
        let Some(list) = subs.get(channel) else {
            return;
        };
        for link in list {
            if Some(link.id) != except {
                // On overflow the link closes itself as a slow consumer.
                let _ = link.push(Frame::Text(frame.clone()));
            }
        }
    }

    pub(super) fn to_conn(&self, conn: u64, frame: Utf8Bytes) {
        debug_assert_eq!(shard_of_conn(conn), self.mail.shard());
        if let Some(c) = self.conns.borrow().get(&conn) {
            let _ = c.link.push(Frame::Text(frame));
        }
    }
}
