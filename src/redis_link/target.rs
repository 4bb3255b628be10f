//! The configured Redis ([`Target`]) and how a thread connects to it.

use std::time::Duration;

use redis::RedisResult;

use super::Conn;
use super::topology::{self, Node, SlotMap};
use crate::config::{ClusterAddress, ClusterAddressError, Config, RedisTarget};

/// How often the cluster client retries a command on its own (a moved
/// slot, a failover in progress, a node that went away) before the
/// thread sees the error and reconnects with its backoff; and the bounds
/// of its waits in between. The crate's defaults (16 retries, waits up to
/// minutes) would hold a thread far past its timeouts.
const CLUSTER_RETRIES: u32 = 3;
const CLUSTER_RETRY_MIN_MS: u64 = 50;
const CLUSTER_RETRY_MAX_MS: u64 = 500;

/// How long a connection may wait: to connect, for an answer, to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
}

impl Timeouts {
    /// The same bound on all three.
    pub(crate) fn all(d: Duration) -> Self {
        Self {
            connect: d,
            read: d,
            write: d,
        }
    }
}

/// The Redis every subsystem uses: opened once from the configuration,
/// cloned into each thread, which connects (and reconnects) by itself.
#[derive(Clone)]
pub(crate) enum Target {
    /// One Redis server (REDIS_URL, or REDIS_HOST and its neighbours).
    Standalone(redis::Client),
    /// A Redis Cluster (REDIS_CLUSTER_NODES, or a `redis+cluster://`
    /// REDIS_URL): one client per configured node, the seeds.
    Cluster(Vec<redis::Client>),
}

/// The configured address is not one the client can use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    /// The crate's own message may quote the URL and its password: only
    /// its kind is kept.
    #[error("the Redis address is not usable ({0:?})")]
    Address(redis::ErrorKind),
    #[error("the Redis Cluster address {0}")]
    Cluster(#[from] ClusterAddressError),
}

impl From<redis::Client> for Target {
    fn from(client: redis::Client) -> Self {
        Target::Standalone(client)
    }
}

impl Target {
    /// The configured Redis, or `None` for one process without Redis.
    pub(crate) fn open(config: &Config) -> Result<Option<Self>, TargetError> {
        match config.redis_target().transpose()? {
            None => Ok(None),
            Some(RedisTarget::Standalone(url)) => Self::standalone(&url).map(Some),
            Some(RedisTarget::Cluster(address)) => Self::cluster(&address).map(Some),
        }
    }

    /// A Redis Cluster, from some of its nodes.
    pub(crate) fn cluster(address: &ClusterAddress) -> Result<Self, TargetError> {
        address
            .node_urls()
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map(Target::Cluster)
            .map_err(|e| TargetError::Address(e.kind()))
    }

    /// One server at `url` (`redis://…`).
    pub(crate) fn standalone(url: &str) -> Result<Self, TargetError> {
        redis::Client::open(url)
            .map(Target::Standalone)
            .map_err(|e| TargetError::Address(e.kind()))
    }

    /// A command connection with `timeouts`: a Redis that stops answering
    /// (SIGSTOP, a dead host) is an error within them.
    pub(crate) fn connect(&self, timeouts: Timeouts) -> RedisResult<Conn> {
        match self {
            Target::Standalone(client) => single(client, timeouts).map(Conn::Single),
            Target::Cluster(seeds) => {
                let infos = seeds.iter().map(|c| c.get_connection_info().clone());
                let client = redis::cluster::ClusterClient::builder(infos)
                    .connection_timeout(timeouts.connect)
                    .response_timeout(timeouts.read)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_RETRY_MIN_MS)
                    .max_retry_wait(CLUSTER_RETRY_MAX_MS)
                    .build()?;
                let c = client.get_connection()?;
                c.set_read_timeout(Some(timeouts.read))?;
                c.set_write_timeout(Some(timeouts.write))?;
                Ok(Conn::Cluster(Box::new(c)))
            }
        }
    }

    /// A connection for a subscriber of classic pub/sub. A Redis Cluster
    /// broadcasts a PUBLISH to every node, so one node serves: seed
    /// `attempt` modulo their number, so that a subscriber whose node
    /// failed tries the next one (`attempt` counts its tries).
    pub(crate) fn pubsub(
        &self,
        attempt: usize,
        timeouts: Timeouts,
    ) -> RedisResult<redis::Connection> {
        match self {
            Target::Standalone(client) => single(client, timeouts),
            Target::Cluster(seeds) => single(&seeds[attempt % seeds.len()], timeouts),
        }
    }
}

/// Keys of one hash slot, and how to reach the node serving it: the bus
/// reader's blocking reads ([`Target::by_node`]). One slot, not one node:
/// a Redis Cluster refuses a command naming keys of several slots
/// (CROSSSLOT) even when one node owns them all.
pub(crate) struct NodeGroup {
    /// The master (`None`: the one standalone server).
    pub node: Option<Node>,
    /// The keys' slot (`None`: the one standalone server).
    pub slot: Option<u16>,
    client: redis::Client,
    /// Indexes into the keys given to [`Target::by_node`].
    pub members: Vec<usize>,
}

impl NodeGroup {
    /// A plain connection to the group's node (never the cluster client:
    /// a slot that moved must come back as MOVED or ASK, for the caller
    /// to regroup, not be followed silently).
    pub(crate) fn connect(&self, timeouts: Timeouts) -> RedisResult<redis::Connection> {
        single(&self.client, timeouts)
    }
}

impl Target {
    /// `keys` grouped by where they can be read together: one group on a
    /// single server; on a cluster one per slot (with its master), from a
    /// slot map read now (CLUSTER SLOTS from the seeds, then from
    /// the masters of `known`), which is returned too. A slot no master
    /// serves (an election under way) is an error: the caller retries
    /// after its backoff.
    pub(crate) fn by_node(
        &self,
        keys: &[String],
        known: Option<&SlotMap>,
        timeout: Duration,
    ) -> RedisResult<(Vec<NodeGroup>, Option<SlotMap>)> {
        let seeds = match self {
            Target::Standalone(client) => {
                let group = NodeGroup {
                    node: None,
                    slot: None,
                    client: client.clone(),
                    members: (0..keys.len()).collect(),
                };
                return Ok((vec![group], None));
            }
            Target::Cluster(seeds) => seeds,
        };
        let Some(like) = seeds.first() else {
            return Err((redis::ErrorKind::ClusterConnectionNotFound, "no seed").into());
        };
        let map = topology::read_slot_map(seeds, known, timeout)?;
        let mut groups: Vec<NodeGroup> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let slot = super::slots::slot(key.as_bytes());
            let Some(node) = map.master_of(slot) else {
                return Err((
                    redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                    "a slot has no master",
                )
                    .into());
            };
            match groups.iter_mut().find(|g| g.slot == Some(slot)) {
                Some(g) => g.members.push(i),
                None => groups.push(NodeGroup {
                    node: Some(node.clone()),
                    slot: Some(slot),
                    client: topology::node_client(like, node)?,
                    members: vec![i],
                }),
            }
        }
        Ok((groups, Some(map)))
    }
}

fn single(client: &redis::Client, t: Timeouts) -> RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(t.connect)?;
    c.set_read_timeout(Some(t.read))?;
    c.set_write_timeout(Some(t.write))?;
    Ok(c)
}

impl std::fmt::Debug for Target {
    // Never the address: it may hold the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Standalone(_) => f.write_str("Target::Standalone"),
            Target::Cluster(seeds) => write!(f, "Target::Cluster({} seeds)", seeds.len()),
        }
    }
}
