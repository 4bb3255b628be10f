//! User owner: presence. Counts each user's connections across shards and
//! remembers the channels the user is a member of, so that when the user's
//! first connection arrives or last one leaves, a `presence_update` reaches
//! the members of those channels and the user's own connections.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use super::Chat;
use super::mail::{Mail, shard_of_conn};
use super::message::{self, event_frame};

#[derive(Default)]
pub(super) struct UserState {
    conns: Vec<u64>,
    channels: HashSet<Arc<str>>,
}

impl Chat {
    pub(super) fn user_online(&self, user: Arc<str>, conn: u64) {
        let mut users = self.users.borrow_mut();
        let u = users.entry(user.clone()).or_default();
        u.conns.push(conn);
        if u.conns.len() == 1 {
            self.presence(&user, u, "online");
        }
    }

    pub(super) fn user_offline(&self, user: Arc<str>, conn: u64) {
        let mut users = self.users.borrow_mut();
        let Some(u) = users.get_mut(&user) else {
            return;
        };
        let before = u.conns.len();
        u.conns.retain(|c| *c != conn);
        if before > 0 && u.conns.is_empty() {
            self.presence(&user, u, "offline");
            if u.channels.is_empty() {
                users.remove(&user);
            }
        }
    }

    pub(super) fn user_member(&self, user: Arc<str>, channel: Arc<str>, added: bool) {
        let mut users = self.users.borrow_mut();
        if added {
            users.entry(user).or_default().channels.insert(channel);
        } else if let Some(u) = users.get_mut(&user) {
            u.channels.remove(&channel);
            if u.channels.is_empty() && u.conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// Sends one `presence_update` to each of the user's channels (through
    /// their owners) and to the user's own connections.
    fn presence(&self, user: &str, u: &UserState, status: &str) {
        let body =
            json!({"userId": user, "status": status, "lastSeen": message::now()}).to_string();
        let frame: tungstenite::Utf8Bytes = event_frame("presence_update", &body).into();
        for channel in &u.channels {
            let mail = Mail::ChannelEmit {
                channel: channel.clone(),
                frame: frame.clone(),
            };
            self.post(self.owner(channel), mail);
        }
        for &conn in &u.conns {
            self.post(
                shard_of_conn(conn),
                Mail::ToConn {
                    conn,
                    frame: frame.clone(),
                },
            );
        }
    }
}
