//! A batch's bytes in the log: an rkyv archive of its messages, zstd
//! compressed when it is large enough to gain from it.
//!
//! One byte says which: `R` (the archive as is) or `Z` (zstd of it). The
//! archive holds what a receiving instance needs to apply the batch
//! without the store: each message's channel, `seq`, `pos` and the
//! broadcast's text, encoded once by the writer that committed it.

use std::sync::Arc;
use std::time::Instant;

use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;

use super::batch::{Batch, Item};
use crate::chat::commit::broadcast;
use crate::protocol::deflate::Settings;

const RAW: u8 = b'R';
const ZSTD: u8 = b'Z';
/// zstd's level: fast; frames are JSON and compress well at any level.
const ZSTD_LEVEL: i32 = 1;
/// The largest archive a `Z` envelope may expand to (a batch is at most
/// BROADCAST_BATCH_SIZE messages of at most MAX_MESSAGE_LENGTH each): what
/// is larger is refused, not allocated.
const MAX_ARCHIVE: usize = 256 * 1024 * 1024;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
pub(crate) struct Envelope {
    pub partition: u32,
    pub messages: Vec<Message>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
pub(crate) struct Message {
    pub channel: String,
    pub seq: u64,
    pub pos: u64,
    /// `42["message",{…},"<pos>"]`.
    pub frame: String,
}

/// Why bytes from the log are not a batch: logged and counted, and the
/// gap they leave is filled from the store.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("empty entry")]
    Empty,
    #[error("unknown envelope kind {0:#04x}")]
    Kind(u8),
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    #[error("archive: {0}")]
    Archive(RkyvError),
    #[error("a batch without messages")]
    NoMessages,
    #[error("positions not strictly increasing ({0} after {1})")]
    Positions(u64, u64),
}

/// The entry's bytes for `batch`; zstd when the archive is at least
/// `zstd_threshold` bytes (0: never).
pub(crate) fn encode(batch: &Batch, zstd_threshold: usize) -> Result<Vec<u8>, EnvelopeError> {
    let envelope = Envelope {
        partition: batch.partition,
        messages: batch
            .items
            .iter()
            .map(|i| Message {
                channel: i.channel.to_string(),
                seq: i.seq,
                pos: i.pos,
                frame: i.text().to_owned(),
            })
            .collect(),
    };
    let archive = rkyv::to_bytes::<RkyvError>(&envelope).map_err(EnvelopeError::Archive)?;
    if zstd_threshold > 0 && archive.len() >= zstd_threshold {
        let mut out = vec![ZSTD];
        let packed = zstd::bulk::compress(&archive, ZSTD_LEVEL).map_err(EnvelopeError::Zstd)?;
        out.extend_from_slice(&packed);
        Ok(out)
    } else {
        let mut out = Vec::with_capacity(archive.len() + 1);
        out.push(RAW);
        out.extend_from_slice(&archive);
        Ok(out)
    }
}

/// The envelope in `bytes` (checked: bytes from the network are never
/// trusted).
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let (&kind, body) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
    // rkyv reads from aligned bytes: one copy either way.
    let mut aligned = AlignedVec::<16>::new();
    match kind {
        RAW => aligned.extend_from_slice(body),
        ZSTD => {
            let raw = zstd::bulk::decompress(body, MAX_ARCHIVE).map_err(EnvelopeError::Zstd)?;
            aligned.extend_from_slice(&raw);
        }
        other => return Err(EnvelopeError::Kind(other)),
    }
    rkyv::from_bytes::<Envelope, RkyvError>(&aligned).map_err(EnvelopeError::Archive)
}

/// The batch an envelope carries, its frames ready for the shards
/// (compressed for permessage-deflate as the writer's are).
///
/// The applier orders batches by their first and last `pos` and trims what
/// it applied by `pos`: an entry whose positions do not strictly increase
/// (a damaged one, another version's) is refused here, and its gap filled
/// from the store, rather than applied out of order.
pub(crate) fn to_batch(envelope: Envelope, compression: Settings) -> Result<Batch, EnvelopeError> {
    for pair in envelope.messages.windows(2) {
        if pair[1].pos <= pair[0].pos {
            return Err(EnvelopeError::Positions(pair[1].pos, pair[0].pos));
        }
    }
    let now = Instant::now();
    let items = envelope
        .messages
        .into_iter()
        .map(|m| Item {
            channel: Arc::from(m.channel),
            seq: m.seq,
            pos: m.pos,
            frame: broadcast(m.frame, compression),
            received: now,
        })
        .collect();
    Batch::new(envelope.partition, items).ok_or(EnvelopeError::NoMessages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;

    fn batch(n: u64, text: &str) -> Batch {
        let items = (1..=n)
            .map(|pos| Item {
                channel: Arc::from("general"),
                seq: pos,
                pos: 100 + pos,
                frame: Frame::Text(
                    format!(r#"42["message",{{"c":"{text}"}},"{}"]"#, 100 + pos).into(),
                ),
                received: Instant::now(),
            })
            .collect();
        Batch::new(0, items).unwrap()
    }

    fn round_trip(b: &Batch, threshold: usize) -> (u8, Batch) {
        let bytes = encode(b, threshold).unwrap();
        let back = to_batch(
            decode(&bytes).unwrap(),
            Settings {
                enabled: false,
                threshold: 1024,
            },
        )
        .unwrap();
        (bytes[0], back)
    }

    fn same(a: &Batch, b: &Batch) {
        assert_eq!(a.partition, b.partition);
        let key = |x: &Batch| {
            x.items
                .iter()
                .map(|i| (i.channel.to_string(), i.seq, i.pos, i.text().to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(a), key(b));
    }

    #[test]
    fn small_batches_travel_raw_and_large_ones_compressed() {
        let small = batch(1, "hi");
        let (kind, back) = round_trip(&small, 4096);
        assert_eq!(kind, RAW);
        same(&small, &back);
        let large = batch(200, &"x".repeat(100));
        let (kind, back) = round_trip(&large, 4096);
        assert_eq!(kind, ZSTD);
        same(&large, &back);
        let (kind, _) = round_trip(&large, 0);
        assert_eq!(kind, RAW, "a threshold of 0 never compresses");
    }

    #[test]
    fn positions_that_do_not_increase_are_refused() {
        let settings = Settings {
            enabled: false,
            threshold: 1024,
        };
        let message = |pos| Message {
            channel: "general".into(),
            seq: pos,
            pos,
            frame: "42[]".into(),
        };
        for positions in [[5, 5], [6, 5]] {
            let envelope = Envelope {
                partition: 0,
                messages: positions.iter().map(|&p| message(p)).collect(),
            };
            assert!(matches!(
                to_batch(envelope, settings),
                Err(EnvelopeError::Positions(..))
            ));
        }
        let envelope = Envelope {
            partition: 0,
            messages: vec![message(5), message(7)],
        };
        let batch = to_batch(envelope, settings).unwrap();
        assert_eq!(
            crate::bus::batch::Span::span(&batch),
            (5, 7),
            "a hole (retention) is not an error"
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(matches!(decode(b""), Err(EnvelopeError::Empty)));
        assert!(matches!(decode(b"Xabc"), Err(EnvelopeError::Kind(b'X'))));
        assert!(matches!(decode(b"Rabc"), Err(EnvelopeError::Archive(_))));
        assert!(matches!(decode(b"Zabc"), Err(EnvelopeError::Zstd(_))));
        let mut bytes = encode(&batch(3, "hi"), 0).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        bytes.truncate(n - 3);
        assert!(decode(&bytes).is_err());
    }
}
