//! A Redis Cluster's address: its seed nodes and credentials, from
//! REDIS_CLUSTER_NODES (the Node.js server's name: `host:port,host:port`,
//! with REDIS_PASSWORD) or a `redis+cluster://[[user]:password@]host:port,…`
//! REDIS_URL. The `redis` crate has no URL for a cluster (it takes a list
//! of node addresses), so the scheme is ours; [`Config::redis_url`] turns
//! REDIS_CLUSTER_NODES into it, so one parser checks both.
//!
//! The nodes are only where the client starts: it learns the others and
//! who owns which slot from them (`CLUSTER SLOTS`).
//!
//! [`Config::redis_url`]: super::Config::redis_url

use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// The scheme of a Redis Cluster URL.
pub(crate) const CLUSTER_SCHEME: &str = "redis+cluster://";

/// A Redis Cluster's seed nodes and credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterAddress {
    /// (host, port): IPv6 hosts without their brackets.
    pub(crate) nodes: Vec<(String, u16)>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

/// Why a cluster address is refused. The messages never quote the
/// password (a node's `host:port` may be quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClusterAddressError {
    #[error("names no node")]
    NoNode,
    #[error("has {0:?} where a node's host:port should be")]
    NotHostPort(String),
    #[error("names node {0} without a port from 1 to 65535")]
    BadPort(String),
    #[error("names node {0} twice")]
    Duplicate(String),
    #[error(
        "names database {0:?}: a Redis Cluster has only database 0 (and `/` after the nodes \
         names a database)"
    )]
    Database(String),
    #[error("has a query or fragment (`?`, `#`), which means nothing here")]
    Query,
    #[error("has a user name or password that is not valid percent-encoded UTF-8")]
    Encoding,
}

/// The address in a `redis+cluster://` URL; `None` for any other URL.
pub(crate) fn parse_url(url: &str) -> Option<Result<ClusterAddress, ClusterAddressError>> {
    let rest = url.strip_prefix(CLUSTER_SCHEME)?;
    Some(parse_rest(rest))
}

fn parse_rest(rest: &str) -> Result<ClusterAddress, ClusterAddressError> {
    if rest.contains(['?', '#']) {
        return Err(ClusterAddressError::Query);
    }
    // The credentials end at the last '@' (a password may hold '@' only
    // percent-encoded, but be lenient about the user name's).
    let (auth, rest) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let (hosts, db) = match rest.split_once('/') {
        Some((hosts, db)) => (hosts, db),
        None => (rest, ""),
    };
    if !(db.is_empty() || db == "0") {
        return Err(ClusterAddressError::Database(db.to_owned()));
    }
    let decode = |s: &str| -> Result<Option<String>, ClusterAddressError> {
        if s.is_empty() {
            return Ok(None);
        }
        percent_decode_str(s)
            .decode_utf8()
            .map(|d| Some(d.into_owned()))
            .map_err(|_| ClusterAddressError::Encoding)
    };
    let (username, password) = match auth {
        None => (None, None),
        Some(auth) => match auth.split_once(':') {
            Some((user, password)) => (decode(user)?, decode(password)?),
            None => (decode(auth)?, None),
        },
    };
    Ok(ClusterAddress {
        nodes: parse_nodes(hosts)?,
        username,
        password,
    })
}

/// `host:port,host:port` (REDIS_CLUSTER_NODES; spaces around entries are
/// allowed, IPv6 hosts in brackets).
pub(crate) fn parse_nodes(list: &str) -> Result<Vec<(String, u16)>, ClusterAddressError> {
    let mut nodes: Vec<(String, u16)> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let Some((host, port)) = entry.rsplit_once(':') else {
            return Err(ClusterAddressError::NotHostPort(entry.to_owned()));
        };
        let host = match host.strip_prefix('[') {
            Some(v6) => v6
                .strip_suffix(']')
                .ok_or_else(|| ClusterAddressError::NotHostPort(entry.to_owned()))?,
            // An IPv6 literal needs brackets, else its port is ambiguous.
            None if host.contains(':') => {
                return Err(ClusterAddressError::NotHostPort(entry.to_owned()));
            }
            None => host,
        };
        if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
            return Err(ClusterAddressError::NotHostPort(entry.to_owned()));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| ClusterAddressError::BadPort(entry.to_owned()))?;
        if nodes.iter().any(|(h, p)| h == host && *p == port) {
            return Err(ClusterAddressError::Duplicate(entry.to_owned()));
        }
        nodes.push((host.to_owned(), port));
    }
    if nodes.is_empty() {
        return Err(ClusterAddressError::NoNode);
    }
    Ok(nodes)
}

