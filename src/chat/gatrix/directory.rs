//! The user directory as the Gatrix frames read it (issue 15 item 4): who
//! an author id is (`user:{id,name,email,avatar}`, `userName`,
//! `userAvatarUrl`), in memory, shared by every shard of the process.
//!
//! A frame is translated on a shard without waiting, so the directory is
//! never read from the store while translating: entries come in where a
//! store read is already paid for (a sync through `/api/v1/users`, a
//! Gatrix connection's CONNECT, a Gatrix REST send) and leave on a delete
//! or a change on another instance (the cluster's `User` event; all of
//! them after a reconnection to Redis, when events were missed). An author
//! not cached is shown by id alone, as before the directory. Bounded: past
//! `capacity` entries the oldest insertions go first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Value, json};

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
    by_id: HashMap<String, Author>,
    /// Insertion order, for eviction; an id may appear more than once
    /// (re-inserted), its stale places skipped.
    order: VecDeque<String>,
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

    pub(crate) fn get(&self, id: &str) -> Option<Author> {
        self.lock().by_id.get(id).cloned()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().by_id.contains_key(id)
    }

    pub(crate) fn put(&self, user: &UserRecord) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.by_id.insert(user.id.clone(), user.into()).is_none() {
            inner.order.push_back(user.id.clone());
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
        self.lock().by_id.remove(id);
    }

    /// Everything goes (events from other instances were missed).
    pub(crate) fn clear(&self) {
        let mut g = self.lock();
        g.by_id.clear();
        g.order.clear();
    }

    /// `message.user` for `user_id`: the directory's name, email and
    /// avatar when known, the id alone otherwise.
    pub(crate) fn author_json(&self, user_id: &Value) -> (Value, Option<Author>) {
        let found = user_id.as_str().and_then(|id| self.get(id));
        let v = match &found {
            Some(a) => json!({"id": user_id, "name": a.name, "email": a.email, "avatar": a.avatar}),
            None => json!({ "id": user_id }),
        };
        (v, found)
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
}
