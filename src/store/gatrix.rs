//! What schema 7 keeps for the Gatrix platform (issue 15 item 5; docs/api.md,
//! "The Gatrix REST dialect"): members' roles, a channel's settings and
//! member limit (on [`super::ChannelRecord`]), and who pinned a message
//! (on [`super::MessageRecord`]). Shared by both stores; each one's
//! statements are in `sqlite::gatrix` and `mysql::gatrix`.

use serde::Serialize;

/// A member's role in a channel (`channel_members.role`). The owner is the
/// channel's creator (`channels.owner_id`); an admin may change the channel
/// as its owner may (docs/api.md, "Who may do what").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// A stored role; an unknown one (the original's `moderator`, which
    /// the CHECK keeps out) reads as a member.
    pub fn parse(s: &str) -> Self {
        match s {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            _ => Self::Member,
        }
    }

    /// Owner or admin: may change the channel and pin its messages.
    pub fn manages(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }
}

/// A pinned message: when, and by whom (`None` for a pin imported from the
/// original, which kept only a flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub at: String,
    pub by: Option<String>,
}

impl Pin {
    /// The pin of a row's `pinned_at`, `pinned_by`.
    pub(crate) fn of_columns(at: Option<String>, by: Option<String>) -> Option<Self> {
        at.map(|at| Self { at, by })
    }
}
