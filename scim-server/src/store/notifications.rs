//! The durable notification outbox: one row per message, delivered by the notifier.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::RunQueryDsl;
use serde::Serialize;

use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, DbConnection, StoreResult};

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
}

pub fn enqueue(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    recipients: &[String],
    subject: &str,
    body: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
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
);
type Tuple = (
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

const COLS: &str = "SELECT id, kind, user_id, recipients, subject, body, status, attempts, \
     last_error, not_before, sent FROM engine_notifications ";

fn row(t: Tuple) -> Notification {
    Notification {
        id: t.0,
        kind: t.1,
        user_id: t.2,
        recipients: serde_json::from_str(&t.3).unwrap_or_default(),
        subject: t.4,
        body: t.5,
        status: t.6,
        attempts: t.7,
        last_error: t.8,
        not_before: t.9.as_deref().and_then(parse_ts),
        sent: t.10.as_deref().and_then(parse_ts),
    }
}

/// Claims due notifications (`FOR UPDATE SKIP LOCKED` on PostgreSQL) with a lease.
pub fn claim(
    c: &mut DbConnection,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    limit: i64,
) -> StoreResult<Vec<Notification>> {
    let now_s = fmt_ts(now);
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE (status = 'pending' AND not_before <= ")
        .text(now_s.as_str())
        .push(") OR (status = 'running' AND lease_until < ")
        .text(now_s.as_str())
        .push(") ORDER BY id")
        .limit(limit);
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    let mut rows: Vec<Notification> = q.load::<Tuple>(c)?.into_iter().map(row).collect();
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

/// Marks a message delivered; `note` records recipients that were skipped (no email).
pub fn mark_sent(
    c: &mut DbConnection,
    id: i64,
    now: DateTime<Utc>,
    note: Option<&str>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_notifications SET status = 'sent', lease_until = NULL, last_error = ",
    );
    q.bind(Bind::OptText(note.map(str::to_string)))
        .push(", sent = ")
        .text(fmt_ts(now))
        .push(" WHERE id = ")
        .int(id);
    q.execute(c)?;
    Ok(())
}

/// Schedules a retry, or parks the message as failed when `retry_at` is `None`.
pub fn mark_failed(
    c: &mut DbConnection,
    id: i64,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_notifications SET lease_until = NULL, last_error = ");
    q.text(error);
    match retry_at {
        Some(t) => q
            .push(", status = 'pending', not_before = ")
            .text(fmt_ts(t)),
        None => q.push(", status = 'failed'"),
    };
    q.push(" WHERE id = ").int(id);
    q.execute(c)?;
    Ok(())
}

pub fn list(c: &mut DbConnection, user_id: Option<&str>) -> StoreResult<Vec<Notification>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE 1 = 1");
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id");
    Ok(q.load::<Tuple>(c)?.into_iter().map(row).collect())
}

/// One notification.
pub fn get(c: &mut DbConnection, id: i64) -> StoreResult<Option<Notification>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE id = ").int(id);
    Ok(q.load::<Tuple>(c)?.into_iter().map(row).next())
}

/// How many notifications are in each status.
pub fn counts(c: &mut DbConnection) -> StoreResult<std::collections::BTreeMap<String, i64>> {
    let q = Sql::<(Text, BigInt)>::new(
        "SELECT status, COUNT(*) FROM engine_notifications GROUP BY status ORDER BY status",
    );
    Ok(q.load::<(String, i64)>(c)?.into_iter().collect())
}
