//! A recovery session as Redis holds it (one string per pid), and the two
//! scripts that change one: the claim of a reconnect and the holder's
//! write. With several instances a client may come back through any of
//! them, so its session must be where all of them look.
//!
//! Value layout (all ASCII lengths in decimal, names as given):
//! `<owner: 8 bytes><state: 1 byte><user len>:<user><start pos>:`
//! (the start positions, one per sequencing partition, as an offset:
//! decimal, joined by `.`) followed by `<name len>:<name>` per channel. The owner (a random token
//! per connection holding the pid), the state and the user come first, at
//! fixed places the scripts can compare without parsing the rest. The
//! state is `=` when written by its holder, `~` from a claim until the claimant restores it: a claimed session cannot be
//! claimed again, so of reconnects racing on one pid exactly one wins.

use super::offset::{self, Positions};
use crate::store::sequencing::MAX_SEQUENCER_PARTITIONS;

/// Key prefix of the sessions (one per pid).
pub(crate) const PREFIX: &str = "gatrix:session:";

/// Length of an owner token (`random_token(6)`: 8 base64 chars).
pub(crate) const OWNER_LEN: usize = 8;

/// State byte: written by its holder, claimable.
pub(crate) const SETTLED: u8 = b'=';
/// State byte: claimed, the claimant has not restored it yet (set by the
/// claim script).
#[cfg(test)]
pub(crate) const CLAIMED: u8 = b'~';

/// The Redis key of a pid's session.
pub(crate) fn key(pid: &str) -> String {
    format!("{PREFIX}{pid}")
}

/// A fresh owner token: which connection holds a pid, so that a stale
/// connection on the same pid (half open, on another instance) cannot
/// overwrite the session once a reconnect has claimed it.
pub(crate) fn new_owner() -> String {
    crate::ids::random_token(6)
}

/// What a session entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub user: String,
    /// Where a replay starts when the client sends no offset: one
    /// position per sequencing partition (as many as the writer had; the
    /// claimant checks it has as many).
    pub start_pos: Positions,
    /// The channels joined (or being joined).
    pub channels: Vec<String>,
}

/// The user part as the claim script compares it: `<len>:<user>`.
pub(crate) fn user_part(user: &str) -> String {
    format!("{}:{user}", user.len())
}

/// Encodes an entry under `owner` (exactly [`OWNER_LEN`] bytes).
pub(crate) fn encode<'a>(
    owner: &str,
    user: &str,
    start_pos: &[u64],
    channels: impl Iterator<Item = &'a str>,
) -> Vec<u8> {
    use std::io::Write;
    debug_assert_eq!(owner.len(), OWNER_LEN);
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(owner.as_bytes());
    v.push(SETTLED);
    v.extend_from_slice(user_part(user).as_bytes());
    v.extend_from_slice(offset::render(start_pos).as_bytes());
    v.push(b':');
    for c in channels {
        let _ = write!(v, "{}:{c}", c.len());
    }
    v
}

/// Why an entry could not be read (another version wrote it, or it is
/// damaged): the session is then not recovered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Decodes an entry (the owner and the state are skipped).
pub(crate) fn decode(v: &[u8]) -> Result<Entry, Malformed> {
    let mut rest = v.get(OWNER_LEN + 1..).ok_or(Malformed)?;
    let user = take_counted(&mut rest)?;
    let start_pos = take_positions(&mut rest)?;
    let mut channels = Vec::new();
    while !rest.is_empty() {
        channels.push(take_counted(&mut rest)?);
    }
    Ok(Entry {
        user,
        start_pos,
        channels,
    })
}

/// A decimal number ended by `:`.
fn take_number(rest: &mut &[u8]) -> Result<u64, Malformed> {
    let colon = rest.iter().position(|&b| b == b':').ok_or(Malformed)?;
    let n = std::str::from_utf8(&rest[..colon])
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(Malformed)?;
    *rest = &rest[colon + 1..];
    Ok(n)
}

/// Positions ended by `:` (1 to 32 of them, joined by `.`).
fn take_positions(rest: &mut &[u8]) -> Result<Positions, Malformed> {
    let colon = rest.iter().position(|&b| b == b':').ok_or(Malformed)?;
    let s = std::str::from_utf8(&rest[..colon]).map_err(|_| Malformed)?;
    let n = s.bytes().filter(|&b| b == b'.').count() + 1;
    let v = (n <= MAX_SEQUENCER_PARTITIONS as usize)
        .then(|| offset::parse(s, n))
        .flatten()
        .ok_or(Malformed)?;
    *rest = &rest[colon + 1..];
    Ok(v)
}

