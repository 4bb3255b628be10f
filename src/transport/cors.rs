//! CORS (the Fetch standard's CORS protocol) for the server's HTTP answers:
//! which headers a response carries for a request's `Origin`, by the same
//! allow-list that guards WebSocket upgrades ([`OriginPolicy`]).
//!
//! A browser lets a page on another origin read an HTTP answer only when
//! the answer names that origin in `Access-Control-Allow-Origin`; and
//! before a request that carries `Authorization` (every REST call) or a
//! JSON body, it asks first with a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`). The REST API authenticates with bearer
//! tokens, never cookies, so no answer carries
//! `Access-Control-Allow-Credentials` and `*` is safe: a page can only use
//! a token it already holds.
//!
//! The policy, for a request with an `Origin`:
//! - any origin allowed (`ALLOWED_ORIGINS` empty or `*`):
//!   `Access-Control-Allow-Origin: *`;
//! - a listed origin: the request's `Origin` echoed, with `Vary: Origin`;
//! - an origin not listed: no CORS header at all, so the browser keeps the
//!   answer from the page. A preflight from it is refused ([`None`] from
//!   [`OriginPolicy::cors_preflight`]; REST answers 403).
//!
//! Callers: `rest::router` for every REST answer; the Engine.IO polling
//! routes can use the same two methods.

use super::origin::OriginPolicy;

