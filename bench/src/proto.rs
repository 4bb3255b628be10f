//! Engine.IO / Socket.IO frame helpers: just enough of the wire contract for
//! the benchmark, with allocation-free fast paths for the hot frames.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// `43<id>[...]`: the ack id and the JSON array that follows it.
pub fn parse_ack(s: &str) -> Option<(u64, &str)> {
    let rest = s.strip_prefix("43")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let id = rest[..digits].parse().ok()?;
    Some((id, &rest[digits..]))
}

// Prebuilt SIMD substring finders: `str::find` builds its searcher on
// every call, which was the benchmark's largest cost per delivery.
static SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("\"seq\":"));
static CONTENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("\"content\":\""));

/// Parses the decimal digits at the front of `b` (after blanks).
fn leading_u64(b: &[u8]) -> Option<u64> {
    let b = b.trim_ascii_start();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    Some(
        b[..digits]
            .iter()
            .fold(0u64, |n, c| n * 10 + u64::from(c - b'0')),
    )
}

/// The number after the first `"seq":` in `s`.
pub fn find_seq(s: &str) -> Option<u64> {
    let at = SEQ.find(s.as_bytes())? + 6;
    leading_u64(&s.as_bytes()[at..])
}

/// The value of the first `"content":"…"` in `s` (no unescaping: the
/// benchmark's own contents never need it).
pub fn find_content(s: &str) -> Option<&str> {
    let at = CONTENT.find(s.as_bytes())? + 11;
    let rest = &s[at..];
    let end = memchr::memchr(b'"', rest.as_bytes())?;
    Some(&rest[..end])
}

/// A `message` event: its seq and content.
pub fn parse_message(s: &str) -> Option<(u64, &str)> {
    if !s.starts_with("42[\"message\",") {
        return None;
    }
    Some((find_seq(s)?, find_content(s)?))
}

/// Message content carrying the scheduled send time (Unix ns) and the
/// index of the instance (`--server`) the sender is connected to, padded
/// to `size` bytes with `x`: `<sched_ns>|<instance>|xxx…`.
pub fn make_content(sched_ns: u64, instance: usize, size: usize) -> String {
    let mut c = format!("{sched_ns}|{instance}|");
    while c.len() < size {
        c.push('x');
    }
    c
}

/// The scheduled send time and the sender's instance embedded by
/// [`make_content`] (instance 0 when the content has none).
pub fn content_meta(content: &str) -> Option<(u64, usize)> {
    let b = content.as_bytes();
    let end = memchr::memchr(b'|', b).unwrap_or(b.len());
    let sched = leading_u64(&b[..end]).filter(|_| b[..end].iter().all(u8::is_ascii_digit))?;
    let rest = b.get(end + 1..).unwrap_or_default();
    let inst_end = memchr::memchr(b'|', rest).unwrap_or(0);
    let instance = if inst_end > 0 && rest[..inst_end].iter().all(u8::is_ascii_digit) {
        leading_u64(&rest[..inst_end]).map_or(0, |i| i as usize)
    } else {
        0
    };
    Some((sched, instance))
}

/// `42<id>["send_message",{...}]` for one message.
pub fn send_frame(ack: u64, channel_id: &str, content: &str) -> String {
    format!(
        "42{ack}[\"send_message\",{{\"channelId\":{},\"content\":\"{content}\"}}]",
        serde_json::Value::from(channel_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_frames() {
        assert_eq!(
            parse_ack("4317[{\"ok\":true}]"),
            Some((17, "[{\"ok\":true}]"))
        );
        assert_eq!(parse_ack("43[{}]"), None);
        assert_eq!(parse_ack("42[\"x\"]"), None);
    }

    #[test]
    fn message_frames() {
        let f = r#"42["message",{"id":"9","channelId":"3","seq":42,"userId":"u","content":"123|xx","type":"text"},"off"]"#;
        assert_eq!(parse_message(f), Some((42, "123|xx")));
        assert_eq!(parse_message(r#"42["typing",{"seq":1}]"#), None);
        let ack = r#"[{"ok":true,"message":{"id":"1","seq": 7}}]"#;
        assert_eq!(find_seq(ack), Some(7));
    }

    #[test]
    fn content_round_trip() {
        let c = make_content(1_700_000_000_123_456_789, 2, 100);
        assert_eq!(c.len(), 100);
        assert_eq!(content_meta(&c), Some((1_700_000_000_123_456_789, 2)));
        // Contents without an instance (older runs, other tools): instance 0.
        assert_eq!(content_meta("123|xxxx"), Some((123, 0)));
        assert_eq!(content_meta("123"), Some((123, 0)));
        assert_eq!(content_meta("abc|1|"), None);
        let f = send_frame(5, "12", &c);
        assert!(f.starts_with("425[\"send_message\",{\"channelId\":\"12\""));
        let v: serde_json::Value = serde_json::from_str(&f[3..]).unwrap();
        assert_eq!(v[1]["content"], c.as_str());
    }
}
