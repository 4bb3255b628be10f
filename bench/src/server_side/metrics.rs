//! The store writer's commits from an instance's Prometheus text
//! (`GET /metrics`): `chat_store_commit_latency_seconds_count` is one per
//! commit, `chat_store_batch_size_sum` the messages in them. Each label set
//! (a sequencing partition, when the server labels them) is a series of
//! its own; without labels there is one, the writer's total.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const COMMITS: &str = "chat_store_commit_latency_seconds_count";
const BATCHED: &str = "chat_store_batch_size_sum";
const TIMEOUT: Duration = Duration::from_secs(5);

/// The series of interest, by metric name and then label set (`{…}`, or
/// empty).
pub type Scrape = BTreeMap<&'static str, BTreeMap<String, f64>>;

/// `GET` the URL (plain HTTP) and keep the writer's series.
pub fn scrape(url: &str) -> Result<Scrape> {
    Ok(parse(&http_get(url)?))
}

/// The writer series in a Prometheus/OpenMetrics text.
pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for name in [COMMITS, BATCHED] {
        let series = out.entry(name).or_default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (labels, value) = match rest.as_bytes().first() {
                Some(b'{') => match rest.find('}') {
                    Some(end) => (&rest[..=end], &rest[end + 1..]),
                    None => continue,
                },
                Some(b' ') => ("", rest),
                _ => continue, // another metric whose name starts the same
            };
            if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse().ok()) {
                series.insert(labels.to_owned(), v);
            }
        }
    }
    out
}

/// One writer series' activity over the run.
pub struct Window {
    pub labels: String,
    pub commits: u64,
    /// Messages in those commits.
    pub messages: u64,
}

impl Window {
    pub fn messages_per_commit(&self) -> Option<f64> {
        (self.commits > 0).then(|| self.messages as f64 / self.commits as f64)
    }

    pub fn json(&self, duration_s: f64) -> Value {
        json!({
            "labels": self.labels, "commits": self.commits,
            "commits_per_s": self.commits as f64 / duration_s.max(1e-9),
            "messages": self.messages,
            "messages_per_commit": self.messages_per_commit(),
        })
    }
}

/// Commits per label set between two scrapes.
pub fn windows(before: &Scrape, after: &Scrape) -> Vec<Window> {
    let empty = BTreeMap::new();
    let get = |s: &Scrape, name, labels: &str| {
        s.get(name)
            .unwrap_or(&empty)
            .get(labels)
            .copied()
            .unwrap_or(0.0)
    };
    let delta =
        |name, labels: &str| (get(after, name, labels) - get(before, name, labels)).max(0.0) as u64;
    after
        .get(COMMITS)
        .unwrap_or(&empty)
        .keys()
        .map(|labels| Window {
            labels: labels.clone(),
            commits: delta(COMMITS, labels),
            messages: delta(BATCHED, labels),
        })
        .collect()
}

/// A blocking HTTP/1.0 GET (so the answer is never chunked); the body of a
/// 200. `url` is `http://host:port/path` or `host:port` (then `/metrics`).
fn http_get(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.contains("://") {
        bail!("{url}: only http:// metrics URLs are read");
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("no address for {host}"))?;
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).with_context(|| url.to_string())?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).with_context(|| url.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{url}: no HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{url}: HTTP {status}");
    }
    Ok(body.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_series_with_and_without_labels() {
        let text = "# TYPE chat_store_commit_latency_seconds histogram\n\
            chat_store_commit_latency_seconds_bucket{le=\"0.001\"} 3\n\
            chat_store_commit_latency_seconds_count 10\n\
            chat_store_commit_latency_seconds_count_other 99\n\
            chat_store_batch_size_sum 250\n\
            chat_store_commit_latency_seconds_count{partition=\"1\"} 4 1700000000\n\
            chat_store_batch_size_sum{partition=\"1\"} 8\n";
        let s = parse(text);
        assert_eq!(s[COMMITS].get(""), Some(&10.0));
        assert_eq!(s[COMMITS].get("{partition=\"1\"}"), Some(&4.0));
        assert_eq!(s[COMMITS].len(), 2);
        let before =
            parse("chat_store_commit_latency_seconds_count 4\nchat_store_batch_size_sum 50\n");
        let w = windows(&before, &s);
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].labels.as_str(), w[0].commits, w[0].messages),
            ("", 6, 200)
        );
        assert_eq!(w[0].json(2.0)["commits_per_s"], 3.0);
        assert_eq!((w[1].commits, w[1].messages_per_commit()), (4, Some(2.0)));
    }
}
