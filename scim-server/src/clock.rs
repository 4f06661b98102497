//! Where time comes from, and how long to wait before trying again.
//!
//! Logic never calls `Utc::now()` itself: it takes a [`Clock`] (the engine, the workers and the
//! notifier read the one the engine holds), so tests set and move time with [`TestClock`].
//! [`backoff`] is the one retry schedule of the outbox workers and the notification sender.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

/// Where time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set and move.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        TestClock(Arc::new(Mutex::new(at)))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Backoff before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped at `max`, with ±20%
/// jitter so retries of many rows that failed together do not arrive together.
pub fn backoff(base: Duration, max: Duration, attempts: i64) -> Duration {
    let exp = (attempts.clamp(1, 30) - 1).min(20);
    let base = base.num_milliseconds().max(1);
    let capped = base.saturating_mul(1i64 << exp).min(max.num_milliseconds());
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    Duration::milliseconds((capped as f64 * jitter) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let (base, max) = (Duration::seconds(1), Duration::seconds(10));
        for (attempts, nominal) in [(0, 1_000), (1, 1_000), (2, 2_000), (3, 4_000), (9, 10_000)] {
            let got = backoff(base, max, attempts).num_milliseconds();
            assert!(
                (nominal * 8 / 10..=nominal * 12 / 10).contains(&got),
                "attempt {attempts}: {got} ms not within 20% of {nominal}"
            );
        }
    }
}
