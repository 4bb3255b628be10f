//! The Node.js server's `.env.example` (tests/fixtures/node-env-example.env,
//! its values verbatim) given to the real binary: it starts, or refuses
//! saying exactly why, and names every setting it ignores.

mod common;

use common::{TestServer, free_port, http_get};

/// The fixture's `KEY=value` pairs, in file order.
fn original_env() -> Vec<(String, String)> {
    let text = include_str!("fixtures/node-env-example.env");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The fixture with `changes` applied (a `None` value drops the key).
/// `PORT` is always dropped: the test server's free port is used.
fn with(changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
    let mut env = original_env();
    env.retain(|(k, _)| k != "PORT");
    for (key, value) in changes {
        env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            env.push(((*key).to_owned(), (*v).to_owned()));
        }
    }
    // The test server serves /metrics on its port unless told otherwise;
    // an empty METRICS_LISTEN leaves the original's METRICS_PORT in charge.
    env.push(("METRICS_LISTEN".to_owned(), String::new()));
    env
}

fn start(env: &[(String, String)], ready: bool) -> TestServer {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if ready {
        TestServer::start_with(&pairs)
    } else {
        TestServer::start_unready(&pairs)
    }
}

fn assert_ignored_settings_named(log: &str) {
    for line in [
        "REDIS_CLUSTER_NODES is ignored: REDIS_CLUSTER_ENABLED=false",
        "CLUSTER_ENABLED, STICKY_SESSION, CHANNEL_SHARDING, MAX_CHANNELS_PER_SHARD are ignored",
        "GATRIX_API_URL, GATRIX_API_SECRET, GATRIX_CONNECTION_TIMEOUT are ignored",
        "UPLOAD_MAX_SIZE, UPLOAD_ALLOWED_TYPES, UPLOAD_PATH are ignored",
        "BROADCAST_BATCH_DELAY, USE_MESSAGE_PACK, BROADCAST_COMPRESSION are ignored",
        "JWT_SECRET (jwt_secret) is the placeholder of the Node.js server's .env.example",
    ] {
        assert!(log.contains(line), "missing {line:?} in:\n{log}");
    }
}

#[test]
fn the_original_env_example_refuses_naming_the_mysql_it_cannot_reach() {
    // As written, with only its MySQL port moved to one where nothing
    // listens (a real MySQL on localhost:3306 would make this machine's
    // result differ): DB_HOST=localhost selects MySQL, as in the original.
    let closed = free_port().to_string();
    let metrics = free_port().to_string();
    let env = with(&[("DB_PORT", Some(&closed)), ("METRICS_PORT", Some(&metrics))]);
    let mut server = start(&env, false);
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(1), "{log}");
    // HOST=localhost is accepted (it was "not an IP address"), and said.
    assert!(log.contains("HOST localhost is 127.0.0.1"), "{log}");
    assert!(
        log.contains(&format!(
            "opening the MySQL store at mysql://root@localhost:{closed}/gatrix_chat (DATABASE_URL, \
             DB_HOST or CHAT_DB_HOST is set; unset them to use SQLite in DATA_DIR)"
        )),
        "{log}"
    );
    assert!(log.contains("Connection refused"), "{log}");
    assert!(!log.contains("root:password"), "{log}");
    assert_ignored_settings_named(&log);
    assert!(
        !server.db_path().exists(),
        "no SQLite store made on the side"
    );
}

#[test]
fn the_original_env_example_without_its_database_starts_on_sqlite_and_says_so() {
    let metrics = free_port();
    let env = with(&[
        ("DB_HOST", None),
        ("REDIS_HOST", None),
        ("METRICS_PORT", Some(&metrics.to_string())),
    ]);
    let server = start(&env, true);
    let log = server.log();
    assert!(log.contains("HOST localhost is 127.0.0.1"), "{log}");
    assert!(
        log.contains(&format!("store=SQLite {}", server.db_path().display())),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "metrics=http://127.0.0.1:{metrics}/metrics (METRICS_LISTEN)"
        )),
        "{log}"
    );
    assert!(log.contains("version=\"0.1.0 ("), "{log}");
    assert!(
        log.contains("DB_PASSWORD (db_password) is set but neither DATABASE_URL nor DB_HOST is"),
        "{log}"
    );
    assert!(
        log.contains(
            "read from the Node.js server's names: WS_PING_INTERVAL (ping_interval_ms), \
             WS_PING_TIMEOUT (ping_timeout_ms), WS_MAX_HTTP_BUFFER_SIZE (max_payload), METRICS_PORT \
             (metrics_listen), NODE_ENV (environment)\n"
        ),
        "{log}"
    );
    // The test server sets RUST_LOG, which wins over the original's LOG_LEVEL.
    assert!(
        log.contains("LOG_LEVEL ignored: RUST_LOG is set and wins"),
        "{log}"
    );
    assert_ignored_settings_named(&log);
    // METRICS_PORT is honoured, on loopback; the public port does not serve it.
    assert_eq!(http_get(metrics, "/metrics").unwrap().status, 200);
    assert_eq!(http_get(server.port(), "/metrics").unwrap().status, 404);
    assert_eq!(http_get(server.port(), "/health").unwrap().status, 200);
}

