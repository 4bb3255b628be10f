//! GET /metrics against the real binary: every name of the contract with
//! the Grafana dashboard (docs/metrics.md), counts that move by exactly what
//! Socket.IO and REST traffic did, and METRICS_LISTEN / METRICS_ENABLED.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::client::{Client, Connect};
use common::{TestServer, free_port, http_get, http_request};
use serde_json::json;

const SEC: Duration = Duration::from_secs(5);

/// Every metric family of the contract, as it appears in the exposition.
const NAMES: &[&str] = &[
    "chat_connections_active",
    "chat_channels_active",
    "chat_messages_total",
    "chat_deliveries_total",
    "chat_broadcast_latency_bucket",
    "chat_broadcast_latency_sum",
    "chat_broadcast_latency_count",
    "chat_slow_consumer_disconnects_total",
    "chat_rate_limited_total",
    "chat_auth_failures_total",
    "chat_disconnects_total",
    "chat_refusals_total",
    "chat_store_batch_size_bucket",
    "chat_store_batch_size_count",
    "chat_store_commit_latency_seconds_bucket",
    "chat_store_commit_latency_seconds_count",
    "chat_store_queue_depth",
    "chat_mailbox_depth",
    "chat_bus_connected",
    "chat_bus_polling",
    "chat_bus_lag",
    "chat_bus_applied_pos",
    "chat_bus_batches_applied_total",
    "chat_bus_duplicates_dropped_total",
    "chat_bus_gap_fills_total",
    "chat_bus_polling_fallbacks_total",
    "chat_bus_publishes_total",
    "chat_bus_publishes_dropped_total",
    "chat_build_info",
];

/// One scrape: (series name, labels text, value) per sample line.
struct Scrape(Vec<(String, String, f64)>);

impl Scrape {
    fn get(port: u16) -> Scrape {
        let r = http_get(port, "/metrics").expect("GET /metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/openmetrics-text")),
            "{:?}",
            r.headers
        );
        let samples = r
            .body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("sample line");
                let (name, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let value = value.parse().unwrap_or_else(|_| panic!("value in {l}"));
                (name.to_owned(), labels.to_owned(), value)
            })
            .collect();
        Scrape(samples)
    }

    /// The sum of `name` over every series whose labels contain each of
    /// `with` (e.g. `transport="ws"`), every shard included.
    fn sum(&self, name: &str, with: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| n == name && with.iter().all(|w| l.contains(w)))
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }
}

