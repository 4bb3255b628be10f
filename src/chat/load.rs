//! Channel cache on the owner: loading a channel's record and members from
//! the store on first use (commands wait in order behind the load),
//! reloading after REST changes it, refusing what waited when the channel
//! is missing or the store is down, and evicting entries not in use.

use std::sync::Arc;
use std::time::Instant;

use super::mail::{LoadedChannel, ToChannelOwner, ToConnShard, shard_of_conn};
use super::owner::{Cache, ChannelInfo, ChannelOwner, ChannelState};
use super::{ChatError, ErrorCode};

/// The channel a command needs loaded before it can run.
fn needs_channel(mail: &ToChannelOwner) -> Option<&Arc<str>> {
    match mail {
        ToChannelOwner::Join { channel, .. } => Some(channel),
        ToChannelOwner::Publish(p) => Some(&p.message.channel),
        ToChannelOwner::Typing { channel, .. } => Some(channel),
        // A leave never waits: subscriber counts must drop even when the
        // channel was deleted or the store is down.
        _ => None,
    }
}

impl ChannelOwner {
    /// Runs `mail` now if its channel is loaded; otherwise queues it behind
    /// the load (starting one if needed). Returns the mail when it can run.
    pub(super) fn when_loaded(&self, mail: ToChannelOwner) -> Option<ToChannelOwner> {
        let Some(channel) = needs_channel(&mail).cloned() else {
            return Some(mail);
        };
        let now = Instant::now();
        let mut channels = self.channels.borrow_mut();
        // The common case, a cached channel: one lookup.
        if let Some(st) = channels.get_mut(&channel)
            && matches!(st.cache, Cache::Ready(_))
        {
            st.used = now;
            return Some(mail);
        }
        let added = !channels.contains_key(&channel);
        if added && matches!(mail, ToChannelOwner::Typing { .. }) {
            // A connection the owner counted keeps its channel's entry, so
            // without one this typist's join was refused or never came:
            // nothing to load, and nothing to keep.
            drop(channels);
            let e = ChatError::new(ErrorCode::Forbidden, "join the channel first");
            self.refuse(mail, e);
            return None;
        }
        let st = channels
            .entry(channel.clone())
            .or_insert_with(|| ChannelState::new(now));
        st.used = now;
        let start = match &mut st.cache {
            Cache::Gone => {
                drop(channels);
                self.refuse(mail, ChatError::new(ErrorCode::NotFound, "no such channel"));
                return None;
            }
            Cache::Loading { waiting, .. } => {
                waiting.push(mail);
                false
            }
            // Absent (a cached channel returned above).
            cache => {
                *cache = Cache::Loading {
                    waiting: vec![mail],
                    stale: false,
                };
                true
            }
        };
        let over = channels.len() > self.cache_trim_at.get();
        drop(channels);
        if start {
            self.load_channel(channel);
        }
        if added && over {
            self.trim_cache(now);
        }
        None
    }

    fn load_channel(&self, channel: Arc<str>) {
        let mesh = self.hub.mail.mesh().clone();
        let me = self.hub.mail.shard();
        let id = channel.clone();
        let started = self.hub.store.read_then(move |s| {
            let result = (|| {
                let Some(record) = s.channel(&id)? else {
                    return Ok(None);
                };
                let members = s.member_ids(&id)?;
                let last_seq = s.last_seq(&id)?;
                Ok(Some(LoadedChannel {
                    record,
                    members,
                    last_seq,
                }))
            })()
            .map_err(|e: crate::store::StoreError| e.to_string());
            mesh.post_external(
                me,
                ToChannelOwner::ChannelLoaded {
                    channel: id,
                    result,
                }
                .into(),
            );
        });
        if started.is_err() {
            let result = Err("store queue full".to_owned());
            self.channel_loaded(channel, result);
        }
    }

