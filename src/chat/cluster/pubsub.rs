//! The subscriber thread: the other instances' events, handed to the
//! shards that own their channel or user.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::channel::oneshot;

use super::{ClusterMetrics, EVENTS, Envelope, Event};
use crate::chat::mail::{ToChannelOwner, ToUserOwner};
use crate::chat::{Mail, owner_of};
use crate::mailbox::Mesh;
use crate::redis_link::{Backoff, Fault, Target, Timeouts};

pub(super) struct Subscriber {
    pub me: String,
    pub target: Target,
    pub mesh: Arc<Mesh<Mail>>,
    pub metrics: ClusterMetrics,
    pub stop: Arc<AtomicBool>,
    /// Bumped by the worker on its reconnects: subscribe again.
    pub generation: Arc<AtomicU64>,
    /// The process's user directory (`Event::User`).
    pub directory: Arc<crate::chat::gatrix::Directory>,
    /// How long a quiet subscription goes before it is probed (PING).
    pub probe: Duration,
    /// REDIS_RECONNECT_MAX_MS: the cap of its reconnect backoff.
    pub reconnect_max: Duration,
}

impl Subscriber {
    pub(super) fn run(self) {
        let mut backoff = Backoff::new(self.reconnect_max);
        let mut first = true;
        // Tries since the last subscription that worked.
        let mut attempt = 0;
        while !self.stop.load(Ordering::Relaxed) {
            match self.session(first, attempt) {
                Ok(()) => return,
                Err(e) => {
                    self.metrics.subscribed.set(0);
                    if !first {
                        tracing::warn!(error = %e, fault = %Fault::of(&e),
                            "presence: subscription to Redis lost");
                    }
                    let now = std::time::Instant::now();
                    backoff.failed(now);
                    std::thread::sleep(backoff.remaining(now));
                }
            }
            attempt += 1;
            first = false;
        }
    }

    /// One subscription, until it fails (Err) or the process stops (Ok).
    fn session(&self, first: bool, attempt: usize) -> redis::RedisResult<()> {
        let mut conn = self.target.pubsub(attempt, Timeouts::all(self.probe * 3))?;
        let generation = self.generation.load(Ordering::Relaxed);
        let mut ps = conn.as_pubsub();
        ps.subscribe(EVENTS)?;
        ps.set_read_timeout(Some(self.probe))?;
        self.metrics.subscribed.set(1);
        if !first {
            self.metrics.reconnects.inc();
            self.resync();
        }
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            match ps.get_message() {
                Ok(msg) => self.deliver(msg.get_payload_bytes()),
                Err(e) if e.is_timeout() => {
                    if self.generation.load(Ordering::Relaxed) != generation {
                        return Err(std::io::Error::other("the worker reconnected").into());
                    }
                    // Quiet: make sure the connection is still alive.
                    ps.ping::<redis::Value>()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Events were missed while away: the shards drop their channel caches
    /// and re-read presence.
    pub(super) fn resync(&self) {
        // Directory changes were missed too.
        self.directory.clear();
        for shard in 0..self.mesh.shards() {
            self.mesh
                .post_external(shard, ToChannelOwner::Reconnected.into());
            self.mesh.post_external(shard, ToUserOwner::Reread.into());
        }
    }

    /// Hands an event to the shard that owns its channel or user.
    pub(super) fn deliver(&self, payload: &[u8]) {
        let envelope: Envelope = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(_) => {
                self.metrics.dropped.inc();
                return;
            }
        };
        if envelope.origin == self.me {
            return;
        }
        self.metrics.received.inc();
        let shards = self.mesh.shards();
        let (shard, mail): (usize, Mail) = match envelope.event {
            // No shard's business: the directory is the process's.
            Event::User { user } => {
                self.directory.forget(&user);
                return;
            }
            Event::Emit { channel, frame } => (
                owner_of(&channel, shards),
                ToChannelOwner::ChannelEmit {
                    channel: channel.into(),
                    frame: frame.into(),
                }
                .into(),
            ),
            Event::Presence {
                user,
                online,
                frame,
                channels,
            } => (
                owner_of(&user, shards),
                ToUserOwner::Remote {
                    user: user.into(),
                    online,
                    frame: frame.into(),
                    channels: channels.into_iter().map(Into::into).collect(),
                }
                .into(),
            ),
            Event::Invalidate { channel } => {
                // Nobody waits for a remote invalidation.
                let (done, _) = oneshot::channel();
                (
                    owner_of(&channel, shards),
                    ToChannelOwner::Invalidate {
                        channel: channel.into(),
                        done,
                    }
                    .into(),
                )
            }
            Event::Member {
                channel,
                user,
                added,
            } => (
                owner_of(&channel, shards),
                ToChannelOwner::Member {
                    channel: channel.into(),
                    user: user.into(),
                    added,
                }
                .into(),
            ),
        };
        self.mesh.post_external(shard, mail);
    }
}
