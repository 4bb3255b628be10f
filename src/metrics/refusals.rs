//! Refusals a person can understand: every connection, upgrade or token
//! the server turns away is counted by reason (`chat_refusals_total`) and
//! logged at info, at most one line per reason per shard in each
//! `REFUSAL_LOG_INTERVAL_MS` (a second by default).
//!
//! A flood of refusals (a misconfigured client retrying in a loop, a scan,
//! an attack) must not flood the log: within an interval, the first
//! refusal of a reason is logged and the rest only counted; the next line
//! of that reason says how many were left out (`suppressed`), and the
//! shard's ticker ([`Refusals::flush`]) writes a line for those still
//! unreported once their interval is over. So every refusal is either a
//! line or in a line's `suppressed` count, and the metric has them all.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

use crate::auth::AuthError;

/// Why something was turned away; the label of `chat_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// An upgrade from an `Origin` not in `ALLOWED_ORIGINS` (403).
    Origin,
    /// A request head that is malformed or too large (400, 431).
    BadRequest,
    /// A request to the Socket.IO endpoint that is not a valid Engine.IO
    /// WebSocket upgrade (400, 426).
    BadUpgrade,
    /// `WS_MAX_CONNECTIONS` reached (503).
    ServerFull,
    /// `WS_MAX_CONNECTIONS_PER_IP` reached (503).
    IpFull,
    /// `WS_CONNECTION_RATE_PER_IP` exceeded (429).
    IpRate,
    /// Tokens, on a Socket.IO CONNECT or a REST request: the
    /// `TOKEN_*` codes clients are given, lower-cased.
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    TokenNotYetValid,
    TokenMissingClaim,
    TokenInvalidClaim,
    TokenWrongAlgorithm,
    TokenWrongAudience,
    TokenWrongIssuer,
    /// `gatrix_require_known_users`: a Gatrix CONNECT or REST call whose
    /// user the directory does not know (never synced, or deleted).
    UserUnknown,
    /// The same check when the store could not answer (refused, never
    /// admitted unchecked).
    DirectoryUnavailable,
}

impl Refused {
    /// Every reason, in label order (the index of each counter).
    pub const ALL: [Refused; 17] = [
        Refused::Origin,
        Refused::BadRequest,
        Refused::BadUpgrade,
        Refused::ServerFull,
        Refused::IpFull,
        Refused::IpRate,
        Refused::TokenMissing,
        Refused::TokenInvalid,
        Refused::TokenExpired,
        Refused::TokenNotYetValid,
        Refused::TokenMissingClaim,
        Refused::TokenInvalidClaim,
        Refused::TokenWrongAlgorithm,
        Refused::TokenWrongAudience,
        Refused::TokenWrongIssuer,
        Refused::UserUnknown,
        Refused::DirectoryUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Origin => "origin",
            Refused::BadRequest => "bad_request",
            Refused::BadUpgrade => "bad_upgrade",
            Refused::ServerFull => "server_full",
            Refused::IpFull => "ip_full",
            Refused::IpRate => "ip_rate",
            Refused::TokenMissing => "token_missing",
            Refused::TokenInvalid => "token_invalid",
            Refused::TokenExpired => "token_expired",
            Refused::TokenNotYetValid => "token_not_yet_valid",
            Refused::TokenMissingClaim => "token_missing_claim",
            Refused::TokenInvalidClaim => "token_invalid_claim",
            Refused::TokenWrongAlgorithm => "token_wrong_algorithm",
            Refused::TokenWrongAudience => "token_wrong_audience",
            Refused::TokenWrongIssuer => "token_wrong_issuer",
            Refused::UserUnknown => "user_unknown",
            Refused::DirectoryUnavailable => "directory_unavailable",
        }
    }

    /// The reason for a refused token: the client's `TOKEN_*` code,
    /// lower-cased.
    pub fn token(e: &AuthError) -> Refused {
        let code = e.refusal().reason;
        Refused::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(code))
            .unwrap_or(Refused::TokenInvalid)
    }

    fn index(self) -> usize {
        Refused::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// One shard's refusal counters and log gates. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Refusals {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shard: usize,
    /// Indexed like [`Refused::ALL`].
    counters: Box<[Counter]>,
    gates: Box<[Gate]>,
    /// Intervals are counted from here.
    start: Instant,
    /// At most one line per reason in each; 0: a line for every refusal.
    interval_ms: u64,
}

/// The log gate of one reason.
#[derive(Debug)]
struct Gate {
    /// The interval (since `start`) of the last line, `u64::MAX` for none.
    logged_at: AtomicU64,
    /// Refusals since that line that it did not report.
    suppressed: AtomicU64,
}

impl Refusals {
    /// `counters` in the order of [`Refused::ALL`]; one line a second.
    pub(super) fn new(shard: usize, counters: Vec<Counter>) -> Self {
        Self::with(shard, counters.into_boxed_slice(), 1_000)
    }

