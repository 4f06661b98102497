//! Stored API tokens as last read, kept for [`TokenCache::TTL`] so a busy client's requests do
//! not each read the token table (one database round trip, and on SQLite a hop to the blocking
//! pool, per request). The record is cached, not the verdict: the hash, the expiry and the
//! scopes are still checked on every request against it. A revocation (`scimhub token revoke`,
//! from any process or node) is seen once the entry is older than the TTL, so it takes effect on
//! every node within a second.
//!
//! Only tokens that exist are cached, so unknown prefixes (guessing, scanning) cannot fill the
//! map; it is cleared of stale entries when it grows past [`TokenCache::MAX_ENTRIES`] (tokens are
//! issued by operators, so it stays small).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::TokenRecord;

/// Token records by prefix, each with when it was read.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (TokenRecord, Instant)>>,
}

impl TokenCache {
    /// How long a read record stands in for the table: the longest a revocation waits.
    pub const TTL: Duration = Duration::from_secs(1);
    /// Past this many entries, stale ones are dropped (and, if none is stale, all).
    pub const MAX_ENTRIES: usize = 10_000;

    /// The record of `prefix` if it was read less than [`Self::TTL`] before `now`.
    pub fn get(&self, prefix: &str, now: Instant) -> Option<TokenRecord> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(prefix)
            .filter(|(_, read)| now.saturating_duration_since(*read) < Self::TTL)
            .map(|(record, _)| record.clone())
    }

    /// Remembers `record` as read at `now`.
    pub fn put(&self, prefix: &str, record: TokenRecord, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(prefix) {
            entries.retain(|_, (_, read)| now.saturating_duration_since(*read) < Self::TTL);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(prefix.to_string(), (record, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revoked: bool) -> TokenRecord {
        TokenRecord {
            id: "t1".into(),
            name: "okta".into(),
            hash: "h".into(),
            scopes: Vec::new(),
            revoked,
            user_id: None,
            expires: None,
        }
    }

    #[test]
    fn a_record_stands_for_the_ttl_then_is_read_again() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        assert!(cache.get("shub_abc", t0).is_none());
        cache.put("shub_abc", record(false), t0);
        let hit = cache.get("shub_abc", t0 + Duration::from_millis(500));
        assert!(hit.is_some_and(|r| !r.revoked));
        // At the TTL the entry no longer answers: the caller reads the table (and so sees a
        // revocation made meanwhile).
        assert!(cache.get("shub_abc", t0 + TokenCache::TTL).is_none());
        cache.put("shub_abc", record(true), t0 + TokenCache::TTL);
        assert!(cache
            .get("shub_abc", t0 + TokenCache::TTL)
            .is_some_and(|r| r.revoked));
    }

    #[test]
    fn the_map_stays_bounded() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        for i in 0..TokenCache::MAX_ENTRIES + 5 {
            cache.put(&format!("p{i}"), record(false), t0);
        }
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX);
        assert!(len <= TokenCache::MAX_ENTRIES, "{len}");
        // The newest entry is always kept.
        let last = format!("p{}", TokenCache::MAX_ENTRIES + 4);
        assert!(cache.get(&last, t0).is_some());
    }
}
