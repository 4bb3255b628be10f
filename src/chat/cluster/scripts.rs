//! The presence state in Redis and the Lua scripts that change it, each
//! atomic, so that exactly one caller sees each cluster-wide 0 <-> 1 edge.
//!
//! Keys (prefix [`PREFIX`]), all with a TTL:
//! - `lease:<server>`: the instance's lease, `PX` half the lease period,
//!   renewed every sixth of it ([`Scripts::renew`]).
//! - `servers`: the instances with state (a set; a handful of members).
//! - `u:<server>`: hash user → that instance's connections of the user.
//! - `s:<server>`: hash `<channel>\n<user>` → that instance's connections
//!   of the user subscribed to the channel.
//! - `l:<user>`: set of the channels in the user's presence list (protocol.md,
//!   `presence_update`), whichever instance saw the join; it lives
//!   [`LIST_TTL_MS`] after its last change or the user's last count change.
//!
//! A total counts only instances whose lease is alive. The hashes live
//! three lease halves past the last renewal, so that a dead instance's
//! state is still there when the others reap it ([`Scripts::reap`]).
//!
//! The scripts build their keys from the prefix (a total reads every
//! instance's hash), so on a Redis Cluster every key must lie in one hash
//! slot: the prefix holds the hash tag `{presence}`, and each call names
//! [`servers_key`] as its one key, which is how the client finds the
//! master to send it to. All presence state is on that master.

use redis::{ConnectionLike, RedisResult, Script};

/// Every key of this subsystem starts with it.
pub(crate) const PREFIX: &str = "gatrix:{presence}:";

/// The key each script call names (KEYS[1]), for a cluster's routing.
pub(crate) fn servers_key() -> String {
    format!("{PREFIX}servers")
}

/// What a count belongs to: a user's connections, or a user's
/// subscriptions to one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Users,
    Subs,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Users => "u",
            Kind::Subs => "s",
        }
    }
}

/// How long a user's presence list outlives its last use: 30 days.
pub(crate) const LIST_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// The field of a user's subscription to a channel in the `s:` hashes.
pub(crate) fn sub_field(channel: &str, user: &str) -> String {
    format!("{channel}\n{user}")
}

/// The channel and user of a `s:` field (ids hold no newline: they are
/// checked at the edge).
pub(crate) fn split_sub(field: &str) -> Option<(&str, &str)> {
    field.split_once('\n')
}

/// Shared by the scripts: the cluster-wide total of `field` in the `kind`
/// hashes over instances whose lease is alive.
const TOTAL: &str = r#"
local function total(p, kind, field)
  local n = 0
  for _, s in ipairs(redis.call('SMEMBERS', p .. 'servers')) do
    if redis.call('EXISTS', p .. 'lease:' .. s) == 1 then
      n = n + tonumber(redis.call('HGET', p .. kind .. ':' .. s, field) or 0)
    end
  end
  return n
end
"#;

/// ARGV: prefix, me, kind, field, count, lease ms (the key's TTL), list
/// TTL ms. Sets this instance's count; answers {total before, total after,
/// lease was lost (and is taken again), the user's presence list (users
/// only, on an edge)}.
const SET: &str = r#"
local p, me, kind, field = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count, ttl, list_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local lost = 0
if redis.call('EXISTS', p .. 'lease:' .. me) == 0 then
  lost = 1
  redis.call('SET', p .. 'lease:' .. me, '1', 'PX', ttl)
end
redis.call('SADD', p .. 'servers', me)
redis.call('PEXPIRE', p .. 'servers', ttl * 3)
local before = total(p, kind, field)
local h = p .. kind .. ':' .. me
if count > 0 then
  redis.call('HSET', h, field, count)
  redis.call('PEXPIRE', h, ttl * 3)
else
  redis.call('HDEL', h, field)
end
local after = total(p, kind, field)
local list = {}
if kind == 'u' then
  redis.call('PEXPIRE', p .. 'l:' .. field, list_ttl)
  if (before == 0) ~= (after == 0) then
    list = redis.call('SMEMBERS', p .. 'l:' .. field)
  end
end
return {before, after, lost, list}
"#;

