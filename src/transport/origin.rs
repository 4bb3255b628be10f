//! The Origin allow-list (`ALLOWED_ORIGINS`, or the original server's
//! `CORS_ORIGIN`): it guards WebSocket upgrades here, and decides the CORS
//! headers of HTTP answers (`transport::cors`).
//!
//! Browsers send the page's origin with every WebSocket upgrade and let
//! any page connect anywhere; checking it is what stops a page on another
//! site from opening a chat connection with a visitor's credentials or from
//! inside their network. Origins are compared exactly (scheme, host and
//! port), case-insensitively, after the browser's own serialisation
//! (`https://play.example.com`, `http://localhost:8080`). A request without
//! an `Origin` (native game clients, servers) is allowed unless
//! `ALLOW_MISSING_ORIGIN=false`.

use std::sync::Arc;

use super::http::{Request, Response};
use crate::config::DEFAULT_CORS_MAX_AGE_SECS;

/// Which requests may proceed, by their `Origin` header. Cloned with the
/// endpoint for every accepted connection: the list is shared.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Lower-cased allowed origins; empty allows any origin.
    allowed: Arc<[Box<str>]>,
    /// Whether a request without an `Origin` is allowed (when `allowed`
    /// is set; with no list every request is).
    allow_missing: bool,
    /// `Access-Control-Max-Age` of a preflight's answer, in seconds.
    cors_max_age: u32,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self::any()
    }
}

impl OriginPolicy {
    /// `allowed` as from [`crate::config::Config::origin_list`]. An entry
    /// `*` allows any origin, as an empty list does.
    pub fn new(allowed: Vec<String>, allow_missing: bool) -> Self {
        let any = allowed.iter().any(|o| o.trim() == "*");
        Self {
            allowed: allowed
                .into_iter()
                .filter(|_| !any)
                .map(|o| o.to_ascii_lowercase().into_boxed_str())
                .collect(),
            allow_missing,
            cors_max_age: DEFAULT_CORS_MAX_AGE_SECS,
        }
    }

    /// The same policy with `Access-Control-Max-Age: secs` on preflights.
    pub fn with_cors_max_age(mut self, secs: u32) -> Self {
        self.cors_max_age = secs;
        self
    }

    pub(crate) fn cors_max_age(&self) -> u32 {
        self.cors_max_age
    }

    /// Is every origin allowed (no list, or `*` in it)?
    pub fn allows_any(&self) -> bool {
        self.allowed.is_empty()
    }

    /// Allows every request (no list).
    pub fn any() -> Self {
        Self::new(Vec::new(), true)
    }

    /// Is a request with this `Origin` header (or none) allowed?
    pub fn allows(&self, origin: Option<&str>) -> bool {
        if self.allows_any() {
            return true;
        }
        match origin.map(str::trim) {
            None | Some("") => self.allow_missing,
            Some(o) => {
                let o = o.strip_suffix('/').unwrap_or(o);
                self.allowed.iter().any(|a| a.eq_ignore_ascii_case(o))
            }
        }
    }

    /// `Ok` to go on with the upgrade, or the 403 to answer with.
    pub fn check(&self, req: &Request) -> Result<(), Response> {
        if self.allows(req.header("origin")) {
            Ok(())
        } else {
            Err(Response::error(
                403,
                "FORBIDDEN",
                "this origin may not open a WebSocket to this server",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str], allow_missing: bool) -> OriginPolicy {
        OriginPolicy::new(list.iter().map(|s| s.to_string()).collect(), allow_missing)
    }

    #[test]
    fn an_empty_list_allows_everything() {
        let p = OriginPolicy::any();
        assert!(p.allows(Some("https://evil.example")));
        assert!(p.allows(None));
        assert!(policy(&[], false).allows(None));
        // `*` anywhere in the list means the same.
        let p = policy(&["https://a.example", "*"], false);
        assert!(p.allows_any());
        assert!(p.allows(Some("https://evil.example")));
        assert!(p.allows(None));
    }

    #[test]
    fn origins_match_exactly_but_case_insensitively() {
        let p = policy(&["https://Play.Example.com", "http://localhost:8080"], true);
        assert!(p.allows(Some("https://play.example.com")));
        assert!(p.allows(Some("HTTPS://PLAY.EXAMPLE.COM")));
        assert!(p.allows(Some("http://localhost:8080")));
        // Scheme, port and host are each part of the origin.
        assert!(!p.allows(Some("http://play.example.com")));
        assert!(!p.allows(Some("https://play.example.com:8443")));
        assert!(!p.allows(Some("http://localhost")));
        assert!(!p.allows(Some("https://play.example.com.evil.example")));
        assert!(!p.allows(Some("https://evil.example")));
        assert!(!p.allows(Some("null")));
    }

    #[test]
    fn a_missing_origin_follows_the_setting() {
        assert!(policy(&["https://a.example"], true).allows(None));
        assert!(!policy(&["https://a.example"], false).allows(None));
        assert!(!policy(&["https://a.example"], false).allows(Some("")));
    }

    #[test]
    fn a_refusal_is_a_json_403() {
        let req = Request {
            method: "GET".into(),
            path: "/socket.io/".into(),
            query: String::new(),
            headers: vec![("origin".into(), "https://evil.example".into())],
            head_len: 0,
            minor_version: 1,
        };
        let r = policy(&["https://a.example"], true)
            .check(&req)
            .unwrap_err();
        assert_eq!(r.status, 403);
        assert!(r.body.contains(r#""code":"FORBIDDEN""#), "{}", r.body);
    }

    #[test]
    fn a_star_in_either_setting_allows_any_origin() {
        use crate::config::Config;
        for c in [
            Config {
                cors_origin: "*".into(),
                ..Config::default()
            },
            Config {
                allowed_origins: "https://a.example,*".into(),
                ..Config::default()
            },
        ] {
            assert!(OriginPolicy::new(c.origin_list(), true).allows_any());
        }
    }
}
