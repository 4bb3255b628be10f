//! Which master of a Redis Cluster serves which hash slot, read by us
//! (CLUSTER SLOTS) for what the `redis` crate's cluster client does not
//! route: the bus reader's blocking XREADs, one per slot of the
//! partitions' streams, each on a connection to the slot's master that
//! the reader holds itself (a blocking read holds its connection), and a
//! plain connection to one node answers MOVED or ASK when the slot left:
//! the reader then reads the map again and regroups (the crate's cluster
//! connection would follow the redirect by itself and hide the move).

use std::time::Duration;

use redis::{ConnectionAddr, ErrorKind, RedisError, RedisResult, Value};

use super::slots;

/// A master's address, as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The masters' slot ranges (inclusive), as one node saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SlotMap {
    ranges: Vec<(u16, u16, Node)>,
}

impl SlotMap {
    /// The master serving `slot`, if the map covers it (a cluster with
    /// slots unassigned, or a master being elected, leaves holes).
    pub(crate) fn master_of(&self, slot: u16) -> Option<&Node> {
        self.ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, n)| n)
    }

    /// The master of `key`'s slot.
    pub(crate) fn master_of_key(&self, key: &str) -> Option<&Node> {
        self.master_of(slots::slot(key.as_bytes()))
    }

    /// The map in CLUSTER SLOTS' answer, asked of `asked` (whose host
    /// stands in for a master that announces none).
    fn parse(answer: Value, asked: &Node) -> RedisResult<Self> {
        let bad = |what: &str| -> RedisError {
            (
                ErrorKind::UnexpectedReturnType,
                "CLUSTER SLOTS",
                what.to_owned(),
            )
                .into()
        };
        let Value::Array(entries) = answer else {
            return Err(bad("not an array"));
        };
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            // [start, end, [host, port, id, …], replicas…]
            let Value::Array(fields) = entry else {
                return Err(bad("an entry is not an array"));
            };
            let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
                (fields.first(), fields.get(1), fields.get(2))
            else {
                return Err(bad("an entry lacks its range or master"));
            };
            let host = match master.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(Value::SimpleString(s)) => s.clone(),
                _ => return Err(bad("a master lacks its host")),
            };
            let Some(Value::Int(port)) = master.get(1) else {
                return Err(bad("a master lacks its port"));
            };
            let (Ok(lo), Ok(hi), Ok(port)) =
                (u16::try_from(*lo), u16::try_from(*hi), u16::try_from(*port))
            else {
                return Err(bad("a range or port out of bounds"));
            };
            // An empty or `?` host: the node does not know its address;
            // it is the one we asked's (Redis's own convention).
            let host = if host.is_empty() || host == "?" {
                asked.host.clone()
            } else {
                host
            };
            ranges.push((lo, hi, Node { host, port }));
        }
        ranges.sort();
        Ok(Self { ranges })
    }
}

/// The slot map, from the first of `seeds` (then the masters of a map
/// read before, `known`) that answers within `timeout`: a dead seed is
/// skipped, and seeds plus the masters last seen cover a cluster whose
/// configured nodes were all replaced but one.
pub(crate) fn read_slot_map(
    seeds: &[redis::Client],
    known: Option<&SlotMap>,
    timeout: Duration,
) -> RedisResult<SlotMap> {
    let mut last: Option<RedisError> = None;
    let learned = known
        .into_iter()
        .flat_map(|m| m.ranges.iter().map(|(_, _, n)| n.clone()));
    let candidates: Vec<redis::Client> = seeds
        .iter()
        .cloned()
        .chain(learned.filter_map(|n| node_client(seeds.first()?, &n).ok()))
        .collect();
    for client in &candidates {
        let asked = match node_of(client) {
            Some(n) => n,
            None => continue,
        };
        let answer = open(client, timeout)
            .and_then(|mut c| redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(&mut c));
        match answer.and_then(|a| SlotMap::parse(a, &asked)) {
            // A node that lost the cluster (failing, just restarted)
            // may answer with no slots: ask another.
            Ok(map) if !map.ranges.is_empty() => return Ok(map),
            Ok(_) => {
                last = Some(
                    (
                        ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                        "no slots",
                    )
                        .into(),
                )
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| (ErrorKind::ClusterConnectionNotFound, "no seed").into()))
}

/// A client for `node` with `like`'s settings (credentials, database).
pub(crate) fn node_client(like: &redis::Client, node: &Node) -> RedisResult<redis::Client> {
    let info = like
        .get_connection_info()
        .clone()
        .set_addr(ConnectionAddr::Tcp(node.host.clone(), node.port));
    redis::Client::open(info)
}

fn node_of(client: &redis::Client) -> Option<Node> {
    match client.get_connection_info().addr() {
        ConnectionAddr::Tcp(host, port) => Some(Node {
            host: host.clone(),
            port: *port,
        }),
        ConnectionAddr::TcpTls { host, port, .. } => Some(Node {
            host: host.clone(),
            port: *port,
        }),
        // A Unix socket (no cluster serves one), or a kind added later.
        _ => None,
    }
}

fn open(client: &redis::Client, timeout: Duration) -> RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(timeout)?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_answers_are_read() {
        let asked = Node {
            host: "10.0.0.9".into(),
            port: 7000,
        };
        let answer = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7001), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7004), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk(""), Value::Int(7000), bulk("id0")]),
            ]),
        ]);
        let map = SlotMap::parse(answer, &asked).expect("parsed");
        assert_eq!(map.master_of(0).map(|n| n.port), Some(7000));
        assert_eq!(
            map.master_of(5460).map(|n| n.host.as_str()),
            Some("10.0.0.9"),
            "an empty host is the asked node's"
        );
        assert_eq!(map.master_of(5461).map(|n| n.port), Some(7001));
        assert_eq!(map.master_of(16383).map(|n| n.port), Some(7001));
        assert_eq!(
            map.master_of_key("foo").map(|n| n.port),
            Some(7001),
            "foo is slot 12182"
        );
        let holes = SlotMap::parse(Value::Array(vec![]), &asked).expect("parsed");
        assert_eq!(holes.master_of(1), None);
        assert!(SlotMap::parse(Value::Int(1), &asked).is_err());
        assert!(
            SlotMap::parse(
                Value::Array(vec![Value::Array(vec![Value::Int(0)])]),
                &asked
            )
            .is_err()
        );
    }
}
