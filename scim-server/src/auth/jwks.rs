//! The IdP's JSON Web Key Set (`[jwt] jwks_url`), fetched over HTTPS and cached.
//!
//! * A fetched set is kept for the response's `Cache-Control: max-age`, bounded by
//!   `jwks_min_cache_secs` and `jwks_max_cache_secs` (the maximum when there is no `max-age`).
//! * A fetch starts when the set is stale or a token names a `kid` the set does not hold, and at
//!   most once per `jwks_refresh_interval_secs` (a flood of tokens with made-up `kid`s costs the
//!   IdP one request per interval). Only one fetch runs at a time; the others wait for it.
//! * A request waits for a fetch at most `jwks_timeout_ms`; the fetch goes on in the background
//!   and the request is answered with the keys at hand, so a slow IdP delays a request by that
//!   bound at most. No matching key means 401 (fail closed).
//! * A failed fetch keeps the last good set (logged), so an IdP outage does not lock out tokens
//!   signed with keys already known; a successful fetch replaces the set, so a key the IdP
//!   removed is refused once the cached set has expired and been fetched again.
//! * Only asymmetric signature keys are taken (RSA → RS256, EC P-256 → ES256, or the key's
//!   `alg` when it names one of those): a key set never supplies an HMAC secret.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::JwtConfig;

/// One verification key from the set.
#[derive(Clone)]
pub struct JwksKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for JwksKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Why a fetch failed (logged, never shown to a client).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS from {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error("the JWKS at {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("the JWKS at {url} is not a JSON key set: {reason}")]
    Parse { url: String, reason: String },
}

/// Cache lifetime bounds and the refresh rate limit.
#[derive(Debug, Clone, Copy)]
pub struct JwksTiming {
    pub min_cache: Duration,
    pub max_cache: Duration,
    pub refresh_interval: Duration,
    pub wait: Duration,
}

impl JwksTiming {
    pub fn from_config(cfg: &JwtConfig) -> Self {
        let min_cache = Duration::from_secs(cfg.jwks_min_cache_secs);
        JwksTiming {
            min_cache,
            max_cache: Duration::from_secs(cfg.jwks_max_cache_secs).max(min_cache),
            refresh_interval: Duration::from_secs(cfg.jwks_refresh_interval_secs),
            wait: Duration::from_millis(cfg.jwks_timeout_ms),
        }
    }

    /// How long a set fetched with this `Cache-Control` value is kept.
    pub fn lifetime(&self, cache_control: Option<&str>) -> Duration {
        max_age(cache_control)
            .map(Duration::from_secs)
            .unwrap_or(self.max_cache)
            .clamp(self.min_cache, self.max_cache)
    }
}

/// `max-age` of a `Cache-Control` header (`no-cache`/`no-store` count as 0).
pub fn max_age(cache_control: Option<&str>) -> Option<u64> {
    let mut age = None;
    for directive in cache_control?.split(',') {
        let directive = directive.trim();
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        let name = name.trim().to_ascii_lowercase();
        match name.as_str() {
            "max-age" => age = value.trim().trim_matches('"').parse().ok().or(age),
            "no-cache" | "no-store" => return Some(0),
            _ => {}
        }
    }
    age
}

/// The verification keys of a JWKS document; keys of other kinds or uses are skipped.
pub fn parse_key_set(doc: &Value) -> Result<Vec<JwksKey>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    let mut out = Vec::new();
    for raw in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            (AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_), Some(alg)) => {
                match Algorithm::try_from(alg) {
                    Ok(a @ (Algorithm::RS256 | Algorithm::ES256)) => a,
                    _ => continue,
                }
            }
            _ => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        out.push(JwksKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    Ok(out)
}

struct Cache {
    keys: Arc<Vec<JwksKey>>,
    /// Until when the set is fresh; `None` before the first successful fetch.
    fresh_until: Option<Instant>,
    /// When the last fetch started.
    last_fetch: Option<Instant>,
}

