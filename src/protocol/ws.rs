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
//! tests' clients and for its `Utf8Bytes` (the protocol's [`super::Text`]).
//!
//! Accepted: masked client frames, text and binary messages (fragmented or
//! not, up to `max_message` bytes in total, checked from the frame header
//! before any payload is buffered), ping/pong/close control frames between
//! fragments. With permessage-deflate negotiated ([`Decoder::set_inflate`]),
//! a message whose first frame has RSV1 set is compressed: its frames are
//! joined (up to the compressed bound of the limit) and inflated as a whole
//! by the shard's inflater, the limit applied to the inflated size
//! (`deflate::inflate`), the text checked as UTF-8 once inflated.
//! Refused as protocol errors (close 1002): reserved bits (RSV2, RSV3;
//! RSV1 without the extension, or on a control or continuation frame),
//! unknown opcodes, unmasked frames, fragmented or
//! oversized control frames, continuations without a start, a new message
//! inside a fragmented one, a malformed close payload or a close code that
//! is invalid on the wire. Text that is not UTF-8, in a message or a close
//! reason, is [`WsError::InvalidUtf8`] (close 1007), found as soon as it is
//! certain: at the fragment, or the part of a frame that has arrived, that
//! makes it invalid (`utf8`).

mod encode;
mod header;
mod utf8;

use std::borrow::Cow;

pub use encode::{Kind, encode, encode_close, encode_deflated};

use header::{Header, unmask};
use utf8::Utf8Check;

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
    /// Text, or a close reason, that is not UTF-8 (close 1007).
    InvalidUtf8,
}

