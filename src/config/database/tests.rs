use super::*;

fn mysql_opts(c: &Config) -> Opts {
    match c.backend().unwrap() {
        Backend::Mysql(o) => o,
        other => panic!("expected MySQL, got {other:?}"),
    }
}

#[test]
fn sqlite_unless_a_database_is_named() {
    let c = Config::default();
    assert_eq!(
        c.backend().unwrap(),
        Backend::Sqlite(PathBuf::from("./data"))
    );
    assert!(!c.uses_mysql());
    assert_eq!(c.store_reader_threads(), c.store_readers);
}

#[test]
fn the_url_wins_over_the_db_keys() {
    let c = Config {
        database_url: Some("mysql://chat:pw@db1:3307/chatdb".into()),
        db_host: Some("db2".into()),
        db_user: "other".into(),
        ..Config::default()
    };
    let o = mysql_opts(&c);
    assert_eq!(o.get_ip_or_hostname(), "db1");
    assert_eq!(o.get_tcp_port(), 3307);
    assert_eq!(o.get_db_name(), Some("chatdb"));
    assert_eq!(o.get_user(), Some("chat"));
    assert_eq!(o.get_pass(), Some("pw"));
    assert!(o.get_ssl_opts().is_none());
    assert_eq!(c.warnings().len(), 1, "{:?}", c.warnings());
    assert!(c.warnings()[0].starts_with("DB_HOST (db_host) is ignored"));
}

#[test]
fn the_original_db_keys_name_a_database() {
    let c = Config {
        db_host: Some("10.0.0.5".into()),
        db_password: Some("pw".into()),
        db_tls: true,
        ..Config::default()
    };
    assert!(c.validate().is_ok(), "{:?}", c.problems());
    let o = mysql_opts(&c);
    assert_eq!(o.get_ip_or_hostname(), "10.0.0.5");
    assert_eq!(o.get_tcp_port(), 3306);
    assert_eq!(o.get_db_name(), Some("gatrix"));
    assert_eq!(o.get_user(), Some("gatrix_user"));
    assert_eq!(o.get_pass(), Some("pw"));
    assert!(o.get_ssl_opts().is_some());
    let socket = Config {
        db_host: Some("/run/mysqld/mysqld.sock".into()),
        ..Config::default()
    };
    assert_eq!(
        mysql_opts(&socket).get_socket(),
        Some("/run/mysqld/mysqld.sock")
    );
}

#[test]
fn the_pool_is_the_writer_and_the_readers() {
    let mut c = Config {
        db_host: Some("db".into()),
        store_readers: 3,
        ..Config::default()
    };
    assert_eq!(c.store_reader_threads(), 3, "0 means STORE_READERS + 1");
    c.db_pool_size = 8;
    assert_eq!(c.store_reader_threads(), 7);
    c.db_pool_size = 1;
    assert_eq!(c.problems()[0].key(), Some("db_pool_size"));
}

