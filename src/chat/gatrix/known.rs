//! `gatrix_require_known_users`: a Gatrix CONNECT is admitted only when
//! the user directory knows its user (synced by the backend through
//! `/api/v1/users`, not deleted since), as the original server refused
//! users missing from its `chat_users` (docs/protocol.md, "The Gatrix
//! dialect", Refusals).
//!
//! A user in the process's directory is admitted at once. Any other is
//! read from the store, on a store reader (one read per such CONNECT,
//! never on the shard), while the CONNECT reply waits held on the link
//! (`Link::hold`, as a recovery holds it): the answer lets it go, or
//! rewrites it into a CONNECT_ERROR and closes the connection (4003)
//! once that is sent. A store that does not answer refuses: an unknown
//! user is never admitted because the store was down or busy.

use std::rc::Rc;

use serde_json::json;

use super::super::conn::ConnSide;
use super::super::mail::ToConnShard;
use crate::metrics::Refused;
use crate::protocol::{CloseReason, Frame, Link, Refusal, packet};

/// The original's words (`web-socket-service.ts`). The frontend refreshes
/// its token and reconnects only on `jwt`, `expired` or `Authentication
/// error`, which a fresh token would not cure here: without them it shows
/// a connection error and does not loop.
pub(crate) const UNKNOWN_MESSAGE: &str = "User not found in chat server";
/// The store could not say; the same care for the frontend's words.
pub(crate) const UNAVAILABLE_MESSAGE: &str = "User directory unavailable; retry later";

/// Why a Gatrix CONNECT or REST call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAdmitted {
    /// Not in the directory: never synced, or deleted.
    Unknown,
    /// The store did not answer (down, or its readers' queue full).
    Unavailable,
}

impl NotAdmitted {
    pub(crate) fn refused(self) -> Refused {
        match self {
            Self::Unknown => Refused::UserUnknown,
            Self::Unavailable => Refused::DirectoryUnavailable,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Unknown => UNKNOWN_MESSAGE,
            Self::Unavailable => UNAVAILABLE_MESSAGE,
        }
    }

    /// `data.code` and `data.reason` (the REST error's too).
    pub(crate) fn codes(self) -> (&'static str, &'static str) {
        match self {
            Self::Unknown => ("UNAUTHORIZED", "USER_UNKNOWN"),
            Self::Unavailable => ("UNAVAILABLE", "DIRECTORY_UNAVAILABLE"),
        }
    }

    fn refusal(self) -> Refusal {
        let (code, reason) = self.codes();
        Refusal::Refused {
            message: self.message().into(),
            data: Some(json!({"code": code, "reason": reason})),
        }
    }
}

impl ConnSide {
    /// At a Gatrix CONNECT: `Ok(false)` when nothing is to be checked (the
    /// setting is off, or the directory has the user in memory), `Ok(true)`
    /// when the store was asked and the CONNECT reply is held until it
    /// answers ([`ConnSide::gatrix_known`]); a refusal when it cannot be
    /// asked.
    pub(in crate::chat) fn vet_user(&self, link: &Rc<Link>, user: &str) -> Result<bool, Refusal> {
        let dir = &self.hub.limits.directory;
        if !self.hub.limits.require_known_users || dir.knows(user) {
            return Ok(false);
        }
        let (mesh, me, conn) = (self.hub.mail.mesh().clone(), self.hub.mail.shard(), link.id);
        let (dir, user, generation) = (dir.clone(), user.to_owned(), dir.generation());
        let asked = self.hub.store.read_then(move |s| {
            let found = match s.user(&user) {
                Ok(Some(u)) => {
                    dir.put_unless_forgotten(generation, &u);
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(e.to_string()),
            };
            mesh.post_external(me, ToConnShard::GatrixKnown { conn, found }.into());
        });
        if asked.is_err() {
            return Err(self.not_admitted(link, NotAdmitted::Unavailable, "the store is busy"));
        }
        link.hold();
        Ok(true)
    }

    /// The store answered whether a held Gatrix CONNECT's user is known.
    pub(in crate::chat) fn gatrix_known(&self, conn: u64, found: Result<bool, String>) {
        let Some(conn) = self.conns.borrow().get(&conn).cloned() else {
            return; // gone meanwhile
        };
        if conn.admitted.get() {
            return;
        }
        let why = match found {
            Ok(true) => {
                conn.admitted.set(true);
                self.admit(&conn);
                conn.link.release(Vec::new());
                if let Some(sid) = conn.held_sid.borrow_mut().take() {
                    self.connected(&conn, &sid);
                }
                return;
            }
            Ok(false) => NotAdmitted::Unknown,
            Err(e) => {
                tracing::warn!(error = %e, "store: a Gatrix user's directory entry");
                NotAdmitted::Unavailable
            }
        };
        self.conns.borrow_mut().remove(&conn.link.id);
        let Refusal::Refused { message, data } = self.not_admitted(&conn.link, why, "") else {
            return;
        };
        let frame = packet::encode_connect_error("/", &message, data.as_ref());
        conn.link.map_first_held(|_| Frame::Text(frame.into()));
        conn.link.release(Vec::new());
        // The CONNECT_ERROR leaves first (a close sends what is queued).
        conn.link.close(CloseReason::Refused);
    }

    /// Counts and logs a refusal; the CONNECT_ERROR it is answered with.
    fn not_admitted(&self, link: &Link, why: NotAdmitted, detail: &str) -> Refusal {
        self.hub
            .metrics
            .refusals
            .refused(why.refused(), link.peer.ip(), || {
                format!("Gatrix CONNECT: {} {detail}", why.message())
            });
        why.refusal()
    }
}