/// Scrapes until `name` (summed) is `want`, or fails with the value it
/// has at the deadline: counters and gauges move a moment after the
/// traffic that moved them, and a gauge may have to come down to `want`
/// (a counter that overshoots never comes back, so it fails there too).
fn settles_at(port: u16, name: &str, with: &[&str], want: f64) -> Scrape {
    let deadline = Instant::now() + SEC;
    loop {
        let s = Scrape::get(port);
        let v = s.sum(name, with);
        if v == want || Instant::now() > deadline {
            assert_eq!(v, want, "{name}{with:?}");
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_contracted_name_is_exposed_and_counts_follow_the_traffic() {
    let server = TestServer::start();
    let port = server.port();
    let before = Scrape::get(port);
    for name in NAMES {
        assert!(before.has(name), "{name} missing");
    }
    for shard in ["shard=\"0\"", "shard=\"1\""] {
        assert_eq!(before.sum("chat_connections_active", &[shard]), 0.0);
        assert_eq!(
            before.sum(
                "chat_disconnects_total",
                &[shard, "reason=\"slow_consumer\""]
            ),
            0.0
        );
    }
    assert_eq!(before.sum("chat_build_info", &["version=\""]), 1.0);
    assert_eq!(before.sum("chat_messages_total", &[]), 0.0);

    let lobby = server.create_channel("alice", "lobby", "public", &[]);
    let mut clients: Vec<Client> = ["alice", "bob", "carol"]
        .iter()
        .map(|u| Client::connect(&server, u))
        .collect();
    for c in &mut clients {
        assert_eq!(
            c.call("join_channel", json!({"channelId": lobby}))["ok"],
            true
        );
    }
    settles_at(port, "chat_connections_active", &[], 3.0);

    const SENT: usize = 5;
    for i in 0..SENT {
        let ack = clients[0].call(
            "send_message",
            json!({"channelId": lobby, "content": format!("m{i}")}),
        );
        assert_eq!(ack["ok"], true, "{ack}");
    }
    for c in &mut clients {
        for _ in 0..SENT {
            c.event("message", SEC);
        }
    }
    // Each message once, on its owner shard; one frame per subscriber.
    settles_at(port, "chat_messages_total", &[], SENT as f64);
    let s = settles_at(port, "chat_deliveries_total", &[], (SENT * 3) as f64);
    // Observed once per message on each shard with subscribers (1 or 2).
    let latencies = s.sum("chat_broadcast_latency_count", &[]);
    assert!(
        (SENT as f64..=(2 * SENT) as f64).contains(&latencies),
        "{latencies}"
    );
    assert_eq!(
        s.sum("chat_broadcast_latency_bucket", &["le=\"+Inf\""]),
        latencies
    );
    // The store committed exactly the sends (joins and channel writes are
    // not message batches).
    assert_eq!(s.sum("chat_store_batch_size_sum", &[]), SENT as f64);
    let commits = s.sum("chat_store_commit_latency_seconds_count", &[]);
    assert_eq!(s.sum("chat_store_batch_size_count", &[]), commits);
    assert!((1.0..=SENT as f64).contains(&commits), "{commits}");
    // The owner's cache holds the one channel (refreshed every 250 ms).
    settles_at(port, "chat_channels_active", &[], 1.0);

    // Refused tokens, by transport.
    match Client::try_connect(&server, "not-a-token") {
        Connect::Refused(_) => {}
        Connect::Ok(_) => panic!("a bad token was accepted"),
    }
    let r = http_request(port, "GET", "/api/v1/channels", Some("not-a-token"), None).unwrap();
    assert_eq!(r.status, 401);
    settles_at(port, "chat_auth_failures_total", &["transport=\"ws\""], 1.0);
    settles_at(
        port,
        "chat_auth_failures_total",
        &["transport=\"rest\""],
        1.0,
    );

    // A connection that ends is counted by its reason and leaves the gauge.
    drop(clients.pop());
    settles_at(port, "chat_connections_active", &[], 2.0);
    // Counted once the connection's close has finished; the connection
    // refused for its token above counts too.
    let s = settles_at(port, "chat_disconnects_total", &[], 2.0);
    // (A peer that drops its socket without a close frame is counted
    // under whatever the driver calls it; the reasons are bounded.)
    // One series per shard and close reason, nothing else.
    let series = s.0.iter().filter(|(n, _, _)| n == "chat_disconnects_total");
    assert_eq!(
        series.clone().count(),
        2 * gatrix_chat::protocol::CloseReason::ALL.len()
    );
    assert!(series.clone().all(|(_, l, _)| l.contains("reason=\"")));
    assert_eq!(s.sum("chat_slow_consumer_disconnects_total", &[]), 0.0);
}

#[test]
fn metrics_listen_serves_metrics_on_its_own_address_only() {
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let server = TestServer::start_with(&[("METRICS_LISTEN", &addr)]);
    let main = http_get(server.port(), "/metrics").unwrap();
    assert_eq!(main.status, 404, "{}", main.body);
    let s = Scrape::get(metrics_port);
    for name in NAMES {
        assert!(s.has(name), "{name} missing on METRICS_LISTEN");
    }
    assert_eq!(http_get(metrics_port, "/health").unwrap().status, 404);
    assert_eq!(http_get(server.port(), "/health").unwrap().status, 200);
}

#[test]
fn metrics_enabled_false_hides_the_exposition() {
    let server = TestServer::start_with(&[("METRICS_ENABLED", "false")]);
    let r = http_get(server.port(), "/metrics").unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
}

/// Writes `request` on a new connection and returns the status line of
/// the answer (the server closes these connections after answering).
fn raw_status(port: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(SEC)).unwrap();
    s.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

fn upgrade(query: &str, origin: &str) -> String {
    format!(
        "GET /socket.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
    )
}

#[test]
fn refusals_are_counted_by_reason() {
    // One shard: every series below exists once /health answers.
    let server = TestServer::start_with(&[
        ("CLUSTER_WORKERS", "1"),
        ("ALLOWED_ORIGINS", "https://ok.example"),
        ("WS_MAX_CONNECTIONS_PER_IP", "3"),
    ]);
    let port = server.port();
    let ws = "EIO=4&transport=websocket";
    for _ in 0..2 {
        let status = raw_status(port, &upgrade(ws, "https://evil.example"));
        assert!(status.contains(" 403 "), "{status}");
    }
    let status = raw_status(
        port,
        &upgrade("EIO=3&transport=websocket", "https://ok.example"),
    );
    assert!(status.contains(" 400 "), "{status}");
    let status = raw_status(port, "NOT HTTP AT ALL\r\n\r\n");
    assert!(status.contains(" 400 "), "{status}");
    let expired = server.token_with("old", None, common::now_secs() - 3600);
    match Client::try_connect(&server, &expired) {
        Connect::Refused(_) => {}
        Connect::Ok(_) => panic!("an expired token was accepted"),
    }
    let r = http_request(port, "GET", "/api/v1/channels", Some(&expired), None).unwrap();
    assert_eq!(r.status, 401);
    let r = http_request(port, "GET", "/api/v1/channels", None, None).unwrap();
    assert_eq!(r.status, 401);
    // Three connections that say nothing hold this address's three
    // places; the fourth is turned away.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    // (The server may not have accepted all three yet: a fourth can get
    // in first. Then it is answered and closed, and the next one tries.)
    let deadline = Instant::now() + SEC;
    loop {
        let status = raw_status(
            port,
            "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if status.contains(" 503 ") {
            break;
        }
        assert!(status.contains(" 200 "), "{status}");
        assert!(Instant::now() < deadline, "a fourth connection is admitted");
    }
    drop(held);
    // Scrapes may come while the server still counts the held ones.
    let deadline = Instant::now() + SEC;
    while http_get(port, "/health").map_or(true, |r| r.status != 200) {
        assert!(
            Instant::now() < deadline,
            "the held places were not given back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    for (reason, want) in [
        ("origin", 2.0),
        ("bad_upgrade", 1.0),
        ("bad_request", 1.0),
        ("token_expired", 2.0),
        ("token_missing", 1.0),
    ] {
        settles_at(
            port,
            "chat_refusals_total",
            &[&format!("reason=\"{reason}\"")],
            want,
        );
    }
    // Nothing else was refused; every reason has its series.
    // At least the fourth connection; one of the three held ones too when
    // an earlier connection's place was not given back yet.
    let s = Scrape::get(port);
    let ip_full = s.sum("chat_refusals_total", &["reason=\"ip_full\""]);
    assert!((1.0..=3.0).contains(&ip_full), "{ip_full}");
    assert_eq!(s.sum("chat_refusals_total", &[]), 7.0 + ip_full);
    assert_eq!(
        s.0.iter()
            .filter(|(n, _, _)| n == "chat_refusals_total")
            .count(),
        gatrix_chat::metrics::Refused::ALL.len()
    );
    // The transport label of refused tokens is unchanged: no header is
    // no auth failure.
    assert_eq!(s.sum("chat_auth_failures_total", &[]), 2.0);
}
