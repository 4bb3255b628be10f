//! Incremental UTF-8 validation of a text message that arrives in pieces
//! (fragments, or one frame split across reads), failing at the first byte
//! that cannot be part of valid UTF-8 (RFC 6455 8.1: fail fast).
//!
//! The validation itself is `std::str::from_utf8`: its error tells an
//! input that ends inside a character (`error_len() == None`: more bytes
//! may complete it) from one that is invalid already, so only the bytes of
//! the unfinished character are carried between pieces (at most three).

/// The text so far cannot be UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

/// The state between pieces: the bytes of an unfinished character.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Utf8Check {
    pending: [u8; 4],
    len: u8,
}

impl Utf8Check {
    /// Checks the next piece of the text.
    pub(crate) fn feed(&mut self, mut input: &[u8]) -> Result<(), Invalid> {
        if self.len > 0 {
            // Complete the carried character first, with as many bytes as
            // its lead byte asks for (or all there are).
            let len = usize::from(self.len);
            let take = (width(self.pending[0]) - len).min(input.len());
            self.pending[len..len + take].copy_from_slice(&input[..take]);
            input = &input[take..];
            let len = len + take;
            match std::str::from_utf8(&self.pending[..len]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.len = len as u8; // still unfinished: input is used up
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &input[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// The text is complete: no character may be left unfinished.
    pub(crate) fn finish(&self) -> Result<(), Invalid> {
        if self.len == 0 { Ok(()) } else { Err(Invalid) }
    }
}

/// Bytes of the character that `lead` starts (a lead byte that
/// `from_utf8` reported as unfinished, so 2 to 4).
fn width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` split at every pair of points; the verdict must be
    /// the whole text's.
    fn agrees(bytes: &[u8]) {
        let whole = std::str::from_utf8(bytes).is_ok();
        for a in 0..=bytes.len() {
            for b in a..=bytes.len() {
                let mut c = Utf8Check::default();
                let ok = c.feed(&bytes[..a]).is_ok()
                    && c.feed(&bytes[a..b]).is_ok()
                    && c.feed(&bytes[b..]).is_ok()
                    && c.finish().is_ok();
                assert_eq!(ok, whole, "{bytes:x?} split at {a}, {b}");
            }
        }
    }

    #[test]
    fn any_split_agrees_with_the_whole() {
        agrees("héllo wörld κόσμε 🎉!".as_bytes());
        agrees(b"ab\xf4\x90\x80\x80cd"); // above U+10FFFF
        agrees(b"\xed\xa0\x80"); // a surrogate
        agrees(b"\xc0\xaf"); // overlong
        agrees(b"ok\xe2\x82"); // ends inside a character
        agrees(b"\xf0\x9f\x8e");
        agrees(b"\x80");
    }

    #[test]
    fn fails_at_the_first_impossible_byte() {
        let mut c = Utf8Check::default();
        assert_eq!(c.feed("κό".as_bytes()), Ok(()));
        assert_eq!(c.feed(b"\xf4"), Ok(()), "could still be U+10xxxx");
        assert_eq!(c.feed(b"\x90"), Err(Invalid), "cannot be any more");
        let mut c = Utf8Check::default();
        assert_eq!(c.feed(b"a\xc0"), Err(Invalid), "0xC0 never starts one");
    }
}
