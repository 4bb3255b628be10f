//! The user directory as the Gatrix frames read it (issue 15 item 4): who
//! an author id is (`user:{id,name,email,avatar}`, `userName`,
//! `userAvatarUrl`), in memory, shared by every shard of the process.
//!
//! A frame is translated on a shard without waiting, so the directory is
//! never read from the store while translating: entries come in where a
//! store read is already paid for (a sync through `/api/v1/users`, a
//! Gatrix connection's CONNECT, a Gatrix REST send or history page, and
//! one read per author a frame missed, asked for after the frame is sent)
//! and leave on a delete
//! or a change on another instance (the cluster's `User` event; all of
//! them after a reconnection to Redis, when events were missed). An author
//! not cached is shown by id alone, as before the directory. Bounded: past
//! `capacity` entries the oldest insertions go first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::chat::ChatStore;
use crate::store::UserRecord;

/// What a message frame shows of its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Author {
    pub name: String,
    pub email: Option<String>,
    pub avatar: Option<String>,
}

impl From<&UserRecord> for Author {
    fn from(u: &UserRecord) -> Self {
        Self {
            name: u.display_name().to_owned(),
            email: u.email.clone(),
            avatar: u.avatar_url.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Known users; `None`: looked up and not in the store (not synced),
    /// so that their messages do not ask again.
    by_id: HashMap<String, Option<Author>>,
    /// Insertion order, for eviction; an id may appear more than once
    /// (re-inserted), its stale places skipped.
    order: VecDeque<String>,
    /// Authors a frame missed, being read from the store or waiting for a
    /// shard to ask ([`Directory::load_wanted`]): each once.
    pending: HashSet<String>,
    wanted: Vec<String>,
    /// Counts forgets and clears: a store read that started before one
    /// must not put back what it removed (a deleted user admitted again
    /// by a read that raced the delete; [`Directory::put_unless_forgotten`]).
    forgotten: u64,
}

#[derive(Debug)]
pub(crate) struct Directory {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl Directory {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding it leaves a usable map.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn get(&self, id: &str) -> Option<Author> {
        self.lock().by_id.get(id).cloned().flatten()
    }

    /// Whether the store was asked about the user already (known, or known
    /// to be absent).
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().by_id.contains_key(id)
    }

    /// Whether the user is in memory and known to the store (synced, not
    /// deleted since): the one answer a Gatrix admission takes without a
    /// store read. Absence is never taken from memory.
    pub(crate) fn knows(&self, id: &str) -> bool {
        matches!(self.lock().by_id.get(id), Some(Some(_)))
    }

    /// Where the forgets are now: give it to
    /// [`Self::put_unless_forgotten`] with the store read started after.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().forgotten
    }

    /// The answer of a store read started at `generation`: kept only if
    /// nothing was forgotten since (a delete, a change on another
    /// instance), which the read may not have seen.
    pub(crate) fn put_unless_forgotten(&self, generation: u64, user: &UserRecord) {
        if self.generation() == generation {
            self.put(user);
        }
    }

    pub(crate) fn put(&self, user: &UserRecord) {
        self.insert(&user.id, Some(user.into()));
    }

    /// The answer of a store read for `id` (`None`: no such user).
    pub(crate) fn loaded(&self, id: &str, user: Option<&UserRecord>) {
        self.insert(id, user.map(Author::from));
        self.lock().pending.remove(id);
    }

    fn insert(&self, id: &str, author: Option<Author>) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.by_id.insert(id.to_owned(), author).is_none() {
            inner.order.push_back(id.to_owned());
        }
        while inner.by_id.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.by_id.remove(&oldest);
        }
        // Stale places of removed ids are dropped when they reach the front;
        // bound them too.
        if inner.order.len() > self.capacity.saturating_mul(2) {
            let by_id = &inner.by_id;
            inner.order.retain(|id| by_id.contains_key(id));
        }
    }

    pub(crate) fn forget(&self, id: &str) {
        let mut g = self.lock();
        g.by_id.remove(id);
        g.forgotten += 1;
    }

    /// Everything goes (events from other instances were missed).
    pub(crate) fn clear(&self) {
        let mut g = self.lock();
        g.by_id.clear();
        g.order.clear();
        g.forgotten += 1;
    }

    /// `message.user` for `user_id`: the directory's name, email and
    /// avatar when known, the id alone otherwise. An author never looked
    /// up is queued for a store read ([`Self::load_wanted`]), so that
    /// their next messages carry the name: one read per author, never one
    /// per message.
    pub(crate) fn author_json(&self, user_id: &Value) -> (Value, Option<Author>) {
        let Some(id) = user_id.as_str() else {
            return (json!({ "id": user_id }), None);
        };
        let found = {
            let mut g = self.lock();
            match g.by_id.get(id) {
                Some(a) => a.clone(),
                None => {
                    // Bounded like the entries: a flood of unknown authors
                    // cannot grow the queue past the capacity.
                    if self.capacity > 0
                        && g.pending.len() < self.capacity
                        && g.pending.insert(id.to_owned())
                    {
                        g.wanted.push(id.to_owned());
                    }
                    None
                }
            }
        };
        let v = match &found {
            Some(a) => json!({"id": user_id, "name": a.name, "email": a.email, "avatar": a.avatar}),
            None => json!({ "id": user_id }),
        };
        (v, found)
    }

    /// Asks the store's readers for the authors frames missed (none to ask
    /// most of the time: a lock and an empty queue). A busy store drops
    /// the ask; a later message asks again.
    pub(crate) fn load_wanted(self: &Arc<Self>, store: &ChatStore) {
        let wanted = std::mem::take(&mut self.lock().wanted);
        for id in wanted {
            let (dir, key) = (self.clone(), id.clone());
            let asked = store.read_then(move |s| match s.user(&key) {
                Ok(user) => dir.loaded(&key, user.as_ref()),
                Err(_) => {
                    dir.lock().pending.remove(&key);
                }
            });
            if asked.is_err() {
                self.lock().pending.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRecord {
        UserRecord {
            id: id.into(),
            username: format!("{id}@x"),
            name: Some(format!("N{id}")),
            email: None,
            avatar_url: Some("a.png".into()),
            status: None,
            custom_status: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn bounded_oldest_first_and_forgotten() {
        let d = Directory::new(2);
        d.put(&user("a"));
        d.put(&user("b"));
        d.put(&user("a")); // an update keeps its place
        d.put(&user("c"));
        assert!(!d.contains("a"), "the oldest insertion left");
        assert_eq!(d.get("b").map(|a| a.name), Some("Nb".into()));
        d.forget("b");
        assert!(!d.contains("b"));
        let (v, found) = d.author_json(&json!("c"));
        assert_eq!(v["name"], "Nc");
        assert_eq!(found.and_then(|a| a.avatar).as_deref(), Some("a.png"));
        let (v, found) = d.author_json(&json!("zz"));
        assert_eq!((v, found), (json!({"id": "zz"}), None));
        for i in 0..100 {
            d.put(&user(&i.to_string()));
            d.forget(&i.to_string());
        }
        assert!(d.lock().order.len() <= 4, "stale places are bounded");
    }

    #[test]
    fn known_means_synced_and_a_forget_wins_over_a_read_in_flight() {
        let d = Directory::new(4);
        assert!(!d.knows("a"));
        d.loaded("a", None);
        assert!(d.contains("a") && !d.knows("a"), "absent is not known");
        let before = d.generation();
        d.put(&user("a"));
        assert!(d.knows("a"));
        // A read started before the delete answers after it.
        d.forget("a");
        d.put_unless_forgotten(before, &user("a"));
        assert!(!d.knows("a"), "the delete wins");
        let now = d.generation();
        d.put_unless_forgotten(now, &user("a"));
        assert!(d.knows("a"));
        d.clear();
        assert!(!d.knows("a") && d.generation() > now);
    }

    #[test]
    fn a_missed_author_is_wanted_once_and_remembered_absent() {
        let d = Directory::new(2);
        d.author_json(&json!("x"));
        d.author_json(&json!("x"));
        assert_eq!(std::mem::take(&mut d.lock().wanted), ["x"], "asked once");
        d.author_json(&json!("x"));
        assert!(d.lock().wanted.is_empty(), "still pending: not asked again");
        d.loaded("x", None);
        assert!(d.contains("x") && d.get("x").is_none(), "known absent");
        d.author_json(&json!("x"));
        assert!(
            d.lock().wanted.is_empty(),
            "an absent user is not asked again"
        );
        d.loaded("y", Some(&user("y")));
        assert_eq!(d.author_json(&json!("y")).0["name"], "Ny");
        // The queue is bounded by the capacity.
        for i in 0..10 {
            d.author_json(&json!(format!("u{i}")));
        }
        assert_eq!(d.lock().pending.len(), 2);
        // Names off: nothing is asked.
        let off = Directory::new(0);
        off.author_json(&json!("x"));
        assert!(off.lock().wanted.is_empty());
    }
}
