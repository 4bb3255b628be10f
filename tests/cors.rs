//! CORS on the REST API, over raw HTTP against the real binary: preflights
//! (204 with methods, headers and max age; 403 for an origin not allowed),
//! and `Access-Control-Allow-Origin` on every answer, successes, probes and
//! errors (401, 404, 405, 413, 429, 503) alike. The browser's side of it
//! is `tests/browser.rs`.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::raw::sio_connect;
use common::rest::{Answer, Http};
use nix::sys::signal::Signal;
use serde_json::json;

const PAGE: &str = "http://page.example:8080";
const OTHER: &str = "http://evil.example:8080";

fn from(origin: &str) -> [(&str, &str); 1] {
    [("Origin", origin)]
}

/// The answer lets a page on `origin` read it, exposing the retry hint.
#[track_caller]
fn readable_by(a: &Answer, origin: &str) {
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some(origin),
        "{a:?}"
    );
    let exposed = a.header("access-control-expose-headers").unwrap_or("");
    assert!(exposed.contains("Retry-After"), "{a:?}");
    assert!(
        a.header("access-control-allow-credentials").is_none(),
        "{a:?}"
    );
    if origin != "*" {
        assert_eq!(a.header("vary"), Some("Origin"), "{a:?}");
    }
}

#[track_caller]
fn no_cors(a: &Answer) {
    let cors: Vec<_> = a
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "{a:?}");
}

