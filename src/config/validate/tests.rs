use super::*;

fn error_for(config: Config) -> String {
    config.validate().unwrap_err().to_string()
}

#[test]
fn messages_name_the_setting_and_the_fix() {
    let msg = error_for(Config {
        ping_timeout_ms: 0,
        ..Config::default()
    });
    assert_eq!(
        msg,
        "PING_TIMEOUT_MS (ping_timeout_ms) must be at least 1: \
         set it to a number of milliseconds such as 20000"
    );
    let msg = error_for(Config {
        host: "no-such-host.invalid".into(),
        ..Config::default()
    });
    assert!(
        msg.starts_with(
            "HOST (host) is \"no-such-host.invalid\": it is not an IP address and does not resolve"
        ),
        "{msg}"
    );
}

#[test]
fn host_names_are_resolved_localhost_to_loopback() {
    for (host, ip) in [
        ("localhost", "127.0.0.1"),
        (" LOCALHOST ", "127.0.0.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("0.0.0.0", "0.0.0.0"),
    ] {
        let c = Config {
            host: host.into(),
            port: 5100,
            ..Config::default()
        };
        assert!(c.validate().is_ok(), "{host}: {:?}", c.problems());
        assert_eq!(c.listen_addr().unwrap().ip().to_string(), ip, "{host}");
    }
    let c = Config {
        host: "localhost".into(),
        ..Config::default()
    };
    assert_eq!(
        c.host_note().as_deref(),
        Some("HOST localhost is 127.0.0.1")
    );
    assert_eq!(
        Config::default().host_note(),
        None,
        "nothing to say about an IP"
    );
}

#[test]
fn production_refuses_the_development_secret_and_placeholders() {
    let prod = |secret: Option<&str>| Config {
        environment: Environment::Production,
        jwt_secret: secret.map(str::to_owned),
        ..Config::default()
    };
    let cases = [
        (
            None,
            "is not set and ENVIRONMENT (environment) is production",
        ),
        (
            Some("your-super-secret-jwt-key-change-this-in-production"),
            "is the published placeholder",
        ),
        (Some("hunter2"), "is 7 bytes, shorter than 32"),
    ];
    for (secret, problem) in cases {
        let msg = error_for(prod(secret));
        assert!(
            msg.starts_with(&format!("JWT_SECRET (jwt_secret) {problem}")),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }
    assert!(prod(Some(&"x".repeat(32))).validate().is_ok());
    let with_key = Config {
        jwt_public_key_file: Some("tests/fixtures/rs256_public.pem".into()),
        ..prod(None)
    };
    assert!(with_key.validate().is_ok(), "{:?}", with_key.problems());
    // In development the same placeholder only warns.
    let dev = Config {
        jwt_secret: Some("your-super-secret-jwt-key-for-chat-server".into()),
        ..Config::default()
    };
    assert!(dev.validate().is_ok());
    assert!(
        dev.warnings()[0].contains("placeholder"),
        "{:?}",
        dev.warnings()
    );
}

#[test]
fn each_rule_refuses_its_bad_value() {
    let d = Config::default;
    let cases: Vec<(&str, Config)> = vec![
        (
            "cluster_workers",
            Config {
                cluster_workers: 1025,
                ..d()
            },
        ),
        (
            "ws_max_connections",
            Config {
                ws_max_connections: 0,
                ..d()
            },
        ),
        (
            "ws_max_connections_per_ip",
            Config {
                ws_max_connections_per_ip: 0,
                ..d()
            },
        ),
        (
            "ws_connection_rate_per_ip",
            Config {
                ws_connection_rate_per_ip: 0,
                ..d()
            },
        ),
        (
            "ws_connection_burst_per_ip",
            Config {
                ws_connection_burst_per_ip: 0,
                ..d()
            },
        ),
        (
            "rest_keepalive_timeout_ms",
            Config {
                rest_keepalive_timeout_ms: 0,
                ..d()
            },
        ),
        (
            "broadcast_batch_size",
            Config {
                commit_batch_max: 0,
                ..d()
            },
        ),
        (
            "ping_interval_ms",
            Config {
                ping_interval_ms: 0,
                ..d()
            },
        ),
        (
            "connect_timeout_ms",
            Config {
                connect_timeout_ms: 0,
                ..d()
            },
        ),
        (
            "handshake_timeout_ms",
            Config {
                handshake_timeout_ms: 0,
                ..d()
            },
        ),
        (
            "typing_timeout_ms",
            Config {
                typing_timeout_ms: 0,
                ..d()
            },
        ),
        (
            "max_payload",
            Config {
                max_payload: 1023,
                ..d()
            },
        ),
        (
            "max_payload_before_connect",
            Config {
                max_payload_before_connect: 1023,
                ..d()
            },
        ),
        (
            "max_http_header_bytes",
            Config {
                max_http_header_bytes: 100,
                ..d()
            },
        ),
        (
            "max_message_length",
            Config {
                max_message_length: 0,
                ..d()
            },
        ),
        (
            "max_channels_per_connection",
            Config {
                max_channels_per_connection: 0,
                ..d()
            },
        ),
        (
            "rate_limit_per_sec",
            Config {
                rate_limit_per_sec: 0,
                ..d()
            },
        ),
        (
            "rate_limit_burst",
            Config {
                rate_limit_burst: 0,
                ..d()
            },
        ),
        (
            "rate_limit_disconnect_after",
            Config {
                rate_limit_disconnect_after: 0,
                ..d()
            },
        ),
        (
            "outbound_queue_messages",
            Config {
                outbound_queue_messages: 0,
                ..d()
            },
        ),
        (
            "outbound_queue_bytes",
            Config {
                outbound_queue_bytes: 999_999,
                ..d()
            },
        ),
        (
            "io_memory_kib",
            Config {
                io_memory_kib: 63,
                ..d()
            },
        ),
        (
            "io_memory_kib",
            Config {
                io_memory_kib: 65_537,
                ..d()
            },
        ),
        (
            "io_ring_depth",
            Config {
                io_ring_depth: 64,
                ..d()
            },
        ),
        (
            "data_dir",
            Config {
                data_dir: "".into(),
                ..d()
            },
        ),
        (
            "jwt_secret",
            Config {
                jwt_secret: Some(String::new()),
                ..d()
            },
        ),
        (
            "jwt_public_key_file",
            Config {
                jwt_public_key_file: Some("/no/such/key.pem".into()),
                ..d()
            },
        ),
    ];
    for (key, config) in cases {
        let problems = config.problems();
        assert_eq!(problems.len(), 1, "{key}: {problems:?}");
        assert_eq!(problems[0].key(), Some(key));
        assert!(
            problems[0]
                .to_string()
                .starts_with(&key.to_ascii_uppercase())
        );
    }
}

#[test]
fn edge_values_that_make_sense_are_accepted() {
    let c = Config {
        port: 0,
        cluster_workers: 1024,
        host: "::1".into(),
        max_payload: 1024,
        outbound_queue_bytes: 1024,
        io_memory_kib: 64,
        shutdown_timeout_ms: 0,
        ..Config::default()
    };
    assert!(c.validate().is_ok(), "{:?}", c.problems());
}

#[test]
fn all_problems_are_reported_together() {
    let c = Config {
        ping_interval_ms: 0,
        ping_timeout_ms: 0,
        ..Config::default()
    };
    let keys: Vec<_> = c
        .problems()
        .iter()
        .filter_map(|p| p.key().map(str::to_owned))
        .collect();
    assert_eq!(keys, ["ping_interval_ms", "ping_timeout_ms"]);
}

#[test]
fn a_short_secret_is_a_warning_not_an_error() {
    let c = Config {
        jwt_secret: Some("hunter2".into()),
        ..Config::default()
    };
    assert!(c.validate().is_ok());
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("JWT_SECRET (jwt_secret) is 7 bytes"));
    assert!(
        !warnings[0].contains("hunter2"),
        "the warning must not echo the secret"
    );
    let long = Config {
        jwt_secret: Some("x".repeat(32)),
        ..Config::default()
    };
    assert!(long.warnings().is_empty());
}
