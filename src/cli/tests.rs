//! Tests of argument parsing and of the commands, run inside figment's
//! `Jail` (a temporary working directory and an environment restored
//! afterwards), the way an operator would run them.

// figment's Jail closures return figment's (large) error type; not ours to shrink.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["gatrix-chat"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap()
}

fn run_config(cli: &Cli, action: ConfigCommand) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = config_command(cli, action, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn run_token(cli: &Cli, sub: &str) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = token_command(cli, sub, Some("Ada"), 60, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[test]
fn the_clap_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn serve_is_the_default_command() {
    assert_eq!(cli(&[]).command_or_serve(), Command::Serve);
    assert_eq!(cli(&["serve"]).command_or_serve(), Command::Serve);
    assert_eq!(
        cli(&["config", "check"]).command_or_serve(),
        Command::Config {
            action: ConfigCommand::Check
        }
    );
    assert_eq!(
        cli(&["token", "u1", "--name", "Ada", "--ttl", "60"]).command_or_serve(),
        Command::Token {
            sub: "u1".into(),
            name: Some("Ada".into()),
            ttl: 60
        }
    );
    assert_eq!(
        cli(&["token", "u1"]).command_or_serve(),
        Command::Token {
            sub: "u1".into(),
            name: None,
            ttl: 3600
        }
    );
}

#[test]
fn flags_become_overrides_named_flags_last() {
    let parsed = cli(&[
        "--set",
        "port=1",
        "--set",
        "jwt_secret=a=b",
        "config",
        "print",
        "--port",
        "2",
        "--workers",
        "3",
        "--data-dir",
        "/d",
        "--host",
        "::1",
    ]);
    assert_eq!(
        parsed.overrides(),
        [
            ("port", "1"),
            ("jwt_secret", "a=b"),
            ("host", "::1"),
            ("port", "2"),
            ("cluster_workers", "3"),
            ("data_dir", "/d")
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
}

#[test]
fn bad_arguments_are_refused_by_the_parser() {
    for args in [
        &["--set", "novalue"][..],
        &["--set", "=1"],
        &["token", "u1", "--ttl", "0"],
        &["--port", "70000"],
        &["bogus"],
    ] {
        let mut argv = vec!["gatrix-chat"];
        argv.extend_from_slice(args);
        assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
    }
}

#[test]
fn flags_override_the_environment_and_the_file() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "c.toml",
            "port = 4000\nping_interval_ms = 1000\ncluster_workers = 8",
        )?;
        jail.set_env("PORT", "5000");
        jail.set_env("CLUSTER_WORKERS", "4");
        let config = load_config(&cli(&[
            "--config",
            "c.toml",
            "--port",
            "6000",
            "--set",
            "port=7000",
        ]))
        .unwrap();
        assert_eq!(config.port, 6000, "flag beats --set, env and file");
        assert_eq!(config.cluster_workers, 4, "env beats file");
        assert_eq!(config.ping_interval_ms, 1000, "file beats default");
        Ok(())
    });
}

#[test]
fn dot_env_is_loaded_but_never_overrides_the_real_environment() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(".env", "PORT=7000\nMAX_MESSAGE_LENGTH=99\n")?;
        jail.set_env("PORT", "5000");
        let loaded = load_config(&cli(&[]));
        // dotenvy wrote this into the process environment; take it out again
        // so it cannot leak into other tests.
        // SAFETY: environment-touching tests run inside Jail, which
        // serialises them; nothing else in these tests sets variables.
        unsafe { std::env::remove_var("MAX_MESSAGE_LENGTH") };
        let config = loaded.unwrap();
        assert_eq!(config.port, 5000);
        assert_eq!(config.max_message_length, 99);
        Ok(())
    });
}

#[test]
fn config_check_reports_every_problem_with_exit_2() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "bad.toml",
            "ping_timeout_ms = 0\nhost = \"no-such-host.invalid\"",
        )?;
        let (code, out, err) = run_config(&cli(&["--config", "bad.toml"]), ConfigCommand::Check);
        assert_eq!(code, EXIT_CONFIG);
        assert!(out.is_empty());
        assert!(
            err.contains("error: PING_TIMEOUT_MS (ping_timeout_ms) must be at least 1"),
            "{err}"
        );
        assert!(err.contains("error: HOST (host)"), "{err}");

        let (code, _, err) = run_config(&cli(&["--config", "missing.toml"]), ConfigCommand::Check);
        assert_eq!(code, EXIT_CONFIG);
        assert!(err.contains("missing.toml"), "{err}");

        jail.create_file("k.pem", "not a key")?;
        let (code, _, err) = run_config(
            &cli(&["--set", "jwt_public_key_file=k.pem"]),
            ConfigCommand::Check,
        );
        assert_eq!(code, EXIT_CONFIG);
        assert!(err.contains("JWT_PUBLIC_KEY_FILE"), "{err}");
        Ok(())
    });
}

