//! The notification sender: delivers the rows of `engine_notifications` by SMTP, and the
//! incident chat deliveries among them (a `channel`) by webhook ([`chat`]).
//!
//! The engine writes notification rows in the same transaction as the change that causes them
//! (mover summaries, approval requests, contractor reminders and expiries), so a crash never loses
//! one. This module sends them, durably, the way the outbox workers run operations:
//!
//! * **claim**: due rows are taken with a lease ([`notifications::claim`]: `FOR UPDATE SKIP
//!   LOCKED` on PostgreSQL, the single writer on SQLite), so several nodes never send the same
//!   row at once and a row whose sender died is taken over when its lease expires;
//! * **resolve**: recipients that are addresses (security, helpdesk, approvers) are used as they
//!   are; recipients that are SCIM user ids (managers, sponsors) become that user's primary email
//!   (else the `work` one, else the first); a recipient that resolves to nothing is dropped and
//!   noted in `last_error`;
//! * **render and send**: a plain-text body plus an HTML alternative with every value escaped
//!   ([`mail_html`]) through lettre over SMTP (plain, STARTTLS or TLS; rustls);
//! * **record**: `sent`; or, on a connection failure, timeout or 4xx reply, back to `pending` with
//!   exponential backoff and jitter; or, on a 5xx reply, an unbuildable message, or when the
//!   attempt budget is spent, parked as `failed` with the reason in `last_error`.
//!
//! Bodies and subjects are never logged: they carry one-click links with signed tokens. Log lines
//! name the row id, its kind and the number of recipients only.

pub mod chat;
pub mod mail_html;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use scim_schema::json::primary_email;

use crate::config::{SmtpConfig, SmtpTls};
use crate::engine::Engine;
use crate::error::{HubError, HubResult};
use crate::store::incidents;
use crate::store::notifications::{self, Notification};
use crate::store::{DbConnection, Store};

/// Sender settings besides the SMTP server.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// How long a claim lasts before another node may take the row over.
    pub lease: Duration,
    /// Delivery attempts before a row is parked as failed.
    pub max_attempts: i64,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Rows claimed at once.
    pub batch: i64,
    /// Sleep when nothing is due.
    pub idle_poll: StdDuration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            lease: Duration::minutes(5),
            max_attempts: 10,
            base_backoff: Duration::seconds(30),
            max_backoff: Duration::hours(1),
            batch: 20,
            idle_poll: StdDuration::from_secs(1),
        }
    }
}

/// What happened to one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Back in the queue until the given time.
    Retry,
    /// Parked as failed.
    Failed,
}

/// Why the SMTP transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("smtp password: {0}")]
    Secret(#[from] connectors::secret::SecretError),
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("smtp: `username` and `password` go together")]
    HalfCredentials,
}

/// The sender of one process.
#[derive(Clone)]
pub struct Notifier {
    store: Store,
    engine: Arc<Engine>,
    /// `None`: no SMTP configured; only chat deliveries are taken, mails stay queued.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    http: reqwest::Client,
    /// `[smtp] from`; when absent the policy's `[notify] from` (read per batch, so reloads apply).
    from: Option<String>,
    pub config: NotifierConfig,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("from", &self.from)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The SMTP transport for `[smtp]` (loads the password reference now, so a bad reference fails
/// at start, not at the first message).
pub fn transport(smtp: &SmtpConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, SetupError> {
    type T = AsyncSmtpTransport<Tokio1Executor>;
    let mut b = match smtp.tls {
        SmtpTls::None => T::builder_dangerous(smtp.host.as_str()),
        SmtpTls::Starttls => T::builder_dangerous(smtp.host.as_str())
            .tls(Tls::Required(TlsParameters::new(smtp.host.clone())?)),
        SmtpTls::Tls => T::builder_dangerous(smtp.host.as_str())
            .tls(Tls::Wrapper(TlsParameters::new(smtp.host.clone())?)),
    }
    .port(smtp.port())
    .timeout(Some(StdDuration::from_secs(smtp.timeout_secs.max(1))))
    .hello_name(ClientId::Domain(
        std::env::var("HOSTNAME").unwrap_or_else(|_| "scimhub.localdomain".into()),
    ));
    match (&smtp.username, &smtp.password) {
        (Some(user), Some(pw)) => {
            let secret = pw.load()?;
            b = b.credentials(Credentials::new(user.clone(), secret.expose().to_string()));
        }
        (None, None) => {}
        _ => return Err(SetupError::HalfCredentials),
    }
    Ok(b.build())
}

/// `[notify] smtp_url = "smtp://host:port"` in the policy, as an `[smtp]` section (plain SMTP).
pub fn from_policy_url(url: &str) -> Option<SmtpConfig> {
    let rest = url.strip_prefix("smtp://")?.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (rest, None),
    };
    (!host.is_empty()).then(|| SmtpConfig {
        host: host.to_string(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: None,
        timeout_secs: 30,
        max_attempts: NotifierConfig::default().max_attempts,
    })
}

/// Resolves recipients: addresses as they are, user ids to their email. Returns the addresses
/// (deduplicated, in order) and the recipients that resolved to nothing.
pub fn resolve_recipients(
    c: &mut DbConnection,
    recipients: &[String],
) -> HubResult<(Vec<String>, Vec<String>)> {
    let mut out: Vec<String> = Vec::new();
    let mut missing = Vec::new();
    for r in recipients {
        let r = r.trim();
        let addr = if r.contains('@') {
            Some(r.to_string())
        } else if r.is_empty() {
            None
        } else {
            crate::engine::load_user_doc(c, r)?
                .as_ref()
                .and_then(primary_email)
                .map(str::to_string)
        };
        match addr {
            Some(a) if !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) => out.push(a),
            Some(_) => {}
            None => missing.push(r.to_string()),
        }
    }
    Ok((out, missing))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> HubResult<T> + Send + 'static,
) -> HubResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HubError::Backend(format!("notifier task failed: {e}")))?
}

