//! The checks of a WebSocket upgrade request, as the reference server
//! makes them (and RFC 6455 asks).

use base64::Engine;

use super::{Request, Response};

/// Checks an Engine.IO request the way the reference server does and
/// returns the WebSocket key, or the 400 to answer with.
pub(crate) fn check_engine_request(req: &Request) -> Result<&str, Response> {
    let q = req.query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let engine_error = |code: u8, message: &str| {
        Response::json(
            400,
            serde_json::json!({"code": code, "message": message}).to_string(),
        )
    };
    // The reference checks the transport first.
    if get("transport") != Some("websocket") {
        return Err(engine_error(0, "Transport unknown"));
    }
    if get("EIO") != Some("4") {
        return Err(engine_error(5, "Unsupported protocol version"));
    }
    if req.method != "GET" {
        return Err(engine_error(2, "Bad handshake method"));
    }
    // RFC 6455 4.1/4.2.1: HTTP/1.1 or later, the upgrade headers, and a
    // key that is the base64 of 16 bytes.
    let upgrade = req
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let key = req.header("sec-websocket-key").filter(|k| {
        base64::engine::general_purpose::STANDARD
            .decode(k)
            .is_ok_and(|bytes| bytes.len() == 16)
    });
    let version = req.header("sec-websocket-version");
    let (true, true, Some(key), Some(version)) = (
        req.minor_version >= 1,
        upgrade && req.header_has_token("connection", "upgrade"),
        key,
        version,
    ) else {
        return Err(engine_error(3, "Bad request"));
    };
    // RFC 6455 4.4: a version we do not speak gets 426 and the one we do.
    if version != "13" {
        let mut r = engine_error(3, "Bad request");
        r.status = 426;
        r.headers = &[("Sec-WebSocket-Version", "13")];
        return Err(r);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(query: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/socket.io/".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            head_len: 0,
            minor_version: 1,
        }
    }

    const WS: [(&str, &str); 4] = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    #[test]
    fn polling_is_refused_with_the_reference_error() {
        let r = check_engine_request(&req("EIO=4&transport=polling", &[])).unwrap_err();
        assert_eq!(r.status, 400);
        assert_eq!(r.body, r#"{"code":0,"message":"Transport unknown"}"#);
    }

    #[test]
    fn engine_version_and_upgrade_headers_are_checked() {
        let r = check_engine_request(&req("EIO=3&transport=websocket", &WS)).unwrap_err();
        assert!(r.body.contains("Unsupported protocol version"));
        let r = check_engine_request(&req("EIO=4&transport=websocket", &WS[..2])).unwrap_err();
        assert!(r.body.contains("Bad request"));
        assert_eq!(
            check_engine_request(&req("EIO=4&transport=websocket", &WS)).unwrap(),
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    }

    #[test]
    fn the_key_the_version_and_http_1_1_are_checked() {
        let q = "EIO=4&transport=websocket";
        let with = |name: &str, value: &str| {
            let mut r = req(q, &WS);
            r.headers.retain(|(k, _)| k != name);
            r.headers.push((name.into(), value.into()));
            r
        };
        for key in [
            "",
            "not base64!",
            "AAAAAAAAAAAAAAAAAAAA",
            "dGhlIHNhbXBsZSBub25jZQ",
        ] {
            let r = check_engine_request(&with("sec-websocket-key", key)).unwrap_err();
            assert_eq!(r.status, 400, "key {key:?}");
        }
        let r = check_engine_request(&with("sec-websocket-version", "8")).unwrap_err();
        assert_eq!(
            (r.status, r.headers),
            (426, &[("Sec-WebSocket-Version", "13")][..])
        );
        let mut old = req(q, &WS);
        old.minor_version = 0;
        assert_eq!(check_engine_request(&old).unwrap_err().status, 400);
    }
}