/// `<len>:<bytes>` as UTF-8.
fn take_counted(rest: &mut &[u8]) -> Result<String, Malformed> {
    let len = usize::try_from(take_number(rest)?).map_err(|_| Malformed)?;
    let bytes = rest.get(..len).ok_or(Malformed)?;
    let s = std::str::from_utf8(bytes)
        .map_err(|_| Malformed)?
        .to_owned();
    *rest = &rest[len..];
    Ok(s)
}

/// The claim: KEYS[1] the session; ARGV[1] the claimant's user part,
/// ARGV[2] its new owner token, ARGV[3] the TTL in ms. If the session
/// exists, is settled and is the user's, it becomes the claimant's and
/// claimed (same content, fresh TTL) and its old value is returned;
/// otherwise nothing changes and nil is returned. One script, so of
/// reconnects racing on one pid exactly one gets the session, and another
/// user's claim destroys nothing.
pub(crate) const CLAIM: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 9, 9) ~= '=' or string.sub(v, 10, 9 + #ARGV[1]) ~= ARGV[1] then
  return false
end
redis.call('SET', KEYS[1], ARGV[2] .. '~' .. string.sub(v, 10), 'PX', ARGV[3])
return v
";

/// The holder's write: KEYS[1] the session; ARGV[1] the writer's owner
/// token, ARGV[2] the new value (empty: delete), ARGV[3] the TTL in ms.
/// Written only if the session is absent or still the writer's, so a
/// connection whose pid was claimed elsewhere changes nothing. Returns 1
/// if written, 0 if not the writer's.
pub(crate) const PUT: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 8) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_comes_back_as_written() {
        let e = Entry {
            user: "alice:1é".into(),
            start_pos: Positions::from([42, 0, 7]),
            channels: vec!["general".into(), "a:b:c".into(), String::new()],
        };
        let v = encode(
            "AbCd-_01",
            &e.user,
            &e.start_pos,
            e.channels.iter().map(String::as_str),
        );
        assert_eq!(&v[..OWNER_LEN], b"AbCd-_01");
        assert_eq!(v[OWNER_LEN], SETTLED);
        assert_eq!(decode(&v), Ok(e));
        assert!(String::from_utf8_lossy(&v).contains("42.0.7:"));
        let none = encode("ownerOK1", "u", &[0], std::iter::empty());
        assert_eq!(none, b"ownerOK1=1:u0:");
        assert_eq!(decode(&none).map(|e| e.channels.len()), Ok(0));
    }

    #[test]
    fn a_damaged_entry_is_malformed() {
        let good = encode("ownerOK1", "bob", &[7], ["x", "yz"].into_iter());
        for cut in 0..good.len() {
            // Any prefix ending inside a field is refused; one ending
            // between channels decodes with fewer channels.
            if let Ok(e) = decode(&good[..cut]) {
                assert!(e.channels.len() < 2 && e.user == "bob" && *e.start_pos == [7]);
            }
        }
        for bad in [
            &b"short"[..],
            b"ownerOK1=x:bob7:",
            b"ownerOK1=99:bob7:",
            b"ownerOK1=3:bob-1:",
            b"ownerOK1=3:bob:",
            b"ownerOK1=3:bob99999999999999999999999:",
            b"ownerOK1=2:\xff\xfe7:",
            b"ownerOK1=3:bob7.:",
            b"ownerOK1=3:bob.7:",
            b"ownerOK1=3:bob1..2:",
        ] {
            assert_eq!(
                decode(bad),
                Err(Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_user_part_is_where_the_claim_compares_it() {
        // The claim compares byte 9 (Lua, 1-based) with the settled state
        // and bytes 10.. with `user_part`: a user whose name is a prefix
        // of another's does not match.
        let v = encode("ownerOK1", "al", &[1], std::iter::empty());
        assert_eq!(v[8], SETTLED);
        assert!(v[9..].starts_with(user_part("al").as_bytes()));
        let longer = encode("ownerOK1", "alice", &[1], std::iter::empty());
        assert!(!longer[9..].starts_with(user_part("al").as_bytes()));
        assert!(CLAIM.contains("'='") && CLAIM.contains("'~'"));
        assert_eq!((SETTLED, CLAIMED), (b'=', b'~'));
        assert_eq!(new_owner().len(), OWNER_LEN);
        assert_eq!(key("p"), "gatrix:session:p");
    }
}
