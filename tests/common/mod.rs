//! Test harness: runs the real `gatrix-chat` binary on a free port.
//!
//! Each [`TestServer`] owns a temp dir (working dir, `DATA_DIR`, and
//! `server.log`, which captures the server's stdout and stderr), a fresh
//! JWT secret and the child process. The server log is printed when a test
//! panics while the server is alive, and the child is killed on drop.

// Every test crate compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod chat;
pub mod client;
pub mod client_process;
pub mod cluster;
pub mod durable;
pub mod http;
pub mod load;
pub mod mysql;
pub mod polling;
pub mod proc;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod rest;
pub mod tls;

// Not every test file runs client programs.
#[allow(unused_imports)]
pub use client_process::run_client;

pub use http::{http_get, http_request};

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tempfile::TempDir;

/// How long the server may take to answer `GET /health` after spawning.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown may take after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Lifetime of the tokens minted by [`TestServer::token`].
const TOKEN_TTL_SECS: u64 = 3600;

pub struct TestServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    secret: String,
    /// The overrides given to [`TestServer::start_with`], applied again by
    /// [`TestServer::restart`].
    env: Vec<(String, String)>,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    exp: u64,
}

impl TestServer {
    /// The metric `name` from `GET /metrics` (served on the public port by
    /// the test servers), summed over its series (shards, labels).
    pub fn gauge(&self, name: &str) -> f64 {
        let r = http_get(self.port(), "/metrics").expect("GET /metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    /// Starts the server with the default test environment (2 shards).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the server; `env` is applied after the defaults, so it can
    /// override them (e.g. `("CLUSTER_WORKERS", "1")`) or set limits.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let mut server = Self::start_unready(env);
        server.wait_ready();
        server
    }

    /// Starts the server like [`TestServer::start_with`] but returns at
    /// once, without waiting for `/health`: for tests that watch start-up
    /// themselves (sd_notify) or whose port is not plain HTTP (TLS).
    pub fn start_unready(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gatrix-test-")
            .tempdir()
            .expect("create temp dir");
        std::fs::create_dir(dir.path().join("data")).expect("create data dir");
        let port = free_port();
        // A `JWT_SECRET` given in `env` (servers sharing one, as a cluster's
        // do) is the one tokens are signed with.
        let secret = env
            .iter()
            .find(|(key, _)| *key == "JWT_SECRET")
            .map(|(_, secret)| (*secret).to_owned())
            .unwrap_or_else(|| format!("test-secret-{port}-{}", unix_nanos()));
        let mut server = TestServer {
            child: None,
            port,
            dir,
            secret,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        server.spawn_child();
        server
    }

    /// Starts the binary (no child may be running) with this server's dir,
    /// port, secret and environment, and waits until it is ready. The log
    /// is appended to, so a restart keeps the earlier run's output.
    fn spawn(&mut self) {
        self.spawn_child();
        self.wait_ready();
    }

    /// Starts the binary without waiting for it to be ready.
    fn spawn_child(&mut self) {
        assert!(self.child.is_none(), "gatrix-chat is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_gatrix-chat"));
        command
            .current_dir(self.dir.path())
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("CLUSTER_WORKERS", "2")
            .env("JWT_SECRET", &self.secret)
            .env("DATA_DIR", self.data_dir())
            // /metrics on the test's own port, as the tests scrape it: the
            // default (127.0.0.1:9402) would be one port for every server.
            .env("METRICS_LISTEN", "public")
            .env("RUST_LOG", "info");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn gatrix-chat");
        self.child = Some(child);
    }

    /// Kills the server with SIGKILL (no shutdown of any kind) and waits
    /// for the process to be gone. The temp dir, data and port are kept
    /// for [`TestServer::restart`].
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("send SIGKILL");
        let status = child.wait().expect("wait for the killed server");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(Signal::SIGKILL as i32),
            "the server exited on its own before SIGKILL ({status})"
        );
    }

    /// Starts the server again on the same port, temp dir, `DATA_DIR`,
    /// secret and environment, after [`TestServer::kill9`] (or, when it is
    /// still running, after killing it with SIGKILL).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        writeln_log(&self.log_path(), "---- restart ----");
        self.spawn();
    }

    /// Polls `/health`; on failure the panic drops `self`, which prints
    /// the server log.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = http_get(self.port, "/health")
                && response.status == 200
            {
                return;
            }
            let child = self.child.as_mut().expect("server running");
            if let Some(status) = child.try_wait().expect("poll child") {
                panic!("gatrix-chat exited before it was ready ({status})");
            }
            if Instant::now() > deadline {
                panic!(
                    "gatrix-chat not ready on port {} after {READY_TIMEOUT:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the running server.
    pub fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("server running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("send a signal");
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Has the server exited (and how)?
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("poll child")
    }

    /// Waits (20 s at most) for a server that is expected to refuse to
    /// start; panics with its log if it keeps running.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gatrix-chat still running after {READY_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Base URL, as given to socket.io-client: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The Engine.IO WebSocket endpoint, for raw WebSocket clients.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            self.port
        )
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The server's working directory (holds `.env`, `data/`, `server.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `DATA_DIR` (`<dir>/data`), where the SQLite database lives.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The SQLite database file of the embedded store.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("gatrix-chat.db")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Everything the server has printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// A valid HS256 token for user `sub`, expiring in an hour.
    pub fn token(&self, sub: &str) -> String {
        self.token_with(sub, None, now_secs() + TOKEN_TTL_SECS)
    }

    /// An HS256 token with the given claims; `exp` is in Unix seconds.
    pub fn token_with(&self, sub: &str, name: Option<&str>, exp: u64) -> String {
        let claims = Claims { sub, name, exp };
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )
        .expect("encode JWT")
    }

    /// Creates a channel through the REST API as `owner` and returns its
    /// id. `kind` is public, private or direct.
    pub fn create_channel(&self, owner: &str, name: &str, kind: &str, members: &[&str]) -> String {
        let body = serde_json::json!({"name": name, "type": kind, "members": members}).to_string();
        let r = http_request(
            self.port,
            "POST",
            "/api/v1/channels",
            Some(&self.token(owner)),
            Some(&body),
        )
        .expect("POST /api/v1/channels");
        assert_eq!(r.status, 201, "create channel: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        v["channel"]["id"].as_str().expect("channel id").to_owned()
    }

    /// One page of a channel's history as `reader`:
    /// `GET /api/v1/messages/channel/:id?after=<after>&limit=<limit>`,
    /// returned as (messages, hasMore); panics unless the answer is 200.
    pub fn history_page(
        &self,
        reader: &str,
        channel: &str,
        after: u64,
        limit: usize,
    ) -> (Vec<serde_json::Value>, bool) {
        let path = format!("/api/v1/messages/channel/{channel}?after={after}&limit={limit}");
        let r = http_request(self.port, "GET", &path, Some(&self.token(reader)), None)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("history JSON");
        let messages = v["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no messages array: {}", r.body))
            .clone();
        let has_more = v["hasMore"]
            .as_bool()
            .unwrap_or_else(|| panic!("GET {path}: no hasMore: {}", r.body));
        (messages, has_more)
    }

    /// A channel's whole history in ascending seq, read as `reader` in pages
    /// of 100 (`?after=<last seq>`), checking that seqs only grow.
    pub fn history(&self, reader: &str, channel: &str) -> Vec<serde_json::Value> {
        const LIMIT: usize = 100;
        let mut all: Vec<serde_json::Value> = Vec::new();
        let mut after = 0;
        loop {
            let (page, has_more) = self.history_page(reader, channel, after, LIMIT);
            assert!(
                page.len() <= LIMIT,
                "a page of {} > limit {LIMIT}",
                page.len()
            );
            for m in &page {
                let seq = m["seq"].as_u64().unwrap_or_else(|| panic!("no seq: {m}"));
                assert!(seq > after, "seq {seq} in a page after {after}: {m}");
                after = seq;
            }
            all.extend(page.iter().cloned());
            if !has_more {
                return all;
            }
            assert!(!page.is_empty(), "hasMore with an empty page after {after}");
        }
    }

    /// Sends SIGTERM and waits for the process to exit; panics (after
    /// killing it) if it does not exit within the shutdown timeout.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let pid = Pid::from_raw(child.id() as i32);
        kill(pid, Signal::SIGTERM).expect("send SIGTERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll child") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "gatrix-chat did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if std::thread::panicking() {
            eprintln!(
                "---- gatrix-chat log (port {}) ----\n{}---- end of log ----",
                self.port,
                self.log()
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A port that was free a moment ago (the OS picks it; we release it).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Appends a marker line to the server log (best effort).
fn writeln_log(path: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = File::options().append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos()
}
