//! A throwaway Redis Cluster for the tests of several instances on a
//! cluster (issue 14): six `redis-server`s (Debian's package; scripts/test
//! installs it) on free loopback ports, each in its own directory of one
//! temp dir, no persistence (`--save '' --appendonly no`),
//! `--cluster-enabled yes --cluster-node-timeout 1000`, joined by
//! `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes` into
//! 3 masters and 3 replicas; [`RedisCluster::start`] returns once every
//! node says `cluster_state:ok`, knows all six and every replica is in
//! sync with its master. Every node is killed on drop.
//!
//! The fault tests' controls, by node index (0..6, the order of
//! [`RedisCluster::nodes`]; a node keeps its index and port through a
//! restart): a node by role ([`RedisCluster::masters`],
//! [`RedisCluster::replicas_of`]), which master owns a slot or a key,
//! SIGSTOP/SIGCONT ([`RedisCluster::pause`]), `kill -9`
//! ([`RedisCluster::kill9`]), a node started again
//! ([`RedisCluster::restart`]), `CLUSTER FAILOVER` on a replica
//! ([`RedisCluster::failover`]). Driven with `redis-cli`, like
//! [`super::redis::Redis`].

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::redis::NEEDS_REDIS;

/// Nodes: 3 masters, each with one replica.
pub const NODES: usize = 6;
/// The cluster bus port of a node is its port plus this (Redis's rule).
const BUS_OFFSET: u16 = 10_000;
/// How long a node may take to answer `PING` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the cluster may take to agree on its state (`cluster_state:ok`
/// on every node, replicas in sync): generous, the CPU is shared.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `redis-cli` call may take (the nodes are local).
const CLI_TIMEOUT_SECS: &str = "10";

/// One node of the cluster.
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A node's role, as `ROLE` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

