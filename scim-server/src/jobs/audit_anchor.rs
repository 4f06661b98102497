//! Anchors the audit chain outside the database, runs its retention, and records policy loads.
//!
//! Every `[audit] anchor_interval` the chain head (`seq:hash`) is logged (`audit chain anchor
//! seq=N hash=H`, a line `scimhub audit verify --anchors FILE` reads back) and POSTed as
//! `{"seq", "hash", "at"}` to `[audit] anchor_webhook` when set; an unchanged head is not
//! anchored again. With `[audit] retain`, entries older than that are pruned at the same pace,
//! leaving a checkpoint signed with `[audit] checkpoint_key`. Each policy the process loads
//! (at start and on every reload) is an audit entry carrying the SHA-256 of the file.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};

use crate::config::AuditConfig;
use crate::policy::reload::PolicyHandle;
use crate::store::audit_chain::{self, Head};
use crate::store::cluster;
use crate::store::Store;

/// `[audit]`, checked.
#[derive(Clone)]
pub struct AnchorSettings {
    pub webhook: Option<String>,
    pub interval: StdDuration,
    pub retain: Option<Duration>,
    pub checkpoint_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for AnchorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorSettings")
            .field("webhook", &self.webhook)
            .field("interval", &self.interval)
            .field("retain", &self.retain)
            .finish_non_exhaustive()
    }
}

impl AnchorSettings {
    /// Checks `[audit]`: durations, a webhook URL, and a key whenever `retain` is set.
    pub fn from_config(c: &AuditConfig) -> Result<Self, String> {
        let interval = crate::policy::parse_duration(&c.anchor_interval)
            .map_err(|e| format!("[audit] anchor_interval: {e}"))?
            .to_std()
            .map_err(|e| format!("[audit] anchor_interval: {e}"))?;
        if interval.is_zero() {
            return Err("[audit] anchor_interval must be more than 0".into());
        }
        let retain = c
            .retain
            .as_deref()
            .map(crate::policy::parse_duration)
            .transpose()
            .map_err(|e| format!("[audit] retain: {e}"))?;
        if retain.is_some_and(|r| r <= Duration::zero()) {
            return Err("[audit] retain must be more than 0".into());
        }
        let checkpoint_key = c
            .checkpoint_key
            .as_ref()
            .map(|k| k.load().map(|s| s.expose().as_bytes().to_vec()))
            .transpose()
            .map_err(|e| format!("[audit] checkpoint_key: {e}"))?;
        if retain.is_some() && checkpoint_key.is_none() {
            return Err("[audit] retain needs checkpoint_key (the checkpoint's HMAC key)".into());
        }
        if let Some(w) = &c.anchor_webhook {
            if !(w.starts_with("https://") || w.starts_with("http://")) {
                return Err("[audit] anchor_webhook must be an http(s) URL".into());
            }
        }
        Ok(AnchorSettings {
            webhook: c.anchor_webhook.clone(),
            interval,
            retain,
            checkpoint_key,
        })
    }
}

/// Anchors the head unless it is `last`; returns the head anchored.
pub async fn anchor_once(
    store: &Store,
    http: &reqwest::Client,
    webhook: Option<&str>,
    last: Option<&Head>,
) -> Option<Head> {
    let s = store.clone();
    let head = match tokio::task::spawn_blocking(move || {
        let mut c = s.read_conn()?;
        audit_chain::head(&mut c)
    })
    .await
    {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "audit chain anchor: cannot read the head");
            return None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "audit chain anchor: task failed");
            return None;
        }
    };
    if last == Some(&head) {
        return None;
    }
    let at = crate::store::fmt_ts(Utc::now());
    tracing::info!(target: "scimhub::audit", seq = head.seq, hash = %head.hash, %at,
        "audit chain anchor seq={} hash={}", head.seq, head.hash);
    if let Some(url) = webhook {
        let body = serde_json::json!({"seq": head.seq, "hash": head.hash, "at": at});
        match http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::warn!(status = %r.status(), "audit chain anchor: the webhook refused it")
            }
            Err(e) => tracing::warn!(error = %e, "audit chain anchor: the webhook is unreachable"),
        }
    }
    Some(head)
}

/// Whether this node anchors the interval that is due now ([`cluster::take_period`]); on a
/// database error it does not (the next node or round will).
async fn take_period(store: &Store, owner: &str, interval: StdDuration) -> bool {
    let (s, owner) = (store.clone(), owner.to_string());
    let taken = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        // a little early, so a node whose round comes a moment before the period ends still
        // takes its turn instead of skipping a whole interval
        let slack = (interval / 10).min(StdDuration::from_secs(5));
        let next = now + Duration::from_std(interval - slack).unwrap_or(Duration::hours(1));
        s.write_tx(|c, _| cluster::take_period(c, "audit_anchor", &owner, now, next))
    })
    .await;
    match taken {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "audit chain anchor: cannot take the interval");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "audit chain anchor: task failed");
            false
        }
    }
}

/// Records the policy in force (`policy.load` at start, `policy.reload` after) with the
/// SHA-256 of the bytes it was parsed from.
fn audit_policy(store: &Store, policy: &PolicyHandle, generation: u64) {
    // The hash of the bytes the policy in force was parsed from (not of the file now: it may
    // have been edited since, and rejected).
    let status = policy.status();
    let (Some(path), Some(sha256)) = (status.path, status.sha256) else {
        return;
    };
    let action = if generation <= 1 {
        "policy.load"
    } else {
        "policy.reload"
    };
    let detail = serde_json::json!({
        "path": path.display().to_string(),
        "sha256": sha256,
        "generation": generation,
    });
    let r = store.write_tx(|c, _| {
        audit_chain::append(
            c,
            &audit_chain::NewEntry {
                at: Utc::now(),
                actor: "hub",
                user_id: "",
                connector: None,
                action,
                outcome: "ok",
                detail: &detail,
            },
        )
    });
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot audit the policy load");
    }
}

