//! Refusals a person can understand, against the real binary: a refused
//! token says why, the same way on a Socket.IO CONNECT (`connect_error`
//! data: `{"code":"UNAUTHORIZED","reason":"TOKEN_…","claim":…}`, the
//! message unchanged) and on a REST 401 (`error.reason`, `error.claim`),
//! without the token, the secret or a configured value.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use common::raw::{open, recv_text, send_text};
use common::{TestServer, http_request, now_secs};

const AUDIENCE: &str = "chat.example";
const ISSUER: &str = "https://id.example";

/// Claims the server accepts (JWT_AUDIENCE and JWT_ISSUER set), with
/// `change` applied: a key set to null is removed.
fn claims(change: Value) -> Value {
    let mut c = json!({
        "sub": "alice",
        "exp": now_secs() + 3600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    });
    for (k, v) in change.as_object().expect("an object") {
        match v {
            Value::Null => {
                c.as_object_mut().unwrap().remove(k);
            }
            v => c[k] = v.clone(),
        }
    }
    c
}

fn sign(claims: &Value, alg: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode JWT")
}

/// The CONNECT_ERROR a CONNECT with `auth` gets: `{message, data}`.
fn connect_error(server: &TestServer, auth: &Value) -> Value {
    let (mut ws, _) = open(server);
    send_text(&mut ws, format!("40{auth}"));
    let reply = recv_text(&mut ws);
    let body = reply
        .strip_prefix("44")
        .unwrap_or_else(|| panic!("expected CONNECT_ERROR, got {reply:?}"));
    serde_json::from_str(body).expect("CONNECT_ERROR JSON")
}

#[test]
fn every_refused_token_says_why_on_connect_and_on_rest() {
    let server = TestServer::start_with(&[("JWT_AUDIENCE", AUDIENCE), ("JWT_ISSUER", ISSUER)]);
    let secret = server.secret().to_owned();
    let hs256 = |change: Value| sign(&claims(change), Algorithm::HS256, &secret);
    let none = {
        let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            part(json!({"alg": "none", "typ": "JWT"})),
            part(claims(json!({})))
        )
    };
    // (what, token, reason, claim); `None`: no token at all.
    let cases: Vec<(&str, Option<String>, &str, Option<&str>)> = vec![
        ("no token", None, "TOKEN_MISSING", None),
        ("an empty token", Some(String::new()), "TOKEN_MISSING", None),
        ("not a JWT", Some("not-a-jwt".into()), "TOKEN_INVALID", None),
        (
            "another secret",
            Some(sign(
                &claims(json!({})),
                Algorithm::HS256,
                "not-the-server-secret-but-just-as-long",
            )),
            "TOKEN_INVALID",
            None,
        ),
        (
            "expired",
            Some(hs256(json!({"exp": now_secs() - 3600}))),
            "TOKEN_EXPIRED",
            None,
        ),
        (
            "not valid yet",
            Some(hs256(json!({"nbf": now_secs() + 3600}))),
            "TOKEN_NOT_YET_VALID",
            None,
        ),
        (
            "no exp",
            Some(hs256(json!({"exp": null}))),
            "TOKEN_MISSING_CLAIM",
            Some("exp"),
        ),
        (
            "no sub",
            Some(hs256(json!({"sub": null}))),
            "TOKEN_MISSING_CLAIM",
            Some("sub"),
        ),
        (
            "no aud, which JWT_AUDIENCE requires",
            Some(hs256(json!({"aud": null}))),
            "TOKEN_MISSING_CLAIM",
            Some("aud"),
        ),
        (
            "a sub of 200 bytes",
            Some(hs256(json!({"sub": "u".repeat(200)}))),
            "TOKEN_INVALID_CLAIM",
            Some("sub"),
        ),
        (
            "HS512, not configured",
            Some(sign(&claims(json!({})), Algorithm::HS512, &secret)),
            "TOKEN_WRONG_ALGORITHM",
            None,
        ),
        ("alg none", Some(none), "TOKEN_WRONG_ALGORITHM", None),
        (
            "another audience",
            Some(hs256(json!({"aud": "other.example"}))),
            "TOKEN_WRONG_AUDIENCE",
            None,
        ),
        (
            "another issuer",
            Some(hs256(json!({"iss": "https://evil.example"}))),
            "TOKEN_WRONG_ISSUER",
            None,
        ),
    ];
    for (what, token, reason, claim) in &cases {
        let mut data = json!({"code": "UNAUTHORIZED", "reason": reason});
        if let Some(c) = claim {
            data["claim"] = json!(c);
        }

        let auth = match token {
            Some(t) => json!({ "token": t }),
            None => json!({}),
        };
        let refused = connect_error(&server, &auth);
        assert_eq!(
            refused,
            json!({"message": "unauthorized", "data": data}),
            "CONNECT with {what}"
        );

        let r = http_request(
            server.port(),
            "GET",
            "/api/v1/channels",
            token.as_deref(),
            None,
        )
        .expect("GET /api/v1/channels");
        assert_eq!(r.status, 401, "REST with {what}: {}", r.body);
        let body: Value = serde_json::from_str(&r.body).expect("JSON error");
        let message = if *reason == "TOKEN_MISSING" {
            "send Authorization: Bearer <token>"
        } else {
            "invalid token"
        };
        let mut error = json!({"code": "UNAUTHORIZED", "message": message, "reason": reason});
        if let Some(c) = claim {
            error["claim"] = json!(c);
        }
        assert_eq!(body, json!({ "error": error }), "REST with {what}");
        for secret in [&secret[..], AUDIENCE, ISSUER] {
            assert!(!r.body.contains(secret), "{what}: {}", r.body);
        }
    }

    // A good token still works, on both.
    let good = hs256(json!({}));
    let (mut ws, _) = open(&server);
    send_text(&mut ws, format!("40{}", json!({ "token": good })));
    let reply = recv_text(&mut ws);
    assert!(reply.starts_with("40{"), "{reply}");
    let r = http_request(server.port(), "GET", "/api/v1/channels", Some(&good), None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}