/// How a delivery attempt ended, before it is recorded.
enum Attempt {
    Sent { note: Option<String> },
    Transient(String),
    Permanent(String),
}

impl Notifier {
    /// A sender for `[smtp]`.
    pub fn new(store: Store, engine: Arc<Engine>, smtp: &SmtpConfig) -> Result<Self, SetupError> {
        let transport = transport(smtp)?;
        Ok(Notifier {
            store,
            engine,
            transport: Some(transport),
            http: chat::client(),
            from: smtp.from.clone(),
            config: NotifierConfig {
                max_attempts: smtp.max_attempts.max(1),
                ..Default::default()
            },
        })
    }

    /// A sender without SMTP: delivers the `[[incidents.chat]]` webhooks, leaves mails queued.
    pub fn chat_only(store: Store, engine: Arc<Engine>) -> Self {
        Notifier {
            store,
            engine,
            transport: None,
            http: chat::client(),
            from: None,
            config: NotifierConfig::default(),
        }
    }

    /// Backoff before attempt `attempts + 1` under this sender's settings
    /// ([`crate::clock::backoff`]).
    pub fn backoff(&self, attempts: i64) -> Duration {
        crate::clock::backoff(self.config.base_backoff, self.config.max_backoff, attempts)
    }

    fn sender(&self) -> Result<Mailbox, String> {
        let from = match &self.from {
            Some(f) => f.clone(),
            None => self.engine.policy.current().notify.from.clone(),
        };
        from.parse::<Mailbox>()
            .map_err(|e| format!("invalid sender address {from:?}: {e}"))
    }

    /// Claims and delivers one batch; returns how many rows were claimed.
    pub async fn run_batch(&self) -> HubResult<usize> {
        let store = self.store.clone();
        let now = self.engine.now();
        let (lease, limit) = (self.config.lease, self.config.batch);
        let chat_only = self.transport.is_none();
        let rows = blocking(move || {
            store.write_tx(|c, _| notifications::claim(c, now, lease, limit, chat_only))
        })
        .await?;
        let n = rows.len();
        for row in rows {
            // Each message's lease is renewed as its turn comes once half of it has gone by (a
            // batch of slow sends), and the message skipped when another sender has claimed it
            // since (see `notifications::renew`). A quick batch renews nothing.
            if self.engine.now() > now + lease / 2 {
                let store = self.store.clone();
                let (id, attempts, until) = (row.id, row.attempts, self.engine.now() + lease);
                let held = blocking(move || {
                    store.write_tx(|c, _| notifications::renew(c, id, attempts, until))
                })
                .await?;
                if !held {
                    tracing::warn!(
                        notification = id,
                        "notification claimed by another sender meanwhile; left to it"
                    );
                    continue;
                }
            }
            self.deliver(row).await?;
        }
        Ok(n)
    }

