//! Server frames: never masked, never fragmented (RFC 6455 5.1, 5.4).

use super::{OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT, RSV1};

/// Server frame kinds (server frames are never masked or fragmented).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Close,
    Pong,
}

/// Appends one complete server frame to `out`.
pub fn encode(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    encode_with(out, kind, 0, payload);
}

/// Appends one message frame whose payload is compressed (permessage-deflate:
/// RSV1 set, RFC 7692 6). Only for a text or binary message.
pub fn encode_deflated(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    encode_with(out, kind, RSV1, payload);
}

fn encode_with(out: &mut Vec<u8>, kind: Kind, rsv: u8, payload: &[u8]) {
    let op = match kind {
        Kind::Text => OP_TEXT,
        Kind::Binary => OP_BINARY,
        Kind::Close => OP_CLOSE,
        Kind::Pong => OP_PONG,
    };
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | rsv | op);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (cut to fit 125 bytes).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(out, Kind::Close, &payload);
}
