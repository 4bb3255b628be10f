//! A restored connection whose offset is ahead of what this shard has
//! applied in some partition: it reconnected to another instance within
//! that instance's bus lag (or sent an offset ahead of the order). It was
//! sent, elsewhere, every message of its channels up to its offset, so
//! live messages of the restored channels at or below its offset in their
//! partition are left out for it (the floor), and the offsets it is sent
//! meanwhile are raised to its own where they are behind (a client
//! dropping again then still holds what it has). Once this shard has
//! applied past the floor in every partition, the floor goes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::chat::conn::ConnSide;
use crate::chat::mail::Stored;
use crate::chat::message::with_offset;
use crate::protocol::Frame;

/// One connection's floor.
pub(crate) struct Floor {
    /// The client's offset.
    positions: Box<[u64]>,
    /// The channels the recovery restored: a channel joined since starts
    /// from its join, not from the offset (its messages are not left out,
    /// their offsets are raised all the same).
    channels: HashSet<Arc<str>>,
}

/// The floors of a shard's connections, by connection id (empty but for
/// a reconnect within bus lag).
pub(crate) type Floors = HashMap<u64, Floor>;

impl ConnSide {
    /// Live delivery of `channels` starts for connection `id`, whose
    /// offset is `offset`, with this shard at `applied`: a floor if the
    /// offset is ahead anywhere.
    pub(in crate::chat) fn set_floor(
        &self,
        id: u64,
        offset: &[u64],
        applied: &[u64],
        channels: impl Iterator<Item = Arc<str>>,
    ) {
        if offset.iter().zip(applied).any(|(o, a)| o > a) {
            let floor = Floor {
                positions: offset.into(),
                channels: channels.collect(),
            };
            self.floors.borrow_mut().insert(id, floor);
        }
    }

    /// The frame of `m` for connection `id` (None: left out), with this
    /// shard at `applied` (which includes `m`).
    pub(in crate::chat) fn floored(
        floors: &Floors,
        id: u64,
        m: &Stored,
        applied: &[u64],
    ) -> Option<Frame> {
        let Some(f) = floors.get(&id) else {
            return Some(m.frame.clone());
        };
        let p = m.partition as usize;
        if f.channels.contains(&m.channel)
            && f.positions.get(p).is_some_and(|&floor| m.pos <= floor)
        {
            return None;
        }
        if f.positions.iter().zip(applied).all(|(f, a)| f <= a) {
            return Some(m.frame.clone());
        }
        let raised: Vec<u64> = applied
            .iter()
            .zip(&f.positions)
            .map(|(a, f)| (*a).max(*f))
            .collect();
        let text = match &m.frame {
            Frame::Text(t) => t.as_str(),
            Frame::Packed(p) => p.text.as_str(),
            Frame::Binary(_) => return Some(m.frame.clone()),
        };
        Some(with_offset(text, &raised).map_or_else(|| m.frame.clone(), |t| Frame::Text(t.into())))
    }

    /// After a batch: the floors this shard has passed go.
    pub(in crate::chat) fn lift_floors(&self) {
        let applied = self.last_pos.borrow();
        self.floors
            .borrow_mut()
            .retain(|_, f| f.positions.iter().zip(applied.iter()).any(|(f, a)| f > a));
    }
}
