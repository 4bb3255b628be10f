//! Lone UTF-16 surrogate escapes in client JSON.
//!
//! JavaScript strings are UTF-16, and `JSON.stringify` writes a surrogate
//! without its pair as an escape (`"\ud83d"`): socket.io-client sends one
//! whenever a string was cut in the middle of an emoji. `JSON.parse`, and so
//! the reference server, accepts it; serde_json refuses it (a Rust string
//! cannot hold it). Such escapes are rewritten to `\ufffd` (U+FFFD, the
//! replacement character, as a lossy UTF-16 decoder does) before parsing.
//! Pairs (`\ud83d\ude00`) are kept as they are.

use std::borrow::Cow;

/// `json` with every lone surrogate escape replaced by `\ufffd`; borrowed
/// (and scanned once, without copying) when there is none, the usual case.
pub(crate) fn replace_lone(json: &str) -> Cow<'_, str> {
    let b = json.as_bytes();
    // Fast path: no `\u` followed by `d`/`D` means no surrogate escape.
    let maybe = json
        .match_indices("\\u")
        .any(|(i, _)| matches!(b.get(i + 2), Some(b'd' | b'D')));
    if !maybe {
        return Cow::Borrowed(json);
    }
    let mut out = String::new();
    let mut copied = 0; // json[..copied] is in `out` (or unchanged so far)
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        // An escape: `\\`, `\"`, `\n`… are two bytes; only `\u` is longer.
        if b.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let Some(unit) = hex4(b, i + 2) else {
            i += 2; // not valid JSON: left for the parser to refuse
            continue;
        };
        match unit {
            0xD800..=0xDBFF => {
                let low = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                    .then(|| hex4(b, i + 8))
                    .flatten();
                if matches!(low, Some(0xDC00..=0xDFFF)) {
                    i += 12; // a pair: one character outside the BMP
                    continue;
                }
            }
            0xDC00..=0xDFFF => {}
            _ => {
                i += 6;
                continue;
            }
        }
        // A lone surrogate (a high one not followed by a low one, or a low
        // one not preceded by a high one: pairs were skipped whole).
        out.push_str(&json[copied..i]);
        out.push_str("\\ufffd");
        i += 6;
        copied = i;
    }
    if copied == 0 {
        return Cow::Borrowed(json);
    }
    out.push_str(&json[copied..]);
    Cow::Owned(out)
}

/// The four hex digits at `b[at..at + 4]` as a number.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = b.get(at..at + 4)?;
    let s = std::str::from_utf8(digits).ok()?;
    if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::replace_lone;
    use std::borrow::Cow;

    fn fixed(s: &str) -> String {
        replace_lone(s).into_owned()
    }

    #[test]
    fn lone_surrogates_become_the_replacement_character() {
        assert_eq!(fixed(r#"["\ud83d"]"#), r#"["\ufffd"]"#);
        assert_eq!(fixed(r#"["a\uD83Db"]"#), r#"["a\ufffdb"]"#);
        assert_eq!(fixed(r#"["\ude00x"]"#), r#"["\ufffdx"]"#);
        // High then high, low then high, a high before a non-surrogate.
        assert_eq!(fixed(r#""\ud83d\ud83d""#), r#""\ufffd\ufffd""#);
        assert_eq!(fixed(r#""\ude00\ud83d""#), r#""\ufffd\ufffd""#);
        assert_eq!(fixed(r#""\ud83d\u0041""#), r#""\ufffd\u0041""#);
        // A lone one at the very end, and the text around kept.
        assert_eq!(fixed(r#"{"k":"é\ud800"}"#), r#"{"k":"é\ufffd"}"#);
        let v: serde_json::Value = serde_json::from_str(&fixed(r#"["x\ud83d"]"#)).unwrap();
        assert_eq!(v[0], "x\u{fffd}");
    }

    #[test]
    fn pairs_and_other_escapes_are_untouched() {
        for s in [
            r#"["\ud83d\ude00"]"#,
            r#"["\uD83D\uDE00 ok"]"#,
            r#"["\\ud83d"]"#, // an escaped backslash, then text
            r#"["\\\ud83d\ude00"]"#,
            r#"["\u00e9\n\"\\"]"#,
            r#"["plain"]"#,
            r#"["\ud8"]"#, // broken: left for the parser
        ] {
            assert!(matches!(replace_lone(s), Cow::Borrowed(_)), "{s}");
        }
        assert_eq!(fixed(r#"["\\\ud83d"]"#), r#"["\\\ufffd"]"#);
        assert_eq!(fixed(r#"["\\\\ud83d"]"#), r#"["\\\\ud83d"]"#);
    }
}
