//! A client frame's header (RFC 6455 5.2) and its payload's mask.

use super::{RSV1, WsError};

/// A parsed frame header.
pub(super) struct Header {
    pub(super) fin: bool,
    pub(super) rsv1: bool,
    pub(super) opcode: u8,
    pub(super) mask: [u8; 4],
    pub(super) header_len: usize,
    pub(super) payload_len: usize,
}

/// Parses the frame header at the front of `buf`; `Ok(None)` while it is
/// incomplete. RSV2 and RSV3 are refused here; RSV1 depends on the
/// decoder's state (permessage-deflate).
pub(super) fn parse(buf: &[u8]) -> Result<Option<Header>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x30 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("unmasked client frame"));
    }
    let (len, at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(WsError::Protocol("frame length with the top bit set"));
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let Some(m) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & RSV1 != 0,
        opcode: b0 & 0x0F,
        mask: [m[0], m[1], m[2], m[3]],
        header_len: at + 4,
        // Saturates on 32-bit targets; the size check refuses it.
        payload_len: usize::try_from(len).unwrap_or(usize::MAX),
    }))
}

/// XORs `payload` with the client's mask, eight bytes at a time.
pub(super) fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask index restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}