#[test]
fn config_check_passes_a_good_config_with_warnings() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let (code, out, err) = run_config(&cli(&["--port", "0"]), ConfigCommand::Check);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.starts_with("configuration OK"), "{out}");
        assert!(err.contains("development secret"), "{err}");
        assert!(
            !jail.directory().join("data").exists(),
            "check creates nothing"
        );

        jail.set_env("JWT_SECRET", "short-secret");
        let (code, _, err) = run_config(&cli(&[]), ConfigCommand::Check);
        assert_eq!(code, EXIT_OK);
        assert!(
            err.contains("warning: JWT_SECRET (jwt_secret) is 12 bytes"),
            "{err}"
        );
        assert!(!err.contains("short-secret"));
        Ok(())
    });
}

#[test]
fn config_check_names_the_version_the_store_and_metrics() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let (code, out, _) = run_config(
            &cli(&["--host", "localhost", "--port", "5100"]),
            ConfigCommand::Check,
        );
        assert_eq!(code, EXIT_OK);
        assert_eq!(
            out,
            format!(
                "configuration OK: gatrix-chat {}, {} shard(s), listening on \
                 127.0.0.1:5100 (HOST localhost is 127.0.0.1)\nstore: SQLite ./data/gatrix-chat.db\n\
                 metrics: http://127.0.0.1:9402/metrics (METRICS_LISTEN)\n",
                config::VERSION,
                Config::default().shards()
            )
        );
        jail.set_env("JWT_SECRET", "a-configured-secret-0123456789abcdef");
        jail.set_env("DATABASE_URL", "mysql://chat:hunter2@db:3306/gatrix");
        jail.set_env("METRICS_LISTEN", "public");
        let (code, out, err) = run_config(&cli(&["--port", "0"]), ConfigCommand::Check);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(out.starts_with("configuration OK: "), "no warnings: {out}");
        assert!(
            out.contains("\nstore: MySQL mysql://chat@db:3306/gatrix\n"),
            "{out}"
        );
        assert!(
            out.contains("metrics: http://0.0.0.0:0/metrics, the public port"),
            "{out}"
        );
        assert!(!out.contains("hunter2") && !err.contains("hunter2"));
        Ok(())
    });
}

#[test]
fn config_check_warns_about_each_ignored_original_setting() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("JWT_SECRET", "a-configured-secret-0123456789abcdef");
        jail.set_env("REDIS_CLUSTER_ENABLED", "true");
        jail.set_env("CLUSTER_ENABLED", "true");
        jail.set_env("CHAT_PORT", "5200");
        jail.set_env("WS_PING_INTERVAL", "30000");
        let (code, out, err) = run_config(&cli(&[]), ConfigCommand::Check);
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(
            err.contains("warning: REDIS_CLUSTER_ENABLED=true is ignored: no REDIS_CLUSTER_NODES"),
            "{err}"
        );
        assert!(err.contains("warning: CLUSTER_ENABLED is ignored"), "{err}");
        assert!(
            err.contains(
                "note: read from the Node.js server's names: CHAT_PORT (port), \
                 WS_PING_INTERVAL (ping_interval_ms)"
            ),
            "{err}"
        );
        assert!(
            out.starts_with("configuration OK with 2 warning(s) above"),
            "{out}"
        );
        assert!(out.contains("listening on 0.0.0.0:5200"), "{out}");

        // A database named the original's way but without a host: refused,
        // never a silent SQLite.
        jail.set_env("CHAT_DB_NAME", "gatrix_chat");
        let (code, out, err) = run_config(&cli(&[]), ConfigCommand::Check);
        assert_eq!(code, EXIT_CONFIG);
        assert!(out.is_empty(), "{out}");
        assert!(
            err.starts_with("error: CHAT_DB_NAME (db_host) is set without a database host"),
            "{err}"
        );
        jail.set_env("CHAT_DB_HOST", "localhost");
        let (code, out, _) = run_config(&cli(&[]), ConfigCommand::Check);
        assert_eq!(code, EXIT_OK);
        assert!(
            out.contains("store: MySQL mysql://gatrix_user@localhost:3306/gatrix_chat"),
            "{out}"
        );
        Ok(())
    });
}

