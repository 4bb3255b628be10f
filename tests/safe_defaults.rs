//! Safe defaults: `/metrics` is not published on the public port unless
//! asked, a taken metrics address stops the start naming the setting, and
//! the production environment example (systemd/gatrix-chat.env) does not
//! start on a generated development secret.

mod common;

use std::net::TcpListener;

use common::{TestServer, http_get};

#[test]
fn metrics_are_on_loopback_9402_and_not_on_the_public_port_by_default() {
    // An empty METRICS_LISTEN leaves the default in charge (the test
    // server otherwise serves /metrics on its own port). 9402 is the one
    // fixed port of the test suite: only this test uses the default.
    let server = TestServer::start_with(&[("METRICS_LISTEN", "")]);
    let public = http_get(server.port(), "/metrics").unwrap();
    assert_eq!(public.status, 404, "{}", public.body);
    let loopback = http_get(9402, "/metrics").unwrap();
    assert_eq!(loopback.status, 200);
    assert!(
        loopback.body.contains("chat_connections_active"),
        "{}",
        loopback.body
    );
    assert!(
        server
            .log()
            .contains("metrics=http://127.0.0.1:9402/metrics (METRICS_LISTEN)"),
        "{}",
        server.log()
    );
}

#[test]
fn a_taken_metrics_address_stops_the_start_naming_the_setting() {
    // What a second gatrix-chat on the same machine meets.
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap().to_string();
    let mut server = TestServer::start_unready(&[("METRICS_LISTEN", &addr)]);
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "METRICS_LISTEN (metrics_listen) {addr} is in use (another gatrix-chat on this \
             machine?): set METRICS_LISTEN to a free address"
        )),
        "{log}"
    );
    drop(first);
}

/// systemd/gatrix-chat.env's `KEY=value` lines.
fn production_example() -> Vec<(String, String)> {
    include_str!("../systemd/gatrix-chat.env")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_production_example_refuses_to_start_without_a_real_secret() {
    let mut env = production_example();
    assert!(
        env.iter()
            .any(|(k, v)| k == "ENVIRONMENT" && v == "production"),
        "{env:?}"
    );
    // The test's own port, directory and log level; no JWT_SECRET (the
    // test server's is unset by the empty value), as the file is shipped.
    env.retain(|(k, _)| !["PORT", "DATA_DIR", "RUST_LOG"].contains(&k.as_str()));
    env.push(("JWT_SECRET".into(), String::new()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = TestServer::start_unready(&pairs);
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(
            "configuration error: JWT_SECRET (jwt_secret) is not set and ENVIRONMENT \
             (environment) is production: the server would run on a generated development secret"
        ),
        "{log}"
    );
    assert!(
        !server.data_dir().join("jwt_secret").exists(),
        "no development secret generated"
    );

    // With a real secret the same file starts.
    let secret = "a-real-secret-of-at-least-32-bytes-0123456789";
    let mut env: Vec<(&str, &str)> = pairs.clone();
    env.retain(|(k, _)| *k != "JWT_SECRET");
    env.push(("JWT_SECRET", secret));
    // One server per test machine may have the default metrics address.
    env.push(("METRICS_LISTEN", "public"));
    let server = TestServer::start_with(&env);
    assert_eq!(http_get(server.port(), "/ready").unwrap().status, 200);
}
