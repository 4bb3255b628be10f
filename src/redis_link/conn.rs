//! A command connection to the configured Redis, whatever its kind: the
//! subsystems write their commands, scripts and pipelines against
//! `redis::ConnectionLike`, which [`Conn`] is.

use redis::{Cmd, ConnectionLike, RedisResult, Value};

/// One thread's command connection.
pub(crate) enum Conn {
    /// A single Redis server.
    Single(redis::Connection),
    /// A Redis Cluster: commands go to the node of their keys' slot (a
    /// script to that of its first key); the client follows MOVED and
    /// ASK and refreshes its slot map itself. Boxed: it is four times a
    /// single connection.
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    /// Sends `cmds` pipelined, their answers ignored (an error answer
    /// fails the call). One round trip on a single server; on a cluster
    /// the crate's cluster pipeline splits them by node, one round trip
    /// each, since a plain pipeline goes whole to one node (that of its
    /// first key) and keys of other slots would be refused there. Not for
    /// commands without a key or for SCRIPT LOAD: see
    /// [`Conn::load_script`].
    pub(crate) fn exec_pipelined(&mut self, cmds: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd).ignore();
                }
                p.exec(c)
            }
            Conn::Cluster(c) => {
                let mut p = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    p.add_command(cmd).ignore();
                }
                p.exec(c)
            }
        }
    }

    /// Publishes `messages` on `channel` (classic pub/sub): pipelined on
    /// a single server; on a cluster one PUBLISH each, which the client
    /// sends to any node (the cluster broadcasts it to every node), since
    /// its pipelines refuse PUBLISH (no key, no slot) and a plain pipeline
    /// needs a connection that supports pipelining.
    pub(crate) fn publish_all(&mut self, channel: &str, messages: Vec<String>) -> RedisResult<()> {
        match self {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                for m in messages {
                    p.publish(channel, m).ignore();
                }
                p.exec(c)
            }
            Conn::Cluster(c) => {
                for m in messages {
                    redis::cmd("PUBLISH").arg(channel).arg(m).exec(c)?;
                }
                Ok(())
            }
        }
    }

    /// SPUBLISHes each `(shard channel, message)`: one command each, which
    /// the cluster client sends to the master of the channel's slot
    /// (sharded pub/sub, Redis 7: only that master and its replicas carry
    /// it). On a single server, SPUBLISH works alike.
    pub(crate) fn spublish_each(&mut self, messages: Vec<(String, String)>) -> RedisResult<()> {
        for (channel, m) in messages {
            redis::cmd("SPUBLISH").arg(channel).arg(m).exec(self)?;
        }
        Ok(())
    }

    /// Loads `script` (SCRIPT LOAD; on a cluster, on every master), so
    /// that a pipeline may call it by its hash.
    pub(crate) fn load_script(&mut self, script: &redis::Script) -> RedisResult<()> {
        script.prepare_invoke().load(self).map(|_| ())
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn req_command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_command(cmd),
            Conn::Cluster(c) => c.req_command(cmd),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }

    fn supports_pipelining(&self) -> bool {
        match self {
            Conn::Single(c) => c.supports_pipelining(),
            Conn::Cluster(c) => c.supports_pipelining(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Conn::Single(c) => c.check_connection(),
            Conn::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Conn::Single(c) => c.is_open(),
            Conn::Cluster(c) => c.is_open(),
        }
    }
}
