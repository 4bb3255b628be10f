//! WebSocket frames as the benchmark reads them: a server frame's header,
//! a permessage-deflate payload inflated, the upgrade key.

use anyhow::{Result, bail};

/// Inflates one compressed message (RFC 7692 7.2.2: the 00 00 ff ff tail
/// put back) into `out`, the inflater reset first (the server compresses
/// without context takeover).
pub fn inflate(d: &mut flate2::Decompress, input: &[u8], out: &mut Vec<u8>) -> Result<()> {
    d.reset(false);
    out.clear();
    for part in [input, &[0, 0, 0xff, 0xff][..]] {
        let mut at = 0;
        loop {
            out.reserve(4 * (part.len() - at) + 1024);
            let (before, out0) = (d.total_in(), out.len());
            d.decompress_vec(&part[at..], out, flate2::FlushDecompress::None)?;
            let used = (d.total_in() - before) as usize;
            at += used;
            if at == part.len() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && out.len() == out0 {
                bail!("invalid compressed frame from the server");
            }
        }
    }
    Ok(())
}

/// A server frame at the front of `b`: (first byte, payload range, total
/// length), or `None` while incomplete. Server frames are never masked;
/// fragmented messages are not used by the servers this targets.
pub fn server_frame(b: &[u8]) -> Result<Option<(u8, std::ops::Range<usize>, usize)>> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x80 == 0 || b[0] & 0x0F == 0 {
        bail!("fragmented WebSocket message (not supported by the benchmark)");
    }
    if b[1] & 0x80 != 0 {
        bail!("masked frame from the server");
    }
    let (len, at) = match b[1] & 0x7F {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into()?) as usize, 10),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if b.len() < at + len {
        return Ok(None);
    }
    Ok(Some((b[0], at..at + len, at + len)))
}

/// A Sec-WebSocket-Key: 16 bytes, base64.
pub fn base64_key(seed: u32) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 16];
    let mut x = u64::from(seed) | 1;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut out = String::with_capacity(24);
    for chunk in bytes.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    while out.len() < 24 {
        out.push('=');
    }
    out
}
