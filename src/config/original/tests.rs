//! The Node.js server's names: aliases and their precedence, refusals and
//! warnings.

// figment's Jail closures return figment's (large) error type.
#![allow(clippy::result_large_err)]

use super::super::{Backend, Environment};
use super::*;
use figment::Jail;

fn vars(list: &[(&str, &str)]) -> Vars {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_original_precedence_is_kept() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // CHAT_* first, as `CHAT_PORT || PORT` in the original.
        jail.set_env("PORT", "5100");
        jail.set_env("CHAT_PORT", "5200");
        jail.set_env("DB_HOST", "db-generic");
        jail.set_env("CHAT_DB_HOST", "db-chat");
        jail.set_env("DB_PORT", "3306");
        jail.set_env("CHAT_DB_PORT", "3307");
        jail.set_env("DB_USER", "root");
        jail.set_env("CHAT_DB_USER", "chat");
        jail.set_env("DB_PASSWORD", "generic-pw");
        jail.set_env("CHAT_DB_PASSWORD", "chat-pw");
        jail.set_env("CHAT_DB_NAME", "gatrix_chat");
        // Our own name first for the rest.
        jail.set_env("WS_PING_INTERVAL", "30000");
        jail.set_env("WS_PING_TIMEOUT", "60000");
        jail.set_env("PING_TIMEOUT_MS", "7000");
        jail.set_env("WS_MAX_HTTP_BUFFER_SIZE", "1048576");
        jail.set_env("METRICS_PORT", "9090");
        jail.set_env("CHAT_METRICS_PORT", "9091");
        jail.set_env("NODE_ENV", "production");
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.port, 5200);
        assert_eq!(c.db_host.as_deref(), Some("db-chat"));
        assert_eq!(c.db_port, 3307);
        assert_eq!(c.db_user, "chat");
        assert_eq!(c.db_password.as_deref(), Some("chat-pw"));
        assert_eq!(c.db_name, "gatrix_chat");
        assert_eq!(c.ping_interval_ms, 30_000, "milliseconds, as in socket.io");
        assert_eq!(c.ping_timeout_ms, 7_000, "PING_TIMEOUT_MS wins");
        assert_eq!(c.max_payload, 1_048_576);
        assert_eq!(
            c.metrics_listen, "127.0.0.1:9091",
            "CHAT_METRICS_PORT first"
        );
        assert_eq!(c.environment, Environment::Production);
        match c.backend().unwrap() {
            Backend::Mysql(o) => {
                assert_eq!(o.get_ip_or_hostname(), "db-chat");
                assert_eq!(o.get_tcp_port(), 3307);
                assert_eq!(o.get_db_name(), Some("gatrix_chat"));
            }
            other => panic!("expected MySQL, got {other:?}"),
        }

        // An empty CHAT_ value is skipped, as `||` skips "" in JavaScript.
        jail.set_env("CHAT_PORT", "");
        jail.set_env("CHAT_DB_HOST", "");
        jail.set_env("METRICS_LISTEN", "public");
        jail.set_env("NODE_ENV", "test");
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.port, 5100);
        assert_eq!(c.db_host.as_deref(), Some("db-generic"));
        assert_eq!(c.metrics_listen, "public", "METRICS_LISTEN wins");
        assert_eq!(c.environment, Environment::Development);

        // Flags still win over every environment name.
        let c = Config::load(None, &[("port".into(), "6000".into())]).unwrap();
        assert_eq!(c.port, 6000);
        Ok(())
    });
}

#[test]
fn a_bad_alias_value_names_the_alias() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("CHAT_PORT", "70000");
        let msg = Config::load(None, &[]).unwrap_err().to_string();
        assert!(msg.starts_with("CHAT_PORT (port) is \"70000\""), "{msg}");
        jail.set_env("CHAT_PORT", "");
        jail.set_env("WS_PING_INTERVAL", "25s");
        let msg = Config::load(None, &[]).unwrap_err().to_string();
        assert!(
            msg.starts_with("WS_PING_INTERVAL (ping_interval_ms)"),
            "{msg}"
        );
        Ok(())
    });
}

#[test]
fn chat_db_names_without_a_host_are_refused_not_ignored() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("CHAT_DB_NAME", "gatrix_chat");
        jail.set_env("CHAT_DB_PASSWORD", "pw");
        let err = Config::load(None, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "CHAT_DB_NAME (db_host) and CHAT_DB_PASSWORD are set without a database host"
            ),
            "{msg}"
        );
        assert!(msg.contains("SQLite") && !msg.contains("pw\""), "{msg}");
        // With a host (either name) it is MySQL, as in the original.
        jail.set_env("DB_HOST", "localhost");
        let c = Config::load(None, &[]).unwrap();
        assert!(c.uses_mysql());
        assert_eq!(
            c.store_description(),
            "MySQL mysql://gatrix_user@localhost:3306/gatrix_chat"
        );
        Ok(())
    });
}

