//! The limits toward Redis (issue 13), attacked from real sockets while
//! the servers' memory is watched: instances of the real binary on one
//! MariaDB database and one redis-server (`common::cluster`), the Redis
//! frozen with SIGSTOP so that every queue toward it fills, and Socket.IO
//! clients flooding what feeds each queue:
//! - `BUS_QUEUE_BATCHES` / `BUS_MAX_PARKED`: large messages sent on every
//!   instance; each is acked, reaches every subscriber on every instance
//!   in seq order (the bus drops, the gap fill reads MySQL) and is in
//!   MySQL once;
//! - `PRESENCE_QUEUE`: connects, joins, leaves and typing; events are
//!   dropped, never queued without bound, and flow again after SIGCONT;
//! - `RECOVERY_REDIS_QUEUE`: joins and leaves (session writes) and
//!   reconnects with a pid; a reconnect is answered "not recovered" within
//!   twice `RECOVERY_REDIS_TIMEOUT_MS`, and recovers again after SIGCONT.
//!
//! Each samples the instances' VmRSS (/proc/<pid>/status) through the
//! flood and asserts it stays under a bound derived from the limits, over
//! a baseline taken after a warm-up. The machine is shared: the bounds
//! have wide margins and no speed is asserted.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::{Value, json};

use common::TestServer;
use common::chat::{WINDOW, send_message_frame};
use common::cluster::Cluster;
use common::http_get;
use common::proc::rss_kib;
use common::raw::*;

const MIB: u64 = 1024;

/// Floods are bursts from one connection: no rate limiting.
const NO_RATE_LIMIT: [(&str, &str); 2] = [
    ("RATE_LIMIT_PER_SEC", "1000000"),
    ("RATE_LIMIT_BURST", "1000000"),
];

/// Samples the VmRSS of some processes every few milliseconds on a thread
/// of its own, keeping each one's highest.
struct RssWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<u64>>>,
}

impl RssWatch {
    fn start(pids: Vec<u32>) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = vec![0u64; pids.len()];
                while !stop.load(Ordering::Relaxed) {
                    for (p, pid) in peak.iter_mut().zip(&pids) {
                        *p = (*p).max(rss_kib(*pid).unwrap_or(0));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                peak
            })
        };
        RssWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// The highest VmRSS of each process, in KiB.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("watch running")
            .join()
            .expect("RSS watch thread")
    }
}

/// Asserts the peak of each instance stayed under its baseline plus
/// `allowed` KiB; prints the figures either way.
fn assert_rss_within(what: &str, baseline: &[u64], peak: &[u64], allowed: u64) {
    for (i, (b, p)) in baseline.iter().zip(peak).enumerate() {
        eprintln!(
            "{what}: instance {i}: VmRSS baseline {} MiB, peak {} MiB (+{} MiB, allowed +{} MiB)",
            b / MIB,
            p / MIB,
            p.saturating_sub(*b) / MIB,
            allowed / MIB
        );
    }
    for (i, (b, p)) in baseline.iter().zip(peak).enumerate() {
        assert!(
            *p <= b + allowed,
            "{what}: instance {i} grew from {b} KiB to {p} KiB, more than the limits allow \
             (+{allowed} KiB): a queue toward Redis is not bounded"
        );
    }
}

/// Every instance answers `/health` with 200.
fn assert_responsive(cluster: &Cluster) {
    for i in 0..cluster.len() {
        let r = http_get(cluster.server(i).port(), "/health").expect("GET /health");
        assert_eq!(r.status, 200, "instance {i} /health: {}", r.body);
    }
}

/// A WebSocket connected as `user` whose reads wait up to `wait`.
fn client(server: &TestServer, user: &str, wait: Duration) -> Ws {
    let stream = TcpStream::connect(server.addr()).expect("TCP connect");
    let (mut ws, _) = open_on(stream, server);
    sio_connect(&mut ws, &server.token(user));
    ws.get_mut()
        .set_read_timeout(Some(wait))
        .expect("read timeout");
    ws
}

/// Channels each flooder of the presence and recovery tests joins.
const ROOMS: usize = 8;

#[path = "redis_limits/bus.rs"]
mod bus;
#[path = "redis_limits/presence.rs"]
mod presence;
#[path = "redis_limits/recovery.rs"]
mod recovery;
