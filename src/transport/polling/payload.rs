//! The long-polling payload (Engine.IO v4): packets joined by the record
//! separator `\x1e`, a binary packet as `b` and its base64.

use base64::Engine;

use crate::protocol::Frame;

/// The record separator between the packets of one payload.
const SEP: char = '\x1e';

/// One packet of a POSTed payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    Text(String),
    Binary(Vec<u8>),
}

/// Appends `frame` to a GET's payload.
pub(crate) fn encode_into(out: &mut String, frame: &Frame) {
    if !out.is_empty() {
        out.push(SEP);
    }
    match frame {
        Frame::Text(t) => out.push_str(t.as_str()),
        // A polling answer is plain text: the broadcast's uncompressed form.
        Frame::Packed(p) => out.push_str(p.text.as_str()),
        Frame::Binary(b) => {
            out.push('b');
            base64::engine::general_purpose::STANDARD.encode_string(b, out);
        }
    }
}

/// Splits a POSTed body into its packets. `None` when a part is empty or a
/// binary part is not base64: the reference closes the session for it
/// (a parser error).
pub(crate) fn decode(body: &str) -> Option<Vec<Inbound>> {
    body.split(SEP)
        .map(|part| match part.strip_prefix('b') {
            _ if part.is_empty() => None,
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .map(Inbound::Binary),
            None => Some(Inbound::Text(part.to_owned())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips_text_and_binary() {
        let mut out = String::new();
        encode_into(&mut out, &Frame::Text("4hello".into()));
        encode_into(&mut out, &Frame::Binary(vec![1u8, 2, 3].into()));
        encode_into(&mut out, &Frame::Text("2".into()));
        assert_eq!(out, "4hello\x1ebAQID\x1e2");
        assert_eq!(
            decode(&out).unwrap(),
            vec![
                Inbound::Text("4hello".into()),
                Inbound::Binary(vec![1, 2, 3]),
                Inbound::Text("2".into()),
            ]
        );
    }

    #[test]
    fn bad_parts_are_refused() {
        assert!(decode("").is_none());
        assert!(decode("4a\x1e\x1e4b").is_none());
        assert!(decode("b!!!").is_none());
    }
}