/// ARGV: prefix, user, channel, 1 (added) or 0, list TTL ms. Changes the
/// user's presence list.
const MEMBER: &str = r#"
local k = ARGV[1] .. 'l:' .. ARGV[2]
if ARGV[4] == '1' then
  redis.call('SADD', k, ARGV[3])
  redis.call('PEXPIRE', k, tonumber(ARGV[5]))
else
  redis.call('SREM', k, ARGV[3])
end
return 0
"#;

/// ARGV: prefix, kind, field. The cluster-wide total.
const QUERY: &str = r#"
return total(ARGV[1], ARGV[2], ARGV[3])
"#;

/// ARGV: prefix, me, lease ms. Renews this instance's lease and its
/// state's TTL; answers 1 when the lease had expired (the others may have
/// reaped this instance's state: it must be asserted again).
const RENEW: &str = r#"
local p, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lost = 1 - redis.call('EXISTS', p .. 'lease:' .. me)
redis.call('SET', p .. 'lease:' .. me, '1', 'PX', ttl)
redis.call('SADD', p .. 'servers', me)
for _, k in ipairs({'servers', 'u:' .. me, 's:' .. me}) do
  redis.call('PEXPIRE', p .. k, ttl * 3)
end
return lost
"#;

/// ARGV: prefix, me, target ('' for every instance without a lease).
/// Removes the state of `target` (its lease too: used at start on this
/// instance's own leftovers) or of every instance whose lease expired,
/// and answers the edges that makes: a flat list of kind, field for each
/// count whose cluster-wide total fell to 0, then the number of instances
/// reaped. Atomic, so one caller reaps each instance.
const REAP: &str = r#"
local p, me, target = ARGV[1], ARGV[2], ARGV[3]
local dead = {}
if target ~= '' then
  redis.call('DEL', p .. 'lease:' .. target)
  dead = {target}
else
  for _, s in ipairs(redis.call('SMEMBERS', p .. 'servers')) do
    if s ~= me and redis.call('EXISTS', p .. 'lease:' .. s) == 0 then
      table.insert(dead, s)
    end
  end
end
local gone = {}
for _, s in ipairs(dead) do
  redis.call('SREM', p .. 'servers', s)
  for _, kind in ipairs({'u', 's'}) do
    local h = p .. kind .. ':' .. s
    local fields = redis.call('HKEYS', h)
    redis.call('DEL', h)
    for _, f in ipairs(fields) do
      table.insert(gone, {kind, f})
    end
  end
end
local out = {}
for _, g in ipairs(gone) do
  if total(p, g[1], g[2]) == 0 then
    table.insert(out, g[1])
    table.insert(out, g[2])
  end
end
table.insert(out, tostring(#dead))
return out
"#;

/// A count's cluster-wide totals around a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub before: u64,
    pub after: u64,
    /// This instance's lease had expired: its other counts may be gone.
    pub lost: bool,
}

/// A count change's answer: the totals, and on a user's edge the user's
/// presence list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Changed {
    pub totals: Totals,
    pub list: Vec<String>,
}

impl Totals {
    /// The cluster-wide edge this change made: `Some(true)` for 0 -> n,
    /// `Some(false)` for n -> 0.
    pub(crate) fn edge(self) -> Option<bool> {
        match (self.before, self.after) {
            (0, 1..) => Some(true),
            (1.., 0) => Some(false),
            _ => None,
        }
    }
}

/// What a reap found: the counts that fell to 0, and how many instances.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reaped {
    pub gone: Vec<(Kind, String)>,
    pub instances: u64,
}

/// The scripts, loaded (by hash) on first use on each connection.
pub(crate) struct Scripts {
    set: Script,
    member: Script,
    query: Script,
    renew: Script,
    reap: Script,
    me: String,
    /// The lease key's TTL in ms.
    ttl_ms: u64,
}

impl Scripts {
    /// For instance `me`, whose lease lives `ttl_ms`.
    pub(crate) fn new(me: &str, ttl_ms: u64) -> Self {
        let with_total = |body: &str| Script::new(&format!("{TOTAL}{body}"));
        Self {
            set: with_total(SET),
            member: Script::new(MEMBER),
            query: with_total(QUERY),
            renew: Script::new(RENEW),
            reap: with_total(REAP),
            me: me.to_owned(),
            ttl_ms,
        }
    }

