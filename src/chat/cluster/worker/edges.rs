//! The worker's answers to the shards: each count change's edge (a
//! user's first connection or last, a subscription's first or last) to
//! the owner shard that announces it, and a reaped instance's edges.

use std::sync::Arc;

use redis::RedisResult;

use super::super::scripts::{Kind, Reaped, Totals, split_sub};
use super::{Key, Worker};
use crate::chat::mail::{ToChannelOwner, ToUserOwner};
use crate::chat::owner_of;
use crate::redis_link::Conn;

impl Worker {
    /// A reaped instance's users and subscriptions that are now gone
    /// cluster-wide: announced by this instance's owners, as its own edges.
    pub(super) fn announce_reaped(&self, c: &mut Conn, reaped: Reaped) -> RedisResult<()> {
        for (kind, field) in reaped.gone {
            match kind {
                Kind::Users => {
                    let list = self.scripts.list(c, &field)?;
                    self.to_user(field.as_str().into(), false, Some(false), list);
                }
                Kind::Subs => {
                    if let Some((channel, user)) = split_sub(&field) {
                        self.sub_edge(channel.into(), user.into(), false);
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands a count change's answer to its owner shard.
    pub(super) fn answer(&self, key: &Key, totals: Totals, list: Vec<String>) {
        match key {
            (Kind::Users, user, _) => {
                self.to_user(user.clone(), totals.after > 0, totals.edge(), list)
            }
            (Kind::Subs, user, Some(channel)) => {
                if let Some(joined) = totals.edge() {
                    self.sub_edge(channel.clone(), user.clone(), joined);
                }
            }
            (Kind::Subs, _, None) => {}
        }
    }

    pub(super) fn to_user(
        &self,
        user: Arc<str>,
        online: bool,
        edge: Option<bool>,
        list: Vec<String>,
    ) {
        let shard = owner_of(&user, self.mesh.shards());
        let channels = list.into_iter().map(Arc::from).collect();
        let mail = ToUserOwner::Cluster {
            user,
            online,
            edge,
            channels,
        };
        self.mesh.post_external(shard, mail.into());
    }

    pub(super) fn sub_edge(&self, channel: Arc<str>, user: Arc<str>, joined: bool) {
        let shard = owner_of(&channel, self.mesh.shards());
        let mail = ToChannelOwner::SubEdge {
            channel,
            user,
            joined,
        };
        self.mesh.post_external(shard, mail.into());
    }
}