#[test]
fn production_refuses_to_mint_with_the_development_secret() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("ENVIRONMENT", "production");
        let (code, out, err) = run_token(&cli(&[]), "ada");
        assert_eq!(code, EXIT_CONFIG);
        assert!(out.is_empty());
        assert!(err.contains("is production"), "{err}");
        assert!(!jail.directory().join("data").exists(), "nothing generated");
        let (code, _, err) = run_config(&cli(&[]), ConfigCommand::Check);
        assert_eq!(code, EXIT_CONFIG);
        assert!(
            err.contains("error: JWT_SECRET (jwt_secret) is not set and ENVIRONMENT"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn config_print_masks_the_secret() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("JWT_SECRET", "do-not-print-me-0123456789abcdef");
        let (code, out, _) = run_config(&cli(&["--port", "4321"]), ConfigCommand::Print);
        assert_eq!(code, EXIT_OK);
        assert!(out.contains("port = 4321"), "{out}");
        assert!(out.contains("jwt_secret = \"********\""), "{out}");
        assert!(!out.contains("do-not-print-me"));
        let printed: Config = toml::from_str(&out).unwrap();
        assert_eq!(printed.port, 4321);
        Ok(())
    });
}

#[test]
fn token_uses_the_configured_secret_and_claims() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("JWT_SECRET", "a-configured-secret-0123456789abcdef");
        jail.set_env("JWT_AUDIENCE", "chat");
        let args = cli(&[]);
        let (code, out, err) = run_token(&args, "user-1");
        assert_eq!(code, EXIT_OK, "{err}");
        let config = load_config(&args).unwrap();
        let claims = Authenticator::from_config(&config)
            .unwrap()
            .verify(out.trim())
            .unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.name.as_deref()),
            ("user-1", Some("Ada"))
        );

        let (code, out, err) = run_token(&args, "");
        assert_eq!((code, out.as_str()), (EXIT_FAILURE, ""));
        assert!(err.contains("sub"), "{err}");
        Ok(())
    });
}

#[test]
fn token_without_a_secret_uses_the_development_secret() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let args = cli(&["--data-dir", "state"]);
        let (code, out, err) = run_token(&args, "user-1");
        assert_eq!(code, EXIT_OK, "{err}");
        assert!(err.contains("development secret"), "{err}");
        // What `serve` does: load, then resolve the same generated secret.
        let mut config = load_config(&args).unwrap();
        assert!(config.resolve_dev_secret().unwrap().is_some());
        let auth = Authenticator::from_config(&config).unwrap();
        assert_eq!(auth.verify(out.trim()).unwrap().sub, "user-1");

        jail.create_file("pub.pem", "")?;
        let (code, out, err) = run_token(&cli(&["--set", "jwt_public_key_file=pub.pem"]), "u");
        assert_eq!((code, out.as_str()), (EXIT_CONFIG, ""));
        assert!(err.contains("identity provider"), "{err}");
        Ok(())
    });
}

#[test]
fn a_misdispatched_command_is_an_error_not_a_panic() {
    assert_eq!(run_config_command(&cli(&["serve"])), EXIT_FAILURE);
    assert_eq!(run_token_command(&cli(&["config", "print"])), EXIT_FAILURE);
}

#[test]
fn a_broken_dot_env_is_reported_without_its_values() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(".env", "# comment\n\nJWT_SECRET=s3cr3t value with spaces\n")?;
        let (code, _, err) = run_config(&cli(&[]), ConfigCommand::Check);
        assert_eq!(code, EXIT_CONFIG);
        assert!(
            err.contains(".env file: line 3 (JWT_SECRET) does not parse"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
        Ok(())
    });
}

#[test]
fn tls_files_that_do_not_parse_are_a_problem_naming_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "x").unwrap();
    // Both readable but not PEM: refused, naming the certificate.
    let both = Config {
        tls_cert_file: Some(cert.clone()),
        tls_key_file: Some(cert.clone()),
        ..Config::default()
    };
    let p: Vec<String> = problems(&both).iter().map(ToString::to_string).collect();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("TLS_CERT_FILE (tls_cert_file)"), "{p:?}");
    assert!(validate(&both).is_err());
    // An unreadable one is reported once, by the config's own check.
    let missing = Config {
        tls_key_file: Some(dir.path().join("missing.pem")),
        ..both
    };
    let p: Vec<String> = problems(&missing).iter().map(ToString::to_string).collect();
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("TLS_KEY_FILE (tls_key_file)"), "{p:?}");
}
