//! The recovery offset: the last argument of every `message` event, which
//! a client echoes back in its CONNECT auth (`{pid, offset}`).
//!
//! It is one position per sequencing partition, in partition order,
//! decimal, joined by `.`: "this connection has been sent every message of
//! partition q with `pos <= v[q]`, for every q". With one partition (the
//! default) that is a single decimal `pos`, as it always was; with N it is
//! N positions (`"120.98.140.77"`), since each partition's `pos` counts on
//! its own and one number cannot say how far a client got in the others.
//!
//! What a client sends is untrusted: anything but exactly N decimal u64
//! (another length after an operator changed SEQUENCER_PARTITIONS, garbage,
//! something absurdly long) is no usable offset, never an error.

use std::fmt::Write;

use crate::store::sequencing::MAX_SEQUENCER_PARTITIONS;

/// Positions, one per sequencing partition. Shared: a shard hands the
/// same snapshot of what it applied to every session started meanwhile.
pub(crate) type Positions = std::sync::Arc<[u64]>;

/// The longest offset that can be valid: every partition's u64 (20 digits
/// at most) and the dots between. Longer ones are refused unread.
pub(crate) const MAX_OFFSET_LEN: usize = MAX_SEQUENCER_PARTITIONS as usize * 21;

/// `v` as the offset a client is sent: positions joined by `.`.
pub(crate) fn render(v: &[u64]) -> String {
    let mut s = String::with_capacity(v.len() * 8);
    write_to(&mut s, v);
    s
}

/// [`render`], appended to `out`.
pub(crate) fn write_to(out: &mut String, v: &[u64]) {
    for (i, p) in v.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let _ = write!(out, "{p}");
    }
}

/// A client's offset with `partitions` sequencing partitions: exactly that
/// many decimal u64 joined by `.`, or None.
pub(crate) fn parse(s: &str, partitions: usize) -> Option<Positions> {
    if s.len() > MAX_OFFSET_LEN || partitions == 0 {
        return None;
    }
    let mut v = Vec::with_capacity(partitions);
    for part in s.split('.') {
        if v.len() == partitions
            || part.is_empty()
            || part.len() > 20
            || !part.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        v.push(part.parse().ok()?);
    }
    (v.len() == partitions).then(|| v.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_is_a_decimal_pos() {
        assert_eq!(render(&[120]), "120");
        assert_eq!(parse("120", 1).as_deref(), Some(&[120][..]));
        assert_eq!(parse("0", 1).as_deref(), Some(&[0][..]));
        let max = u64::MAX.to_string();
        assert_eq!(parse(&max, 1).as_deref(), Some(&[u64::MAX][..]));
    }

    #[test]
    fn several_partitions_are_dotted() {
        let v = [120, 98, 140, 77];
        assert_eq!(render(&v), "120.98.140.77");
        assert_eq!(parse("120.98.140.77", 4).as_deref(), Some(&v[..]));
        let all = [u64::MAX; MAX_SEQUENCER_PARTITIONS as usize];
        let s = render(&all);
        assert!(s.len() <= MAX_OFFSET_LEN);
        assert_eq!(parse(&s, all.len()).as_deref(), Some(&all[..]));
    }

    #[test]
    fn another_length_is_no_offset() {
        assert_eq!(parse("120", 4), None, "a pos from before N was raised");
        assert_eq!(parse("1.2.3", 4), None);
        assert_eq!(parse("1.2.3.4.5", 4), None);
        assert_eq!(parse("1.2", 1), None);
        assert_eq!(parse("1", 0), None);
    }

    #[test]
    fn garbage_is_no_offset() {
        for bad in [
            "",
            ".",
            "1..2",
            "1.2.",
            ".1.2",
            "a",
            "1.x",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1e3",
            "0x10",
            "١٢",
            "18446744073709551616",
        ] {
            assert_eq!(parse(bad, 1), None, "{bad:?}");
            assert_eq!(parse(&format!("{bad}.1"), 2), None, "{bad:?}.1");
        }
    }

    #[test]
    fn huge_is_refused_unread() {
        let long = "1.".repeat(MAX_OFFSET_LEN);
        assert_eq!(parse(&long, 32), None);
        let zeros = format!("{}1", "0".repeat(MAX_OFFSET_LEN));
        assert_eq!(parse(&zeros, 1), None);
        // Leading zeros within the bound are still a number.
        assert_eq!(parse("007", 1).as_deref(), Some(&[7][..]));
    }
}
