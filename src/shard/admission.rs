//! Admission: the process-wide connection limit, the per-IP limit and the
//! per-IP rate of new connections, checked once per accepted connection
//! (never on the message path).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::Mutex;

/// How many rate checks between two sweeps of the rate limiter's idle
/// addresses: its map holds an entry per address seen within a burst's
/// refill time, and the sweep keeps an address spread from growing it.
const SWEEP_EVERY: usize = 1024;

pub(crate) struct Admission {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// New connections per second from one address, with a burst.
    rate: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicUsize,
}

/// The per-IP rate of new connections (`WS_CONNECTION_RATE_PER_IP`, and
/// `WS_CONNECTION_BURST_PER_IP` at once).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionRate {
    pub per_sec: u32,
    pub burst: u32,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turnaway {
    ServerFull,
    IpFull,
    /// New connections from this address come too fast; retry after this
    /// many whole seconds.
    TooFast {
        retry_after_secs: u32,
    },
}

impl Turnaway {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::ServerFull => "server at its connection limit (WS_MAX_CONNECTIONS)",
            Self::IpFull => "too many connections from this address (WS_MAX_CONNECTIONS_PER_IP)",
            Self::TooFast { .. } => {
                "new connections from this address come too fast (WS_CONNECTION_RATE_PER_IP)"
            }
        }
    }

    /// The label it is counted and logged under.
    pub(crate) fn reason(self) -> crate::metrics::Refused {
        use crate::metrics::Refused;
        match self {
            Self::ServerFull => Refused::ServerFull,
            Self::IpFull => Refused::IpFull,
            Self::TooFast { .. } => Refused::IpRate,
        }
    }

    /// The HTTP answer: 429 RATE_LIMITED for the rate (the client should
    /// slow down), 503 UNAVAILABLE for the caps; both with `Retry-After`.
    pub(crate) fn response(self) -> crate::transport::Response {
        let (status, code, retry) = match self {
            Self::TooFast { retry_after_secs } => (429, "RATE_LIMITED", retry_after_secs),
            Self::ServerFull | Self::IpFull => (503, "UNAVAILABLE", 1),
        };
        crate::transport::Response::error(status, code, self.message()).retry_after(retry)
    }
}

/// Holds one admitted connection's place; gives it back on drop.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_ip: usize, rate: ConnectionRate) -> Arc<Self> {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(n(rate.per_sec)).allow_burst(n(rate.burst));
        Arc::new(Self {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            rate: DefaultKeyedRateLimiter::hashmap(quota),
            checks: AtomicUsize::new(0),
        })
    }

    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Turnaway> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Turnaway::ServerFull);
        }
        if let Err(refusal) = self.check_rate(ip) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(refusal);
        }
        let mut per_ip = self.per_ip.lock();
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Turnaway::IpFull);
        }
        *n += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip,
        })
    }

    /// Takes one of `ip`'s new-connection tokens. A connection then turned
    /// away for the per-IP cap has taken one too: a client retrying in a
    /// tight loop is slowed down by the rate as well.
    fn check_rate(&self, ip: IpAddr) -> Result<(), Turnaway> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.rate.retain_recent();
            self.rate.shrink_to_fit();
        }
        self.rate.check_key(&ip).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Turnaway::TooFast {
                retry_after_secs: whole_secs(wait),
            }
        })
    }

    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// A wait in whole seconds for `Retry-After`, rounded up, at least 1.
fn whole_secs(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut per_ip = self.admission.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNLIMITED: ConnectionRate = ConnectionRate {
        per_sec: 1_000_000,
        burst: 1_000_000,
    };

    #[test]
    fn limits_total_and_per_ip_and_releases() {
        let a = Admission::new(3, 2, UNLIMITED);
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t1 = a.admit(x).unwrap();
        let _t2 = a.admit(x).unwrap();
        assert_eq!(a.admit(x).err(), Some(Turnaway::IpFull));
        let _t3 = a.admit(y).unwrap();
        assert_eq!(a.admit(y).err(), Some(Turnaway::ServerFull));
        drop(t1);
        assert_eq!(a.active(), 2);
        assert!(a.admit(x).is_ok());
    }

    #[test]
    fn limits_the_rate_of_new_connections_per_ip() {
        let a = Admission::new(
            100,
            100,
            ConnectionRate {
                per_sec: 1,
                burst: 3,
            },
        );
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // Closed at once, as in the attack: the rate counts openings.
        for _ in 0..3 {
            drop(a.admit(x).unwrap());
        }
        let refusal = a.admit(x).err().unwrap();
        assert_eq!(
            refusal,
            Turnaway::TooFast {
                retry_after_secs: 1
            }
        );
        let r = refusal.response();
        assert_eq!((r.status, r.retry_after), (429, Some(1)));
        assert!(r.body.contains("RATE_LIMITED"), "{}", r.body);
        // Another address has its own budget, and refusals hold no place.
        let _t = a.admit(y).unwrap();
        assert_eq!(a.active(), 1);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        assert_eq!(whole_secs(Duration::ZERO), 1);
        assert_eq!(whole_secs(Duration::from_millis(20)), 1);
        assert_eq!(whole_secs(Duration::from_millis(1001)), 2);
    }
}
