//! When each API token was last used, recorded cheaply: the middleware asks [`TokenUsage::due`]
//! after a successful check, and writes `last_used` only when this node has not written it for
//! that token within [`TokenUsage::GRANULARITY`]. A busy token costs one small write a minute,
//! not one per request; the write itself is also conditional in the store, so several nodes
//! together still write about once a minute per token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-token time of the last `last_used` write by this node.
#[derive(Debug, Default)]
pub struct TokenUsage {
    written: Mutex<HashMap<String, Instant>>,
}

impl TokenUsage {
    /// How precise `last_used` is.
    pub const GRANULARITY: Duration = Duration::from_secs(60);

    /// Whether `last_used` of token `id` should be written at `now`; when it should, `now` is
    /// recorded as the last write. The map holds one entry per token that authenticated on this
    /// node (tokens are issued by operators, so it stays small); entries older than the
    /// granularity are dropped when it grows past 10,000.
    pub fn due(&self, id: &str, now: Instant) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = written.get(id) {
            if now.saturating_duration_since(*last) < Self::GRANULARITY {
                return false;
            }
        }
        if written.len() >= 10_000 {
            written.retain(|_, t| now.saturating_duration_since(*t) < Self::GRANULARITY);
        }
        written.insert(id.to_string(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_write_per_token_per_minute() {
        let u = TokenUsage::default();
        let t0 = Instant::now();
        assert!(u.due("a", t0));
        assert!(!u.due("a", t0 + Duration::from_secs(59)));
        assert!(u.due("b", t0 + Duration::from_secs(1)));
        assert!(u.due("a", t0 + Duration::from_secs(60)));
        assert!(!u.due("a", t0 + Duration::from_secs(61)));
    }
}