    /// Delivers one claimed row and records the outcome.
    pub async fn deliver(&self, row: Notification) -> HubResult<Delivery> {
        let (attempt, to) = match &row.channel {
            Some(name) => {
                // The channel as the policy says now (a reload may have changed its URL).
                let channel = self
                    .engine
                    .policy
                    .current()
                    .incidents
                    .chat
                    .iter()
                    .find(|c| &c.name == name)
                    .cloned();
                let attempt = match channel {
                    Some(ch) => {
                        chat::post(&self.http, &ch, &row.body, self.engine.now().timestamp()).await
                    }
                    None => Attempt::Permanent(format!(
                        "chat channel {name} is not in the policy any more"
                    )),
                };
                (attempt, vec![name.clone()])
            }
            None => {
                let store = self.store.clone();
                let recipients = row.recipients.clone();
                let (to, missing) =
                    blocking(move || store.write_tx(|c, _| resolve_recipients(c, &recipients)))
                        .await?;
                (self.attempt(&row, &to, &missing).await, to)
            }
        };
        let now = self.engine.now();
        let (outcome, error, retry_at) = match attempt {
            Attempt::Sent { note } => {
                let store = self.store.clone();
                let (id, attempts) = (row.id, row.attempts);
                blocking(move || {
                    store.write_tx(|c, _| {
                        notifications::mark_sent(c, id, attempts, now, note.as_deref())
                    })
                })
                .await?;
                tracing::info!(notification = row.id, kind = %row.kind, recipients = to.len(), "notification sent");
                return Ok(Delivery::Sent);
            }
            Attempt::Transient(e) if row.attempts < self.config.max_attempts => {
                let at = now + self.backoff(row.attempts);
                (Delivery::Retry, e, Some(at))
            }
            Attempt::Transient(e) => (
                Delivery::Failed,
                format!("gave up after {} attempts: {e}", row.attempts),
                None,
            ),
            Attempt::Permanent(e) => (Delivery::Failed, e, None),
        };
        match &outcome {
            Delivery::Retry => {
                tracing::warn!(notification = row.id, kind = %row.kind, attempts = row.attempts, error = %error, "notification not delivered; will retry")
            }
            _ => {
                tracing::error!(notification = row.id, kind = %row.kind, attempts = row.attempts, error = %error, "notification parked as failed")
            }
        }
        let store = self.store.clone();
        let (id, attempts) = (row.id, row.attempts);
        let parked = outcome == Delivery::Failed;
        let (kind, user_id) = (row.kind.clone(), row.user_id.clone());
        blocking(move || {
            store.write_tx(|c, _| {
                if !notifications::mark_failed(c, id, attempts, &error, retry_at)? {
                    // The claim ran out and someone else has the message now.
                    return Ok(());
                }
                // A parked message is an incident (someone did not hear what they should
                // have), except an incident's own notice: its incident is already open and
                // notified on the other channels, and raising one would feed a loop.
                if parked && kind != "incident" {
                    incidents::raise_once(
                        c,
                        &incidents::NewIncident {
                            kind: "notification_parked",
                            user_id: user_id.as_deref(),
                            connector: None,
                            reason: &format!("notification {id} ({kind}) not delivered: {error}"),
                            dedupe_key: &format!("notification:{id}"),
                        },
                        now,
                    )?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(outcome)
    }

    async fn attempt(&self, row: &Notification, to: &[String], missing: &[String]) -> Attempt {
        let Some(transport) = &self.transport else {
            // Not claimed by a sender without SMTP; kept queued should it happen.
            return Attempt::Transient("no SMTP configured".into());
        };
        let from = match self.sender() {
            Ok(f) => f,
            Err(e) => return Attempt::Permanent(e),
        };
        let mut bad: Vec<String> = missing.iter().map(|m| format!("{m} (no email)")).collect();
        let mut mailboxes = Vec::new();
        for a in to {
            match a.parse::<Mailbox>() {
                Ok(m) => mailboxes.push(m),
                Err(_) => bad.push(format!("{a} (invalid address)")),
            }
        }
        if mailboxes.is_empty() {
            return Attempt::Permanent(format!("no deliverable recipient: {}", bad.join(", ")));
        }
        // Only the hub's own URLs (under `[notify] link_base_url`) become links in the HTML part.
        let hub = self.engine.policy.current().notify.link_base_url.clone();
        let message = match mail_html::message(
            row.id,
            &from,
            &mailboxes,
            &row.subject,
            &row.body,
            hub.as_deref(),
        ) {
            Ok(m) => m,
            Err(e) => return Attempt::Permanent(e.0),
        };
        match transport.send(message).await {
            Ok(_) => Attempt::Sent {
                note: (!bad.is_empty()).then(|| format!("skipped: {}", bad.join(", "))),
            },
            Err(e) if e.is_permanent() => {
                Attempt::Permanent(format!("rejected by the server: {e}"))
            }
            Err(e) => Attempt::Transient(e.to_string()),
        }
    }

    /// Delivers until nothing is due (tests, demo).
    pub async fn run_until_idle(&self) -> HubResult<usize> {
        let mut total = 0;
        loop {
            match self.run_batch().await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Runs the sender until the runtime stops.
    pub fn spawn(self) {
        tokio::spawn(async move {
            loop {
                match self.run_batch().await {
                    Ok(0) => tokio::time::sleep(self.config.idle_poll).await,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "notification sender error");
                        tokio::time::sleep(StdDuration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

/// Starts the sender beside the workers when SMTP is configured (`[smtp]`, or the policy's
/// `[notify] smtp_url`); otherwise says once that notifications stay queued. Must run inside a
/// tokio runtime.
pub fn spawn(store: &Store, engine: &Arc<Engine>, smtp: Option<&SmtpConfig>) {
    let smtp = smtp.cloned().or_else(|| {
        engine
            .policy
            .current()
            .notify
            .smtp_url
            .as_deref()
            .and_then(from_policy_url)
    });
    match smtp {
        None => {
            tracing::warn!(
                "no [smtp] section configured: mails are queued in the database and not sent; \
                 incident chat webhooks are delivered"
            );
            Notifier::chat_only(store.clone(), engine.clone()).spawn();
        }
        Some(smtp) => match Notifier::new(store.clone(), engine.clone(), &smtp) {
            Ok(n) => {
                tracing::info!(host = %smtp.host, port = smtp.port(), tls = ?smtp.tls, "notification sender started");
                n.spawn();
            }
            Err(e) => {
                tracing::error!(error = %e, "notification sender not started; notifications stay queued")
            }
        },
    }
}
