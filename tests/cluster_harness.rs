//! The harness of the tests of several instances (tests/multi_instance.rs)
//! checked on its own: the throwaway redis-server of `common::redis` and
//! the three instances of `common::cluster` on one MariaDB database and one
//! Redis. They need scripts/test's MariaDB and Debian's redis-server.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use common::cluster::Cluster;
use common::http_get;
use common::redis::Redis;

/// The throwaway redis-server: answers, counts what it serves, freezes on
/// SIGSTOP (a command sent meanwhile is answered after SIGCONT), stops,
/// starts again on the same port empty, and survives nothing of a kill -9.
#[test]
#[ignore = "needs redis-server: run scripts/test"]
fn redis_harness_counts_stops_restarts_and_pauses() {
    let mut redis = Redis::start();
    assert_eq!(redis.cli(&["PING"]).expect("PING").trim(), "PONG");
    redis.reset_stats();
    redis.cli(&["SET", "gatrix:test", "1"]).expect("SET");
    redis.cli(&["SET", "gatrix:test", "2"]).expect("SET");
    assert_eq!(redis.command_calls().get("set"), Some(&2));
    let stats = redis.stats();
    // The two SETs, and the INFO that read the command stats.
    assert!(stats.commands >= 3, "{stats:?}");
    assert!(stats.net_input_bytes > 0 && stats.net_output_bytes > 0);
    assert_eq!(redis.keys("gatrix:*"), vec!["gatrix:test".to_owned()]);

    // Frozen: a command is not answered; thawed: it is.
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, redis.port())).expect("connect");
    redis.pause();
    conn.write_all(b"PING\r\n").expect("write PING");
    conn.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let frozen = conn.read(&mut buf);
    assert!(
        frozen.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "a paused redis-server answered: {frozen:?}"
    );
    assert!(redis.cli(&["PING"]).is_err(), "redis-cli got an answer");
    redis.resume();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let n = conn
        .read(&mut buf)
        .expect("the PING answered after SIGCONT");
    assert_eq!(&buf[..n], b"+PONG\r\n");

    // Stopped: nothing listens; started again: same port, nothing kept.
    let port = redis.port();
    redis.stop();
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(
        redis
            .cli(&["EXISTS", "gatrix:test"])
            .expect("EXISTS")
            .trim(),
        "0"
    );
    redis.cli(&["SET", "gatrix:test", "3"]).expect("SET");
    redis.kill9();
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    redis.restart();
    assert!(redis.keys("gatrix:*").is_empty());
    // A frozen server is killed at drop too.
    redis.pause();
}

/// Three instances start on one database and one Redis (each ready, its
/// own process and port), and one of them is killed and restarted.
/// Today's binary refuses the second process on the database (the store
/// lock, exit 2) until the several-instance store lands.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn three_instances_start_on_one_database_and_one_redis() {
    let mut cluster = Cluster::start(3, &[]);
    let pids: Vec<u32> = (0..3).map(|i| cluster.server(i).pid()).collect();
    assert!(pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2]);
    for i in 0..3 {
        assert_eq!(cluster.ready(i).0, 200, "/ready of instance {i}");
        assert!(cluster.metrics(i).contains("chat_connections_active"));
    }
    let port = cluster.server(1).port();
    cluster.kill9(1);
    assert!(
        http_get(port, "/health").is_err(),
        "a killed instance answered"
    );
    assert_eq!(cluster.ready(0).0, 200, "instance 0 after instance 1 died");
    cluster.restart(1);
    assert_eq!(cluster.ready(1).0, 200, "/ready of the restarted instance");
    assert_ne!(cluster.server(1).pid(), pids[1]);
}
