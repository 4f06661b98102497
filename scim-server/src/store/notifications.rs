//! The durable notification outbox: one row per message, delivered by the notifier.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};
use serde::Serialize;

use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::HubResult;

/// A notification row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub recipients: Vec<String>,
    pub subject: String,
    pub body: String,
    /// `pending`, `running`, `sent`, `failed`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// When the row is due (the next retry, for a pending row that failed before).
    pub not_before: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub sent: Option<DateTime<Utc>>,
    /// The `[[incidents.chat]]` channel of a chat delivery (the body is its payload); `None`
    /// for a mail.
    pub channel: Option<String>,
}

pub fn enqueue(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    recipients: &[String],
    subject: &str,
    body: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_notifications (created, kind, user_id, recipients, subject, body, \
         status, attempts, not_before) VALUES (",
    );
    q.text(fmt_ts(now)).push(", ").text(kind).push(", ");
    q.bind(Bind::OptText(user_id.map(str::to_string)))
        .push(", ")
        .text(serde_json::to_string(recipients).unwrap_or_else(|_| "[]".into()))
        .push(", ")
        .text(subject)
        .push(", ")
        .text(body)
        .push(", 'pending', 0, ")
        .text(fmt_ts(now))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// Queues a chat delivery: `payload` is POSTed to the webhook of `channel` (an
/// `[[incidents.chat]]` name) by the notifier.
pub fn enqueue_chat(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    channel: &str,
    subject: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_notifications (created, kind, user_id, recipients, subject, body, \
         status, attempts, not_before, channel) VALUES (",
    );
    q.text(fmt_ts(now)).push(", ").text(kind).push(", ");
    q.bind(Bind::OptText(user_id.map(str::to_string)))
        .push(", '[]', ")
        .text(subject)
        .push(", ")
        .text(payload)
        .push(", 'pending', 0, ")
        .text(fmt_ts(now))
        .push(", ")
        .text(channel)
        .push(")");
    q.execute(c)?;
    Ok(())
}

type St = (
    BigInt,
    Text,
    Nullable<Text>,
    Text,
    Text,
    Text,
    Text,
    BigInt,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
);
/// An `engine_notifications` row as read ([`COLS`], in that order): JSON and timestamps still
/// text.
#[derive(Queryable)]
struct NotificationRecord {
    id: i64,
    kind: String,
    user_id: Option<String>,
    recipients: String,
    subject: String,
    body: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    not_before: Option<String>,
    sent: Option<String>,
    channel: Option<String>,
}

const COLS: &str = "SELECT id, kind, user_id, recipients, subject, body, status, attempts, \
     last_error, not_before, sent, channel FROM engine_notifications ";

impl From<NotificationRecord> for Notification {
    fn from(r: NotificationRecord) -> Self {
        Notification {
            id: r.id,
            kind: r.kind,
            user_id: r.user_id,
            recipients: serde_json::from_str(&r.recipients).unwrap_or_default(),
            subject: r.subject,
            body: r.body,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error,
            not_before: r.not_before.as_deref().and_then(parse_ts),
            sent: r.sent.as_deref().and_then(parse_ts),
            channel: r.channel,
        }
    }
}

fn load(c: &mut DbConnection, q: Sql<St>) -> HubResult<Vec<Notification>> {
    Ok(q.load::<NotificationRecord>(c)?
        .into_iter()
        .map(Notification::from)
        .collect())
}

/// Claims due notifications (`FOR UPDATE SKIP LOCKED` on PostgreSQL) with a lease; chat
/// deliveries only when `chat_only` (a sender without SMTP leaves the mails queued).
pub fn claim(
    c: &mut DbConnection,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    limit: i64,
    chat_only: bool,
) -> HubResult<Vec<Notification>> {
    let now_s = fmt_ts(now);
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE ((status = 'pending' AND not_before <= ")
        .text(now_s.as_str())
        .push(") OR (status = 'running' AND lease_until < ")
        .text(now_s.as_str())
        .push("))");
    if chat_only {
        q.push(" AND channel IS NOT NULL");
    }
    q.push(" ORDER BY id").limit(limit);
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    let mut rows = load(c, q)?;
    for n in &mut rows {
        // What the row says after this claim: running, this attempt counted.
        n.status = "running".into();
        n.attempts += 1;
        let mut u = Sql::<()>::new("UPDATE engine_notifications SET status = 'running', attempts = attempts + 1, lease_until = ");
        u.text(fmt_ts(now + lease)).push(" WHERE id = ").int(n.id);
        u.execute(c)?;
    }
    Ok(rows)
}

/// Moves the lease of a claimed message to `until`, while the claim `attempts` holds; false when
/// it no longer does (its lease ran out and another sender claimed it). A sender renews each
/// message of its batch just before sending it: the batch's messages go one after another, each
/// up to the transport's timeout, and without renewal the later ones' leases could run out
/// while they waited, letting another sender claim and send them too.
pub fn renew(
    c: &mut DbConnection,
    id: i64,
    attempts: i64,
    until: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_notifications SET lease_until = ");
    q.text(fmt_ts(until))
        .push(" WHERE id = ")
        .int(id)
        .push(" AND status = 'running' AND attempts = ")
        .int(attempts);
    Ok(q.execute(c)? == 1)
}

/// Marks a message delivered, while the claim `attempts` holds (see [`mark_failed`]); `note`
/// records recipients that were skipped (no email).
pub fn mark_sent(
    c: &mut DbConnection,
    id: i64,
    attempts: i64,
    now: DateTime<Utc>,
    note: Option<&str>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_notifications SET status = 'sent', lease_until = NULL, last_error = ",
    );
    q.bind(Bind::OptText(note.map(str::to_string)))
        .push(", sent = ")
        .text(fmt_ts(now))
        .push(" WHERE id = ")
        .int(id);
    // Only while this sender's claim holds (see `mark_failed`).
    q.push(" AND status = 'running' AND attempts = ")
        .int(attempts);
    q.execute(c)?;
    Ok(())
}

/// Schedules a retry, or parks the message as failed when `retry_at` is `None`. False when the
/// claim `attempts` no longer holds (nothing changed).
pub fn mark_failed(
    c: &mut DbConnection,
    id: i64,
    attempts: i64,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_notifications SET lease_until = NULL, last_error = ");
    q.text(error);
    match retry_at {
        Some(t) => q
            .push(", status = 'pending', not_before = ")
            .text(fmt_ts(t)),
        None => q.push(", status = 'failed'"),
    };
    q.push(" WHERE id = ").int(id);
    // Only while this sender's claim holds: a sender that outlived its lease may find the
    // message claimed again (`attempts` moved on) or already sent by another node, and must
    // not set it back to pending (a second mail) or mark another sender's claim done.
    q.push(" AND status = 'running' AND attempts = ")
        .int(attempts);
    Ok(q.execute(c)? > 0)
}

pub fn list(c: &mut DbConnection, user_id: Option<&str>) -> HubResult<Vec<Notification>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE 1 = 1");
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id");
    load(c, q)
}

/// One notification.
pub fn get(c: &mut DbConnection, id: i64) -> HubResult<Option<Notification>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE id = ").int(id);
    Ok(load(c, q)?.into_iter().next())
}

/// A `status, COUNT(*)` row.
#[derive(Queryable)]
struct StatusCount {
    status: String,
    count: i64,
}

/// How many notifications are in each status.
pub fn counts(c: &mut DbConnection) -> HubResult<std::collections::BTreeMap<String, i64>> {
    let q = Sql::<(Text, BigInt)>::new(
        "SELECT status, COUNT(*) FROM engine_notifications GROUP BY status ORDER BY status",
    );
    Ok(q.load::<StatusCount>(c)?
        .into_iter()
        .map(|s| (s.status, s.count))
        .collect())
}
