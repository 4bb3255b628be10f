//! A throwaway `redis-server` (Debian's package; `scripts/test` installs
//! it) for the tests of several instances: a free loopback port, a temp
//! dir as its working dir, no persistence (`--save '' --appendonly no`),
//! killed on drop. The tests stop it, start it again on the same port,
//! kill it with SIGKILL or freeze it with SIGSTOP, and read what it served
//! (`INFO stats`, `INFO commandstats`) to count commands and bytes.
//!
//! It is driven and read with `redis-cli` (same package), so the tests
//! need no Redis client of their own. Tests that need it are
//! `#[ignore = "needs redis-server: run scripts/test"]`.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::free_port;

/// Why a Redis test cannot run; also the `#[ignore]` reason.
pub const NEEDS_REDIS: &str = "needs redis-server: run scripts/test";

/// How long redis-server may take to answer `PING` after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long redis-server may take to exit after a signal.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `redis-cli` call may take (the server is local).
const CLI_TIMEOUT_SECS: &str = "5";

/// A redis-server of the test's own.
pub struct Redis {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// Frozen with SIGSTOP and not yet sent SIGCONT.
    paused: bool,
}

/// What `INFO stats` says the server served since it started (or since
/// [`Redis::reset_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisStats {
    /// `total_commands_processed` (the readers' own `INFO` calls included).
    pub commands: u64,
    /// `total_net_input_bytes`: what clients sent.
    pub net_input_bytes: u64,
    /// `total_net_output_bytes`: what the server sent back.
    pub net_output_bytes: u64,
}

impl Redis {
    /// Starts a redis-server on a free port (three attempts, in case the
    /// port is taken between picking and binding); panics with
    /// [`NEEDS_REDIS`] when the program is missing.
    pub fn start() -> Redis {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "redis-server not found: {NEEDS_REDIS} (or apt-get install redis-server)"
        );
        let dir = tempfile::Builder::new()
            .prefix("gatrix-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        let mut redis = Redis {
            dir,
            port: 0,
            child: None,
            paused: false,
        };
        for attempt in 1..=3 {
            redis.port = free_port();
            if redis.try_start() {
                return redis;
            }
            eprintln!(
                "redis-server did not start on port {} (attempt {attempt}); log:\n{}",
                redis.port,
                redis.log()
            );
        }
        panic!("redis-server did not start in 3 attempts");
    }

    /// `redis://127.0.0.1:<port>/0`, as given to gatrix-chat's `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server running").id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("<no log: {e}>"))
    }

    /// Starts redis-server again on the same port (empty: nothing is
    /// persisted), after [`Redis::stop`] or [`Redis::kill9`].
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not start again on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    /// Spawns redis-server on `self.port` and waits for `PING`; false (the
    /// child reaped) if it exits first, e.g. because the port is taken.
    fn try_start(&mut self) -> bool {
        assert!(self.child.is_none(), "redis-server is already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &self.dir.path().display().to_string()])
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
            let child = self.child.as_mut().expect("redis-server running");
            if child.try_wait().expect("poll redis-server").is_some() {
                self.child = None;
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not answering on port {} after {START_TIMEOUT:?}; log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A clean stop (SIGTERM; with no persistence nothing is written), and
    /// waits until the process is gone. [`Redis::restart`] starts it again.
    pub fn stop(&mut self) {
        self.signal_and_reap(Signal::SIGTERM);
    }

    /// A crash: SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        self.signal_and_reap(Signal::SIGKILL);
    }

    fn signal_and_reap(&mut self, signal: Signal) {
        if self.paused {
            // A stopped process does not act on SIGTERM until it runs again.
            self.resume();
        }
        let mut child = self.child.take().expect("redis-server running");
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal redis-server");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if child.try_wait().expect("poll redis-server").is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server still running {STOP_TIMEOUT:?} after {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered, as with a hung host. [`Redis::resume`] thaws it.
    pub fn pause(&mut self) {
        assert!(!self.paused, "redis-server is already paused");
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGSTOP).expect("SIGSTOP redis-server");
        self.paused = true;
    }

    /// SIGCONT after [`Redis::pause`].
    pub fn resume(&mut self) {
        assert!(self.paused, "redis-server is not paused");
        kill(Pid::from_raw(self.pid() as i32), Signal::SIGCONT).expect("SIGCONT redis-server");
        self.paused = false;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Runs `redis-cli -p <port> <args>` and returns what it printed, or
    /// why it failed (a Redis error, no answer within 5 s: not while
    /// paused).
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        // redis-cli 7.0 has no timeout of its own (`-t` came in 7.2).
        let out = Command::new("timeout")
            .args([CLI_TIMEOUT_SECS, "redis-cli", "-e"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run redis-cli: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // `-e`: a Redis error is a failed exit; a timeout exits 124.
        if !out.status.success() {
            return Err(format!(
                "redis-cli {args:?}: {} {stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(stdout)
    }

    /// `INFO <section>` as field → value (`# …` headers left out).
    pub fn info(&self, section: &str) -> HashMap<String, String> {
        let text = self
            .cli(&["INFO", section])
            .unwrap_or_else(|e| panic!("INFO {section}: {e}"));
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.trim_end().split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Commands and bytes served (`INFO stats`).
    pub fn stats(&self) -> RedisStats {
        let info = self.info("stats");
        let field = |name: &str| -> u64 {
            info.get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("INFO stats has no numeric {name}: {info:?}"))
        };
        RedisStats {
            commands: field("total_commands_processed"),
            net_input_bytes: field("total_net_input_bytes"),
            net_output_bytes: field("total_net_output_bytes"),
        }
    }

    /// Calls per command (`INFO commandstats`), keyed by the lower-case
    /// name as Redis reports it (`xadd`, `evalsha`, `publish`,
    /// `client|setname` for subcommands).
    pub fn command_calls(&self) -> HashMap<String, u64> {
        parse_commandstats(&self.info("commandstats"))
    }

    /// `CONFIG RESETSTAT`: the counters of [`Redis::stats`] and
    /// [`Redis::command_calls`] start again from zero.
    pub fn reset_stats(&self) {
        self.cli(&["CONFIG", "RESETSTAT"])
            .unwrap_or_else(|e| panic!("CONFIG RESETSTAT: {e}"));
    }

    /// The keys matching `pattern` (`SCAN`, for tests that look at what a
    /// subsystem wrote, e.g. `gatrix:*`).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let text = self
            .cli(&["--scan", "--pattern", pattern])
            .unwrap_or_else(|e| panic!("SCAN {pattern}: {e}"));
        let mut keys: Vec<String> = text.lines().map(str::to_owned).collect();
        keys.sort();
        keys
    }
}

/// `cmdstat_xadd:calls=3,usec=…` lines → `xadd` → 3.
fn parse_commandstats(info: &HashMap<String, String>) -> HashMap<String, u64> {
    info.iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("cmdstat_")?;
            let calls = value
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if std::thread::panicking() {
                eprintln!(
                    "---- redis-server log (port {}) ----\n{}---- end of log ----",
                    self.port,
                    self.log()
                );
            }
            // SIGKILL ends a stopped (SIGSTOP) process too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
