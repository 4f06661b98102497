//! Webhook connector: for a system without a connector, one signed JSON event per operation,
//! POSTed to a configured URL.
//!
//! Signing follows the Stripe/Slack scheme: the sender puts the Unix time in
//! `X-Scimhub-Timestamp` and `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>` in
//! `X-Scimhub-Signature`. A receiver recomputes the MAC over the exact bytes it received, compares
//! in constant time, and rejects timestamps outside its tolerance (replays); [`verify`] does all
//! of that. Each event also carries an `id` (`X-Scimhub-Event-Id`) for de-duplication: it is
//! derived from the hub's operation (the outbox row), so every retry of one operation carries
//! the same id, and distinct operations (even with equal content) distinct ids. A receiver that
//! has already applied an id should answer 2xx again without re-applying it.
//!
//! Delivery: 2xx is success; 408/429/5xx and transport failures are retryable (with Retry-After);
//! other 4xx are permanent. The engine retries; each retry is a new signed delivery with the same
//! id and content but a fresh timestamp (and signature).
//!
//! Event body:
//! ```json
//! {"id": "evt_…", "type": "account.disable", "connector": "hr-legacy",
//!  "occurred_at": "2025-01-01T12:00:00Z", "account": {"key": "jdoe", "id": "42"},
//!  "data": {"enabled": false}}
//! ```
//! Types: `account.create`, `account.update`, `account.enable`, `account.disable`,
//! `account.delete`, `entitlement.grant`, `entitlement.revoke`, `account.revoke_sessions`,
//! `account.revoke_credentials`, `account.transfer_ownership`. For `account.create` a receiver may
//! answer `{"id": "…"}` to tell the hub the account's id in its system.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::connector::{Capabilities, Capability, Connector};
use crate::error::{ConnectorError, ErrorKind};
use crate::http::{self, HttpClient};
use crate::model::{AccountRef, AccountSpec, Entitlement};
use crate::operation;
use crate::secret::{Secret, SecretRef};

pub const TIMESTAMP_HEADER: &str = "X-Scimhub-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Scimhub-Signature";
pub const EVENT_ID_HEADER: &str = "X-Scimhub-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "X-Scimhub-Event-Type";

type HmacSha256 = Hmac<Sha256>;

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_kinds() -> Vec<String> {
    vec!["group".into(), "role".into()]
}

/// Settings of one webhook connector instance (the signing secret is passed separately).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Entitlement kinds the receiver understands (default `group`, `role`).
    #[serde(default = "default_kinds")]
    pub entitlement_kinds: Vec<String>,
}

impl WebhookSettings {
    pub fn new(url: impl Into<String>) -> Self {
        WebhookSettings {
            url: url.into(),
            timeout_ms: default_timeout_ms(),
            entitlement_kinds: default_kinds(),
        }
    }
}

#[derive(Debug)]
pub struct WebhookConnector {
    name: String,
    settings: WebhookSettings,
    url: Url,
    http: HttpClient,
    secret: Secret,
    counter: AtomicU64,
}

/// The `X-Scimhub-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &Secret, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a receiver rejected a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing or malformed timestamp header")]
    BadTimestamp,
    #[error("timestamp outside the tolerance (replay?)")]
    Stale,
    #[error("signature does not match")]
    BadSignature,
}

/// Receiver-side check: the timestamp is within `tolerance` of `now` (Unix seconds) and one of
/// the `v1=` signatures in `signature_header` (comma-separated, for secret rotation) is the
/// HMAC of `timestamp.body`, compared in constant time.
pub fn verify(
    secret: &Secret,
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp_header
        .and_then(|t| t.trim().parse().ok())
        .ok_or(VerifyError::BadTimestamp)?;
    if now.abs_diff(ts) > tolerance.as_secs() {
        return Err(VerifyError::Stale);
    }
    let header = signature_header.ok_or(VerifyError::BadSignature)?;
    for candidate in header.split(',') {
        let Some(hex_sig) = candidate.trim().strip_prefix("v1=") else {
            continue;
        };
        let Ok(sig) = hex::decode(hex_sig) else {
            continue;
        };
        if mac(secret, ts, body).verify_slice(&sig).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::BadSignature)
}

