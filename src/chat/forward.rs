//! Connection side: a checked command from one of the shard's
//! connections (join, leave, send, typing), handed to the channel's owner.
//! Moved out of `conn.rs`, which keeps the connection's life (CONNECT,
//! events in, disconnect).

use std::rc::Rc;
use std::sync::Arc;

use super::commands::Command;
use super::conn::{ChatConn, ConnSide, JoinState, answer};
use super::mail::{Publish, ReplyTo, Requester, ToChannelOwner};
use super::{ChatError, ErrorCode};

impl ConnSide {
    /// Runs a parsed command: checks what this shard can check, then asks
    /// the owner. Errors returned here are replied to by the caller.
    pub(super) fn command(
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
                // A repeat join (joined or joining already) only wants the
                // ack with lastSeq: the owner goes by its own count.
                {
                    let mut chans = conn.channels.borrow_mut();
                    if !chans.contains_key(&channel) {
                        let max = self.hub.limits.max_channels_per_connection;
                        if chans.len() >= max {
                            return Err(ChatError::new(
                                ErrorCode::Forbidden,
                                format!("a connection may join at most {max} channels"),
                            ));
                        }
                        chans.insert(channel.clone(), JoinState::Joining);
                        drop(chans);
                        self.write_session(conn);
                    }
                }
                self.send_join(conn, channel, reply_to);
            }
            Command::Leave { channel } => {
                let Some(state) = conn.channels.borrow_mut().remove(&channel) else {
                    answer(conn, ack, Ok(r#"{"ok":true}"#));
                    return Ok(());
                };
                self.write_session(conn);
                self.unsubscribe(conn, channel, state, Some(reply_to));
            }
            Command::Send(mut message) => {
                // The shard's shared name rather than the parsed copy.
                message.channel = self.joined(conn, &message.channel)?;
                let shard = self.hub.owner_shard(&message.channel);
                self.hub.post(
                    shard,
                    ToChannelOwner::Publish(Box::new(Publish {
                        message,
                        user: conn.user.clone(),
                        requester: Requester::Conn(reply_to),
                        received: std::time::Instant::now(),
                    })),
                );
            }
            Command::Typing {
                channel,
                typing,
                thread,
            } => {
                let channel = self.joined(conn, &channel)?;
                let shard = self.hub.owner_shard(&channel);
                self.hub.post(
                    shard,
                    ToChannelOwner::Typing {
                        channel,
                        user: conn.user.clone(),
                        typing,
                        thread,
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
        let shard = self.hub.owner_shard(&channel);
        let user = conn.user.clone();
        self.hub.post(
            shard,
            ToChannelOwner::Join {
                channel,
                user,
                reply,
            },
        );
    }

    /// Stops delivering `channel` to the connection and tells the owner.
    pub(super) fn unsubscribe(
        &self,
        conn: &ChatConn,
        channel: Arc<str>,
        state: JoinState,
        reply: Option<ReplyTo>,
    ) {
        if state == JoinState::Delivering {
            self.unsubscribe_local(&channel, conn.link.id);
        }
        let shard = self.hub.owner_shard(&channel);
        let (user, id) = (conn.user.clone(), conn.link.id);
        self.hub.post(
            shard,
            ToChannelOwner::Leave {
                channel,
                user,
                conn: id,
                reply,
            },
        );
    }
}
