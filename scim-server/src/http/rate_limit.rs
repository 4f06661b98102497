//! Rate limits per source address: failed authentications, and the unauthenticated one-click
//! link routes (`[rate_limit]` in the configuration, `crate::config::RateLimitConfig`).
//!
//! Each limit is a token bucket per address holding `per_minute` tokens and refilled evenly over
//! a minute, so a burst of `per_minute` is allowed and then one request every `60/per_minute`
//! seconds. The address is the TCP peer's, or, when the peer is one of `[http] trusted_proxies`,
//! the client address it forwards (`X-Forwarded-For`; see `http::forwarded`): behind a proxy
//! that is not listed every client shares the proxy's bucket. Memory is bounded: at most `max_tracked` addresses per limit; a new address past that
//! first drops the buckets that have refilled (they carry no state), then the least recently
//! seen one. In-house rather than `governor`: two buckets, a clock tests move, and eviction by
//! age are about a hundred lines, and `governor`'s keyed limiter does not bound its key count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::clock::{Clock, SystemClock};
use crate::config::RateLimitConfig;

/// One limit: a token bucket per address.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    max_tracked: usize,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    /// How many buckets `buckets` holds, readable without its lock: while none, every address
    /// has its tokens, and [`RateLimiter::check`] (on every request) answers without the clock,
    /// the lock or hashing.
    tracked: AtomicUsize,
    /// The minute (since the epoch) of the last pruning of full buckets in [`RateLimiter::check`].
    pruned_minute: AtomicI64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was last brought up to date (also: when the address was last seen).
    at: DateTime<Utc>,
}

impl RateLimiter {
    /// `per_minute == 0` turns the limit off.
    pub fn new(per_minute: u32, max_tracked: usize, clock: Arc<dyn Clock>) -> Self {
        RateLimiter {
            per_minute,
            max_tracked: max_tracked.max(1),
            clock,
            buckets: Mutex::new(HashMap::new()),
            tracked: AtomicUsize::new(0),
            pruned_minute: AtomicI64::new(0),
        }
    }

    fn capacity(&self) -> f64 {
        f64::from(self.per_minute)
    }

    /// The bucket's tokens at `now` (refilled since it was last updated).
    fn refilled(&self, b: &Bucket, now: DateTime<Utc>) -> f64 {
        let elapsed_min = (now - b.at).num_milliseconds().max(0) as f64 / 60_000.0;
        (b.tokens + elapsed_min * self.capacity()).min(self.capacity())
    }

    /// Seconds until the bucket holding `tokens` has one whole token (at least 1).
    fn wait_secs(&self, tokens: f64) -> u64 {
        let missing = (1.0 - tokens).max(0.0);
        ((missing * 60.0 / self.capacity()).ceil() as u64).max(1)
    }

