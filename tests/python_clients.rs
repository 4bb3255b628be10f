//! The python-socketio client (tests/python/chat_client.py) against a real
//! server with two shards. Needs the venv at tests/python/.venv:
//! `scripts/test` creates it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{TestServer, run_client};

#[test]
#[ignore = "needs node_modules / python venv: run scripts/test"]
fn python_socketio_client() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "no Python venv at {}: run scripts/test (it creates it from requirements.txt)",
        python.display()
    );

    let server = TestServer::start();
    let output = run_client(
        Command::new(&python)
            .arg("chat_client.py")
            .current_dir(&dir)
            .env("GATRIX_URL", server.url())
            .env("JWT_SECRET", server.secret()),
        Duration::from_secs(120),
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "python-socketio client failed ({})",
        output.status
    );

    let status = server.stop();
    assert!(
        status.success(),
        "server exited with {status} after SIGTERM"
    );
}
