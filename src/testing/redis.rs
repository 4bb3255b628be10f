//! A throwaway redis-server for the crate's own tests (bus, recovery
//! sessions, cluster): a free port, a temporary directory, no persistence
//! (`--save '' --appendonly no`), killed when dropped. The integration
//! tests have their own in tests/common/redis.rs (driven by redis-cli).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long redis-server may take to answer PING (generous: the machine
/// is shared).
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub(crate) struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one on a free port.
    pub(crate) fn start() -> Self {
        // A free port: bind 0, read it, let go (redis-server binds it next).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// Starts one on `port`, e.g. that of one just dropped: a Redis that
    /// comes back empty where the clients knew it.
    pub(crate) fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let child = spawn(port, dir.path());
        let server = Self { child, port, dir };
        server.wait_up();
        server
    }

    /// Kills the server and starts an empty one on the same port: Redis
    /// lost everything (no persistence).
    pub(crate) fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.dir.path());
        self.wait_up();
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut c) = self.try_connection()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis url")
    }

    fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        self.client().get_connection()
    }

    pub(crate) fn connection(&self) -> redis::Connection {
        self.try_connection().expect("connecting to redis-server")
    }

    /// Freezes the server (SIGSTOP), keeping its data and connections:
    /// nothing is answered until [`RedisServer::resume`].
    pub(crate) fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub(crate) fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal)
            .unwrap_or_else(|e| panic!("{signal} to redis-server: {e}"));
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install -y redis-server)")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused (SIGSTOP) process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