/// The `redis+cluster://` URL of REDIS_CLUSTER_NODES and REDIS_PASSWORD.
pub(super) fn url_of(nodes: &str, password: Option<&str>) -> String {
    let auth = match password {
        Some(p) => format!(":{}@", utf8_percent_encode(p, NON_ALPHANUMERIC)),
        None => String::new(),
    };
    let nodes: Vec<&str> = nodes.split(',').map(str::trim).collect();
    format!("{CLUSTER_SCHEME}{auth}{}", nodes.join(","))
}

impl ClusterAddress {
    /// Each node as a `redis://` URL with the credentials, for the
    /// `redis` crate (holds the password: never log it).
    pub(crate) fn node_urls(&self) -> Vec<String> {
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let auth = match (&self.username, &self.password) {
            (None, None) => String::new(),
            (user, password) => format!(
                "{}:{}@",
                user.as_deref().map(enc).unwrap_or_default(),
                password.as_deref().map(enc).unwrap_or_default()
            ),
        };
        self.nodes
            .iter()
            .map(|(host, port)| {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                format!("redis://{auth}{host}:{port}")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, u16)]) -> Vec<(String, u16)> {
        list.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect()
    }

    #[test]
    fn the_original_list_and_the_url_give_the_same_nodes() {
        let list = parse_nodes(" redis-a:7000, 10.0.0.2:7001,[::1]:7002 ,").unwrap();
        assert_eq!(
            list,
            nodes(&[("redis-a", 7000), ("10.0.0.2", 7001), ("::1", 7002)])
        );
        let url = url_of("redis-a:7000, 10.0.0.2:7001", Some("p@ss word"));
        assert_eq!(
            url,
            "redis+cluster://:p%40ss%20word@redis-a:7000,10.0.0.2:7001"
        );
        let a = parse_url(&url).unwrap().unwrap();
        assert_eq!(a.nodes, nodes(&[("redis-a", 7000), ("10.0.0.2", 7001)]));
        assert_eq!(a.username, None);
        assert_eq!(a.password.as_deref(), Some("p@ss word"));
        assert_eq!(
            a.node_urls(),
            [
                "redis://:p%40ss%20word@redis-a:7000",
                "redis://:p%40ss%20word@10.0.0.2:7001"
            ]
        );
        let b = parse_url("redis+cluster://app:s3cret@h:1,[::1]:2/0")
            .unwrap()
            .unwrap();
        assert_eq!(b.username.as_deref(), Some("app"));
        assert_eq!(b.node_urls()[1], "redis://app:s3cret@[::1]:2");
        assert_eq!(parse_url("redis://h:6379/0"), None, "not a cluster URL");
    }

    #[test]
    fn nonsense_is_refused_with_what_is_wrong() {
        use ClusterAddressError as E;
        assert_eq!(parse_nodes(""), Err(E::NoNode));
        assert_eq!(parse_nodes(" , "), Err(E::NoNode));
        assert_eq!(parse_nodes("h"), Err(E::NotHostPort("h".into())));
        assert_eq!(parse_nodes(":7000"), Err(E::NotHostPort(":7000".into())));
        assert_eq!(
            parse_nodes("::1:7000"),
            Err(E::NotHostPort("::1:7000".into()))
        );
        assert_eq!(parse_nodes("h:0"), Err(E::BadPort("h:0".into())));
        assert_eq!(parse_nodes("h:70000"), Err(E::BadPort("h:70000".into())));
        assert_eq!(parse_nodes("h:x"), Err(E::BadPort("h:x".into())));
        assert_eq!(parse_nodes("h:1,h:1"), Err(E::Duplicate("h:1".into())));
        let url = |u: &str| parse_url(u).unwrap();
        assert_eq!(url("redis+cluster://h:1/2"), Err(E::Database("2".into())));
        assert_eq!(url("redis+cluster://h:1?x=1"), Err(E::Query));
        assert_eq!(url("redis+cluster://:%ff@h:1"), Err(E::Encoding));
        assert_eq!(url("redis+cluster://:pw@"), Err(E::NoNode));
        // The password is never in a message.
        let e = url("redis+cluster://:hunter2@h:1,h:1").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
