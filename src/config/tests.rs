//! Defaults, masking and the typed helpers of `Config`.
use std::time::Duration;

use super::*;

#[test]
fn defaults_match_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.host, "0.0.0.0");
    assert_eq!(c.port, 3001);
    assert_eq!(c.cluster_workers, 0);
    assert_eq!(c.ws_max_connections, 10_000);
    assert_eq!(c.ws_max_connections_per_ip, 1_000);
    assert_eq!(c.ws_connection_rate_per_ip, 50);
    assert_eq!(c.ws_connection_burst_per_ip, 500);
    assert_eq!(c.rest_keepalive_timeout_ms, 10_000);
    assert_eq!(c.commit_batch_max, 500);
    assert_eq!(c.jwt_secret, None);
    assert_eq!(c.jwt_public_key_file, None);
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.ping_interval(), Duration::from_secs(25));
    assert_eq!(c.ping_timeout(), Duration::from_secs(20));
    assert_eq!(c.connect_timeout(), Duration::from_secs(45));
    assert_eq!(c.handshake_timeout(), Duration::from_secs(10));
    assert_eq!(c.max_payload, 1_000_000);
    assert_eq!(c.max_payload_before_connect, 16_384);
    assert_eq!(c.max_message_length, 4_000);
    assert_eq!(c.rate_limit_burst, 100);
    assert_eq!(c.outbound_queue_bytes, 4 * 1024 * 1024);
    assert_eq!(c.io_memory_bytes(), 1024 * 1024);
    assert_eq!(c.log_format, LogFormat::Human);
    assert_eq!(c.database_url, None);
    assert_eq!(c.db_host, None);
    assert_eq!(c.db_port, 3306);
    assert_eq!(c.db_pool_size, 0);
    assert!(!c.db_tls);
    assert_eq!(c.message_retention_days, 0);
    assert_eq!(c.db_partition_months_ahead, 3);
    assert!(c.validate().is_ok(), "the defaults must pass validation");
}

#[test]
fn keys_list_every_field_exactly_once() {
    let json = serde_json::to_value(Config::default()).unwrap();
    let mut fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = KEYS.to_vec();
    fields.sort_unstable();
    keys.sort_unstable();
    assert_eq!(fields, keys);
}

#[test]
fn shards_uses_workers_or_the_core_count() {
    let mut c = Config {
        cluster_workers: 3,
        ..Config::default()
    };
    assert_eq!(c.shards(), 3);
    c.cluster_workers = 0;
    assert!(c.shards() >= 1);
}

#[test]
fn masking_hides_the_secret_and_nothing_else() {
    let c = Config {
        jwt_secret: Some("hunter2-hunter2".into()),
        ..Config::default()
    };
    let m = c.masked();
    assert_eq!(m.jwt_secret.as_deref(), Some(MASK));
    assert_eq!(
        Config {
            jwt_secret: c.jwt_secret.clone(),
            ..m.clone()
        },
        c
    );
    assert!(!m.to_toml().contains("hunter2"));
    assert!(!format!("{m:?}").contains("hunter2"));
    assert_eq!(Config::default().masked().jwt_secret, None);
}

#[test]
fn toml_output_reads_back_to_the_same_config() {
    let c = Config {
        port: 4000,
        jwt_issuer: Some("https://id.example".into()),
        log_format: LogFormat::Json,
        ..Config::default()
    };
    let text = c.to_toml();
    assert!(text.contains("log_format = \"json\""));
    assert!(text.contains("# jwt_secret is not set"));
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, c);
}

#[test]
fn listen_addr_combines_host_and_port() {
    let c = Config {
        host: "127.0.0.1".into(),
        port: 0,
        ..Config::default()
    };
    assert_eq!(
        c.listen_addr().unwrap(),
        "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap()
    );
    let bad = Config {
        host: "no-such-host.invalid".into(),
        ..Config::default()
    };
    assert!(
        bad.listen_addr()
            .unwrap_err()
            .to_string()
            .contains("HOST (host)")
    );
}
