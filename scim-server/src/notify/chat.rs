//! Chat deliveries: an incident notice's payload (worded in `engine::notices`) POSTed to an
//! `[[incidents.chat]]` webhook. `json` payloads are signed so the receiver can tell them from
//! forgeries and replays:
//!
//! * `X-Scimhub-Timestamp`: the send time in Unix seconds;
//! * `X-Scimhub-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the channel's
//!   `secret`, of `{timestamp}.{body}`. Receivers recompute it, compare in constant time and
//!   refuse timestamps more than a few minutes old.
//!
//! Webhook URLs are credentials (anyone holding a Slack or Teams webhook URL can post): they
//! are loaded from their secret reference at each delivery and never logged.

use std::time::Duration as StdDuration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Attempt;
use crate::policy::{ChatChannel, ChatFormat};

pub const SIGNATURE_HEADER: &str = "X-Scimhub-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Scimhub-Timestamp";

/// `sha256=<hex>` of HMAC-SHA256(`key`, `{timestamp}.{body}`).
pub fn signature(key: &[u8], timestamp: i64, body: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body.as_bytes());
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// The HTTP client chat deliveries use (a bounded timeout: a hung webhook is retried, not
/// waited on).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(StdDuration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

/// POSTs `body` to `channel`; 2xx is delivered, 408/429/5xx and network errors are retried,
/// other answers park the delivery.
pub(super) async fn post(
    client: &reqwest::Client,
    channel: &ChatChannel,
    body: &str,
    now_unix: i64,
) -> Attempt {
    let url = match channel.url.load() {
        Ok(u) => u,
        Err(e) => return Attempt::Permanent(format!("chat channel {}: url: {e}", channel.name)),
    };
    let mut req = client
        .post(url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if channel.format == ChatFormat::Json {
        let Some(secret) = &channel.secret else {
            return Attempt::Permanent(format!("chat channel {}: no signing secret", channel.name));
        };
        let key = match secret.load() {
            Ok(k) => k,
            Err(e) => {
                return Attempt::Permanent(format!("chat channel {}: secret: {e}", channel.name))
            }
        };
        req = req.header(TIMESTAMP_HEADER, now_unix.to_string()).header(
            SIGNATURE_HEADER,
            signature(key.expose().as_bytes(), now_unix, body),
        );
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Attempt::Sent { note: None },
        Ok(r) => {
            let s = r.status();
            let why = format!("chat channel {}: HTTP {s}", channel.name);
            if s.is_server_error() || s.as_u16() == 429 || s.as_u16() == 408 {
                Attempt::Transient(why)
            } else {
                Attempt::Permanent(why)
            }
        }
        // The error text can carry the URL (a credential): only its kind is recorded.
        Err(e) => Attempt::Transient(format!(
            "chat channel {}: {}",
            channel.name,
            if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        let a = signature(b"k", 1, "{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(a, signature(b"k2", 1, "{}"));
        assert_ne!(a, signature(b"k", 2, "{}"));
        assert_ne!(a, signature(b"k", 1, "{ }"));
        // HMAC-SHA256(key="key", "0.The quick brown fox") as Python's hmac module computes it.
        assert_eq!(
            signature(b"key", 0, "The quick brown fox"),
            format!("sha256={}", KNOWN)
        );
    }

    const KNOWN: &str = "10c3ae5bdd0fd5c9ad60a05ea4051bb529622def626c0d64295951b2039454ed";
}
