//! MariaDB for the MySQL-backed tests. `scripts/test` starts a throwaway
//! server and exports where it is:
//!
//! - `GATRIX_TEST_MYSQL_URL`: `mysql://gatrix:<pw>@127.0.0.1:<port>`, no
//!   database; the user may create `gatrix_%` databases. Each test makes
//!   its own with [`mysql_test_db`], so tests run in parallel.
//! - `GATRIX_TEST_MYSQLD_CMD`: the exact command line of that server,
//!   `GATRIX_TEST_MYSQLD_PIDFILE`, `GATRIX_TEST_MYSQL_SOCKET`.
//! - `GATRIX_TEST_MYSQL_TEMPLATE`: a stopped datadir (mariadb-install-db's
//!   output, with the same user) and `GATRIX_TEST_MYSQL_TMP`: where private
//!   servers live, so that scripts/test stops any a test left behind.
//!
//! A test that stops MariaDB runs its own server ([`Mariadb::private`]):
//! stopping the shared one would fail every other test running beside it.
//!
//! Tests that need MariaDB are `#[ignore = "needs MariaDB: run
//! scripts/test"]` and, run without it, fail with that message.

use std::fs::File;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::{free_port, unix_nanos};

/// Why a MariaDB test cannot run; also the `#[ignore]` reason.
pub const NEEDS_MARIADB: &str = "needs MariaDB: run scripts/test";

/// How long mariadbd may take to answer after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long mariadbd may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared server's URL (no database), if scripts/test started one.
pub fn mysql_server_url() -> Option<String> {
    std::env::var("GATRIX_TEST_MYSQL_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

/// Creates a fresh, empty database on the shared server and returns its
/// URL (`<GATRIX_TEST_MYSQL_URL>/<db>`), or None without MariaDB.
pub fn mysql_test_db() -> Option<String> {
    mysql_server_url().map(|server| create_database(&server))
}

/// [`mysql_test_db`], failing the test when there is no MariaDB.
pub fn mysql_db() -> String {
    mysql_test_db().expect(NEEDS_MARIADB)
}

/// Creates a database with a name no other test (or process) uses on the
/// server at `server` and returns its URL.
pub fn create_database(server: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "gatrix_t{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        unix_nanos() % 1_000_000_000_000
    );
    let mut conn = connect(server).unwrap_or_else(|e| panic!("connect to {}: {e}", redact(server)));
    conn.query_drop(format!("CREATE DATABASE `{name}`"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    format!("{server}/{name}")
}

/// A plain connection (for tests that look at the database directly).
pub fn connect(url: &str) -> mysql::Result<mysql::Conn> {
    let opts = mysql::Opts::from_url(url).map_err(mysql::Error::UrlError)?;
    let opts = mysql::OptsBuilder::from_opts(opts)
        .tcp_connect_timeout(Some(Duration::from_secs(5)))
        .read_timeout(Some(Duration::from_secs(30)));
    mysql::Conn::new(opts)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A mariadbd of this test's own: a copy of scripts/test's template
/// datadir, run with the shared server's options on its own port, socket
/// and pid file under `GATRIX_TEST_MYSQL_TMP`. Killed (and its files
/// removed) on drop.
pub struct Mariadb {
    dir: TempDir,
    port: u16,
    /// The mariadbd command line.
    command: Vec<String>,
    child: Option<Child>,
    /// `mysql://gatrix:<pw>@127.0.0.1:<port>`
    url: String,
}

impl Mariadb {
    /// Copies the template datadir and starts a private server, or None
    /// without scripts/test's MariaDB.
    pub fn private() -> Option<Mariadb> {
        let shared_url = mysql_server_url()?;
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("GATRIX_TEST_MYSQL_URL is set but {name} is not: {NEEDS_MARIADB}")
            })
        };
        let template = PathBuf::from(var("GATRIX_TEST_MYSQL_TEMPLATE"));
        let shared_cmd = var("GATRIX_TEST_MYSQLD_CMD");
        let tmp = PathBuf::from(var("GATRIX_TEST_MYSQL_TMP"));

        let dir = tempfile::Builder::new()
            .prefix("db-")
            .tempdir_in(&tmp)
            .expect("create a dir for a private mariadbd");
        let data = dir.path().join("data");
        let status = Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(&data)
            .status()
            .expect("run cp");
        assert!(status.success(), "cp -a {template:?} {data:?}: {status}");

        let port = free_port();
        let path = |name: &str| dir.path().join(name).display().to_string();
        // The shared server's exact options, with this server's files and port.
        let command: Vec<String> = shared_cmd
            .split_whitespace()
            .map(|arg| match arg.split_once('=') {
                Some(("--datadir", _)) => format!("--datadir={}", data.display()),
                Some(("--socket", _)) => format!("--socket={}", path("mariadbd.sock")),
                Some(("--port", _)) => format!("--port={port}"),
                Some(("--pid-file", _)) => format!("--pid-file={}", path("mariadbd.pid")),
                Some(("--log-error", _)) => format!("--log-error={}", path("mariadbd.log")),
                _ => arg.to_owned(),
            })
            .collect();
        let (server_without_port, _) = shared_url
            .rsplit_once(':')
            .expect("GATRIX_TEST_MYSQL_URL ends with :<port>");
        let url = format!("{server_without_port}:{port}");
        let mut db = Mariadb {
            dir,
            port,
            command,
            child: None,
            url,
        };
        db.start();
        Some(db)
    }

    /// The server's URL, no database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A fresh database on this server; its URL.
    pub fn create_db(&self) -> String {
        create_database(&self.url)
    }

    /// mariadbd's own log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadbd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts mariadbd (same datadir, same port) and waits until it
    /// accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "mariadbd is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mariadbd.out"))
            .expect("open mariadbd.out");
        let (program, args) = self.command.split_first().expect("a mariadbd command");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        self.child = Some(child);
        let started = Instant::now();
        loop {
            // The port answers once the server is ready for connections.
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
                && connect(&self.url).is_ok()
            {
                return;
            }
            let child = self.child.as_mut().expect("mariadbd running");
            if let Some(status) = child.try_wait().expect("poll mariadbd") {
                self.child = None;
                panic!(
                    "mariadbd exited while starting ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "mariadbd not answering on port {} after {START_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops mariadbd with `signal` (SIGTERM: a clean shutdown; SIGKILL: a
    /// crash) and waits until the process is gone.
    pub fn stop(&mut self, signal: Signal) {
        let mut child = self.child.take().expect("mariadbd running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal mariadbd");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait().expect("poll mariadbd").is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mariadbd still running {STOP_TIMEOUT:?} after {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                eprintln!(
                    "---- mariadbd log (port {}) ----\n{}---- end of log ----",
                    self.port,
                    self.log()
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
