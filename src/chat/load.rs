//! Channel cache on the owner: loading a channel's record and members from
//! the store on first use (commands wait in order behind the load),
//! reloading after REST changes it, and refusing what waited when the
//! channel is missing or the store is down.

use std::sync::Arc;

use super::mail::{LoadedChannel, Mail, Origin, shard_of_conn};
use super::owner::ChannelInfo;
use super::{Chat, ChatError, ErrorCode};
use crate::store::MessageRecord;

/// The channel a command needs loaded before it can run.
fn needs_channel(mail: &Mail) -> Option<&Arc<str>> {
    match mail {
        Mail::Join { channel, .. } => Some(channel),
        Mail::Publish(p) => Some(&p.channel),
        // A leave never waits: subscriber counts must drop even when the
        // channel was deleted or the store is down.
        _ => None,
    }
}

impl Chat {
    /// Runs `mail` now if its channel is loaded; otherwise queues it behind
    /// the load (starting one if needed). Returns the mail when it can run.
    pub(super) fn when_loaded(&self, mail: Mail) -> Option<Mail> {
        let Some(channel) = needs_channel(&mail).cloned() else {
            return Some(mail);
        };
        let mut channels = self.channels.borrow_mut();
        let st = channels.entry(channel.clone()).or_default();
        if st.info.is_some() {
            return Some(mail);
        }
        st.waiting.push(mail);
        let start = !std::mem::replace(&mut st.loading, true);
        drop(channels);
        if start {
            self.load_channel(channel);
        }
        None
    }

    fn load_channel(&self, channel: Arc<str>) {
        let mesh = self.mail.mesh().clone();
        let me = self.mail.shard();
        let id = channel.clone();
        let started = self.store.read_then(move |s| {
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
                Mail::ChannelLoaded {
                    channel: id,
                    result,
                },
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
            st.loading = false;
            let waiting = std::mem::take(&mut st.waiting);
            if let Ok(Some(l)) = &result {
                // Only the first load's seq is free of commits made in this
                // process that some shard may not have seen yet (sends wait
                // for the load); a reload keeps it.
                let last_seq = *st.base_seq.get_or_insert(l.last_seq);
                st.info = Some(ChannelInfo {
                    kind: l.record.kind,
                    owner: l.record.owner_id.as_str().into(),
                    json: serde_json::to_string(&l.record).unwrap_or_default().into(),
                    members: l.members.iter().map(|m| Arc::from(m.as_str())).collect(),
                    last_seq,
                });
            } else if st.is_idle() && st.base_seq.is_none() {
                channels.remove(&channel);
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
    fn refuse(&self, mail: Mail, error: ChatError) {
        match mail {
            Mail::Join { channel, reply, .. } => {
                self.post(
                    shard_of_conn(reply.conn),
                    Mail::JoinFailed {
                        channel,
                        error,
                        reply,
                    },
                );
            }
            Mail::Publish(p) => self.answer_origin(p.origin, Err(error)),
            _ => {}
        }
    }

    pub(super) fn answer_origin(&self, origin: Origin, result: Result<MessageRecord, ChatError>) {
        match origin {
            Origin::Rest(tx) => {
                let _ = tx.send(result);
            }
            Origin::Conn(r) => match result {
                Ok(m) => self.send_reply(
                    r,
                    Ok(&format!(r#"{{"ok":true,"message":{}}}"#, m.to_json())),
                ),
                Err(e) => self.send_reply(r, Err(&e)),
            },
        }
    }

    /// REST changed the channel: drop the cache and reload it; commands
    /// queue behind the reload.
    pub(super) fn owner_invalidate(&self, channel: Arc<str>) {
        let reload = match self.channels.borrow_mut().get_mut(&channel) {
            Some(st) if st.info.is_some() && !st.loading => {
                st.info = None;
                st.loading = true;
                true
            }
            _ => false,
        };
        if reload {
            self.load_channel(channel);
        }
    }
}
