//! The socket.io-client scenarios in tests/js, run against a real server
//! with two shards. Needs `npm ci` in tests/js: `scripts/test` does it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TestServer, run_client};

/// Limits the scenarios read back from the environment (see tests/js/lib.js).
const MAX_MESSAGE_LENGTH: &str = "1000";
const TYPING_TIMEOUT_MS: &str = "1500";
/// The Gatrix backend's secret of gatrix.test.js (its tokens are signed
/// in the test; the server has the Gatrix dialect on beside the native).
const GATRIX_JWT_SECRET: &str = "gatrix-backend-secret-for-the-js-scenarios";
/// The backend's service token of gatrix_rest.test.js.
const BACKEND_SERVICE_TOKEN: &str = "gatrix-backend-service-token-for-the-js-scenarios";

#[test]
#[ignore = "needs node_modules / python venv: run scripts/test"]
fn socket_io_client_scenarios() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/socket.io-client/package.json")
            .is_file(),
        "socket.io-client is not installed in {}: run scripts/test (or `npm ci` there)",
        js.display()
    );
    let mut scenarios: Vec<String> = std::fs::read_dir(&js)
        .expect("list tests/js")
        .map(|entry| {
            entry
                .expect("read tests/js")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".test.js"))
        .collect();
    scenarios.sort();
    assert!(!scenarios.is_empty(), "no *.test.js in {}", js.display());

    let server = TestServer::start_with(&[
        ("MAX_MESSAGE_LENGTH", MAX_MESSAGE_LENGTH),
        ("TYPING_TIMEOUT_MS", TYPING_TIMEOUT_MS),
        // The scenarios send bursts; rate limiting has its own tests.
        ("RATE_LIMIT_PER_SEC", "10000"),
        ("RATE_LIMIT_BURST", "10000"),
        ("GATRIX_COMPAT", "true"),
        ("GATRIX_JWT_SECRET", GATRIX_JWT_SECRET),
        ("BACKEND_SERVICE_TOKEN", BACKEND_SERVICE_TOKEN),
    ]);
    let output = run_client(
        Command::new("node")
            .arg("--test")
            .arg("--test-reporter=spec")
            .arg("--test-timeout=30000")
            .args(&scenarios)
            .current_dir(&js)
            .env("GATRIX_URL", server.url())
            .env("JWT_SECRET", server.secret())
            .env("GATRIX_MAX_MESSAGE_LENGTH", MAX_MESSAGE_LENGTH)
            .env("GATRIX_TYPING_TIMEOUT_MS", TYPING_TIMEOUT_MS)
            .env("GATRIX_JWT_SECRET", GATRIX_JWT_SECRET)
            .env("BACKEND_SERVICE_TOKEN", BACKEND_SERVICE_TOKEN),
        Duration::from_secs(300),
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "socket.io-client scenarios failed ({})",
        output.status
    );

    let status = server.stop();
    assert!(
        status.success(),
        "server exited with {status} after SIGTERM"
    );
}

/// Runs `tests/js/browser/<file>` (headless Chromium through playwright-core)
/// against a server that allows the page origin `http://127.0.0.1:<port>`
/// (`ALLOWED_ORIGINS`); the scenarios serve their pages there, and the
/// refused ones from any other port.
fn browser_scenario(file: &str) {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: run scripts/test (or apt-get install chromium)"
    );
    assert!(
        js.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in {}: run scripts/test (or `npm ci` there)",
        js.display()
    );
    let page_port = common::free_port();
    let server =
        TestServer::start_with(&[("ALLOWED_ORIGINS", &format!("http://127.0.0.1:{page_port}"))]);
    let output = run_client(
        Command::new("node")
            .arg("--test")
            .arg("--test-reporter=spec")
            .arg("--test-timeout=120000")
            .arg(Path::new("browser").join(file))
            .current_dir(&js)
            .env("GATRIX_URL", server.url())
            .env("JWT_SECRET", server.secret())
            .env("GATRIX_PAGE_PORT", page_port.to_string())
            .env("GATRIX_CHROMIUM", CHROMIUM),
        Duration::from_secs(300),
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "browser scenarios in {file} failed ({})",
        output.status
    );
    let status = server.stop();
    assert!(
        status.success(),
        "server exited with {status} after SIGTERM"
    );
}

/// Debian's chromium package.
const CHROMIUM: &str = "/usr/bin/chromium";

/// A page on another origin creates a channel, joins over Socket.IO
/// (WebSocket only), sends, reads history, edits and deletes; a page on an
/// origin not allowed gets CORS failures.
#[test]
#[ignore = "needs chromium: run scripts/test"]
fn browser_chat_over_websocket_with_cors() {
    browser_scenario("websocket.test.js");
}

/// The same chat with socket.io-client's defaults, `io(url)`: long-polling
/// first, then the upgrade to WebSocket.
#[test]
#[ignore = "needs chromium and Engine.IO long-polling (issue 11, item 2): run scripts/test"]
fn browser_chat_with_default_transports() {
    browser_scenario("polling.test.js");
}
