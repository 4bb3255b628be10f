//! Several gatrix-chat processes behaving as one server: N instances of
//! the real binary ([`TestServer`]s, each on its own port, temp dir and
//! `SERVER_ID`) on one fresh MariaDB database (scripts/test's, see
//! [`super::mysql`]) and one throwaway [`Redis`], sharing one JWT secret
//! so that a token is good on every instance, as behind a load balancer.
//!
//! [`Control`] lets a client program (the socket.io-client scenarios in
//! tests/js/cluster) cause the faults at the moment it chooses: it asks
//! over HTTP, the test does it and answers once it is done.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::mysql::{connect as db_connect, mysql_db};
use super::redis::Redis;
use super::redis_cluster::RedisCluster;
use super::{TestServer, http_get, unix_nanos};

/// How long an instance may take to report ready after a start, with the
/// shared CPU and a database several processes migrate and lock.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Cluster {
    /// The instances, by index (a killed one keeps its place, its dir and
    /// port, for [`Cluster::restart`]).
    servers: Vec<TestServer>,
    /// `running[i]` is false between [`Cluster::kill9`] and
    /// [`Cluster::restart`].
    running: Vec<bool>,
    /// The instances' Redis; with [`Cluster::start_on_redis_cluster`] it
    /// runs but the instances do not use it (their Redis is
    /// `redis_cluster`).
    pub redis: Redis,
    /// The 6-node Redis Cluster the instances use, when started by
    /// [`Cluster::start_on_redis_cluster`].
    pub redis_cluster: Option<RedisCluster>,
    /// `mysql://…/<db>`: the database all instances share.
    db_url: String,
    secret: String,
}

impl Cluster {
    /// Starts a Redis and `n` instances on a fresh database, one after the
    /// other (the first migrates the database), each with `env` on top of
    /// the cluster's own settings (`DATABASE_URL`, `REDIS_URL`,
    /// `SERVER_ID=gatrix-test-<i>`, the shared `JWT_SECRET`), and waits
    /// until every one answers `/ready` with 200. Panics with the MariaDB
    /// or Redis reason when either is missing.
    pub fn start(n: usize, env: &[(&str, &str)]) -> Cluster {
        Self::start_each(n, env, |_| Vec::new())
    }

    /// [`Cluster::start`], with settings of instance `i`'s own from
    /// `each(i)` on top of `env` (e.g. a test hook on one instance only).
    pub fn start_each(
        n: usize,
        env: &[(&str, &str)],
        each: impl Fn(usize) -> Vec<(String, String)>,
    ) -> Cluster {
        Self::start_inner(n, env, each, None)
    }

    /// [`Cluster::start`] on a 6-node Redis Cluster
    /// ([`RedisCluster`], 3 masters and 3 replicas) instead of one Redis:
    /// the instances get `REDIS_CLUSTER_NODES` (every node) rather than
    /// `REDIS_URL`.
    pub fn start_on_redis_cluster(n: usize, env: &[(&str, &str)]) -> Cluster {
        Self::start_inner(n, env, |_| Vec::new(), Some(RedisCluster::start()))
    }