impl WebhookConnector {
    pub fn new(
        name: &str,
        settings: WebhookSettings,
        signing_secret: Secret,
    ) -> Result<Self, ConnectorError> {
        let url = http::parse_base_url(name, "url", &settings.url)?;
        let http = HttpClient::new(name, Duration::from_millis(settings.timeout_ms))?
            .redacting(&signing_secret);
        Ok(WebhookConnector {
            name: name.to_owned(),
            settings,
            url,
            http,
            secret: signing_secret,
            counter: AtomicU64::new(0),
        })
    }

    pub fn from_secret_ref(
        name: &str,
        settings: WebhookSettings,
        signing_secret: &SecretRef,
    ) -> Result<Self, ConnectorError> {
        let secret = signing_secret
            .load()
            .map_err(|e| ConnectorError::permanent(name, e.to_string()))?;
        Self::new(name, settings, secret)
    }

    /// The event id: derived from the operation the worker runs ([`crate::operation`]), so
    /// every retry of one operation carries the same id and receivers can de-duplicate; outside
    /// a worker (direct library use) a fresh one per delivery.
    fn event_id(&self, event_type: &str) -> String {
        let digest = match operation::current() {
            Some(op) => Sha256::new()
                .chain_update(self.name.as_bytes())
                .chain_update([0])
                .chain_update(op.as_bytes())
                .chain_update([0])
                .chain_update(event_type.as_bytes())
                .finalize(),
            None => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let now = chrono::Utc::now();
                Sha256::new()
                    .chain_update(self.name.as_bytes())
                    .chain_update(std::process::id().to_le_bytes())
                    .chain_update(now.timestamp_nanos_opt().unwrap_or_default().to_le_bytes())
                    .chain_update(n.to_le_bytes())
                    .finalize()
            }
        };
        format!("evt_{}", hex::encode(&digest[..16]))
    }

    fn check_kind(&self, entitlement: &Entitlement) -> Result<(), ConnectorError> {
        if self
            .settings
            .entitlement_kinds
            .iter()
            .any(|k| k == &entitlement.kind)
        {
            Ok(())
        } else {
            Err(self.http.error(
                ErrorKind::Permanent,
                format!("unknown entitlement kind {:?}", entitlement.kind),
            ))
        }
    }

    /// Signs and POSTs one event; returns the receiver's JSON answer (`Null` when empty).
    async fn deliver(
        &self,
        event_type: &str,
        account: &AccountRef,
        data: Value,
    ) -> Result<Value, ConnectorError> {
        let id = self.event_id(event_type);
        let now = chrono::Utc::now();
        let event = json!({
            "id": id,
            "type": event_type,
            "connector": self.name,
            "occurred_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "account": account,
            "data": data,
        });
        let body = serde_json::to_vec(&event).map_err(|e| {
            self.http
                .error(ErrorKind::Permanent, format!("cannot encode event: {e}"))
        })?;
        let ts = now.timestamp();
        let req = self
            .http
            .request(Method::POST, self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, sign(&self.secret, ts, &body))
            .header(EVENT_ID_HEADER, &id)
            .header(EVENT_TYPE_HEADER, event_type)
            .body(body);
        let resp = self.http.send(req).await?;
        if !resp.is_success() {
            return Err(self.http.status_error(&resp, &resp.body_excerpt()));
        }
        // A receiver may answer anything on success; only a JSON object is used.
        Ok(resp.json_value().unwrap_or(Value::Null))
    }
}

#[async_trait]
impl Connector for WebhookConnector {
    fn name(&self) -> &str {
        &self.name
    }