/// Header name (lower case, as hyper's `HeaderName::from_static` wants)
/// and value, in the order they should be written.
pub(crate) type CorsHeaders = Vec<(&'static str, String)>;

/// Request headers every preflight allows: the two the API reads.
const ALWAYS_ALLOWED_HEADERS: [&str; 2] = ["authorization", "content-type"];

/// Response headers a page may read besides the CORS-safelisted ones
/// (`Content-Type`, `Cache-Control`, ...): the retry hint of 429 and 503,
/// the scheme of a 401, and the methods of a 405.
pub(crate) const EXPOSED_HEADERS: &str = "Retry-After, WWW-Authenticate, Allow";

/// At most this many request headers named in `Access-Control-Request-Headers`
/// are allowed back; a browser asks for a handful.
const MAX_REQUESTED_HEADERS: usize = 32;

/// Is this request a CORS preflight? `OPTIONS` with an `Origin` and an
/// `Access-Control-Request-Method` (a plain `OPTIONS` is not one).
pub(crate) fn is_preflight(
    method: &str,
    origin: Option<&str>,
    request_method: Option<&str>,
) -> bool {
    method == "OPTIONS" && origin.is_some() && request_method.is_some()
}

impl OriginPolicy {
    /// The CORS headers of any answer that is not a preflight (success or
    /// error alike) to a request with this `Origin` header (or none).
    /// Empty when the origin is not allowed, or when there is no `Origin`
    /// while only listed origins are (no browser is asking then).
    pub fn cors_headers(&self, origin: Option<&str>) -> CorsHeaders {
        let Some(allow) = self.cors_allow_origin(origin) else {
            return Vec::new();
        };
        vec![
            ("access-control-allow-origin", allow),
            ("access-control-expose-headers", EXPOSED_HEADERS.to_owned()),
            ("vary", "Origin".to_owned()),
        ]
    }

    /// The headers of a 204 answer to a preflight, or `None` when the
    /// origin is not allowed (answer 403 without CORS headers). `methods`
    /// are the route's, as in `Allow` (`"GET, PUT, DELETE"`);
    /// `request_headers` is the preflight's `Access-Control-Request-Headers`.
    pub fn cors_preflight(
        &self,
        origin: Option<&str>,
        methods: &str,
        request_headers: Option<&str>,
    ) -> Option<CorsHeaders> {
        let allow = self.cors_allow_origin(origin)?;
        Some(vec![
            ("access-control-allow-origin", allow),
            ("access-control-allow-methods", methods.to_owned()),
            (
                "access-control-allow-headers",
                allowed_headers(request_headers),
            ),
            ("access-control-max-age", self.cors_max_age().to_string()),
            (
                "vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers".to_owned(),
            ),
        ])
    }

    /// The `Access-Control-Allow-Origin` value for this `Origin`, if any.
    fn cors_allow_origin(&self, origin: Option<&str>) -> Option<String> {
        if self.allows_any() {
            return Some("*".to_owned());
        }
        // The browser compares the value with its own serialisation of the
        // page's origin byte for byte: echo what it sent.
        let origin = origin.map(str::trim).filter(|o| !o.is_empty())?;
        self.allows(Some(origin)).then(|| origin.to_owned())
    }
}

/// `Access-Control-Allow-Headers`: `Authorization` and `Content-Type`, and
/// every other header the preflight asks for. The server ignores headers
/// it does not read and grants nothing by a header but `Authorization`, so
/// refusing, say, `X-Request-Id` or `traceparent` would only break clients.
/// Names that are not header names (RFC 9110 tokens) are left out.
fn allowed_headers(requested: Option<&str>) -> String {
    let mut names: Vec<String> = ALWAYS_ALLOWED_HEADERS.iter().map(|&h| h.into()).collect();
    let requested = requested.unwrap_or_default().split(',').map(str::trim);
    for name in requested
        .filter(|n| is_token(n))
        .take(MAX_REQUESTED_HEADERS)
    {
        let name = name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

/// An RFC 9110 token: one or more tchars.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(list: &[&str]) -> OriginPolicy {
        OriginPolicy::new(list.iter().map(|s| s.to_string()).collect(), true)
    }

    fn header<'a>(h: &'a CorsHeaders, name: &str) -> Option<&'a str> {
        h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn any_origin_gets_a_star_even_without_an_origin() {
        for p in [
            OriginPolicy::any(),
            listed(&["*"]),
            listed(&["https://a.example", "*"]),
        ] {
            for origin in [Some("https://evil.example"), Some("null"), None] {
                let h = p.cors_headers(origin);
                assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
                assert_eq!(
                    header(&h, "access-control-expose-headers"),
                    Some(EXPOSED_HEADERS)
                );
                assert!(header(&h, "access-control-allow-credentials").is_none());
            }
        }
    }

    #[test]
    fn a_listed_origin_is_echoed_as_sent() {
        let p = listed(&["https://Play.Example.com", "http://localhost:8080"]);
        let h = p.cors_headers(Some("https://play.example.com"));
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://play.example.com")
        );
        assert_eq!(header(&h, "vary"), Some("Origin"));
        let h = p.cors_headers(Some("http://localhost:8080"));
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("http://localhost:8080")
        );
    }

    #[test]
    fn an_origin_not_listed_gets_nothing() {
        let p = listed(&["https://a.example"]);
        for origin in [
            Some("https://evil.example"),
            Some("http://a.example"),
            Some("https://a.example:8443"),
            Some("null"),
            Some(""),
            None,
        ] {
            assert!(p.cors_headers(origin).is_empty(), "{origin:?}");
            assert!(
                p.cors_preflight(origin, "GET", None).is_none(),
                "{origin:?}"
            );
        }
    }

    #[test]
    fn a_preflight_names_methods_headers_and_max_age() {
        let p = listed(&["https://a.example"]).with_cors_max_age(77);
        let h = p
            .cors_preflight(
                Some("https://a.example"),
                "GET, PUT, DELETE",
                Some("Content-Type, X-Request-Id,authorization , traceparent"),
            )
            .unwrap();
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            Some("https://a.example")
        );
        assert_eq!(
            header(&h, "access-control-allow-methods"),
            Some("GET, PUT, DELETE")
        );
        assert_eq!(
            header(&h, "access-control-allow-headers"),
            Some("authorization, content-type, x-request-id, traceparent")
        );
        assert_eq!(header(&h, "access-control-max-age"), Some("77"));
        assert!(header(&h, "vary").unwrap().starts_with("Origin"));
    }

    #[test]
    fn the_default_max_age_and_the_always_allowed_headers() {
        let h = OriginPolicy::any()
            .cors_preflight(Some("https://x.example"), "POST", None)
            .unwrap();
        assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&h, "access-control-allow-headers"),
            Some("authorization, content-type")
        );
        assert_eq!(
            header(&h, "access-control-max-age"),
            Some(
                crate::config::DEFAULT_CORS_MAX_AGE_SECS
                    .to_string()
                    .as_str()
            )
        );
    }

    #[test]
    fn requested_names_that_are_not_tokens_are_left_out() {
        let h = allowed_headers(Some("x-ok, bad name, , x\u{e9}, a:b, X-OK"));
        assert_eq!(h, "authorization, content-type, x-ok");
        let many: Vec<String> = (0..100).map(|i| format!("x-{i}")).collect();
        let h = allowed_headers(Some(&many.join(",")));
        assert_eq!(h.split(", ").count(), 2 + MAX_REQUESTED_HEADERS);
    }

    #[test]
    fn preflights_are_options_with_origin_and_request_method() {
        assert!(is_preflight("OPTIONS", Some("https://a"), Some("POST")));
        assert!(!is_preflight("OPTIONS", None, Some("POST")));
        assert!(!is_preflight("OPTIONS", Some("https://a"), None));
        assert!(!is_preflight("GET", Some("https://a"), Some("POST")));
    }
}