impl WsError {
    /// How the connection is closed for it.
    pub fn close_reason(self) -> super::CloseReason {
        match self {
            Self::Protocol(_) => super::CloseReason::Malformed,
            Self::TooLarge => super::CloseReason::TooLarge,
            Self::InvalidUtf8 => super::CloseReason::InvalidUtf8,
        }
    }
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// The "per-message compressed" bit of permessage-deflate (RFC 7692 6).
const RSV1: u8 = 0x40;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;

/// One connection's decoding state: a fragmented message in progress, and
/// the UTF-8 check of the text message (or text frame) being received.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// (is text, bytes so far) of a fragmented message.
    fragments: Option<(bool, Vec<u8>)>,
    /// The fragmented message in `fragments` is compressed (its bytes are
    /// deflate data, inflated once the last one came).
    compressed: bool,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    inflate: bool,
    /// The UTF-8 state of the current text message, up to `checked`.
    utf8: Utf8Check,
    /// Payload bytes of the incomplete frame at the front of the buffer
    /// already fed to `utf8` (it is presented again, with more bytes).
    checked: usize,
    /// The status code of the client's close frame, once it came.
    peer_close: Option<u16>,
    /// A close frame came (or started to come) from the client, valid or
    /// not.
    peer_closed: bool,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            fragments: None,
            compressed: false,
            inflate: false,
            utf8: Utf8Check::default(),
            checked: 0,
            peer_close: None,
            peer_closed: false,
        }
    }

    /// Changes the message size limit from the next frame on (the limit
    /// before a Socket.IO CONNECT is smaller than after it).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    /// Accepts compressed messages from now on (permessage-deflate was
    /// negotiated, without client context takeover: each message inflates
    /// on its own).
    pub fn set_inflate(&mut self, inflate: bool) {
        self.inflate = inflate;
    }

    /// The status code of the client's close frame, if one came with a code.
    pub fn peer_close(&self) -> Option<u16> {
        self.peer_close
    }

    /// Has the client sent a close frame (valid or not)? Then it sends
    /// nothing more: there is no close frame of its own to wait for.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// How many bytes the frame starting at `buf` needs in total, once its
    /// header is complete (so the caller can reserve for a large frame).
    pub fn frame_len(buf: &[u8]) -> Option<usize> {
        header::parse(buf)
            .ok()
            .flatten()
            .map(|h| h.header_len.saturating_add(h.payload_len))
    }

    /// Decodes the next message from the front of `buf`, unmasking in place.
    /// Returns the message and the bytes consumed, `Ok(None)` when `buf`
    /// holds no complete frame yet (nothing consumed: call again with the
    /// same bytes and more), or the error that ends the connection.
    /// Fragments are consumed into the decoder as they come, so a frame
    /// that completes no message is reported as `Some((None, consumed))`.
    pub fn next<'b>(
        &mut self,
        buf: &'b mut [u8],
    ) -> Result<Option<(Option<Msg<'b>>, usize)>, WsError> {
        let Some(h) = header::parse(buf)? else {
            return Ok(None);
        };
        // Even a close frame refused below (too long, a bad code) is the
        // client's last frame.
        self.peer_closed |= h.opcode == OP_CLOSE;
        // Every check that the header allows comes before waiting for the
        // payload: a client cannot make the server buffer more than the
        // limit, nor wait for a frame that is refused anyway.
        // `text`: checked as UTF-8 as it comes (not when compressed).
        let (text, compressed) = self.check_header(&h)?;
        let total = h.header_len.saturating_add(h.payload_len);
        if buf.len() < total {
            if text {
                let so_far = buf.get(h.header_len..).unwrap_or_default();
                self.check_partial(&h, so_far)?;
            }
            return Ok(None);
        }
        let checked = std::mem::take(&mut self.checked);
        let payload = &mut buf[h.header_len..total];
        unmask(payload, h.mask);
        let payload: &'b [u8] = payload;
        let unchecked = payload.get(checked..).unwrap_or_default();
        let msg = match h.opcode {
            OP_TEXT | OP_BINARY if h.fin && compressed => {
                Some(self.inflated(h.opcode == OP_TEXT, payload)?)
            }
            OP_TEXT | OP_BINARY if compressed => {
                self.compressed = true;
                self.fragments = Some((h.opcode == OP_TEXT, payload.to_vec()));
                None
            }
            OP_TEXT if h.fin => Some(Msg::Text(Cow::Borrowed(utf8(payload)?))),
            OP_BINARY if h.fin => Some(Msg::Binary(Cow::Borrowed(payload))),
            OP_TEXT | OP_BINARY => {
                if text {
                    if checked == 0 {
                        self.utf8 = Utf8Check::default();
                    }
                    self.utf8
                        .feed(unchecked)
                        .map_err(|_| WsError::InvalidUtf8)?;
                }
                self.fragments = Some((text, payload.to_vec()));
                None
            }
            OP_CONT => {
                if text {
                    self.utf8
                        .feed(unchecked)
                        .map_err(|_| WsError::InvalidUtf8)?;
                }
                let Some((_, bytes)) = self.fragments.as_mut() else {
                    return Err(WsError::Protocol("continuation without a start"));
                };
                bytes.extend_from_slice(payload);
                match self.fragments.take_if(|_| h.fin) {
                    Some((is_text, bytes)) if compressed => {
                        self.compressed = false;
                        Some(self.inflated(is_text, &bytes)?)
                    }
                    Some((true, bytes)) => {
                        self.utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
                        let s = String::from_utf8(bytes).map_err(|_| WsError::InvalidUtf8)?;
                        Some(Msg::Text(Cow::Owned(s)))
                    }
                    Some((false, bytes)) => Some(Msg::Binary(Cow::Owned(bytes))),
                    None => None,
                }
            }
            OP_PING => Some(Msg::Ping(payload)),
            OP_PONG => Some(Msg::Pong),
            _ => {
                let code = close_code(payload)?;
                self.peer_close = code;
                Some(Msg::Close(code))
            }
        };
        Ok(Some((msg, total)))
    }

    /// A compressed message, inflated within the limit.
    fn inflated(&self, text: bool, deflated: &[u8]) -> Result<Msg<'static>, WsError> {
        let bytes = super::deflate::inflate(deflated, self.max_message)?;
        Ok(if text {
            let s = String::from_utf8(bytes).map_err(|_| WsError::InvalidUtf8)?;
            Msg::Text(Cow::Owned(s))
        } else {
            Msg::Binary(Cow::Owned(bytes))
        })
    }

    /// The checks a frame header allows on its own (reserved bits, opcode,
    /// fragment state, sizes). Returns whether its payload is text to
    /// check as it comes (plain text), and whether it is compressed.
    fn check_header(&self, h: &Header) -> Result<(bool, bool), WsError> {
        // RSV1 only on the first frame of a message, and only once
        // permessage-deflate is negotiated (RFC 7692 6).
        if h.rsv1 && !(self.inflate && matches!(h.opcode, OP_TEXT | OP_BINARY)) {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let in_text = self.fragments.as_ref().map(|(text, _)| *text);
        match (h.opcode, in_text) {
            (OP_CLOSE | OP_PING | OP_PONG, _) => {
                if h.payload_len > 125 {
                    return Err(WsError::Protocol("control frame payload above 125 bytes"));
                }
                if !h.fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                return Ok((false, false));
            }
            (OP_TEXT | OP_BINARY, Some(_)) => {
                return Err(WsError::Protocol("new message inside a fragmented one"));
            }
            (OP_CONT, None) => return Err(WsError::Protocol("continuation without a start")),
            (OP_TEXT | OP_BINARY | OP_CONT, _) => {}
            _ => return Err(WsError::Protocol("unknown opcode")),
        }
        let compressed = h.rsv1 || (h.opcode == OP_CONT && self.compressed);
        // Compressed bytes are bounded by what a message within the limit
        // can compress to; the inflated size is checked as it inflates.
        let limit = if compressed {
            super::deflate::compressed_bound(self.max_message)
        } else {
            self.max_message
        };
        let so_far = self.fragments.as_ref().map_or(0, |(_, b)| b.len());
        if so_far.saturating_add(h.payload_len) > limit {
            return Err(WsError::TooLarge);
        }
        let text = h.opcode == OP_TEXT || in_text == Some(true);
        Ok((text && !compressed, compressed))
    }

    /// Feeds the newly arrived part of an incomplete text frame (`so_far`:
    /// its payload bytes here, still masked) to the UTF-8 check.
    fn check_partial(&mut self, h: &Header, so_far: &[u8]) -> Result<(), WsError> {
        let Some(new) = so_far.get(self.checked..) else {
            return Ok(()); // not the same frame with more bytes: nothing new
        };
        if self.checked == 0 && h.opcode == OP_TEXT {
            self.utf8 = Utf8Check::default(); // a new text message starts
        }
        let mut chunk = [0u8; 256];
        for (n, piece) in new.chunks(chunk.len()).enumerate() {
            let at = self.checked + n * chunk.len();
            for (i, (out, b)) in chunk.iter_mut().zip(piece).enumerate() {
                *out = b ^ h.mask[(at + i) & 3];
            }
            self.utf8
                .feed(&chunk[..piece.len()])
                .map_err(|_| WsError::InvalidUtf8)?;
        }
        self.checked = so_far.len();
        Ok(())
    }
}

fn utf8(b: &[u8]) -> Result<&str, WsError> {
    std::str::from_utf8(b).map_err(|_| WsError::InvalidUtf8)
}

fn close_code(payload: &[u8]) -> Result<Option<u16>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close payload of one byte")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            utf8(reason)?;
            Ok(Some(code))
        }
    }
}

/// May `code` be sent in a close frame (RFC 6455 7.4)? 1000-1003 and
/// 1007-1011 from the RFC, 1012-1014 from the IANA registry, 3000-4999 for
/// libraries and applications. 1004 is reserved; 1005, 1006 and 1015 mean
/// "none", "dropped" and "TLS failed" and never appear on the wire; the
/// rest below 3000 is unassigned.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
pub(crate) mod tests;