pub struct RedisCluster {
    _root: TempDir,
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts six nodes and makes them one cluster (3 masters, 3
    /// replicas); panics with [`NEEDS_REDIS`] when redis-server is
    /// missing.
    pub fn start() -> RedisCluster {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "redis-server not found: {NEEDS_REDIS} (or apt-get install redis-server)"
        );
        let root = tempfile::Builder::new()
            .prefix("gatrix-redis-cluster-")
            .tempdir()
            .expect("create a temp dir for the cluster");
        let mut cluster = RedisCluster {
            nodes: Vec::with_capacity(NODES),
            _root: root,
        };
        for i in 0..NODES {
            let dir = cluster._root.path().join(format!("node-{i}"));
            std::fs::create_dir(&dir).expect("create a node's dir");
            let mut node = Node {
                port: 0,
                dir,
                child: None,
                paused: false,
            };
            // A port taken between picking and binding: another try.
            let started = (1..=3).any(|_| {
                node.port = free_port_pair();
                node.try_start()
            });
            assert!(
                started,
                "redis-server (cluster node {i}) did not start in 3 attempts; log:\n{}",
                node.log()
            );
            cluster.nodes.push(node);
        }
        let addrs = cluster.nodes();
        let out = Command::new("timeout")
            .args(["60", "redis-cli", "--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_settled();
        cluster
    }

    /// `127.0.0.1:<port>` of every node, by index: what
    /// `REDIS_CLUSTER_NODES` takes, comma-joined.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect()
    }

    /// The nodes as `REDIS_CLUSTER_NODES` takes them: `host:port,…`.
    pub fn nodes_env(&self) -> String {
        self.nodes().join(",")
    }

    pub fn port(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }

    /// `redis-cli -p <port of node i> <args>` (no redirections followed:
    /// a command for another node's slot answers `MOVED`).
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String, String> {
        self.nodes[i].cli(args)
    }

    /// Node `i`'s role, as it says itself (`ROLE`).
    pub fn role(&self, i: usize) -> Role {
        let out = self
            .cli(i, &["ROLE"])
            .unwrap_or_else(|e| panic!("ROLE of node {i}: {e}"));
        match out.lines().next().map(str::trim) {
            Some("master") => Role::Master,
            Some("slave") => Role::Replica,
            other => panic!("ROLE of node {i}: unexpected {other:?} in {out}"),
        }
    }

    /// The running nodes that are masters now, by index.
    pub fn masters(&self) -> Vec<usize> {
        (0..NODES)
            .filter(|&i| self.is_running(i) && !self.nodes[i].paused)
            .filter(|&i| self.role(i) == Role::Master)
            .collect()
    }

    /// The running replicas of master `m`, by index (`INFO replication`
    /// of each replica names its master's port).
    pub fn replicas_of(&self, m: usize) -> Vec<usize> {
        let port = self.port(m).to_string();
        (0..NODES)
            .filter(|&i| i != m && self.is_running(i) && !self.nodes[i].paused)
            .filter(|&i| self.info(i, "replication").get("master_port") == Some(&port))
            .collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        let i = self.any_running();
        let out = self
            .cli(i, &["CLUSTER", "KEYSLOT", key])
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT {key}: {out}"))
    }

    /// The node that serves `slot` now: the one running master that says
    /// it owns it.
    pub fn master_of_slot(&self, slot: u16) -> usize {
        let owners: Vec<usize> = self
            .masters()
            .into_iter()
            .filter(|&m| self.owns(m, slot))
            .collect();
        assert_eq!(
            owners.len(),
            1,
            "slot {slot}: masters claiming it: {owners:?}"
        );
        owners[0]
    }

    /// The master that serves `key` now.
    pub fn master_of_key(&self, key: &str) -> usize {
        self.master_of_slot(self.slot_of(key))
    }

    /// Whether master `m` serves `slot`: its own line of `CLUSTER NODES`
    /// lists a range holding it.
    fn owns(&self, m: usize, slot: u16) -> bool {
        // `CLUSTER NODES`' own line (`myself`) lists the ranges it serves.
        let out = self
            .cli(m, &["CLUSTER", "NODES"])
            .unwrap_or_else(|e| panic!("CLUSTER NODES of node {m}: {e}"));
        let Some(me) = out.lines().find(|l| l.contains("myself")) else {
            panic!("CLUSTER NODES of node {m} without myself: {out}")
        };
        me.split_whitespace().skip(8).any(|range| {
            if range.starts_with('[') {
                return false; // a slot being migrated or imported
            }
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            match (a.parse::<u16>(), b.parse::<u16>()) {
                (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                _ => false,
            }
        })
    }

    /// `INFO <section>` of node `i` as field → value.
    pub fn info(&self, i: usize, section: &str) -> HashMap<String, String> {
        let text = self
            .cli(i, &["INFO", section])
            .unwrap_or_else(|e| panic!("INFO {section} of node {i}: {e}"));
        parse_fields(&text)
    }

    /// Calls per command (`INFO commandstats`, lower-case names as
    /// `xadd`, `evalsha`) of node `i`.
    pub fn command_calls(&self, i: usize) -> HashMap<String, u64> {
        self.info(i, "commandstats")
            .into_iter()
            .filter_map(|(key, value)| {
                let name = key.strip_prefix("cmdstat_")?.to_owned();
                let calls = value
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse()
                    .ok()?;
                Some((name, calls))
            })
            .collect()
    }

    /// `CLUSTER INFO` of node `i` as field → value.
    pub fn cluster_info(&self, i: usize) -> Result<HashMap<String, String>, String> {
        self.cli(i, &["CLUSTER", "INFO"]).map(|t| parse_fields(&t))
    }

    /// Freezes node `i` (SIGSTOP): its connections stay open, nothing is
    /// answered, as with a hung host; after `cluster-node-timeout` (1 s)
    /// the others count it failing, and a paused master's replica takes
    /// over. [`RedisCluster::resume`] thaws it.
    pub fn pause(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(!node.paused, "node {i} is already paused");
        kill(node.pid(), Signal::SIGSTOP).expect("SIGSTOP a node");
        node.paused = true;
    }

    /// SIGCONT after [`RedisCluster::pause`].
    pub fn resume(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.paused, "node {i} is not paused");
        kill(node.pid(), Signal::SIGCONT).expect("SIGCONT a node");
        node.paused = false;
    }

    pub fn is_paused(&self, i: usize) -> bool {
        self.nodes[i].paused
    }

    /// A crash of node `i`: SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// Starts node `i` again on its port, with its `nodes.conf` (it
    /// rejoins as what the cluster says it is: a former master comes back
    /// as a replica after a failover), and waits until it answers `PING`.
    /// [`RedisCluster::wait_settled`] waits for the cluster.
    pub fn restart(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(
            node.try_start(),
            "cluster node {i} did not start again on port {}; log:\n{}",
            node.port,
            node.log()
        );
    }

    /// `CLUSTER FAILOVER` on replica `r`: it and its master swap roles
    /// without data loss (a manual failover); waits until `r` says it is a
    /// master and the cluster settled.
    pub fn failover(&self, r: usize) {
        assert_eq!(self.role(r), Role::Replica, "node {r} is not a replica");
        let out = self
            .cli(r, &["CLUSTER", "FAILOVER"])
            .unwrap_or_else(|e| panic!("CLUSTER FAILOVER on node {r}: {e}"));
        assert_eq!(out.trim(), "OK", "CLUSTER FAILOVER on node {r}");
        self.wait_for(&format!("node {r} to become a master"), || {
            self.role(r) == Role::Master
        });
        self.wait_settled();
    }

    /// Waits until every running, unpaused node says `cluster_state:ok`
    /// and knows every node, every slot is served (`cluster_slots_ok`),
    /// and every replica's link to its master is up.
    pub fn wait_settled(&self) {
        let running: Vec<usize> = (0..NODES)
            .filter(|&i| self.is_running(i) && !self.nodes[i].paused)
            .collect();
        self.wait_for("cluster_state:ok on every node", || {
            running.iter().all(|&i| {
                self.cluster_info(i).is_ok_and(|info| {
                    info.get("cluster_state").map(String::as_str) == Some("ok")
                        && info.get("cluster_slots_ok").map(String::as_str) == Some("16384")
                        && info
                            .get("cluster_known_nodes")
                            .is_some_and(|n| n == &NODES.to_string())
                })
            })
        });
        self.wait_for("every replica in sync", || {
            running.iter().all(|&i| {
                let Ok(text) = self.cli(i, &["INFO", "replication"]) else {
                    return false;
                };
                let info = parse_fields(&text);
                match info.get("role").map(String::as_str) {
                    Some("master") => true,
                    Some("slave") => {
                        info.get("master_link_status").map(String::as_str) == Some("up")
                    }
                    _ => false,
                }
            })
        });
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !done() {
            if Instant::now() > deadline {
                let logs: String = (0..NODES)
                    .map(|i| {
                        format!(
                            "---- node {i} (port {}) ----\n{}",
                            self.port(i),
                            self.log(i)
                        )
                    })
                    .collect();
                panic!("waited {SETTLE_TIMEOUT:?} for {what}; logs:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn any_running(&self) -> usize {
        (0..NODES)
            .find(|&i| self.is_running(i) && !self.nodes[i].paused)
            .expect("a running cluster node")
    }

    /// The pids of the running nodes (for tests that check the teardown).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("node running").id() as i32)
    }

    /// Spawns the node on `self.port` and waits for `PING`; false (the
    /// child reaped) if it exits first, e.g. because a port is taken.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "the node is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open a node's log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.display().to_string()])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            // No one but the tests on loopback; none of them authenticates.
            .args(["--protected-mode", "no"])
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.cli(&["PING"]).is_ok_and(|r| r.trim() == "PONG") {
                return true;
            }
            let child = self.child.as_mut().expect("node running");
            if child.try_wait().expect("poll redis-server").is_some() {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "cluster node not answering on port {} after {START_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("node running");
        // SIGKILL ends a stopped (SIGSTOP) process too.
        let _ = child.kill();
        let _ = child.wait();
        self.paused = false;
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        // redis-cli 7.0 has no timeout of its own (`-t` came in 7.2).
        let out = Command::new("timeout")
            .args([CLI_TIMEOUT_SECS, "redis-cli", "-e"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run redis-cli: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "redis-cli {args:?}: {} {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(stdout)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(mut child) = node.child.take() {
                if panicking {
                    eprintln!(
                        "---- cluster node {i} log (port {}) ----\n{}---- end of log ----",
                        node.port,
                        node.log()
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        let Some(bus) = port.checked_add(BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return port;
        }
    }
}

/// `field:value` lines (`# …` headers left out).
fn parse_fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
