//! The server side of RFC 6455 WebSocket framing, by hand.
//!
//! Why not tungstenite here: it is the hot path for both memory and CPU.
//! tungstenite keeps a read buffer (and a write buffer that only grows) in
//! every connection, and async-tungstenite registers two atomic wakers on
//! every poll. An idle chat connection should hold no buffer at all: the
//! connection reads into its shard's one shared buffer (see [`super::wsio`])
//! and this decoder parses frames straight out of it, unmasking in place, so
//! a complete message costs no copy and no allocation; only an incomplete
//! frame's bytes are kept per connection. tungstenite is still used by the
//! tests' clients and for its `Utf8Bytes`.
//!
//! Accepted: masked client frames, text and binary messages (fragmented or
//! not, up to `max_message` bytes in total, checked from the frame header
//! before any payload is buffered), ping/pong/close control frames between
//! fragments. Refused as protocol errors: reserved bits (no extension is
//! negotiated), unknown opcodes, unmasked frames, fragmented or oversized
//! control frames, continuations without a start, a new message inside a
//! fragmented one, text that is not UTF-8, a malformed close payload.

use std::borrow::Cow;

/// A complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg<'a> {
    Text(Cow<'a, str>),
    Binary(Cow<'a, [u8]>),
    /// Answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    Pong,
    /// The client's close frame, with its status code if it sent one.
    Close(Option<u16>),
}

/// Why the byte stream cannot be a WebSocket conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// Anything RFC 6455 forbids (close 1002).
    Protocol(&'static str),
    /// A message above the size limit (close 1009).
    TooLarge,
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// One connection's decoding state: only a fragmented message in progress.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// (is text, bytes so far) of a fragmented message.
    fragments: Option<(bool, Vec<u8>)>,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            fragments: None,
        }
    }

    /// How many bytes the frame starting at `buf` needs in total, once its
    /// header is complete (so the caller can reserve for a large frame).
    pub fn frame_len(buf: &[u8]) -> Option<usize> {
        Self::header(buf)
            .ok()
            .flatten()
            .map(|h| h.header_len + h.payload_len)
    }

    /// Decodes the next message from the front of `buf`, unmasking in place.
    /// Returns the message and the bytes consumed, `Ok(None)` when `buf`
    /// holds no complete message yet (nothing consumed: call again with
    /// more bytes), or the error that ends the connection. Fragments are
    /// consumed into the decoder as they come, so `Ok(None)` after some
    /// bytes were consumed is reported as `Some((None, consumed))`.
    pub fn next<'b>(
        &mut self,
        buf: &'b mut [u8],
    ) -> Result<Option<(Option<Msg<'b>>, usize)>, WsError> {
        let Some(h) = Self::header(buf)? else {
            return Ok(None);
        };
        let is_control = h.opcode >= 0x8;
        // Size checks come before waiting for the payload: a client cannot
        // make the server buffer more than the limit.
        if is_control {
            if h.payload_len > 125 {
                return Err(WsError::Protocol("control frame payload above 125 bytes"));
            }
            if !h.fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
        } else {
            let so_far = self.fragments.as_ref().map_or(0, |(_, b)| b.len());
            if so_far.saturating_add(h.payload_len) > self.max_message {
                return Err(WsError::TooLarge);
            }
        }
        let total = h.header_len + h.payload_len;
        if buf.len() < total {
            return Ok(None);
        }
        let payload = &mut buf[h.header_len..total];
        unmask(payload, h.mask);
        let payload: &'b [u8] = payload;
        let msg = match (h.opcode, self.fragments.is_some()) {
            (OP_TEXT | OP_BINARY, true) => {
                return Err(WsError::Protocol("new message inside a fragmented one"));
            }
            (OP_TEXT | OP_BINARY, false) if !h.fin => {
                self.fragments = Some((h.opcode == OP_TEXT, payload.to_vec()));
                None
            }
            (OP_TEXT, false) => Some(Msg::Text(Cow::Borrowed(utf8(payload)?))),
            (OP_BINARY, false) => Some(Msg::Binary(Cow::Borrowed(payload))),
            (OP_CONT, false) => return Err(WsError::Protocol("continuation without a start")),
            (OP_CONT, true) => {
                let (_, bytes) = self.fragments.as_mut().expect("checked");
                bytes.extend_from_slice(payload);
                if h.fin {
                    let (text, bytes) = self.fragments.take().expect("checked");
                    Some(if text {
                        let s = String::from_utf8(bytes)
                            .map_err(|_| WsError::Protocol("text is not UTF-8"))?;
                        Msg::Text(Cow::Owned(s))
                    } else {
                        Msg::Binary(Cow::Owned(bytes))
                    })
                } else {
                    None
                }
            }
            (OP_PING, _) => Some(Msg::Ping(payload)),
            (OP_PONG, _) => Some(Msg::Pong),
            (OP_CLOSE, _) => Some(Msg::Close(close_code(payload)?)),
            _ => return Err(WsError::Protocol("unknown opcode")),
        };
        Ok(Some((msg, total)))
    }

    fn header(buf: &[u8]) -> Result<Option<Header>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
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
            opcode: b0 & 0x0F,
            mask: [m[0], m[1], m[2], m[3]],
            header_len: at + 4,
            // Saturates on 32-bit targets; the size check refuses it.
            payload_len: usize::try_from(len).unwrap_or(usize::MAX),
        }))
    }
}

fn utf8(b: &[u8]) -> Result<&str, WsError> {
    std::str::from_utf8(b).map_err(|_| WsError::Protocol("text is not UTF-8"))
}

fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close payload of one byte")),
        [a, b, reason @ ..] => {
            utf8(reason)?;
            Ok(Some(u16::from_be_bytes([*a, *b])))
        }
    }
}

/// XORs `payload` with the client's mask, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
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
    let op = match kind {
        Kind::Text => OP_TEXT,
        Kind::Binary => OP_BINARY,
        Kind::Close => OP_CLOSE,
        Kind::Pong => OP_PONG,
    };
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | op);
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

#[cfg(test)]
pub(crate) mod tests;