    /// Whether `ip` has a token left, without spending it: `Err(seconds to wait)` when not.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.per_minute == 0 || self.tracked.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Full buckets carry no state: dropped, so that once failures stop the map empties and
        // checks take the fast path again. This address's own at once, all at most once a
        // minute (the time a bucket takes to refill).
        let minute = now.timestamp() / 60;
        if self.pruned_minute.swap(minute, Ordering::Relaxed) != minute {
            buckets.retain(|_, b| self.refilled(b, now) < self.capacity());
        }
        let answer = match buckets.get(&ip).map(|b| self.refilled(b, now)) {
            Some(tokens) if tokens >= self.capacity() => {
                buckets.remove(&ip);
                Ok(())
            }
            Some(tokens) if tokens < 1.0 => Err(self.wait_secs(tokens)),
            _ => Ok(()),
        };
        self.tracked.store(buckets.len(), Ordering::Release);
        answer
    }

    /// Spends one token of `ip`: `Err(seconds to wait)` when there was none (nothing is spent).
    pub fn take(&self, ip: IpAddr) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(&ip) && buckets.len() >= self.max_tracked {
            self.evict(&mut buckets, now);
        }
        let fresh = Bucket {
            tokens: self.capacity(),
            at: now,
        };
        let bucket = buckets.entry(ip).or_insert(fresh);
        let tokens = self.refilled(bucket, now);
        bucket.at = now;
        let spent = if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(self.wait_secs(tokens))
        };
        self.tracked.store(buckets.len(), Ordering::Release);
        spent
    }

    /// Makes room for one address: drops full buckets, else the least recently seen one.
    fn evict(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: DateTime<Utc>) {
        buckets.retain(|_, b| self.refilled(b, now) < self.capacity());
        if buckets.len() >= self.max_tracked {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(ip, _)| *ip) {
                buckets.remove(&oldest);
            }
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The server's limits.
#[derive(Debug)]
pub struct RateLimits {
    /// Spent by each 401; while empty, requests needing authentication are refused.
    pub failed_auth: RateLimiter,
    /// Spent by each request to `/admin/v1/links/…`.
    pub links: RateLimiter,
}

impl RateLimits {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    pub fn with_clock(cfg: &RateLimitConfig, clock: Arc<dyn Clock>) -> Self {
        RateLimits {
            failed_auth: RateLimiter::new(
                cfg.failed_auth_per_minute,
                cfg.max_tracked_addresses,
                clock.clone(),
            ),
            links: RateLimiter::new(cfg.links_per_minute, cfg.max_tracked_addresses, clock),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use chrono::Duration;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    fn limiter(per_minute: u32, max: usize) -> (RateLimiter, TestClock) {
        let clock = TestClock::new(Utc::now());
        (
            RateLimiter::new(per_minute, max, Arc::new(clock.clone())),
            clock,
        )
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let (l, clock) = limiter(3, 10);
        for _ in 0..3 {
            assert_eq!(l.check(ip(1)), Ok(()));
            assert_eq!(l.take(ip(1)), Ok(()));
        }
        // Empty: one token comes back every 20 seconds.
        assert_eq!(l.check(ip(1)), Err(20));
        assert_eq!(l.take(ip(1)), Err(20));
        // Other addresses have their own bucket.
        assert_eq!(l.take(ip(2)), Ok(()));
        clock.advance(Duration::seconds(15));
        assert_eq!(l.take(ip(1)), Err(5));
        clock.advance(Duration::seconds(5));
        assert_eq!(l.take(ip(1)), Ok(()));
        assert_eq!(l.check(ip(1)), Err(20));
        // A full minute refills the whole bucket, not more.
        clock.advance(Duration::minutes(10));
        for _ in 0..3 {
            assert_eq!(l.take(ip(1)), Ok(()));
        }
        assert!(l.take(ip(1)).is_err());
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let (l, _) = limiter(0, 10);
        for _ in 0..1000 {
            assert_eq!(l.take(ip(1)), Ok(()));
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn memory_is_bounded_by_evicting_refilled_then_oldest() {
        let (l, clock) = limiter(2, 3);
        for n in 1..=3 {
            l.take(ip(n)).ok();
            l.take(ip(n)).ok();
            clock.advance(Duration::seconds(1));
        }
        assert_eq!(l.tracked(), 3);
        // All three are empty: the oldest (1) goes.
        l.take(ip(4)).ok();
        assert_eq!(l.tracked(), 3);
        assert_eq!(l.check(ip(1)), Ok(()), "forgotten");
        assert!(l.check(ip(2)).is_err(), "still limited");
        // After a minute every bucket has refilled: they are dropped first, and 4 stays.
        clock.advance(Duration::seconds(59));
        l.take(ip(4)).ok();
        l.take(ip(4)).ok();
        l.take(ip(5)).ok();
        assert_eq!(l.tracked(), 2);
        assert!(l.check(ip(4)).is_err());
    }

    /// Checks forget refilled buckets (the address's own at once, the others once a minute),
    /// so that after failures stop every check takes the fast path again.
    #[test]
    fn checks_forget_refilled_buckets() {
        let (l, clock) = limiter(3, 10);
        l.take(ip(1)).ok();
        l.take(ip(2)).ok();
        l.take(ip(2)).ok();
        assert_eq!(l.check(ip(1)), Ok(()));
        assert_eq!(l.tracked(), 2);
        // 1 has refilled after 20 s, 2 not yet: 1's own check drops it.
        clock.advance(Duration::seconds(20));
        assert_eq!(l.check(ip(1)), Ok(()));
        assert_eq!(l.tracked(), 1);
        // A minute later a check from anywhere drops 2's full bucket.
        clock.advance(Duration::seconds(61));
        assert_eq!(l.check(ip(9)), Ok(()));
        assert_eq!(l.tracked(), 0);
        // The limit still holds afterwards.
        for _ in 0..3 {
            l.take(ip(1)).ok();
        }
        assert_eq!(l.check(ip(1)), Err(20));
    }
}
