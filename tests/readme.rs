//! README's client snippets, run as written (only the URL changed to the
//! test server's) with the real socket.io-client and python-socketio. Need
//! tests/js/node_modules and tests/python/.venv: `scripts/test` makes both.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{TestServer, run_client};

/// The first ```lang block of README.md, with the README's server URL
/// replaced by `url`.
fn readme_block(lang: &str, url: &str) -> String {
    let readme = include_str!("../README.md");
    let fence = format!("```{lang}\n");
    let start = readme.find(&fence).expect("a code block in README.md") + fence.len();
    let len = readme[start..].find("```").expect("the block's end");
    let block = &readme[start..start + len];
    assert!(block.contains("http://localhost:3001"), "{block}");
    block.replace("http://localhost:3001", url)
}

fn print(output: &Output) -> (String, String) {
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).into_owned();
    println!("{out}");
    eprintln!("{err}");
    (out, err)
}

#[test]
#[ignore = "needs node_modules / python venv: run scripts/test"]
fn the_readme_javascript_snippet_runs_and_exits() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/socket.io-client/package.json")
            .is_file(),
        "socket.io-client is not installed in {}: run scripts/test (or `npm ci` there)",
        js.display()
    );
    let server = TestServer::start();
    let channel = server.create_channel("alice", "lobby", "public", &[]);
    // Next to node_modules, so that `import "socket.io-client"` resolves;
    // .mjs, as README says to save it.
    let script = js.join(format!(".readme-{}.mjs", server.port()));
    std::fs::write(&script, readme_block("js", &server.url())).unwrap();
    let output = run_client(
        Command::new("node")
            .arg(&script)
            .current_dir(&js)
            .env("TOKEN", server.token("alice"))
            .env("CHANNEL", &channel),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_file(&script);
    let (out, _) = print(&output);
    // It exits by itself (run_client would time out otherwise), with 0.
    assert!(output.status.success(), "{}", output.status);
    assert!(out.contains("joined at seq 0\n"), "{out}");
    assert!(out.contains("stored as seq 1\n"), "{out}");
    assert!(
        out.contains("{ ok: false, error: { code: 'NOT_FOUND', message: 'no such channel' } }"),
        "{out}"
    );
    assert_eq!(server.history("alice", &channel).len(), 1);
}

#[test]
#[ignore = "needs node_modules / python venv: run scripts/test"]
fn the_readme_python_snippet_runs_with_its_two_argument_handler() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "no Python venv at {}: run scripts/test",
        python.display()
    );
    let server = TestServer::start();
    let channel = server.create_channel("alice", "lobby", "public", &[]);
    let output = run_client(
        Command::new(&python)
            .arg("-c")
            .arg(readme_block("python", &server.url()))
            .env("TOKEN", server.token("alice"))
            .env("CHANNEL", &channel),
        Duration::from_secs(60),
    );
    let (out, err) = print(&output);
    assert!(output.status.success(), "{}", output.status);
    assert!(out.contains("joined at seq 0\n"), "{out}");
    assert!(out.contains("stored as seq 1\n"), "{out}");
    // A handler that does not take the offset fails in python-socketio's
    // thread, with a traceback but exit 0: none may appear.
    assert!(!err.contains("Traceback"), "{err}");
    assert_eq!(server.history("alice", &channel).len(), 1);
}