#[test]
fn bad_database_settings_name_the_setting_and_never_the_password() {
    let d = Config::default;
    let cases: Vec<(&str, Config)> = vec![
        (
            "database_url",
            Config {
                database_url: Some("postgres://u:hunter2@h/db".into()),
                ..d()
            },
        ),
        (
            "database_url",
            Config {
                database_url: Some("mysql://u:hunter2@h:3306".into()),
                ..d()
            },
        ),
        (
            "db_name",
            Config {
                db_host: Some("h".into()),
                db_name: " ".into(),
                ..d()
            },
        ),
        (
            "db_tls_ca_file",
            Config {
                db_tls_ca_file: Some("/no/such/ca.pem".into()),
                db_tls: true,
                ..d()
            },
        ),
        (
            "db_partition_months_ahead",
            Config {
                db_partition_months_ahead: 0,
                ..d()
            },
        ),
        (
            "sequencer_partitions",
            Config {
                sequencer_partitions: 0,
                database_url: Some("mysql://u:hunter2@h:3306/db".into()),
                ..d()
            },
        ),
        (
            "sequencer_partitions",
            Config {
                sequencer_partitions: 33,
                database_url: Some("mysql://u:hunter2@h:3306/db".into()),
                ..d()
            },
        ),
        (
            "sequencer_partitions",
            Config {
                sequencer_partitions: 2,
                ..d()
            },
        ),
    ];
    for (key, config) in cases {
        let problems = config.problems();
        assert_eq!(problems.len(), 1, "{key}: {problems:?}");
        assert_eq!(problems[0].key(), Some(key));
        let text = problems[0].to_string();
        assert!(text.starts_with(&key.to_ascii_uppercase()), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert!(
        Config {
            database_url: Some("mysql://u:hunter2@h:3306".into()),
            ..d()
        }
        .backend()
        .is_err()
    );
}

#[test]
fn database_warnings_point_at_ignored_settings() {
    let c = Config {
        db_password: Some("x".into()),
        message_retention_days: 30,
        db_tls_ca_file: Some("/etc/ssl/ca.pem".into()),
        ..Config::default()
    };
    let w = c.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("DB_PASSWORD"));
    assert!(w[1].starts_with("MESSAGE_RETENTION_DAYS"));
    assert!(w[2].starts_with("DB_TLS_CA_FILE"));
}

#[test]
fn masking_hides_database_passwords() {
    let c = Config {
        database_url: Some("mysql://chat:hunter2@db:3306/gatrix".into()),
        db_password: Some("hunter3".into()),
        ..Config::default()
    };
    let m = c.masked();
    assert_eq!(
        m.database_url.as_deref(),
        Some("mysql://chat:********@db:3306/gatrix")
    );
    assert_eq!(m.db_password.as_deref(), Some(MASK));
    let text = m.to_toml();
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(text.contains("db_port = 3306"));
    assert!(
        Config::default()
            .to_toml()
            .contains("# database_url is not set")
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn database_settings_come_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("DB_HOST", "db.internal");
        jail.set_env("DB_PORT", "3307");
        // Verbatim text, even when it looks like a number.
        jail.set_env("DB_PASSWORD", "0012345");
        jail.set_env("DB_TLS", "true");
        jail.set_env("MESSAGE_RETENTION_DAYS", "90");
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.db_host.as_deref(), Some("db.internal"));
        assert_eq!(c.db_port, 3307);
        assert_eq!(c.db_password.as_deref(), Some("0012345"));
        assert!(c.db_tls);
        assert_eq!(c.message_retention_days, 90);
        assert_eq!(mysql_opts(&c).get_ip_or_hostname(), "db.internal");
        // DATABASE_URL wins; an empty DB_HOST unsets it.
        jail.set_env("DATABASE_URL", "mysql://a:b@url-host/urldb");
        jail.set_env("DB_HOST", "");
        let c = Config::load(None, &[]).unwrap();
        assert_eq!(c.db_host, None);
        assert_eq!(mysql_opts(&c).get_ip_or_hostname(), "url-host");
        assert_eq!(mysql_opts(&c).get_db_name(), Some("urldb"));
        Ok(())
    });
}

#[test]
fn url_passwords_are_masked() {
    assert_eq!(
        mask_url_password("mysql://chat:s3cr%40t@db:3306/gatrix?require_ssl=true"),
        "mysql://chat:********@db:3306/gatrix?require_ssl=true"
    );
    assert_eq!(
        mask_url_password("mysql://chat:p@ss@db/gatrix"),
        "mysql://chat:********@db/gatrix",
        "the last @ ends the user info"
    );
    assert_eq!(
        mask_url_password("mysql://chat@db/gatrix"),
        "mysql://chat@db/gatrix"
    );
    assert_eq!(mask_url_password("mysql://db/gatrix"), "mysql://db/gatrix");
    assert_eq!(mask_url_password("chat:pw@db"), MASK);
}