#[test]
fn the_original_env_example_in_production_refuses_its_placeholder_secret() {
    let env = with(&[
        ("NODE_ENV", Some("production")),
        ("DB_HOST", None),
        ("REDIS_HOST", None),
    ]);
    let mut server = start(&env, false);
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(
            "configuration error: JWT_SECRET (jwt_secret) is the published placeholder of the \
             Node.js server's .env.example and ENVIRONMENT (environment) is production"
        ),
        "{log}"
    );
    assert!(
        !log.contains("your-super-secret"),
        "the secret is not echoed: {log}"
    );
}

#[test]
fn the_original_env_example_without_its_database_but_with_redis_refuses_sqlite() {
    // REDIS_HOST names the Redis several instances would share; they must
    // share a MySQL database too, which SQLite is not.
    let env = with(&[("DB_HOST", None)]);
    let mut server = start(&env, false);
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("REDIS_HOST (redis_host) is set but the store is SQLite"),
        "{log}"
    );
    assert!(log.contains("set DATABASE_URL (or DB_HOST)"), "{log}");
    assert!(
        !server.db_path().exists(),
        "no SQLite store made on the side"
    );
}

/// The fixture pointed at a fresh MariaDB database through the original's
/// CHAT_DB_* names (read before its DB_* ones, which stay as written).
fn on_mariadb(db_url: &str, metrics: &str) -> Vec<(String, String)> {
    let rest = db_url.strip_prefix("mysql://").expect("a mysql:// URL");
    let (userinfo, rest) = rest.rsplit_once('@').expect("user@host");
    let (user, password) = userinfo.split_once(':').expect("user:password");
    let (hostport, db) = rest.split_once('/').expect("host:port/db");
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    with(&[
        ("CHAT_DB_HOST", Some(host)),
        ("CHAT_DB_PORT", Some(port)),
        ("CHAT_DB_NAME", Some(db)),
        ("CHAT_DB_USER", Some(user)),
        ("CHAT_DB_PASSWORD", Some(password)),
        ("METRICS_PORT", Some(metrics)),
    ])
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn the_original_env_example_starts_on_mariadb_through_its_chat_db_names() {
    let db = common::mysql::mysql_db();
    let metrics = free_port().to_string();
    let server = start(&on_mariadb(&db, &metrics), true);
    let log = server.log();
    let name = db.rsplit('/').next().unwrap();
    assert!(
        log.contains("store=MySQL mysql://gatrix@127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains(&format!("/{name} ")), "{log}");
    assert!(log.contains("HOST localhost is 127.0.0.1"), "{log}");
    assert_eq!(http_get(server.port(), "/ready").unwrap().status, 200);
    // A token signed with the .env's JWT_SECRET, as the original's
    // clients have: the channel lands in MariaDB.
    let secret = original_env()
        .into_iter()
        .find(|(k, _)| k == "JWT_SECRET")
        .unwrap()
        .1;
    let claims = serde_json::json!({"sub": "alice", "exp": common::now_secs() + 600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let body = r#"{"name":"from-node","type":"public"}"#;
    let r = common::http_request(
        server.port(),
        "POST",
        "/api/v1/channels",
        Some(&token),
        Some(body),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let mut conn = common::mysql::connect(&db).unwrap();
    let names: Vec<String> =
        mysql::prelude::Queryable::query(&mut conn, "SELECT name FROM channels").unwrap();
    assert_eq!(names, vec!["from-node"]);
    assert!(!server.db_path().exists(), "nothing in SQLite");
}

#[test]
#[ignore = "needs MariaDB: run scripts/test"]
fn the_node_servers_own_database_is_refused() {
    use mysql::prelude::Queryable;
    let db = common::mysql::mysql_db();
    // What the Node.js server leaves in its database: knex's table.
    common::mysql::connect(&db)
        .unwrap()
        .query_drop("CREATE TABLE chat_migrations (id INT PRIMARY KEY)")
        .unwrap();
    let metrics = free_port().to_string();
    let mut server = start(&on_mariadb(&db, &metrics), false);
    let status = server.wait_exit();
    let log = server.log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "the database holds the Node.js Gatrix chat server's tables (it has chat_migrations): \
             gatrix-chat needs a database of its own"
        ),
        "{log}"
    );
    let mut conn = common::mysql::connect(&db).unwrap();
    let tables: Vec<String> = conn.query("SHOW TABLES").unwrap();
    assert_eq!(
        tables,
        vec!["chat_migrations"],
        "nothing created next to it"
    );
}
