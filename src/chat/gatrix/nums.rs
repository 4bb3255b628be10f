//! Channel numbers on a shard: the Gatrix dialect's channel ids (JSON
//! numbers below 2^53, `channels.num`), for the channels its connections
//! here use. Learnt from the owner's join answer (or the store, for a join
//! by number not yet known), forgotten with the channel's last Gatrix
//! subscriber: never a store round-trip per message.

use std::collections::HashMap;
use std::sync::Arc;

/// Both ways between a channel id and its number.
#[derive(Default)]
pub(crate) struct Nums {
    by_id: HashMap<Arc<str>, u64>,
    by_num: HashMap<u64, Arc<str>>,
}

impl Nums {
    pub(crate) fn insert(&mut self, channel: &Arc<str>, num: u64) {
        if let Some(old) = self.by_id.insert(channel.clone(), num)
            && old != num
        {
            self.by_num.remove(&old);
        }
        self.by_num.insert(num, channel.clone());
    }

    pub(crate) fn forget(&mut self, channel: &str) {
        if let Some(num) = self.by_id.remove(channel) {
            self.by_num.remove(&num);
        }
    }

    /// The number of `channel`, when known here.
    pub(crate) fn num_of(&self, channel: &str) -> Option<u64> {
        self.by_id.get(channel).copied()
    }

    /// The channel numbered `num`, when known here.
    pub(crate) fn id_of(&self, num: u64) -> Option<Arc<str>> {
        self.by_num.get(&num).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways_and_forgotten() {
        let mut n = Nums::default();
        let c: Arc<str> = "chan".into();
        n.insert(&c, 7);
        assert_eq!(
            (n.num_of("chan"), n.id_of(7).as_deref()),
            (Some(7), Some("chan"))
        );
        n.insert(&c, 8); // renumbered (never in practice): the old one goes
        assert_eq!((n.id_of(7), n.num_of("chan")), (None, Some(8)));
        n.forget("chan");
        assert_eq!((n.num_of("chan"), n.id_of(8)), (None, None));
    }
}