struct Inner {
    url: String,
    client: reqwest::Client,
    timing: JwksTiming,
    cache: RwLock<Cache>,
    fetching: AtomicBool,
    /// Counts finished fetches; waiters watch it.
    done: tokio::sync::watch::Sender<u64>,
    fetches: std::sync::atomic::AtomicU64,
}

/// The cached key set of one `jwks_url`; cheap to clone.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl JwksCache {
    pub fn new(url: &str, timing: JwksTiming) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| anyhow::anyhow!("[jwt] jwks_url {url:?} is not a URL: {e}"))?;
        let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        anyhow::ensure!(
            parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback),
            "[jwt] jwks_url must be https:// (plain http only on loopback)"
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let (done, _) = tokio::sync::watch::channel(0);
        Ok(JwksCache {
            inner: Arc::new(Inner {
                url: url.to_string(),
                client,
                timing,
                cache: RwLock::new(Cache {
                    keys: Arc::new(Vec::new()),
                    fresh_until: None,
                    last_fetch: None,
                }),
                fetching: AtomicBool::new(false),
                done,
                fetches: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// How many fetches were started (tests, logs).
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// The keys for a token with this `kid`, fetching first when the set is stale or does not
    /// hold the `kid` (within the rate limit, waiting at most the configured bound).
    pub async fn keys_for(&self, kid: Option<&str>) -> Arc<Vec<JwksKey>> {
        let (keys, stale) = {
            let c = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
            (
                c.keys.clone(),
                c.fresh_until.is_none_or(|t| t <= Instant::now()),
            )
        };
        let unknown = kid.is_some_and(|kid| !keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        if !(stale || unknown) {
            return keys;
        }
        // Read again whether or not a fetch ran: one may have finished meanwhile.
        self.refresh().await;
        self.inner
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .clone()
    }

    /// Joins the fetch in flight, or starts one when none ran in the last refresh interval,
    /// and waits for it at most the bound.
    async fn refresh(&self) {
        let mut done = self.inner.done.subscribe();
        let seen = *done.borrow_and_update();
        let started = {
            // Under the cache lock, so two callers cannot both see the interval as over.
            let mut c = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
            if self.inner.fetching.load(Ordering::Acquire) {
                false
            } else {
                let now = Instant::now();
                let allowed = c
                    .last_fetch
                    .is_none_or(|t| now >= t + self.inner.timing.refresh_interval);
                if !allowed {
                    return;
                }
                c.last_fetch = Some(now);
                self.inner.fetching.store(true, Ordering::Release);
                true
            }
        };
        if started {
            self.inner.fetches.fetch_add(1, Ordering::Relaxed);
            let me = self.clone();
            tokio::spawn(async move {
                if let Err(e) = me.fetch().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; the keys known so far stay in force");
                }
                // Cleared under the cache lock, so a caller never sees "not fetching" before
                // the finished count moved on.
                {
                    let _c = me.inner.cache.write().unwrap_or_else(|p| p.into_inner());
                    me.inner.fetching.store(false, Ordering::Release);
                    me.inner.done.send_modify(|n| *n += 1);
                }
            });
        }
        let _ = tokio::time::timeout(self.inner.timing.wait, done.wait_for(|n| *n > seen)).await;
    }

    async fn fetch(&self) -> Result<(), JwksError> {
        let url = &self.inner.url;
        let resp = self
            .inner
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|source| JwksError::Fetch {
                url: url.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(JwksError::Status {
                url: url.clone(),
                status: resp.status().as_u16(),
            });
        }
        let cache_control = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let doc: Value = resp.json().await.map_err(|e| JwksError::Parse {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let keys = parse_key_set(&doc).map_err(|reason| JwksError::Parse {
            url: url.clone(),
            reason,
        })?;
        let lifetime = self.inner.timing.lifetime(cache_control.as_deref());
        tracing::info!(
            url = %url,
            keys = keys.len(),
            kids = ?keys.iter().filter_map(|k| k.kid.as_deref()).collect::<Vec<_>>(),
            cache_secs = lifetime.as_secs(),
            "JWKS fetched"
        );
        let mut c = self.inner.cache.write().unwrap_or_else(|p| p.into_inner());
        c.keys = Arc::new(keys);
        c.fresh_until = Some(Instant::now() + lifetime);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_bounded() {
        assert_eq!(max_age(Some("public, max-age=300")), Some(300));
        assert_eq!(max_age(Some("max-age=\"60\", must-revalidate")), Some(60));
        assert_eq!(max_age(Some("no-store")), Some(0));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(None), None);
        let t = JwksTiming {
            min_cache: Duration::from_secs(60),
            max_cache: Duration::from_secs(3600),
            refresh_interval: Duration::from_secs(30),
            wait: Duration::from_secs(2),
        };
        assert_eq!(t.lifetime(Some("max-age=5")), Duration::from_secs(60));
        assert_eq!(t.lifetime(Some("max-age=600")), Duration::from_secs(600));
        assert_eq!(
            t.lifetime(Some("max-age=999999")),
            Duration::from_secs(3600)
        );
        assert_eq!(t.lifetime(None), Duration::from_secs(3600));
    }

    #[test]
    fn only_asymmetric_signature_keys_are_taken() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"}
        ]});
        let keys = parse_key_set(&doc).expect("test value");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig"));
        assert_eq!(keys[0].algorithm, Algorithm::ES256);
        assert!(parse_key_set(&serde_json::json!({"nokeys": 1})).is_err());
    }

    /// A JWKS endpoint on 127.0.0.1:0 answering every request with `body`; counts requests.
    async fn endpoint(body: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf).await;
                    // Slow enough that concurrent callers overlap one fetch.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         cache-control: max-age=3600\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    const SET: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "sig",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_unknown_kids_share_one_rate_limited_fetch() {
        let (url, hits) = endpoint(SET).await;
        let cache = JwksCache::new(
            &url,
            JwksTiming {
                min_cache: Duration::from_secs(60),
                max_cache: Duration::from_secs(3600),
                refresh_interval: Duration::from_secs(300),
                wait: Duration::from_secs(5),
            },
        )
        .expect("cache");
        let mut tasks = Vec::new();
        for i in 0..20 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move {
                cache.keys_for(Some(&format!("unknown-{i}"))).await.len()
            }));
        }
        for t in tasks {
            // Every caller waited for the one fetch and sees its key.
            assert_eq!(t.await.expect("task"), 1);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(cache.fetches(), 1);
        // The set is fresh and the interval not over: more unknown kids fetch nothing.
        for i in 0..20 {
            assert_eq!(cache.keys_for(Some(&format!("again-{i}"))).await.len(), 1);
        }
        assert_eq!(cache.keys_for(Some("sig")).await.len(), 1);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_fetch_delays_a_request_by_the_wait_bound_only() {
        let (url, hits) = endpoint(SET).await;
        let cache = JwksCache::new(
            &url,
            JwksTiming {
                min_cache: Duration::from_secs(60),
                max_cache: Duration::from_secs(3600),
                refresh_interval: Duration::from_secs(300),
                wait: Duration::from_millis(1),
            },
        )
        .expect("cache");
        // The request gives up waiting with no key (401 for its token) ...
        assert_eq!(cache.keys_for(Some("sig")).await.len(), 0);
        // ... and the fetch completes in the background.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while cache.keys_for(Some("sig")).await.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the fetch never completed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_jwks_url_must_be_https_off_loopback() {
        let t = JwksTiming {
            min_cache: Duration::from_secs(1),
            max_cache: Duration::from_secs(1),
            refresh_interval: Duration::from_secs(1),
            wait: Duration::from_secs(1),
        };
        assert!(JwksCache::new("http://idp.example.com/jwks", t).is_err());
        assert!(JwksCache::new("https://idp.example.com/jwks", t).is_ok());
        assert!(JwksCache::new("http://127.0.0.1:9/jwks", t).is_ok());
    }
}
