//! The `Sec-WebSocket-Extensions` negotiation of permessage-deflate
//! (RFC 7692 5, 7.1): which offer the server accepts, and its answer.
//!
//! The server always answers with `server_no_context_takeover` (each
//! compressed frame stands alone, so one compressed broadcast fits every
//! subscriber) and `client_no_context_takeover` (RFC 7692 7.1.1.1 lets the
//! server add it unasked: then a client's message never refers to the one
//! before, so a connection keeps no 32 KB inflate window between messages
//! and one inflater per shard serves them all).

/// The extension's registered name.
const NAME: &str = "permessage-deflate";

/// The window the server's compressor uses (2^15, the deflate maximum).
const OUR_WINDOW_BITS: u8 = 15;

/// An accepted offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// May the server compress its messages? Not when the client limited
    /// the server's window below the one the compressor uses
    /// (`server_max_window_bits` < 15): its messages then go uncompressed,
    /// which the extension allows (RSV1 clear).
    pub compress: bool,
    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub response: String,
}

/// Picks the first permessage-deflate offer in `header` (the offers in the
/// client's order of preference, RFC 7692 5) that the server can honour
/// and returns the answer; `None` when there is none (the 101 then names
/// no extension). An offer with an unknown, repeated or malformed
/// parameter is declined (RFC 7692 7.1), and the next one considered.
pub(crate) fn negotiate(header: &str) -> Option<Agreement> {
    header.split(',').find_map(accept)
}

/// The answer to one offer (`name; param; param=value`), if acceptable.
fn accept(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let (mut server_nct, mut client_nct) = (false, false);
    let mut server_bits: Option<u8> = None;
    let mut client_bits = false;
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (p, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !server_nct => server_nct = true,
            ("client_no_context_takeover", None) if !client_nct => client_nct = true,
            ("server_max_window_bits", Some(v)) if server_bits.is_none() => {
                server_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if !client_bits => {
                if let Some(v) = v {
                    window_bits(v)?;
                }
                client_bits = true;
            }
            _ => return None,
        }
    }
    // The client's own window (`client_max_window_bits`, with or without a
    // value) needs no answer: the shard's inflater has the largest window,
    // so whatever size the client compresses with is read.
    let mut response = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
    // RFC 7692 7.1.2.1: an accepted server_max_window_bits is answered
    // with a value no larger.
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(Agreement {
        compress: server_bits.is_none_or(|b| b >= OUR_WINDOW_BITS),
        response,
    })
}

/// A window size parameter: 8 to 15, digits only, no leading zero
/// (RFC 7692 7.1.2.1).
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// A parameter value: a token, or a quoted string with the same content
/// (RFC 7692 5.1 / RFC 6455 9.1).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn the_browser_offer_is_accepted_with_both_no_context_takeovers() {
        let a = negotiate("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(a.response, BOTH);
        assert!(a.compress);
        let a = negotiate("permessage-deflate").unwrap();
        assert_eq!(a.response, BOTH);
        let a = negotiate(r#"PerMessage-Deflate ; client_max_window_bits="10""#).unwrap();
        assert_eq!(a.response, BOTH);
    }

    #[test]
    fn a_limited_server_window_is_accepted_and_answered_without_compressing() {
        let a = negotiate("permessage-deflate; server_max_window_bits=9").unwrap();
        assert_eq!(a.response, format!("{BOTH}; server_max_window_bits=9"));
        assert!(!a.compress);
        let a = negotiate("permessage-deflate; server_max_window_bits=15").unwrap();
        assert_eq!(a.response, format!("{BOTH}; server_max_window_bits=15"));
        assert!(a.compress);
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_accepted() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown",
            r#"permessage-deflate; client_max_window_bits="10"#,
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(negotiate(bad), None, "{bad:?}");
            let both = format!("{bad}, permessage-deflate; client_max_window_bits=12");
            assert_eq!(negotiate(&both).unwrap().response, BOTH, "{both:?}");
        }
    }
}