    /// Everything that can be expressed as an event; nothing can be read back.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            operations: vec![
                Capability::CreateAccount,
                Capability::UpdateAccount,
                Capability::EnableDisable,
                Capability::DeleteAccount,
                Capability::Grant,
                Capability::Revoke,
                Capability::RevokeSessions,
                Capability::RevokeCredentials,
                Capability::TransferOwnership,
            ],
            entitlement_kinds: self.settings.entitlement_kinds.clone(),
        }
    }

    async fn create_or_adopt(&self, spec: &AccountSpec) -> Result<AccountRef, ConnectorError> {
        let answer = self
            .deliver(
                "account.create",
                &spec.account,
                json!({ "attributes": spec.attributes }),
            )
            .await?;
        let mut account = spec.account.clone();
        if let Some(id) = answer.get("id").and_then(Value::as_str) {
            account.id = Some(id.to_owned());
        }
        Ok(account)
    }

    async fn update(&self, spec: &AccountSpec) -> Result<(), ConnectorError> {
        self.deliver(
            "account.update",
            &spec.account,
            json!({ "attributes": spec.attributes }),
        )
        .await
        .map(drop)
    }

    async fn set_enabled(&self, account: &AccountRef, enabled: bool) -> Result<(), ConnectorError> {
        let kind = if enabled {
            "account.enable"
        } else {
            "account.disable"
        };
        self.deliver(kind, account, json!({ "enabled": enabled }))
            .await
            .map(drop)
    }

    async fn delete(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.deliver("account.delete", account, json!({}))
            .await
            .map(drop)
    }

    async fn grant(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        self.check_kind(entitlement)?;
        self.deliver(
            "entitlement.grant",
            account,
            json!({ "entitlement": entitlement }),
        )
        .await
        .map(drop)
    }

    async fn revoke(
        &self,
        account: &AccountRef,
        entitlement: &Entitlement,
    ) -> Result<(), ConnectorError> {
        self.check_kind(entitlement)?;
        self.deliver(
            "entitlement.revoke",
            account,
            json!({ "entitlement": entitlement }),
        )
        .await
        .map(drop)
    }

    async fn revoke_sessions(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.deliver("account.revoke_sessions", account, json!({}))
            .await
            .map(drop)
    }

    async fn revoke_credentials(&self, account: &AccountRef) -> Result<(), ConnectorError> {
        self.deliver("account.revoke_credentials", account, json!({}))
            .await
            .map(drop)
    }

    async fn transfer_ownership(
        &self,
        account: &AccountRef,
        to: &AccountRef,
    ) -> Result<(), ConnectorError> {
        self.deliver("account.transfer_ownership", account, json!({ "to": to }))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let s = Secret::new("whsec_test_secret");
        let body = br#"{"a":1}"#;
        let sig = sign(&s, 1_700_000_000, body);
        assert!(sig.starts_with("v1="));
        let ok = verify(
            &s,
            Some("1700000000"),
            Some(&sig),
            body,
            1_700_000_100,
            Duration::from_secs(300),
        );
        assert_eq!(ok, Ok(()));
        // rotation: any listed signature may match
        let rotated = format!("v1=00ff,{sig}");
        assert!(verify(
            &s,
            Some("1700000000"),
            Some(&rotated),
            body,
            1_700_000_000,
            Duration::from_secs(5)
        )
        .is_ok());
        assert_eq!(
            verify(
                &s,
                Some("1700000000"),
                Some(&sig),
                b"{\"a\":2}",
                1_700_000_000,
                Duration::from_secs(5)
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(
                &s,
                Some("1700000000"),
                Some(&sig),
                body,
                1_700_001_000,
                Duration::from_secs(300)
            ),
            Err(VerifyError::Stale)
        );
        // the timestamp is bound into the MAC: moving it breaks the signature
        assert_eq!(
            verify(
                &s,
                Some("1700000001"),
                Some(&sig),
                body,
                1_700_000_000,
                Duration::from_secs(300)
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&s, None, Some(&sig), body, 0, Duration::from_secs(300)),
            Err(VerifyError::BadTimestamp)
        );
    }
}
