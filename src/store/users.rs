//! The user directory (schema 6, issue 15 item 4): who a user id is, as the
//! Gatrix backend syncs it (docs/api.md, "The Gatrix REST dialect"). Both
//! stores keep the same `users` table; what is shared between them (the
//! record, the search pattern) is here.

use serde::Serialize;

/// One user as the backend synced it. Ids are the backend's strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub avatar_url: Option<String>,
    /// `online`, `away`, `busy`, `offline`; in an upsert, `None` keeps the
    /// stored one (`offline` for a new user).
    pub status: Option<String>,
    pub custom_status: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl UserRecord {
    /// The name shown for the user: the name, else the username.
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.username)
    }
}

/// A member's read mark in a channel (schema 6; the seq since schema 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadState {
    /// The last seq read: messages past it are unread.
    pub seq: u64,
    pub at: Option<String>,
    pub message_id: Option<u64>,
}

/// The column list both stores read a user with, in [`UserRecord`] order.
pub(crate) const USER_COLUMNS: &str =
    "id, username, name, email, avatar_url, status, custom_status, created_at, updated_at";

/// A `LIKE` pattern matching `text` anywhere, `\` escaping the wildcards
/// the text may hold (both stores' `LIKE ... ESCAPE '\'`).
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_wildcards() {
        assert_eq!(contains_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
