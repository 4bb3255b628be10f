//! [`Pace`]: one connection's command rate limiter, shared by everything
//! the client can make the server do: the application's events and the
//! protocol's own namespace CONNECT and DISCONNECT packets (each of which
//! costs a token check at least, and in chat a presence change).
//!
//! It lives on the [`super::Link`], so it lasts as long as the WebSocket
//! connection: a client cannot refill it by leaving and rejoining a
//! namespace. The application sets it at the connection's first CONNECT
//! ([`super::Link::pace_or_init`]); the policy is the same everywhere: a
//! refused packet is answered as refused, and more than `disconnect_after`
//! refusals in a row close the connection ([`super::CloseReason::RateLimited`]).

use std::cell::Cell;
use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// The rates of a [`Pace`] (all configurable: `rate_limit_*`).
#[derive(Debug, Clone, Copy)]
pub struct PaceLimits {
    /// Sustained packets per second.
    pub per_sec: u32,
    /// Packets that may come at once before the sustained rate applies.
    pub burst: u32,
    /// Refusals in a row that are still answered; the next one closes.
    pub disconnect_after: u32,
}

/// What [`Pace::check`] says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: handle it.
    Allowed,
    /// Over the rate: do not handle it, answer that it was refused.
    Refused,
    /// Over the rate once too often in a row: close the connection.
    Exceeded,
}

/// A connection's token bucket (GCRA) and its count of refusals in a row.
pub struct Pace {
    limiter: DefaultDirectRateLimiter,
    refused: Cell<u32>,
    disconnect_after: u32,
}

impl Pace {
    /// `clock` is shared by a shard's connections: creating one calibrates
    /// it, far too slow to do per connection.
    pub fn new(limits: PaceLimits, clock: &DefaultClock) -> Self {
        let n = |v: u32| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(n(limits.per_sec)).allow_burst(n(limits.burst));
        Self {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            refused: Cell::new(0),
            disconnect_after: limits.disconnect_after,
        }
    }

    /// Takes a token for one packet. Any allowed packet resets the count
    /// of refusals.
    pub fn check(&self) -> Verdict {
        if self.limiter.check().is_ok() {
            self.refused.set(0);
            return Verdict::Allowed;
        }
        let n = self.refused.get().saturating_add(1);
        self.refused.set(n);
        if n > self.disconnect_after {
            Verdict::Exceeded
        } else {
            Verdict::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_then_closes_past_the_refusals() {
        let clock = DefaultClock::default();
        let pace = Pace::new(
            PaceLimits {
                per_sec: 1,
                burst: 3,
                disconnect_after: 2,
            },
            &clock,
        );
        let verdicts: Vec<Verdict> = (0..6).map(|_| pace.check()).collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [Allowed, Allowed, Allowed, Refused, Refused, Exceeded]
        );
    }
}