    fn start_inner(
        n: usize,
        env: &[(&str, &str)],
        each: impl Fn(usize) -> Vec<(String, String)>,
        redis_cluster: Option<RedisCluster>,
    ) -> Cluster {
        let db_url = mysql_db();
        let redis = Redis::start();
        let secret = format!("cluster-secret-{}-{}", std::process::id(), unix_nanos());
        let mut cluster = Cluster {
            servers: Vec::with_capacity(n),
            running: Vec::with_capacity(n),
            redis,
            redis_cluster,
            db_url,
            secret,
        };
        for i in 0..n {
            let server_id = format!("gatrix-test-{i}");
            let (redis_key, redis_value) = match &cluster.redis_cluster {
                Some(rc) => ("REDIS_CLUSTER_NODES", rc.nodes_env()),
                None => ("REDIS_URL", cluster.redis.url()),
            };
            let mut all: Vec<(&str, &str)> = vec![
                ("DATABASE_URL", &cluster.db_url),
                (redis_key, &redis_value),
                ("SERVER_ID", &server_id),
                ("JWT_SECRET", &cluster.secret),
            ];
            all.extend_from_slice(env);
            let own = each(i);
            all.extend(own.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let server = TestServer::start_with(&all);
            cluster.servers.push(server);
            cluster.running.push(true);
        }
        cluster.wait_all_ready();
        cluster
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn server(&self, i: usize) -> &TestServer {
        &self.servers[i]
    }

    /// `http://127.0.0.1:<port>` of each instance, by index.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(TestServer::url).collect()
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The shared database's URL (password included).
    pub fn db_url(&self) -> &str {
        &self.db_url
    }

    /// A connection of the test's own to the shared database.
    pub fn db(&self) -> mysql::Conn {
        db_connect(&self.db_url).expect("connect to the cluster's database")
    }

    /// A token good on every instance.
    pub fn token(&self, sub: &str) -> String {
        self.servers[0].token(sub)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.running[i]
    }

    /// SIGKILL to instance `i`; waits until it is gone.
    pub fn kill9(&mut self, i: usize) {
        self.servers[i].kill9();
        self.running[i] = false;
    }

    /// Starts instance `i` again (same port, `SERVER_ID` and settings) and
    /// waits until every running instance is ready; kills it first if it
    /// is running.
    pub fn restart(&mut self, i: usize) {
        self.servers[i].restart();
        self.running[i] = true;
        self.wait_all_ready();
    }

    /// `GET /ready` of instance `i`: (status, body).
    pub fn ready(&self, i: usize) -> (u16, String) {
        let r = http_get(self.servers[i].port(), "/ready").expect("GET /ready");
        (r.status, r.body)
    }

    /// Waits until every running instance answers `/ready` with 200;
    /// panics with the last answers after [`READY_TIMEOUT`].
    pub fn wait_all_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let answers: Vec<(usize, u16, String)> = (0..self.len())
                .filter(|&i| self.running[i])
                .map(|i| {
                    let (status, body) = self.ready(i);
                    (i, status, body)
                })
                .collect();
            if answers.iter().all(|(_, status, _)| *status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instances not ready after {READY_TIMEOUT:?}: {answers:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The whole `GET /metrics` text of instance `i`.
    pub fn metrics(&self, i: usize) -> String {
        let r = http_get(self.servers[i].port(), "/metrics").expect("GET /metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Metric `name` of instance `i`, summed over its series.
    pub fn metric(&self, i: usize, name: &str) -> f64 {
        self.servers[i].gauge(name)
    }

    /// Metric `name` summed over the running instances.
    pub fn metric_total(&self, name: &str) -> f64 {
        (0..self.len())
            .filter(|&i| self.running[i])
            .map(|i| self.metric(i, name))
            .sum()
    }

    /// Does what a [`Control`] request asks: `kill9/<i>`, `restart/<i>`,
    /// `redis/stop`, `redis/start`, `redis/kill9`, `redis/pause`,
    /// `redis/resume`, `ready/<i>` (the `/ready` status). Err for an
    /// unknown request.
    pub fn control(&mut self, request: &str) -> Result<String, String> {
        let index = |arg: Option<&str>| -> Result<usize, String> {
            arg.and_then(|a| a.parse().ok())
                .filter(|&i| i < self.servers.len())
                .ok_or_else(|| format!("no instance {arg:?} in {request}"))
        };
        let mut parts = request.trim_matches('/').split('/');
        match (parts.next(), parts.next()) {
            (Some("kill9"), i) => self.kill9(index(i)?),
            (Some("restart"), i) => self.restart(index(i)?),
            (Some("ready"), i) => return Ok(self.ready(index(i)?).0.to_string()),
            (Some("redis"), Some("stop")) => self.redis.stop(),
            (Some("redis"), Some("start")) => self.redis.restart(),
            (Some("redis"), Some("kill9")) => self.redis.kill9(),
            (Some("redis"), Some("pause")) => self.redis.pause(),
            (Some("redis"), Some("resume")) => self.redis.resume(),
            _ => return Err(format!("unknown control request {request}")),
        }
        Ok("done".to_owned())
    }
}

/// An HTTP endpoint on a free loopback port through which a client
/// program asks the test for faults: `GET /<request>` runs
/// [`Cluster::control`] and answers 200 with its result once done, 400
/// for an unknown request, 500 (with the panic's message) when it failed.
/// One request at a time. It holds the cluster weakly, so that the
/// cluster is still stopped when the test drops it, and its thread ends
/// when the `Control` is dropped.
pub struct Control {
    url: String,
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Control {
    pub fn serve(cluster: &Arc<Mutex<Cluster>>) -> Control {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the control port");
        let port = listener.local_addr().expect("control address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let cluster: Weak<Mutex<Cluster>> = Arc::downgrade(cluster);
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let (Ok(stream), Some(cluster)) = (stream, cluster.upgrade()) else {
                        continue;
                    };
                    handle(stream, &cluster);
                }
            })
        };
        Control {
            url: format!("http://127.0.0.1:{port}"),
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`, given to the client as `GATRIX_CONTROL_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(stream: TcpStream, cluster: &Mutex<Cluster>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The rest of the head; control requests have no body.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    eprintln!("control: {path}");
    let (status, body) = {
        // A poisoned lock means an earlier request panicked: the test
        // already failed; go on so that the client hears about it.
        let mut guard = cluster.lock().unwrap_or_else(|e| e.into_inner());
        match std::panic::catch_unwind(AssertUnwindSafe(|| guard.control(&path))) {
            Ok(Ok(result)) => ("200 OK", result),
            Ok(Err(why)) => ("400 Bad Request", why),
            Err(panic) => (
                "500 Internal Server Error",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned()),
            ),
        }
    };
    eprintln!("control: {path} → {status} {body}");
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
