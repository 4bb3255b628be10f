//! Start-up checks of the operations settings: metrics, the Origin
//! allow-list and TLS.

use std::fs::File;

use super::derived::split_origins;
use super::{Config, ConfigError};

/// `CORS_MAX_AGE_SECS`'s default: how long a browser may reuse a
/// preflight's answer (configuration.md says why 600).
pub const DEFAULT_CORS_MAX_AGE_SECS: u32 = 600;

/// The largest `CORS_MAX_AGE_SECS`: Firefox's cap (Chromium's is 7200);
/// a larger value could only be a typo.
const MAX_CORS_MAX_AGE_SECS: u32 = 86_400;

/// Where `/metrics` is served by default: loopback only, on the port the
/// original server used for its metrics.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9402";

/// The `metrics_listen` value that serves `/metrics` on the public port.
pub const METRICS_ON_PUBLIC_PORT: &str = "public";

impl Config {
    pub(super) fn ops_problems(&self, found: &mut Vec<ConfigError>) {
        if let Err(e) = self.metrics_addr() {
            found.push(e);
        }
        let (key, _) = self.origin_setting();
        for origin in self.origin_list() {
            if let Some(problem) = (origin != "*").then(|| origin_problem(&origin)).flatten() {
                found.push(ConfigError::invalid(
                    key,
                    format!("lists {origin:?}, which {problem}"),
                    "list origins as scheme://host[:port] separated by commas, e.g. \
                     https://play.example.com,http://localhost:8080, or * for any",
                ));
            }
        }
        // Two names for one list: when both are set they must agree, or
        // one of them would be silently ignored.
        let (mut ours, mut theirs) = (
            split_origins(&self.allowed_origins),
            split_origins(&self.cors_origin),
        );
        ours.sort_unstable();
        theirs.sort_unstable();
        if !ours.is_empty() && !theirs.is_empty() && ours != theirs {
            found.push(ConfigError::invalid(
                "cors_origin",
                "differs from ALLOWED_ORIGINS; CORS_ORIGIN is the original server's name \
                 for the same list",
                "set only ALLOWED_ORIGINS (or only CORS_ORIGIN)",
            ));
        }
        if self.cors_max_age_secs > MAX_CORS_MAX_AGE_SECS {
            found.push(ConfigError::invalid(
                "cors_max_age_secs",
                format!("is {}", self.cors_max_age_secs),
                format!(
                    "at most {MAX_CORS_MAX_AGE_SECS} (one day; browsers cap it lower: \
                     Chromium at 7200)"
                ),
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => found.push(ConfigError::invalid(
                "tls_key_file",
                "is not set but TLS_CERT_FILE is",
                "set both TLS_CERT_FILE and TLS_KEY_FILE (PEM files), or neither for plain HTTP",
            )),
            (None, Some(_)) => found.push(ConfigError::invalid(
                "tls_cert_file",
                "is not set but TLS_KEY_FILE is",
                "set both TLS_CERT_FILE and TLS_KEY_FILE (PEM files), or neither for plain HTTP",
            )),
            _ => {}
        }
        // Whether they parse and match is the TLS module's check, made by
        // `cli::problems` when these pass.
        for (key, path) in [
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ] {
            if let Some(path) = path
                && let Err(e) = File::open(path)
            {
                found.push(ConfigError::invalid(
                    key,
                    format!("{} cannot be read: {e}", path.display()),
                    "point it at a readable PEM file",
                ));
            }
        }
    }
}

/// Why an `ALLOWED_ORIGINS` entry is not an origin (`scheme://host[:port]`,
/// nothing after), or `None` when it is one.
fn origin_problem(origin: &str) -> Option<&'static str> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Some("has no scheme (write https://host[:port])");
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Some("has an invalid scheme");
    }
    if rest.is_empty() {
        return Some("has no host");
    }
    if rest.contains(['/', '?', '#', '@', ' ']) {
        return Some("has more than scheme://host[:port] (no path, query or user)");
    }
    // An IPv6 host is in brackets; a port is digits after the last colon.
    let host_end = if rest.starts_with('[') {
        match rest.find(']') {
            Some(i) => i + 1,
            None => return Some("has an unclosed IPv6 bracket"),
        }
    } else {
        rest.find(':').unwrap_or(rest.len())
    };
    match &rest[host_end..] {
        "" => None,
        port => match port.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(_)) => None,
            _ => Some("has an invalid port"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: Config) -> Vec<String> {
        c.problems().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_defaults_serve_metrics_on_loopback_only_and_allow_any_origin() {
        let c = Config::default();
        assert!(c.metrics_enabled);
        assert_eq!(
            c.metrics_addr().unwrap(),
            Some("127.0.0.1:9402".parse().unwrap()),
            "not on the public port unless asked"
        );
        let public = Config {
            metrics_listen: "Public".into(),
            ..Config::default()
        };
        assert_eq!(public.metrics_addr().unwrap(), None);
        assert!(public.metrics_location().contains("the public port"));
        assert!(c.origin_list().is_empty());
        assert!(c.allow_missing_origin);
        assert_eq!(c.tls_files(), None);
    }

    #[test]
    fn metrics_listen_must_be_an_address_and_port() {
        let c = Config {
            metrics_listen: "127.0.0.1:9999".into(),
            ..Config::default()
        };
        assert_eq!(
            c.metrics_addr().unwrap(),
            Some("127.0.0.1:9999".parse().unwrap())
        );
        let p = problems(Config {
            metrics_listen: "localhost:9999".into(),
            ..Config::default()
        });
        assert!(p[0].starts_with("METRICS_LISTEN (metrics_listen)"), "{p:?}");
    }

    #[test]
    fn allowed_origins_are_split_trimmed_and_checked() {
        let c = Config {
            allowed_origins: " https://A.example , http://localhost:8080,".into(),
            ..Config::default()
        };
        assert_eq!(
            c.origin_list(),
            vec!["https://a.example", "http://localhost:8080"]
        );
        assert!(c.validate().is_ok());
        let p = problems(Config {
            allowed_origins: "https://a.example/app".into(),
            ..Config::default()
        });
        assert!(
            p[0].starts_with("ALLOWED_ORIGINS (allowed_origins)"),
            "{p:?}"
        );
    }

    #[test]
    fn cors_origin_is_the_same_list_under_the_original_name() {
        // Alone, it gives the list (the original's .env).
        let c = Config {
            cors_origin: "http://localhost:43000, http://10.10.30.84:43000".into(),
            ..Config::default()
        };
        assert_eq!(
            c.origin_list(),
            vec!["http://localhost:43000", "http://10.10.30.84:43000"]
        );
        assert!(c.validate().is_ok());
        // `*` is an entry meaning any origin, in either name.
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
            // (`transport::origin`'s tests: the policy of either allows any.)
            assert!(c.validate().is_ok(), "{:?}", problems(c.clone()));
        }
        // Both set: the same list is fine, another is an error.
        let c = Config {
            allowed_origins: "https://a.example,https://b.example".into(),
            cors_origin: "https://B.example, https://a.example".into(),
            ..Config::default()
        };
        assert!(c.validate().is_ok());
        let p = problems(Config {
            allowed_origins: "https://a.example".into(),
            cors_origin: "https://b.example".into(),
            ..Config::default()
        });
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("CORS_ORIGIN (cors_origin)"), "{p:?}");
        // A bad entry is reported under the key it came from.
        let p = problems(Config {
            cors_origin: "localhost:3000".into(),
            ..Config::default()
        });
        assert!(p[0].starts_with("CORS_ORIGIN (cors_origin)"), "{p:?}");
    }

    #[test]
    fn cors_max_age_has_a_ceiling() {
        assert_eq!(Config::default().cors_max_age_secs, 600);
        let ok = Config {
            cors_max_age_secs: 86_400,
            ..Config::default()
        };
        assert!(ok.validate().is_ok());
        let p = problems(Config {
            cors_max_age_secs: 86_401,
            ..Config::default()
        });
        assert!(
            p[0].starts_with("CORS_MAX_AGE_SECS (cors_max_age_secs)"),
            "{p:?}"
        );
    }

    #[test]
    fn tls_needs_both_files_and_readable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "x").unwrap();
        let p = problems(Config {
            tls_cert_file: Some(cert.clone()),
            ..Config::default()
        });
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("TLS_KEY_FILE (tls_key_file) is not set"),
            "{p:?}"
        );
        let p = problems(Config {
            tls_cert_file: Some(cert.clone()),
            tls_key_file: Some(dir.path().join("missing.pem")),
            ..Config::default()
        });
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("TLS_KEY_FILE (tls_key_file)") && p[0].contains("missing.pem"));
        // Both readable: what they hold is `cli::problems`'s check.
        let both = Config {
            tls_cert_file: Some(cert.clone()),
            tls_key_file: Some(cert.clone()),
            ..Config::default()
        };
        assert!(both.tls_files().is_some());
    }

    #[test]
    fn entries_must_be_bare_origins() {
        for ok in [
            "https://a.example",
            "http://localhost:8080",
            "https://[::1]:3000",
            "app://game",
        ] {
            assert_eq!(origin_problem(ok), None, "{ok}");
        }
        for bad in [
            "a.example",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "https://a.example:port",
            "https://a.example:99999",
            "https://[::1",
            "://a.example",
        ] {
            assert!(origin_problem(bad).is_some(), "{bad}");
        }
    }
}
