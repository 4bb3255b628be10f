//! One committed batch as the bus carries it: the stored messages of one
//! commit (or of one read from the store by `pos`), each with its frame.

use std::sync::Arc;
use std::time::Instant;

use crate::chat::commit::stored_frame;
use crate::chat::mail::{Committed, Stored};
use crate::protocol::Frame;
use crate::protocol::deflate::Settings;
use crate::store::MessageRecord;

/// A stored message, ready for the shards.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub channel: Arc<str>,
    pub seq: u64,
    pub pos: u64,
    /// Its `message` broadcast (with its compressed form, when worth one).
    pub frame: Frame,
    /// When the send arrived (a local commit) or the batch was read (from
    /// the log or the store): chat_broadcast_latency's start.
    pub received: Instant,
}

impl Item {
    /// A message read from the store: encoded as the writer would have.
    pub(crate) fn of_record(m: &MessageRecord, compression: Settings) -> Self {
        Self {
            channel: Arc::from(m.channel_id.as_str()),
            seq: m.seq,
            pos: m.pos,
            frame: stored_frame(m, compression),
            received: Instant::now(),
        }
    }

    /// The text every subscriber is sent.
    pub(crate) fn text(&self) -> &str {
        match &self.frame {
            Frame::Text(t) => t.as_str(),
            Frame::Packed(p) => p.text.as_str(),
            // Broadcasts are text; nothing builds a binary one.
            Frame::Binary(_) => "",
        }
    }
}

/// The stored messages of one commit of one sequencing partition, in
/// `pos` order: a gapless run `first..=last`.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub partition: u32,
    pub items: Vec<Item>,
}

impl Batch {
    /// `None` for a batch without messages (a commit of repeats only, or
    /// a failed one): nothing to order.
    pub(crate) fn new(partition: u32, items: Vec<Item>) -> Option<Self> {
        (!items.is_empty()).then_some(Self { partition, items })
    }

    /// The bytes of its frames (text and compressed form): what it holds
    /// in a queue.
    pub(crate) fn bytes(&self) -> usize {
        self.items
            .iter()
            .map(|i| {
                let packed = match &i.frame {
                    Frame::Packed(p) => p.deflated.as_ref().map_or(0, |d| d.len()),
                    _ => 0,
                };
                i.text().len() + packed
            })
            .sum()
    }

    /// As every shard applies it ([`crate::chat::mail::Mail::Committed`]);
    /// the senders' acks went out at commit, without waiting for the log.
    pub(crate) fn into_committed(self) -> Vec<Committed> {
        self.items
            .into_iter()
            .map(|i| Committed {
                stored: Some(Stored {
                    partition: self.partition,
                    channel: i.channel,
                    seq: i.seq,
                    pos: i.pos,
                    frame: i.frame,
                    gatrix: Default::default(),
                }),
                reply: None,
                received: i.received,
            })
            .collect()
    }
}

/// What [`super::order::Order`] needs of a batch: its `pos` range, and
/// dropping what was applied already.
pub(crate) trait Span {
    /// First and last `pos` (a batch is never empty).
    fn span(&self) -> (u64, u64);
    /// Leaves out the messages before `pos`.
    fn trim_before(&mut self, pos: u64);
}

impl Span for Batch {
    fn span(&self) -> (u64, u64) {
        let first = self.items.first().map_or(0, |i| i.pos);
        let last = self.items.last().map_or(0, |i| i.pos);
        (first, last)
    }

    fn trim_before(&mut self, pos: u64) {
        self.items.retain(|i| i.pos >= pos);
    }
}
