//! permessage-deflate (RFC 7692): the negotiation ([`negotiate`]) and the
//! codec, raw deflate through flate2 (miniz_oxide).
//!
//! Both directions are negotiated without context takeover, so every
//! message is compressed and inflated on its own: a thread keeps one
//! compressor and one inflater (reset per message) for all its
//! connections, and a connection keeps no deflate state at all. That is
//! what lets a broadcast be compressed once (on the store writer, see
//! `chat::commit`) and the same bytes go to every subscriber.
//!
//! Each message ends with an empty stored block, `00 00 ff ff`, which the
//! sender leaves off and the receiver puts back (RFC 7692 7.2.1, 7.2.2).

mod offer;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

pub(crate) use offer::negotiate;

use super::link::Frame;
use super::ws::{self, Kind, WsError};

/// How many connections of this process are sent compressed frames
/// ([`Receivers`]). The store writer compresses a broadcast only while
/// there is one: with none (clients that do not offer the extension, or
/// every offer limiting the window) the ~15 µs per 2 KB message would be
/// spent for nobody. A connection that arrives while a message is in
/// flight gets that message plain, which the extension allows.
static RECEIVERS: AtomicUsize = AtomicUsize::new(0);

/// Is any connection of this process sent compressed frames?
pub(crate) fn any_receivers() -> bool {
    RECEIVERS.load(Ordering::Relaxed) > 0
}

/// One connection's place in the count of [`any_receivers`], given back
/// when it is dropped.
#[derive(Debug)]
pub(crate) struct Receiver(());

impl Receiver {
    /// Counts one more connection until the guard is dropped.
    pub(crate) fn counted() -> Self {
        RECEIVERS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        RECEIVERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The empty stored block that ends each compressed message.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compression level 3, as the reference server's `zlibDeflateOptions`:
/// chat JSON compresses about as well as at 6, for less CPU.
const LEVEL: u32 = 3;

/// The server's compression settings (`WS_COMPRESSION`,
/// `WS_COMPRESSION_THRESHOLD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Is permessage-deflate negotiated at all?
    pub enabled: bool,
    /// Messages shorter than this (in bytes, before compression) are sent
    /// plain: below about a kilobyte deflate saves little and costs the
    /// same per message.
    pub threshold: usize,
}

// Here rather than in `config`, which depends on no other module.
impl crate::config::Config {
    /// The permessage-deflate settings, for the upgrade and the writer.
    pub fn compression(&self) -> Settings {
        Settings {
            enabled: self.ws_compression,
            threshold: self.ws_compression_threshold,
        }
    }
}

thread_local! {
    // Taken out while in use and put back after, like wsio's buffers.
    static INFLATER: Cell<Option<Decompress>> = const { Cell::new(None) };
    static DEFLATER: Cell<Option<Compress>> = const { Cell::new(None) };
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// The most compressed bytes a message within `max` can take: deflate's
/// stored blocks add 5 bytes per 64 KiB to incompressible data.
pub(crate) fn compressed_bound(max: usize) -> usize {
    max.saturating_add(max / 1024).saturating_add(64)
}

/// Inflates one client message (its frames' payloads, joined) into a new
/// buffer that never grows past `max + 1` bytes: a message that inflates
/// past `max` is [`WsError::TooLarge`] (close 1009) however small it came.
pub(crate) fn inflate(input: &[u8], max: usize) -> Result<Vec<u8>, WsError> {
    let mut d = INFLATER
        .with(Cell::take)
        .unwrap_or_else(|| Decompress::new(false));
    d.reset(false);
    let r = inflate_with(&mut d, input, max);
    INFLATER.with(|c| c.set(Some(d)));
    r
}

fn inflate_with(d: &mut Decompress, input: &[u8], max: usize) -> Result<Vec<u8>, WsError> {
    const BAD: WsError = WsError::Protocol("invalid compressed data");
    // One byte past the limit is room enough to tell that it is exceeded.
    let cap = max.saturating_add(1);
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).clamp(64.min(cap), cap));
    for part in [input, &TAIL[..]] {
        let mut at = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap {
                    return Err(WsError::TooLarge);
                }
                // Doubling, up to the limit.
                out.reserve_exact(out.len().max(64).min(cap - out.len()));
            }
            let (in0, out0) = (d.total_in(), out.len());
            let status = d
                .decompress_vec(
                    part.get(at..).unwrap_or_default(),
                    &mut out,
                    FlushDecompress::None,
                )
                .map_err(|_| BAD)?;
            let used = usize::try_from(d.total_in() - in0).map_err(|_| BAD)?;
            at += used;
            if out.len() > max {
                return Err(WsError::TooLarge);
            }
            if status == Status::StreamEnd {
                return Ok(out); // a final block: what follows is not deflate
            }
            let room = out.len() < out.capacity();
            if at >= part.len() && room {
                break; // all of it read, and all it gave is out
            }
            if used == 0 && out.len() == out0 && room {
                return Err(BAD); // stuck with input and room left
            }
        }
    }
    Ok(out)
}