    fn with(shard: usize, counters: Box<[Counter]>, interval_ms: u64) -> Self {
        let gates = Refused::ALL
            .iter()
            .map(|_| Gate {
                logged_at: AtomicU64::new(u64::MAX),
                suppressed: AtomicU64::new(0),
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shard,
                counters,
                gates,
                start: Instant::now(),
                interval_ms,
            }),
        }
    }

    /// The same counters, logged at most once per reason in `interval`
    /// (`REFUSAL_LOG_INTERVAL_MS`; zero logs every refusal). Set at the
    /// shard's start, before any refusal.
    pub fn with_interval(&self, interval: std::time::Duration) -> Self {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        Self::with(self.inner.shard, self.inner.counters.clone(), ms)
    }

    /// Counts a refusal and logs it unless a line of the same reason was
    /// written this second. `detail` (called only for a line) says what
    /// was refused and why, for a person; it must not hold a token or
    /// anything secret, and client-given text in it must be escaped.
    pub fn refused(&self, why: Refused, peer: IpAddr, detail: impl FnOnce() -> String) {
        let i = why.index();
        if let Some(c) = self.inner.counters.get(i) {
            c.inc();
        }
        let Some(gate) = self.inner.gates.get(i) else {
            return;
        };
        let now = self.window();
        let last = gate.logged_at.load(Relaxed);
        if self.inner.interval_ms == 0 {
            tracing::info!(
                shard = self.inner.shard,
                reason = %why.as_str(),
                %peer,
                suppressed = 0,
                "refused: {}",
                detail()
            );
        } else if last != now
            && gate
                .logged_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let suppressed = gate.suppressed.swap(0, Relaxed);
            tracing::info!(
                shard = self.inner.shard,
                reason = %why.as_str(),
                %peer,
                suppressed,
                "refused: {}",
                detail()
            );
        } else {
            gate.suppressed.fetch_add(1, Relaxed);
        }
    }

    /// Reports the refusals left out of the log in an interval that is
    /// over and had no line since: called by the shard's ticker, so a flood
    /// that stops is still accounted for in the log.
    pub fn flush(&self) {
        let now = self.window();
        for (why, gate) in Refused::ALL.iter().zip(self.inner.gates.iter()) {
            let last = gate.logged_at.load(Relaxed);
            if last == now || gate.suppressed.load(Relaxed) == 0 {
                continue;
            }
            if gate
                .logged_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
            {
                let suppressed = gate.suppressed.swap(0, Relaxed);
                tracing::info!(
                    shard = self.inner.shard,
                    reason = %why.as_str(),
                    suppressed,
                    "refused: {suppressed} more, not logged one by one"
                );
            }
        }
    }

    /// The current interval's number since `start`.
    fn window(&self) -> u64 {
        let ms = u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        ms.checked_div(self.inner.interval_ms).unwrap_or(ms)
    }
}

/// Client-given text for a log line: at most `max` characters, escaped
/// (quotes, control characters) so it cannot forge a line.
pub(crate) fn quoted(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    let more = if text.chars().nth(max).is_some() {
        "…"
    } else {
        ""
    };
    format!("{cut:?}{more}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals() -> Refusals {
        Refusals::new(0, Refused::ALL.iter().map(|_| Counter::default()).collect())
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_refusal_is_counted_and_lines_are_one_per_second() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let out = out.clone();
                move || out.clone()
            })
            .with_ansi(false)
            .finish();
        let r = refusals();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let started = Instant::now();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                r.refused(Refused::Origin, peer, || "from \"x\"".into());
            }
            r.refused(Refused::IpFull, peer, || "y".into());
        });
        let seconds = started.elapsed().as_secs() + 1;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let origin: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("reason=origin"))
            .collect();
        assert!(
            !origin.is_empty() && origin.len() as u64 <= seconds,
            "{text}"
        );
        let i = Refused::Origin.index();
        assert_eq!(r.inner.counters[i].get(), 1000);
        // Each refusal is a line or counted in a later line (or the next).
        let reported: u64 = origin
            .iter()
            .map(|l| {
                let n = l.split("suppressed=").nth(1).unwrap_or_default();
                n.trim().parse::<u64>().unwrap() + 1
            })
            .sum();
        assert_eq!(reported + r.inner.gates[i].suppressed.load(Relaxed), 1000);
        // Another reason has its own gate.
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("reason=ip_full"))
                .count(),
            1
        );
    }

    #[test]
    fn an_interval_of_zero_logs_every_refusal() {
        let r = refusals().with_interval(std::time::Duration::ZERO);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..10 {
            r.refused(Refused::Origin, peer, || "x".into());
        }
        let i = Refused::Origin.index();
        assert_eq!(r.inner.counters[i].get(), 10);
        assert_eq!(r.inner.gates[i].suppressed.load(Relaxed), 0);
        r.flush();
    }

    #[test]
    fn token_reasons_follow_the_client_codes() {
        assert_eq!(Refused::token(&AuthError::Expired), Refused::TokenExpired);
        assert_eq!(Refused::token(&AuthError::Missing), Refused::TokenMissing);
        assert_eq!(
            Refused::token(&AuthError::MissingClaim("exp")),
            Refused::TokenMissingClaim
        );
        assert_eq!(
            Refused::token(&AuthError::BadSignature),
            Refused::TokenInvalid
        );
        for r in Refused::ALL {
            assert_eq!(Refused::ALL[r.index()], r);
        }
    }

    #[test]
    fn client_text_is_escaped_and_cut() {
        assert_eq!(quoted("a\"b\nc", 10), r#""a\"b\nc""#);
        assert_eq!(quoted("abcdef", 3), "\"abc\"…");
    }
}