    pub(super) fn channel_loaded(
        &self,
        channel: Arc<str>,
        result: Result<Option<LoadedChannel>, String>,
    ) {
        let waiting = {
            let mut channels = self.channels.borrow_mut();
            let Some(st) = channels.get_mut(&channel) else {
                return;
            };
            let waiting = match &mut st.cache {
                Cache::Loading { stale, .. } if *stale => {
                    // Changed while this load was under way: load again,
                    // the waiting commands stay queued behind it.
                    *stale = false;
                    drop(channels);
                    self.load_channel(channel);
                    return;
                }
                Cache::Loading { waiting, .. } => std::mem::take(waiting),
                _ => Vec::new(),
            };
            match &result {
                Ok(Some(l)) => {
                    // Only the first load's seq is free of commits made in
                    // this process that some shard may not have seen yet
                    // (sends wait for the load); a reload keeps it.
                    let last_seq = *st.base_seq.get_or_insert(l.last_seq);
                    st.cache = Cache::Ready(ChannelInfo {
                        kind: l.record.kind,
                        creator: l.record.owner_id.as_str().into(),
                        json: serde_json::to_string(&l.record).unwrap_or_default().into(),
                        members: l.members.iter().map(|m| Arc::from(m.as_str())).collect(),
                        last_seq,
                        num: l.record.num,
                        max_members: l.record.max_members,
                    });
                }
                // No such channel: nothing is kept for it, unless
                // connections are still counted in (it was deleted under
                // them); their leaves need the counts, later commands get
                // NOT_FOUND from `gone`.
                Ok(None) => {
                    st.cache = Cache::Gone;
                    if !st.in_use() {
                        channels.remove(&channel);
                    }
                }
                // The store failed: a state with nothing else in it goes,
                // so the next command tries again; a first load's seq is
                // kept for the reload.
                Err(_) => {
                    st.cache = Cache::Absent;
                    if !st.in_use() && st.base_seq.is_none() {
                        channels.remove(&channel);
                    }
                }
            }
            waiting
        };
        let error = match result {
            Ok(Some(_)) => None,
            Ok(None) => Some(ChatError::new(ErrorCode::NotFound, "no such channel")),
            Err(e) => {
                tracing::warn!(%channel, error = %e, "could not load channel");
                Some(ChatError::new(
                    ErrorCode::Unavailable,
                    "the store is unavailable; try again",
                ))
            }
        };
        for mail in waiting {
            match &error {
                None => self.handle(mail),
                Some(e) => self.refuse(mail, e.clone()),
            }
        }
    }

    /// Answers a command that cannot run with `error`.
    fn refuse(&self, mail: ToChannelOwner, error: ChatError) {
        match mail {
            ToChannelOwner::Join { channel, reply, .. } => {
                self.hub.post(
                    shard_of_conn(reply.conn),
                    ToConnShard::JoinFailed {
                        channel,
                        error,
                        reply,
                    },
                );
            }
            ToChannelOwner::Publish(p) => self.hub.answer_requester(p.requester, Err(error)),
            ToChannelOwner::Typing { reply, .. } => self.hub.send_reply(reply, Err(&error)),
            _ => {}
        }
    }

    /// REST changed the channel: drop the cache and reload it; commands
    /// queue behind the reload. A load already under way may have read the
    /// store before the change: its answer is dropped for a new load.
    pub(super) fn invalidate(&self, channel: Arc<str>) {
        let reload = match self
            .channels
            .borrow_mut()
            .get_mut(&channel)
            .map(|st| &mut st.cache)
        {
            Some(Cache::Loading { stale, .. }) => {
                *stale = true;
                false
            }
            Some(cache @ Cache::Ready(_)) => {
                *cache = Cache::Loading {
                    waiting: Vec::new(),
                    stale: false,
                };
                true
            }
            _ => false,
        };
        if reload {
            self.load_channel(channel);
        }
    }

    /// Evicts entries not in use ([`ChannelState::in_use`]) that saw no
    /// command for `channel_cache_idle`, then, while the cache holds more
    /// than `channel_cache_max`, the least recently used of the rest, down
    /// to 7/8 of the maximum so that the next trim is some inserts away.
    /// Entries in use are never evicted: they hold subscriptions, typing
    /// or a load and its waiting commands.
    pub(super) fn trim_cache(&self, now: Instant) {
        let (idle, max) = (
            self.hub.limits.channel_cache_idle,
            self.hub.limits.channel_cache_max,
        );
        let mut channels = self.channels.borrow_mut();
        channels.retain(|_, st| st.in_use() || now.saturating_duration_since(st.used) < idle);
        if channels.len() > max {
            let mut lru: Vec<(Instant, Arc<str>)> = channels
                .iter()
                .filter(|(_, st)| !st.in_use())
                .map(|(k, st)| (st.used, k.clone()))
                .collect();
            let excess = (channels.len() - (max - max / 8)).min(lru.len());
            if excess > 0 && excess < lru.len() {
                lru.select_nth_unstable(excess - 1);
            }
            for (_, channel) in lru.into_iter().take(excess) {
                channels.remove(&channel);
            }
        }
        // Anything left over the maximum is in use; trimming again is then
        // only worth it after another eighth of the maximum was added.
        let len = channels.len();
        self.cache_trim_at
            .set(if len <= max { max } else { len + max / 8 });
    }
}
