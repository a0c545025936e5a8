//! Failed authentications cost the caller: each client address has a small token bucket
//! that every failure drains; an empty bucket refuses further attempts (429) until it
//! refills. Successful requests cost nothing.
//!
//! The map of buckets is bounded: when it is full, buckets that have refilled are
//! forgotten first (they hold no state worth keeping), and if none has, the whole map is
//! cleared. An attacker with more addresses than the map holds can reset it; such an
//! attacker has the connection limits and the search space of a 256-bit key against it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may make in a burst.
pub const BURST: f64 = 10.0;
/// Failures per second an address regains.
pub const REFILL_PER_SEC: f64 = 0.5;
/// Most addresses tracked.
pub const MAX_ADDRESSES: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> f64 {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + secs * REFILL_PER_SEC).min(BURST)
    }
}

/// Per-address buckets of authentication failures.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureLimiter {
    pub fn new() -> FailureLimiter {
        FailureLimiter::default()
    }

    /// `Err(retry_after)` if `ip` has no failures left now.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Ok(buckets) = self.buckets.lock() else {
            // A poisoned map limits nobody; the rest of authentication still holds.
            return Ok(());
        };
        match buckets.get(&ip) {
            Some(b) if b.refilled(now) < 1.0 => {
                let missing = 1.0 - b.refilled(now);
                Err(Duration::from_secs_f64(missing / REFILL_PER_SEC).max(Duration::from_secs(1)))
            }
            _ => Ok(()),
        }
    }

    /// Takes one token for a failure of `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| b.refilled(now) < BURST);
            if buckets.len() >= MAX_ADDRESSES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let tokens = bucket.refilled(now);
        *bucket = Bucket {
            tokens: (tokens - 1.0).max(0.0),
            at: now,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_drain_one_address_only_and_refill() {
        let l = FailureLimiter::new();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..10 {
            assert!(l.check(a, t0).is_ok());
            l.failed(a, t0);
        }
        let retry = l.check(a, t0).unwrap_err();
        assert_eq!(retry, Duration::from_secs(2));
        assert!(l.check(b, t0).is_ok(), "another address is not limited");
        assert!(l.check(a, t0 + Duration::from_secs(2)).is_ok());
    }

    #[test]
    fn the_map_stays_bounded() {
        let l = FailureLimiter::new();
        let t0 = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            l.failed(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(l.buckets.lock().unwrap().len() <= MAX_ADDRESSES);
    }
}