    /// Sets this instance's `kind` count of `field`.
    pub(crate) fn set(
        &self,
        c: &mut dyn ConnectionLike,
        kind: Kind,
        field: &str,
        count: u32,
    ) -> RedisResult<Changed> {
        let (before, after, lost, list): (u64, u64, u8, Vec<String>) = self
            .set
            .key(servers_key())
            .arg(PREFIX)
            .arg(&self.me)
            .arg(kind.tag())
            .arg(field)
            .arg(count)
            .arg(self.ttl_ms)
            .arg(LIST_TTL_MS)
            .invoke(c)?;
        let totals = Totals {
            before,
            after,
            lost: lost == 1,
        };
        Ok(Changed { totals, list })
    }

    /// Adds `channel` to `user`'s presence list, or removes it.
    pub(crate) fn member(
        &self,
        c: &mut dyn ConnectionLike,
        user: &str,
        channel: &str,
        added: bool,
    ) -> RedisResult<()> {
        let _: i64 = self
            .member
            .key(servers_key())
            .arg(PREFIX)
            .arg(user)
            .arg(channel)
            .arg(u8::from(added))
            .arg(LIST_TTL_MS)
            .invoke(c)?;
        Ok(())
    }

    /// `user`'s presence list.
    pub(crate) fn list(&self, c: &mut dyn ConnectionLike, user: &str) -> RedisResult<Vec<String>> {
        redis::cmd("SMEMBERS")
            .arg(format!("{PREFIX}l:{user}"))
            .query(c)
    }

    /// The cluster-wide `kind` total of `field`.
    pub(crate) fn query(
        &self,
        c: &mut dyn ConnectionLike,
        kind: Kind,
        field: &str,
    ) -> RedisResult<u64> {
        self.query
            .key(servers_key())
            .arg(PREFIX)
            .arg(kind.tag())
            .arg(field)
            .invoke(c)
    }

    /// Renews the lease: whether it had been lost.
    pub(crate) fn renew(&self, c: &mut dyn ConnectionLike) -> RedisResult<bool> {
        let lost: u8 = self
            .renew
            .key(servers_key())
            .arg(PREFIX)
            .arg(&self.me)
            .arg(self.ttl_ms)
            .invoke(c)?;
        Ok(lost == 1)
    }

    /// Reaps every instance whose lease expired, or (`own`) this
    /// instance's leftovers from an earlier run under the same id.
    pub(crate) fn reap(&self, c: &mut dyn ConnectionLike, own: bool) -> RedisResult<Reaped> {
        let target = if own { self.me.as_str() } else { "" };
        let flat: Vec<String> = self
            .reap
            .key(servers_key())
            .arg(PREFIX)
            .arg(&self.me)
            .arg(target)
            .invoke(c)?;
        Ok(parse_reaped(flat))
    }
}

/// The reap script's flat answer: kind, field pairs, then the count.
fn parse_reaped(mut flat: Vec<String>) -> Reaped {
    let instances = flat.pop().and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut gone = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(kind), Some(field)) = (it.next(), it.next()) {
        let kind = if kind == "u" { Kind::Users } else { Kind::Subs };
        gone.push((kind, field));
    }
    Reaped { gone, instances }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_the_zero_crossings() {
        let t = |before, after| Totals {
            before,
            after,
            lost: false,
        };
        assert_eq!(t(0, 1).edge(), Some(true));
        assert_eq!(t(0, 3).edge(), Some(true));
        assert_eq!(t(2, 0).edge(), Some(false));
        assert_eq!(t(1, 2).edge(), None);
        assert_eq!(t(2, 1).edge(), None);
        assert_eq!(t(0, 0).edge(), None);
    }

    #[test]
    fn reaped_answers_are_parsed() {
        let flat = ["u", "alice", "s", "c1\nbob", "2"]
            .map(String::from)
            .to_vec();
        let r = parse_reaped(flat);
        assert_eq!(r.instances, 2);
        assert_eq!(
            r.gone,
            vec![
                (Kind::Users, "alice".to_owned()),
                (Kind::Subs, "c1\nbob".to_owned())
            ]
        );
        assert_eq!(split_sub(&sub_field("c1", "bob")), Some(("c1", "bob")));
        assert_eq!(parse_reaped(vec!["0".into()]), Reaped::default());
    }
}
