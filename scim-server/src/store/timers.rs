//! Durable timers: overlap-window ends, start dates, contract ends, reminders. Each has a unique
//! `timer_key`, so scheduling twice is harmless; firing marks it `done` in the transaction that
//! does its work, so it runs exactly once across nodes.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::RunQueryDsl;

use super::sql::Sql;
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::HubResult;

/// A timer row.
#[derive(Debug, Clone, PartialEq)]
pub struct Timer {
    pub id: i64,
    pub key: String,
    pub user_id: String,
    /// `start`, `overlap_end`, `contract_end`, `reminder`, `sla_deadline`: the engine reads it, with the payload,
    /// as its typed timer kind; the store keeps the text.
    pub kind: String,
    pub due: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub status: String,
}

/// Schedules a timer unless one with the same key exists.
pub fn schedule(
    c: &mut DbConnection,
    key: &str,
    user_id: &str,
    kind: &str,
    due: DateTime<Utc>,
    payload: &serde_json::Value,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_timers (timer_key, user_id, kind, due, payload, status, created) VALUES (",
    );
    q.text(key)
        .push(", ")
        .text(user_id)
        .push(", ")
        .text(kind)
        .push(", ")
        .text(fmt_ts(due))
        .push(", ")
        .text(payload.to_string())
        .push(", 'pending', ")
        .text(fmt_ts(now))
        .push(") ON CONFLICT (timer_key) DO NOTHING");
    Ok(q.execute(c)? > 0)
}

/// Cancels a user's pending timers of `kind` (e.g. when a contract end date moves). A timer
/// being fired right now (its row locked by the claim of `fire_timers` on PostgreSQL) is left
/// alone rather than waited for: the caller holds the user's row, which that firing's re-plan
/// waits for, so waiting here would deadlock until `deadlock_timeout` broke it. The firing
/// then re-plans after the caller's commit and finds what the caller decided.
pub fn cancel(c: &mut DbConnection, user_id: &str, kind: &str) -> HubResult<usize> {
    let postgres = matches!(c, DbConnection::Postgresql(_));
    let mut q = Sql::<()>::new(
        "UPDATE engine_timers SET status = 'cancelled' WHERE id IN (SELECT id FROM engine_timers \
         WHERE status = 'pending' AND user_id = ",
    );
    q.text(user_id).push(" AND kind = ").text(kind);
    if postgres {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    q.push(")");
    Ok(q.execute(c)?)
}

/// [`cancel_key`], except that a timer being fired right now (its row locked by the claim of
/// `fire_timers` on PostgreSQL) is left alone rather than waited for: a worker completing a plan
/// holds the plan's event row, which that firing (the plan's SLA deadline) waits for, so waiting
/// here would deadlock. The firing then finds the plan complete and does nothing.
pub fn cancel_key_unless_firing(c: &mut DbConnection, key: &str) -> HubResult<usize> {
    if !matches!(c, DbConnection::Postgresql(_)) {
        return cancel_key(c, key);
    }
    let mut q = Sql::<()>::new(
        "UPDATE engine_timers SET status = 'cancelled' WHERE id IN (SELECT id FROM engine_timers \
         WHERE status = 'pending' AND timer_key = ",
    );
    q.text(key).push(" FOR UPDATE SKIP LOCKED)");
    Ok(q.execute(c)?)
}

/// Cancels the pending timer with key `key` (e.g. an SLA deadline whose plan completed).
pub fn cancel_key(c: &mut DbConnection, key: &str) -> HubResult<usize> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_timers SET status = 'cancelled' WHERE status = 'pending' AND timer_key = ",
    );
    q.text(key);
    Ok(q.execute(c)?)
}

type TimerSt = (BigInt, Text, Text, Text, Text, Text, Text);

/// A row of `engine_timers` as stored ([`COLS`], in that order), before its timestamp and JSON
/// are read.
#[derive(diesel::Queryable)]
struct TimerRow {
    id: i64,
    key: String,
    user_id: String,
    kind: String,
    due: String,
    payload: String,
    status: String,
}

impl From<TimerRow> for Timer {
    fn from(r: TimerRow) -> Self {
        Timer {
            id: r.id,
            key: r.key,
            user_id: r.user_id,
            kind: r.kind,
            due: parse_ts(&r.due).unwrap_or_default(),
            payload: serde_json::from_str(&r.payload).unwrap_or_default(),
            status: r.status,
        }
    }
}

const COLS: &str = "SELECT id, timer_key, user_id, kind, due, payload, status FROM engine_timers ";

/// Claims due timers (locked with `FOR UPDATE SKIP LOCKED` on PostgreSQL); the caller fires each
/// and calls [`fired`] in the same transaction.
pub fn claim_due(c: &mut DbConnection, now: DateTime<Utc>, limit: i64) -> HubResult<Vec<Timer>> {
    let mut q = Sql::<TimerSt>::new(COLS);
    q.push("WHERE status = 'pending' AND due <= ")
        .text(fmt_ts(now))
        .push(" AND kind NOT IN (")
        .text_list(RUNNER_KINDS.iter().copied())
        .push(") ORDER BY due, id")
        .limit(limit);
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    Ok(q.load::<TimerRow>(c)?
        .into_iter()
        .map(Timer::from)
        .collect())
}

/// Kinds the runner handles itself because firing them calls a connector, which cannot happen
/// inside the claiming transaction ([`claim_due`] leaves them to [`lease_due`]).
pub const RUNNER_KINDS: &[&str] = &["verify", "reconcile"];

/// Claims due timers of `kind` for work done outside the transaction: each claimed row's due
/// moves to `lease_until`, so another node (or this one after a crash) takes it again only
/// when the lease ran out without [`fired`] or [`reschedule`].
pub fn lease_due(
    c: &mut DbConnection,
    kind: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> HubResult<Vec<Timer>> {
    let mut q = Sql::<TimerSt>::new(COLS);
    q.push("WHERE status = 'pending' AND kind = ")
        .text(kind)
        .push(" AND due <= ")
        .text(fmt_ts(now))
        .push(" ORDER BY due, id")
        .limit(limit);
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    let due: Vec<Timer> = q
        .load::<TimerRow>(c)?
        .into_iter()
        .map(Timer::from)
        .collect();
    for t in &due {
        let mut u = Sql::<()>::new("UPDATE engine_timers SET due = ");
        u.text(fmt_ts(lease_until)).push(" WHERE id = ").int(t.id);
        u.execute(c)?;
    }
    Ok(due)
}

/// Sets a pending timer's due time and payload (a retry, or a wait for operations to finish).
pub fn reschedule(
    c: &mut DbConnection,
    id: i64,
    due: DateTime<Utc>,
    payload: &serde_json::Value,
) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_timers SET due = ");
    q.text(fmt_ts(due))
        .push(", payload = ")
        .text(payload.to_string())
        .push(" WHERE status = 'pending' AND id = ")
        .int(id);
    q.execute(c)?;
    Ok(())
}

pub fn fired(c: &mut DbConnection, id: i64, now: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_timers SET status = 'done', fired = ");
    q.text(fmt_ts(now)).push(" WHERE id = ").int(id);
    q.execute(c)?;
    Ok(())
}

/// Timers of a user (all statuses), by due time.
pub fn list(c: &mut DbConnection, user_id: Option<&str>) -> HubResult<Vec<Timer>> {
    let mut q = Sql::<TimerSt>::new(COLS);
    q.push("WHERE 1 = 1");
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY due, id");
    Ok(q.load::<TimerRow>(c)?
        .into_iter()
        .map(Timer::from)
        .collect())
}
