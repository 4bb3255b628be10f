//! The benchmark against the real server: several `--server`s (one real
//! gatrix-chat listed twice counts as two instances, so the same- and
//! cross-instance split comes from the round-robin labels alone), the
//! server-side counters (`--server-pid`, `--metrics`), and with a
//! throwaway redis-server, `--redis`.
//!
//! The server binary is the workspace's `target/<profile>/gatrix-chat`,
//! next to this package's binary: `cargo build` (or scripts/test, which
//! builds the workspace) makes it.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const SECRET: &str = "bench-test-secret-0123456789abcdef0123";
const READY: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn server_binary() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_gatrix-chat-bench"));
    let server = bench.with_file_name("gatrix-chat");
    assert!(
        server.exists(),
        "{} is missing: run `cargo build --bin gatrix-chat` first (scripts/test builds the workspace)",
        server.display()
    );
    server
}

/// A status line and body from a plain HTTP/1.0 GET, or None while the
/// server is not up.
fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_owned(), body.to_owned()))
}

/// One gatrix-chat on SQLite in a temp dir, /metrics on a port of its own.
struct Server {
    child: Child,
    port: u16,
    metrics_port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("gatrix-bench-test-")
            .tempdir()
            .expect("temp dir");
        let (port, metrics_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server.log");
        let child = Command::new(server_binary())
            .current_dir(dir.path())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("CLUSTER_WORKERS", "1")
            .env("JWT_SECRET", SECRET)
            .env("DATA_DIR", dir.path())
            .env("METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("RATE_LIMIT_PER_SEC", "100000")
            .env("RATE_LIMIT_BURST", "100000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn gatrix-chat");
        let mut s = Server {
            child,
            port,
            metrics_port,
            dir,
        };
        let t0 = Instant::now();
        while !http_get(port, "/health").is_some_and(|(status, _)| status.contains(" 200 ")) {
            if let Some(status) = s.child.try_wait().expect("poll server") {
                panic!("gatrix-chat exited ({status}):\n{}", s.log());
            }
            assert!(t0.elapsed() < READY, "gatrix-chat not ready:\n{}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// A throwaway redis-server: free port, temp dir, no persistence.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("gatrix-bench-redis-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install -y redis-server)");
        let r = Redis {
            child,
            port,
            _dir: dir,
        };
        let t0 = Instant::now();
        while r.connect().is_err() {
            assert!(t0.elapsed() < READY, "redis-server not up on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut con =
            redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?.get_connection()?;
        redis::cmd("PING").query::<String>(&mut con)?;
        Ok(con)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the benchmark; returns its output and the JSON result.
fn bench(args: &[String], dir: &std::path::Path) -> (Output, Value) {
    let json = dir.join("result.json");
    let out = Command::new(env!("CARGO_BIN_EXE_gatrix-chat-bench"))
        .env("JWT_SECRET", SECRET)
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("run gatrix-chat-bench");
    assert!(
        out.status.success(),
        "gatrix-chat-bench failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = serde_json::from_str(&std::fs::read_to_string(&json).expect("result.json"))
        .expect("JSON result");
    (out, doc)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Command-line words (none of the test's arguments has a space).
fn words(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn fanout_over_two_instances_splits_same_and_cross_instance() {
    let s = Server::start();
    let pid = s.child.id().to_string();
    let (addr, metrics) = (s.addr(), s.metrics_url());
    let svg = s.dir.path().join("fanout.svg");
    // 2 channels x 4 members, sender i on instance i mod 2 sending to
    // channel i: each message reaches 2 members on its sender's instance
    // and 2 on the other.
    let (out, doc) = bench(
        &[
            words(&format!(
                "--server {addr} --url {addr} fanout -c 2 -m 4 -s 2 -r 100 -d 1 --drain 3 \
                 --server-pid {pid} --server-pid {pid} --metrics {metrics} --metrics {metrics}"
            )),
            vec!["--svg".into(), svg.to_string_lossy().into_owned()],
        ]
        .concat(),
        s.dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let acked = u(&doc["acked"]);
    assert!(acked > 0, "{doc}");
    assert_eq!(u(&doc["sent"]), acked, "{doc}");
    for k in [
        "lost",
        "duplicated",
        "out_of_order",
        "failed_connections",
        "refused",
    ] {
        assert_eq!(u(&doc[k]), 0, "{k}: {doc}");
    }
    let delivered = u(&doc["delivered"]);
    assert_eq!(delivered, 4 * acked, "{doc}");
    assert_eq!(u(&doc["expected"]), delivered, "{doc}");
    assert_eq!(doc["server"], format!("{addr},{addr}"));
    let placement = doc["instances"].as_array().expect("instances");
    assert_eq!(placement.len(), 2);
    for p in placement {
        assert_eq!((u(&p["senders"]), u(&p["receivers"])), (1, 4), "{p}");
    }
    let (same, cross) = (
        u(&doc["latency_same_instance"]["count"]),
        u(&doc["latency_cross_instance"]["count"]),
    );
    assert_eq!((same, cross), (delivered / 2, delivered / 2), "{doc}");
    assert_eq!(same + cross, u(&doc["latency"]["count"]));
    assert!(doc["latency_cross_instance"]["p99.9_ms"].is_f64(), "{doc}");
    assert!(text.contains("same-instance deliveries "), "{text}");
    assert!(text.contains("cross-instance deliveries "), "{text}");
    // One process given twice is counted once.
    let by_pid = doc["server_cpu_s_by_pid"].as_object().expect("by pid");
    assert_eq!(by_pid.keys().collect::<Vec<_>>(), [&pid], "{doc}");
    assert!(doc["server_cpu_us_per_delivery"].is_f64(), "{doc}");
    // Each instance's writer: every acked message committed in the run.
    let instances = doc["server_metrics"].as_array().expect("server_metrics");
    assert_eq!(instances.len(), 2);
    for i in instances {
        let w = &i["writer"][0];
        assert_eq!(w["labels"], "", "{i}");
        assert!(u(&w["commits"]) > 0 && u(&w["commits"]) <= acked, "{i}");
        assert_eq!(u(&w["messages"]), acked, "{i}");
        assert!(w["commits_per_s"].as_f64().unwrap() > 0.0, "{i}");
    }
    let svg = std::fs::read_to_string(&svg).expect("fanout.svg");
    assert_eq!(svg.matches("<polyline").count(), 3, "all, same, cross");
    assert!(svg.contains(&format!("cross instance ({cross} samples)")));
}

/// `--outage-*`: the server stopped (SIGSTOP) for 2 s mid-run owes every
/// delivery of those 2 s when it continues; the bench times the outage,
/// sees the backlog and when it is level again, and nothing is lost.
#[test]
fn fanout_outage_reports_the_backlog_and_the_catch_up() {
    let s = Server::start();
    let pid = s.child.id();
    let addr = s.addr();
    let (out, doc) = bench(
        &[
            words(&format!(
                "--server {addr} fanout -c 2 -m 5 -s 2 -r 100 -d 6 --drain 3 \
                 --outage-at 2 --outage-secs 2"
            )),
            vec![
                "--outage-down".into(),
                format!("kill -STOP {pid}"),
                "--outage-up".into(),
                format!("kill -CONT {pid}"),
            ],
        ]
        .concat(),
        s.dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for k in ["lost", "duplicated", "out_of_order", "failed_connections"] {
        assert_eq!(u(&doc[k]), 0, "{k}: {doc}");
    }
    let o = &doc["outage"];
    let ms = |k: &str| o[k].as_f64().unwrap_or_else(|| panic!("{k}: {o}"));
    // The marks follow the options (the commands return at once; margins
    // for a loaded machine).
    assert!((1900.0..3000.0).contains(&ms("down_ms")), "{o}");
    assert!(ms("up_start_ms") >= ms("down_ms") + 1900.0, "{o}");
    assert!(ms("up_ms") >= ms("up_start_ms"), "{o}");
    // A stopped server delivers nothing: at the up, the deliveries of
    // most of the 2 s are owed (100 msgs/s x 5 members), far above the
    // level before.
    let (base, at_up) = (u(&o["baseline_backlog"]), u(&o["backlog_at_up"]));
    assert!(at_up > base && at_up >= 500, "{o}");
    assert!(o["level_after_ms"].is_f64(), "never level: {o}");
    assert!(u(&o["caught_up_deliveries"]) > 0, "{o}");
    assert!(ms("catch_up_rate_per_s") > 0.0, "{o}");
    assert!(ms("outage_max_latency_ms") >= 1000.0, "{o}");
    let bins = o["bins"]["received"].as_array().expect("bins");
    let received: u64 = bins.iter().map(u).sum();
    assert_eq!(
        received,
        u(&doc["delivered"]),
        "every delivery in a bin: {o}"
    );
    assert!(text.contains("catch-up: level "), "{text}");
}

#[test]
fn ingest_spreads_connections_and_reads_the_writer() {
    let s = Server::start();
    let (addr, metrics) = (s.addr(), s.metrics_url());
    let (out, doc) = bench(
        &words(&format!(
            "--server {addr},{addr} ingest -n 4 -w 4 -d 1 --metrics {metrics}"
        )),
        s.dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 instances: connection i on instance i mod 2"),
        "{text}"
    );
    let acked = u(&doc["acked"]);
    assert!(acked > 0, "{doc}");
    assert_eq!(u(&doc["failed_connections"]), 0, "{doc}");
    let w = &doc["server_metrics"][0]["writer"][0];
    // Sends still in flight at the end are committed after `acked` was
    // read, before the scrape.
    assert!(u(&w["messages"]) >= acked, "{doc}");
    assert!(u(&w["commits"]) > 0, "{doc}");
}

#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn redis_commands_and_bytes_over_the_run() {
    let s = Server::start();
    let r = Redis::start();
    // A second node (as a cluster's second master), with no traffic of
    // its own: its share of the sum is the readings' residue only.
    let r2 = Redis::start();
    // Redis traffic during the run: the server does not use this Redis,
    // so a client of the test's own sets keys until the benchmark exits.
    let stop = Arc::new(AtomicBool::new(false));
    let sets = Arc::new(AtomicU64::new(0));
    let mut con = r.connect().expect("redis connection");
    let load = {
        let (stop, sets) = (stop.clone(), sets.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                redis::cmd("SET")
                    .arg("gatrix:bench-test")
                    .arg("x")
                    .query::<()>(&mut con)
                    .expect("SET");
                sets.fetch_add(1, Relaxed);
                // Pacing only (about 1,000 commands/s), not a wait for anything.
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let redis_addr = format!("127.0.0.1:{},127.0.0.1:{}", r.port, r2.port);
    let metrics = s.metrics_url();
    let (_, doc) = bench(
        &words(&format!(
            "--server {} fanout -c 1 -m 2 -s 1 -r 50 -d 1 --drain 1 --redis {redis_addr} \
             --metrics {metrics} --metrics {}",
            s.addr(),
            metrics.trim_start_matches("http://"),
        )),
        s.dir.path(),
    );
    stop.store(true, Relaxed);
    load.join().expect("load thread");
    // One instance: no split.
    assert!(doc.get("instances").is_none() && doc.get("latency_cross_instance").is_none());
    // No --server-pid: the CPU fields are there, null.
    assert!(doc["server_cpu_s"].is_null() && doc["server_cpu_us_per_delivery"].is_null());
    assert!(
        doc.as_object().unwrap().contains_key("server_cpu_s"),
        "{doc}"
    );
    let red = &doc["redis"];
    let acked = u(&doc["acked"]);
    assert!(acked > 0, "{doc}");
    assert_eq!(u(&red["messages"]), acked);
    let set = u(&red["commandstats"]["set"]["calls"]);
    assert!(set > 0 && set <= sets.load(Relaxed), "{red}");
    // The benchmark's own INFO readings are taken off.
    assert!(red["commandstats"].get("info").is_none(), "{red}");
    assert!(u(&red["commands"]) >= set, "{red}");
    let per_1k = red["commands_per_1k_messages"].as_f64().unwrap();
    let want = u(&red["commands"]) as f64 * 1000.0 / acked as f64;
    assert!((per_1k - want).abs() < 1e-6, "{red}");
    assert!(
        u(&red["net_input_bytes"]) > 0 && u(&red["net_output_bytes"]) > 0,
        "{red}"
    );
    // Per writer commit: one instance's commits, its URL given twice
    // (with and without http://) counted once.
    let commits = u(&doc["server_metrics"][0]["writer"][0]["commits"]);
    assert!(commits > 0, "{doc}");
    assert_eq!(u(&red["writer_commits"]), commits, "{doc}");
    let per_commit = red["commands_per_commit"].as_f64().unwrap();
    assert!((per_commit - u(&red["commands"]) as f64 / commits as f64).abs() < 1e-9);
    // Two nodes: the totals are their sum, each reported apart.
    let nodes = red["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2, "{red}");
    assert_eq!(nodes[0]["addr"], format!("127.0.0.1:{}", r.port));
    let sum = |k: &str| nodes.iter().map(|n| u(&n[k])).sum::<u64>();
    assert_eq!(u(&red["commands"]), sum("commands"), "{red}");
    assert_eq!(u(&red["net_input_bytes"]), sum("net_input_bytes"), "{red}");
    assert!(
        u(&nodes[0]["commandstats"]["set"]["calls"]) == set
            && nodes[1]["commandstats"].get("set").is_none(),
        "{red}"
    );
    // The loaded node used CPU over the run (about 1,000 SETs a second).
    let cpu = |n: &serde_json::Value| n["cpu_seconds"].as_f64().expect("cpu_seconds");
    assert!(cpu(&nodes[0]) > 0.0, "{red}");
    assert!(
        (cpu(red) - cpu(&nodes[0]) - cpu(&nodes[1])).abs() < 1e-9,
        "{red}"
    );
}