/// Compresses one message on its own into `out` (replaced), without the
/// tail. Returns false (and `out` is to be ignored) when it would not be
/// smaller than `payload`: then the message goes plain.
pub(crate) fn compress(payload: &[u8], out: &mut Vec<u8>) -> bool {
    let mut c = DEFLATER
        .with(Cell::take)
        .unwrap_or_else(|| Compress::new(Compression::new(LEVEL), false));
    c.reset();
    out.clear();
    // Room for the worst case, so one call normally does it all.
    out.reserve(compressed_bound(payload.len()));
    let mut at = 0;
    let done = loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let (in0, out0) = (c.total_in(), out.len());
        let rest = payload.get(at..).unwrap_or_default();
        if c.compress_vec(rest, out, FlushCompress::Sync).is_err() {
            break false;
        }
        let used = usize::try_from(c.total_in() - in0).unwrap_or(usize::MAX);
        at = at.saturating_add(used);
        if at >= payload.len() && out.len() < out.capacity() {
            break true;
        }
        if used == 0 && out.len() == out0 && out.len() < out.capacity() {
            break false; // no progress with room left: it goes plain
        }
    };
    DEFLATER.with(|cell| cell.set(Some(c)));
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    done && out.len() < payload.len()
}

/// The compressed form of a broadcast payload, made once for all its
/// recipients; `None` below `threshold` or when it does not shrink.
pub(crate) fn compress_shared(payload: &[u8], threshold: usize) -> Option<Bytes> {
    if payload.len() < threshold {
        return None;
    }
    let mut out = Vec::new();
    compress(payload, &mut out).then(|| Bytes::from(out))
}

/// Appends one queued frame, for a connection whose frames of at least
/// `compress_from` bytes are compressed (`usize::MAX`: none are). A
/// broadcast carries its compressed form already; any other frame that
/// long is compressed here, on its own, by the shard. Those frames are one
/// per request (the ack of a long message carries it whole, a join answer
/// the channel record, a recovery replay its messages): compressing them
/// costs one deflate per frame (about 15 µs for 2 KB) where plain would
/// cost none, for the same saving on the wire as a broadcast's, and only
/// from the threshold on, like the reference server's `ws`.
pub(crate) fn encode_frame(out: &mut Vec<u8>, f: &Frame, compress_from: usize) {
    let (kind, plain) = match f {
        Frame::Text(t) => (Kind::Text, t.as_bytes()),
        Frame::Binary(b) => (Kind::Binary, &b[..]),
        Frame::Packed(p) => {
            match &p.deflated {
                Some(d) if compress_from != usize::MAX => ws::encode_deflated(out, Kind::Text, d),
                _ => ws::encode(out, Kind::Text, p.text.as_bytes()),
            }
            return;
        }
    };
    if plain.len() < compress_from {
        return ws::encode(out, kind, plain);
    }
    let mut scratch = SCRATCH.with(Cell::take);
    if compress(plain, &mut scratch) {
        ws::encode_deflated(out, kind, &scratch);
    } else {
        ws::encode(out, kind, plain);
    }
    if scratch.capacity() > 256 * 1024 {
        scratch = Vec::new(); // one huge frame: do not keep its buffer
    }
    SCRATCH.with(|c| c.set(scratch));
}

#[cfg(test)]
mod tests;