#[test]
fn ignored_names_are_each_named_with_why() {
    let w = warnings_for(&vars(&[
        ("REDIS_HOST", "localhost"),
        ("REDIS_CLUSTER_ENABLED", "true"),
        ("REDIS_CLUSTER_NODES", ""),
        ("CLUSTER_ENABLED", "true"),
        ("GATRIX_API_URL", "http://localhost:3000"),
        ("BROADCAST_BATCH_DELAY", "10"),
        ("PATH", "/bin"),
    ]));
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(
        w[0].starts_with("REDIS_CLUSTER_ENABLED=true is ignored: no REDIS_CLUSTER_NODES"),
        "{}",
        w[0]
    );
    assert!(w[1].starts_with("CLUSTER_ENABLED is ignored"), "{}", w[1]);
    assert!(w[2].starts_with("GATRIX_API_URL is ignored"), "{}", w[2]);
    assert!(
        w[3].contains("BROADCAST_BATCH_SIZE is read, with another meaning"),
        "{}",
        w[3]
    );
    assert!(warnings_for(&vars(&[("PORT", "1"), ("REDIS_CLUSTER_ENABLED", "false")])).is_empty());
}

#[test]
fn shadowed_names_are_warned_about_only_when_they_differ() {
    let w = warnings_for(&vars(&[("PORT", "5100"), ("CHAT_PORT", "5100")]));
    assert!(w.is_empty(), "{w:?}");
    let w = warnings_for(&vars(&[
        ("PORT", "5100"),
        ("CHAT_PORT", "5200"),
        ("METRICS_PORT", "9090"),
        ("METRICS_LISTEN", "127.0.0.1:9402"),
    ]));
    assert_eq!(
        w,
        vec![
            "PORT ignored: CHAT_PORT is set and wins (the order is CHAT_PORT, PORT)",
            "METRICS_PORT ignored: METRICS_LISTEN is set and wins (the order is METRICS_LISTEN, \
             CHAT_METRICS_PORT, METRICS_PORT)",
        ]
    );
}

#[test]
fn log_level_maps_winston_levels_unless_rust_log_is_set() {
    assert_eq!(winston_level("silly"), Some("trace"));
    assert_eq!(winston_level("verbose"), Some("debug"));
    assert_eq!(winston_level("http"), Some("info"));
    assert_eq!(winston_level("WARN"), Some("warn"));
    assert_eq!(winston_level("loud"), None);
    Jail::expect_with(|jail| {
        jail.clear_env();
        assert_eq!(log_filter_from_env(), None);
        jail.set_env("LOG_LEVEL", "debug");
        assert_eq!(log_filter_from_env().as_deref(), Some("debug"));
        assert_eq!(original_names_in_use(), vec!["LOG_LEVEL (RUST_LOG)"]);
        jail.set_env("RUST_LOG", "warn");
        assert_eq!(log_filter_from_env(), None);
        assert_eq!(
            original_warnings(),
            vec!["LOG_LEVEL ignored: RUST_LOG is set and wins"]
        );
        jail.set_env("RUST_LOG", "");
        jail.set_env("LOG_LEVEL", "loud");
        assert!(original_warnings()[0].starts_with("LOG_LEVEL \"loud\" is not a level"));
        Ok(())
    });
}

#[test]
fn every_alias_is_for_a_key_of_the_table() {
    for alias in ALIASES {
        assert!(
            super::super::keys::find(alias.key).is_some(),
            "{} is read for {:?}, which is not a key",
            alias.name,
            alias.key
        );
    }
}

#[test]
fn redis_cluster_nodes_are_read_unless_the_original_switch_is_false() {
    let nodes = ("REDIS_CLUSTER_NODES", "r1:7000,r2:7000");
    let read = |v: &Vars| env_value(v, "redis_cluster_nodes").unwrap();
    assert_eq!(read(&vars(&[nodes])).as_deref(), Some("r1:7000,r2:7000"));
    let on = vars(&[nodes, ("REDIS_CLUSTER_ENABLED", "true")]);
    assert_eq!(read(&on).as_deref(), Some("r1:7000,r2:7000"));
    assert!(warnings_for(&on).is_empty(), "{:?}", warnings_for(&on));
    // The original's .env.example: nodes listed, the switch off.
    let off = vars(&[nodes, ("REDIS_CLUSTER_ENABLED", "FALSE")]);
    assert_eq!(read(&off), None);
    let w = warnings_for(&off);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("REDIS_CLUSTER_NODES is ignored: REDIS_CLUSTER_ENABLED=false"),
        "{}",
        w[0]
    );
    let w = warnings_for(&vars(&[nodes, ("REDIS_CLUSTER_ENABLED", "yes")]));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("neither true nor false"), "{}", w[0]);
}