#[test]
fn a_listed_origin_gets_preflights_and_headers_on_every_answer() {
    let server = TestServer::start_with(&[
        ("ALLOWED_ORIGINS", &format!("{PAGE},https://other.example")),
        ("REST_MAX_BODY_BYTES", "1024"),
    ]);
    let token = server.token("alice");
    let mut http = Http::connect(&server);

    // A preflight of a JSON POST with the token, and a header of the
    // client's own.
    let a = http.send_with(
        "OPTIONS",
        "/api/v1/channels",
        &[
            ("Origin", PAGE),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization,content-type,x-request-id",
            ),
        ],
        None,
        None,
    );
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(a.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("authorization, content-type, x-request-id")
    );
    assert_eq!(a.header("access-control-max-age"), Some("600"));
    assert!(
        a.header("vary").unwrap_or("").starts_with("Origin"),
        "{a:?}"
    );
    assert!(a.header("access-control-allow-credentials").is_none());
    // Each route names its own methods.
    let a = http.send_with(
        "OPTIONS",
        "/api/v1/messages/123",
        &[("Origin", PAGE), ("Access-Control-Request-Method", "PUT")],
        None,
        None,
    );
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(
        a.header("access-control-allow-methods"),
        Some("GET, PUT, DELETE")
    );
    assert_eq!(
        a.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    // An origin not listed: 403 and nothing a browser would accept.
    let a = http.send_with(
        "OPTIONS",
        "/api/v1/channels",
        &[("Origin", OTHER), ("Access-Control-Request-Method", "POST")],
        None,
        None,
    );
    assert_eq!((a.status, a.code()), (403, "FORBIDDEN"), "{a:?}");
    no_cors(&a);
    // A plain OPTIONS (no preflight) says what the route allows.
    let a = http.send("OPTIONS", "/api/v1/channels", None, None);
    assert_eq!(
        (a.status, a.header("allow")),
        (204, Some("GET, POST, OPTIONS"))
    );
    let a = http.send_with("OPTIONS", "/nope", &from(PAGE), None, None);
    assert_eq!(a.status, 404, "{a:?}");
    readable_by(&a, PAGE);

    // Successes, probes included.
    let body = json!({"name": "cors", "type": "public"}).to_string();
    let a = http.send_with(
        "POST",
        "/api/v1/channels",
        &from(PAGE),
        Some(&token),
        Some(body.as_bytes()),
    );
    assert_eq!(a.status, 201, "{a:?}");
    readable_by(&a, PAGE);
    let channel = a.json["channel"]["id"].as_str().expect("an id").to_owned();
    let history = format!("/api/v1/messages/channel/{channel}");
    let a = http.send_with("GET", &history, &from(PAGE), Some(&token), None);
    assert_eq!(a.status, 200, "{a:?}");
    readable_by(&a, PAGE);
    for (method, path) in [("GET", "/health"), ("GET", "/ready"), ("HEAD", "/metrics")] {
        let a = http.send_with(method, path, &from(PAGE), None, None);
        assert_eq!(a.status, 200, "{method} {path}: {a:?}");
        readable_by(&a, PAGE);
    }
    // Origins compare case-insensitively; the header echoes what was sent.
    let a = http.send_with("GET", "/health", &from("https://OTHER.example"), None, None);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("https://OTHER.example")
    );

    // Errors.
    let a = http.send_with("GET", "/api/v1/channels", &from(PAGE), None, None);
    assert_eq!(a.status, 401, "{a:?}");
    readable_by(&a, PAGE);
    assert!(
        a.header("access-control-expose-headers")
            .unwrap()
            .contains("WWW-Authenticate")
    );
    let a = http.send_with(
        "GET",
        "/api/v1/channels/none",
        &from(PAGE),
        Some(&token),
        None,
    );
    assert_eq!(a.status, 404, "{a:?}");
    readable_by(&a, PAGE);
    let a = http.send_with("GET", "/nope", &from(PAGE), Some(&token), None);
    assert_eq!(a.status, 404, "{a:?}");
    readable_by(&a, PAGE);
    let a = http.send_with("PATCH", "/api/v1/channels", &from(PAGE), Some(&token), None);
    assert_eq!(a.status, 405, "{a:?}");
    readable_by(&a, PAGE);
    let big = vec![b' '; 2000];
    let a = Http::connect(&server).send_with(
        "POST",
        "/api/v1/channels",
        &from(PAGE),
        Some(&token),
        Some(&big),
    );
    assert_eq!(a.status, 413, "{a:?}");
    readable_by(&a, PAGE);

    // An origin not listed is served (a browser would have been stopped by
    // the preflight) but gets no CORS header, so its page cannot read it.
    let a = http.send_with("GET", &history, &from(OTHER), Some(&token), None);
    assert_eq!(a.status, 200, "{a:?}");
    no_cors(&a);
    // No Origin: not a browser's cross-origin request, nothing to add.
    let a = http.send("GET", "/health", None, None);
    no_cors(&a);

    // 503: /ready while draining, on a connection opened before.
    let (mut ws, _) = common::raw::open(&server);
    sio_connect(&mut ws, &server.token("watcher"));
    server.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let drained = loop {
        let a = http.send_with("GET", "/ready", &from(PAGE), None, None);
        if a.status == 503 {
            break a;
        }
        assert_eq!(a.status, 200, "{a:?}");
        assert!(Instant::now() < deadline, "/ready stayed 200 after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(drained.header("retry-after"), Some("1"));
    readable_by(&drained, PAGE);
}

#[test]
fn any_origin_by_default_and_cors_origin_as_the_original_name() {
    // The default: any origin, `*`.
    let server = TestServer::start();
    let mut http = Http::connect(&server);
    let a = http.send_with(
        "OPTIONS",
        "/api/v1/messages",
        &[("Origin", OTHER), ("Access-Control-Request-Method", "POST")],
        None,
        None,
    );
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    assert_eq!(a.header("access-control-allow-methods"), Some("POST"));
    let a = http.send_with("GET", "/api/v1/channels", &from(OTHER), None, None);
    assert_eq!(a.status, 401);
    readable_by(&a, "*");
    drop(http);
    assert!(server.stop().success());

    // The original's CORS_ORIGIN, with CORS_MAX_AGE_SECS, and 429.
    let server = TestServer::start_with(&[
        ("CORS_ORIGIN", PAGE),
        ("CORS_MAX_AGE_SECS", "60"),
        ("RATE_LIMIT_PER_SEC", "1"),
        ("RATE_LIMIT_BURST", "2"),
    ]);
    let token = server.token("bob");
    let mut http = Http::connect(&server);
    let preflight = |http: &mut Http, origin| {
        http.send_with(
            "OPTIONS",
            "/api/v1/channels",
            &[("Origin", origin), ("Access-Control-Request-Method", "GET")],
            None,
            None,
        )
    };
    let a = preflight(&mut http, PAGE);
    assert_eq!(a.status, 204, "{a:?}");
    assert_eq!(a.header("access-control-allow-origin"), Some(PAGE));
    assert_eq!(a.header("access-control-max-age"), Some("60"));
    assert_eq!(preflight(&mut http, OTHER).status, 403);
    // Preflights are not rate limited; requests are, and a 429 is readable.
    let answers: Vec<Answer> = (0..4)
        .map(|_| http.send_with("GET", "/api/v1/channels", &from(PAGE), Some(&token), None))
        .collect();
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .unwrap_or_else(|| panic!("no 429 in {answers:?}"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    readable_by(limited, PAGE);
    for a in answers.iter().filter(|a| a.status == 200) {
        readable_by(a, PAGE);
    }
}

#[test]
fn different_allowed_origins_and_cors_origin_are_a_configuration_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatrix-chat"))
        .args(["config", "check"])
        .env_clear()
        .env("ALLOWED_ORIGINS", "https://a.example")
        .env("CORS_ORIGIN", "https://b.example")
        .env("JWT_SECRET", "0123456789abcdef0123456789abcdef")
        .current_dir(tempfile::tempdir().unwrap().path())
        .output()
        .expect("run gatrix-chat config check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("CORS_ORIGIN"), "{text}");
}