/// Runs anchoring, retention and policy-load audit on a thread of its own until the process
/// ends.
pub fn start(
    store: Store,
    settings: AnchorSettings,
    policy: Option<PolicyHandle>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("scimhub-audit".into())
        .spawn(move || rt.block_on(run(store, settings, policy)))?;
    Ok(())
}

async fn run(store: Store, settings: AnchorSettings, policy: Option<PolicyHandle>) {
    let http = reqwest::Client::builder()
        .timeout(StdDuration::from_secs(15))
        .build()
        .unwrap_or_default();
    let owner = super::instance_id();
    let mut last: Option<Head> = None;
    let mut seen_generation = 0u64;
    let mut tick = tokio::time::interval(StdDuration::from_secs(3));
    let mut next_anchor = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        if let Some(p) = &policy {
            let g = p.generation();
            if g != seen_generation {
                seen_generation = g;
                let (s, p) = (store.clone(), p.clone());
                let _ = tokio::task::spawn_blocking(move || audit_policy(&s, &p, g)).await;
            }
        }
        if tokio::time::Instant::now() < next_anchor {
            continue;
        }
        next_anchor = tokio::time::Instant::now() + settings.interval;
        // Several nodes share the chain: one of them anchors (and prunes) each interval.
        if !take_period(&store, &owner, settings.interval).await {
            continue;
        }
        if let (Some(retain), Some(key)) = (settings.retain, settings.checkpoint_key.clone()) {
            let s = store.clone();
            let pruned = tokio::task::spawn_blocking(move || {
                let now = Utc::now();
                s.write_tx(|c, _| audit_chain::prune(c, now - retain, &key, "retention", now))
            })
            .await;
            match pruned {
                Ok(Ok(Some(cp))) => tracing::info!(
                    through = cp.seq,
                    pruned = cp.pruned,
                    "audit retention: pruned a prefix, checkpoint written"
                ),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "audit retention failed"),
                Err(e) => tracing::warn!(error = %e, "audit retention task failed"),
            }
        }
        if let Some(h) =
            anchor_once(&store, &http, settings.webhook.as_deref(), last.as_ref()).await
        {
            last = Some(h);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn store() -> (Store, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("scimhub-anchor-{}.db", uuid::Uuid::new_v4()));
        (
            Store::open(&format!("sqlite://{}", path.display())).unwrap(),
            path,
        )
    }

    #[test]
    fn settings_are_checked() {
        let ok = AuditConfig {
            retain: Some("400d".into()),
            checkpoint_key: Some("k".into()),
            ..Default::default()
        };
        let s = AnchorSettings::from_config(&ok).unwrap();
        assert_eq!(s.interval, StdDuration::from_secs(3600));
        assert_eq!(s.retain, Some(Duration::days(400)));
        let no_key = AuditConfig {
            retain: Some("400d".into()),
            ..Default::default()
        };
        assert!(AnchorSettings::from_config(&no_key)
            .unwrap_err()
            .contains("checkpoint_key"));
        let bad = AuditConfig {
            anchor_interval: "soon".into(),
            ..Default::default()
        };
        assert!(AnchorSettings::from_config(&bad).is_err());
        let ftp = AuditConfig {
            anchor_webhook: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(AnchorSettings::from_config(&ftp).is_err());
    }

    #[test]
    fn a_policy_load_is_audited_with_the_files_hash() {
        let (store, path) = store();
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo-policy.toml");
        let policy = PolicyHandle::load(&file).unwrap();
        audit_policy(&store, &policy, 1);
        audit_policy(&store, &policy, 2);
        let mut c = store.read_conn().unwrap();
        let rows =
            audit_chain::export_page(&mut c, &audit_chain::ExportFilter::default(), 10).unwrap();
        let want = crate::policy::reload::sha256_hex(&std::fs::read(&file).unwrap());
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["policy.load", "policy.reload"]);
        assert!(rows[0].detail.contains(&want), "{}", rows[0].detail);
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn the_head_is_posted_to_the_webhook_once_per_change() {
        let (store, path) = store();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/anchors", listener.local_addr().unwrap());
        let received = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        sock.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                            .await
                            .unwrap();
                        return body.to_string();
                    }
                }
                if n == 0 {
                    return String::new();
                }
            }
        });
        {
            store
                .write_tx(|c, _| {
                    audit_chain::append(
                        c,
                        &audit_chain::NewEntry {
                            at: Utc::now(),
                            actor: "t",
                            user_id: "",
                            connector: None,
                            action: "x",
                            outcome: "ok",
                            detail: &serde_json::json!({}),
                        },
                    )
                })
                .unwrap();
        }
        let http = reqwest::Client::new();
        let head = anchor_once(&store, &http, Some(&url), None).await.unwrap();
        assert_eq!(head.seq, 1);
        let body: serde_json::Value = serde_json::from_str(&received.await.unwrap()).unwrap();
        assert_eq!(body["seq"], 1);
        assert_eq!(body["hash"], head.hash);
        // Unchanged: not anchored again.
        assert!(anchor_once(&store, &http, Some(&url), Some(&head))
            .await
            .is_none());
        let _ = std::fs::remove_file(path);
    }
}
