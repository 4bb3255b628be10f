//! A recovery's replay: the missed messages read from the store in pages
//! ([`REPLAY_PAGE`]), each channel bounded by its partition's positions,
//! queued ahead of the frames held since the CONNECT reply, each with the
//! replay's own offset.

use super::{REPLAY_PAGE, Recovery};
use crate::chat::ChatConn;
use crate::chat::conn::ConnSide;
use crate::chat::mail::{ReplayStep, ToConnShard};
use crate::chat::message::message_frame;
use crate::protocol::{CloseReason, Frame};
use crate::store::sequencing::partition_of;
use crate::store::{MessageRecord, ReplayRange};

impl ConnSide {
    /// Asks the store for the next page of the replay.
    pub(super) fn read_page(&self, conn: &ChatConn) {
        // Copied out: the borrow ends here (replay_failed takes it).
        let ranges: Vec<ReplayRange> = match &*conn.recovery.borrow() {
            Some(Recovery::Replaying {
                upto,
                upto_pos,
                cursor,
            }) => upto
                .iter()
                .filter_map(|(channel, max_seq, p)| {
                    let (after, upto_pos) = (*cursor.get(*p)?, *upto_pos.get(*p)?);
                    (after < upto_pos).then(|| ReplayRange {
                        channel: channel.clone(),
                        after,
                        upto_pos,
                        max_seq: *max_seq,
                    })
                })
                .collect(),
            _ => return,
        };
        if ranges.is_empty() {
            // Nothing this shard applied is missed: the rest comes live.
            conn.recovery.borrow_mut().take();
            return conn.link.release(Vec::new());
        }
        let (mesh, me, id) = (
            self.hub.mail.mesh().clone(),
            self.hub.mail.shard(),
            conn.link.id,
        );
        let started = self.hub.store.read_then(move |s| {
            let result = s.replay(&ranges, REPLAY_PAGE).map_err(|e| e.to_string());
            let step = ReplayStep::Page(result);
            mesh.post_external(me, ToConnShard::Replayed { conn: id, step }.into());
        });
        if started.is_err() {
            self.replay_failed(conn, "store busy");
        }
    }

    /// A page of missed messages: queued ahead of everything held since the
    /// CONNECT reply; the last one lets the held frames go.
    pub(super) fn page(&self, conn: &ChatConn, result: Result<Vec<MessageRecord>, String>) {
        let msgs = match result {
            Ok(msgs) => msgs,
            Err(e) => return self.replay_failed(conn, &e),
        };
        // A full page may have more behind it; a short one is the end (the
        // store bounds each channel by what this shard had applied).
        let more = msgs.len() == REPLAY_PAGE;
        let frames = {
            let n = self.partitions() as u32;
            let mut r = conn.recovery.borrow_mut();
            let Some(Recovery::Replaying { cursor, .. }) = r.as_mut() else {
                return;
            };
            msgs.iter()
                .map(|m| {
                    // Per partition, pages come in position order.
                    if let Some(c) = cursor.get_mut(partition_of(&m.channel_id, n) as usize) {
                        *c = (*c).max(m.pos);
                    }
                    Frame::Text(message_frame(m, cursor).into())
                })
                .collect()
        };
        drop(msgs);
        if conn.link.push_ahead(frames).is_err() {
            // More than the outbound queue holds: closed as a slow
            // consumer. The session is not kept: the same recovery would
            // overflow again.
            conn.recovery.borrow_mut().take();
            conn.resumable.set(false);
            return;
        }
        if more {
            self.read_page(conn);
        } else {
            conn.recovery.borrow_mut().take();
            conn.link.release(Vec::new());
        }
    }

    /// A replay that cannot complete closes the connection rather than
    /// leave a gap; its session is not kept (the client would retry the
    /// same failing recovery), so the client starts fresh and catches up
    /// by seq.
    fn replay_failed(&self, conn: &ChatConn, why: &str) {
        tracing::warn!(conn = conn.link.id, error = %why, "recovery replay failed; closing");
        conn.recovery.borrow_mut().take();
        conn.resumable.set(false);
        conn.link.close(CloseReason::Internal);
    }
}
