//! Drift findings (`engine_drift_findings`) and kept exceptions (`engine_drift_exceptions`).
//!
//! A finding is keyed by (connector, kind, account, entitlement) while it is open: a run that
//! sees it again moves `last_seen` (and the run id) forward, a complete run that no longer sees
//! it closes it ([`close_unseen`]: `status = 'closed'`, `closed_at`). Rows are never deleted; a
//! finding that comes back after being closed is a new row with its own `first_seen`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// A finding as a run saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen<'a> {
    pub connector: &'a str,
    pub kind: &'a str,
    pub account: &'a str,
    /// `""` when the finding is about the account itself.
    pub entitlement: &'a str,
    pub user_id: Option<&'a str>,
    /// What the policy said to do (`report`, `fix`, `review`).
    pub action: &'a str,
    pub detail: &'a serde_json::Value,
}

/// Records that `run_id` saw `f`: moves `last_seen` of the open finding with its key, or opens
/// one. Returns true when it opened a new finding.
pub fn seen(
    c: &mut DbConnection,
    f: &Seen<'_>,
    run_id: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut u = Sql::<()>::new("UPDATE engine_drift_findings SET last_seen = ");
    u.text(fmt_ts(now))
        .push(", run_id = ")
        .text(run_id)
        .push(", action = ")
        .text(f.action)
        .push(", detail = ")
        .text(f.detail.to_string())
        .push(", user_id = ")
        .bind(Bind::OptText(f.user_id.map(str::to_string)));
    key_where(&mut u, f.connector, f.kind, f.account, f.entitlement);
    u.push(" AND status = 'open'");
    if u.execute(c)? > 0 {
        return Ok(false);
    }
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_drift_findings (connector, kind, account, entitlement, user_id, \
         action, detail, status, first_seen, last_seen, closed_at, run_id) VALUES (",
    );
    q.text(f.connector)
        .push(", ")
        .text(f.kind)
        .push(", ")
        .text(f.account)
        .push(", ")
        .text(f.entitlement)
        .push(", ")
        .bind(Bind::OptText(f.user_id.map(str::to_string)))
        .push(", ")
        .text(f.action)
        .push(", ")
        .text(f.detail.to_string())
        .push(", 'open', ")
        .text(fmt_ts(now))
        .push(", ")
        .text(fmt_ts(now))
        .push(", NULL, ")
        .text(run_id)
        .push(")");
    q.execute(c)?;
    Ok(true)
}

fn key_where(q: &mut Sql<()>, connector: &str, kind: &str, account: &str, entitlement: &str) {
    q.push(" WHERE connector = ")
        .text(connector)
        .push(" AND kind = ")
        .text(kind)
        .push(" AND account = ")
        .text(account)
        .push(" AND entitlement = ")
        .text(entitlement);
}

/// The id of the open finding with this key.
pub fn open_id(
    c: &mut DbConnection,
    connector: &str,
    kind: &str,
    account: &str,
    entitlement: &str,
) -> HubResult<Option<i64>> {
    let mut q = Sql::<BigInt>::new("SELECT id FROM engine_drift_findings");
    q.push(" WHERE connector = ")
        .text(connector)
        .push(" AND kind = ")
        .text(kind)
        .push(" AND account = ")
        .text(account)
        .push(" AND entitlement = ")
        .text(entitlement)
        .push(" AND status = 'open'");
    Ok(q.load::<i64>(c)?.into_iter().next())
}

/// Closes one open finding (a manager kept it: it is an exception now).
pub fn close(c: &mut DbConnection, id: i64, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_drift_findings SET status = 'closed', closed_at = ");
    q.text(fmt_ts(now))
        .push(" WHERE status = 'open' AND id = ")
        .int(id);
    Ok(q.execute(c)? > 0)
}

/// Closes the open findings of `connector` that run `run_id` (a complete listing) did not see
/// again; returns how many.
pub fn close_unseen(
    c: &mut DbConnection,
    connector: &str,
    run_id: &str,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_drift_findings SET status = 'closed', closed_at = ");
    q.text(fmt_ts(now))
        .push(" WHERE status = 'open' AND connector = ")
        .text(connector)
        .push(" AND run_id <> ")
        .text(run_id);
    Ok(q.execute(c)?)
}

/// A stored finding.
#[derive(Debug, Clone, PartialEq, Queryable, serde::Serialize)]
pub struct Finding {
    pub id: i64,
    pub connector: String,
    pub kind: String,
    pub account: String,
    pub entitlement: String,
    pub user_id: Option<String>,
    pub action: String,
    /// JSON text, as stored.
    #[serde(skip)]
    pub detail: String,
    pub status: String,
    pub first_seen: String,
    pub last_seen: String,
    pub closed_at: Option<String>,
}

/// Which findings to list.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    pub connector: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// `open` or `closed`.
    pub status: Option<&'a str>,
}

/// Findings matching `f`, oldest first, at most `limit`.
pub fn list(c: &mut DbConnection, f: &Filter<'_>, limit: i64) -> HubResult<Vec<Finding>> {
    let mut q = Sql::<(
        BigInt,
        Text,
        Text,
        Text,
        Text,
        Nullable<Text>,
        Text,
        Text,
        Text,
        Text,
        Text,
        Nullable<Text>,
    )>::new(
        "SELECT id, connector, kind, account, entitlement, user_id, action, detail, status, \
         first_seen, last_seen, closed_at FROM engine_drift_findings WHERE 1 = 1",
    );
    if let Some(v) = f.connector {
        q.push(" AND connector = ").text(v);
    }
    if let Some(v) = f.kind {
        q.push(" AND kind = ").text(v);
    }
    if let Some(v) = f.status {
        q.push(" AND status = ").text(v);
    }
    q.push(" ORDER BY id").limit(limit);
    Ok(q.load::<Finding>(c)?)
}

/// Findings first seen at or after `from` and before `to`, oldest first, at most `limit`.
pub fn first_seen_between(
    c: &mut DbConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> HubResult<Vec<Finding>> {
    let mut q = Sql::<(
        BigInt,
        Text,
        Text,
        Text,
        Text,
        Nullable<Text>,
        Text,
        Text,
        Text,
        Text,
        Text,
        Nullable<Text>,
    )>::new(
        "SELECT id, connector, kind, account, entitlement, user_id, action, detail, status, \
         first_seen, last_seen, closed_at FROM engine_drift_findings WHERE first_seen >= ",
    );
    q.text(fmt_ts(from))
        .push(" AND first_seen < ")
        .text(fmt_ts(to))
        .push(" ORDER BY id")
        .limit(limit);
    Ok(q.load::<Finding>(c)?)
}

/// Open findings per (connector, kind): the `scimhub_drift_findings` gauge.
pub fn open_counts(c: &mut DbConnection) -> HubResult<Vec<(String, String, i64)>> {
    let q = Sql::<(Text, Text, BigInt)>::new(
        "SELECT connector, kind, COUNT(*) FROM engine_drift_findings WHERE status = 'open' \
         GROUP BY connector, kind ORDER BY connector, kind",
    );
    Ok(q.load::<(String, String, i64)>(c)?)
}

/// The `scimhub_drift_findings` gauge: open findings by connector and kind.
pub fn gauge_open(
    c: &mut DbConnection,
    _: &super::metrics::ScrapeContext,
) -> HubResult<Vec<super::metrics::GaugeRow>> {
    Ok(open_counts(c)?
        .into_iter()
        .map(|(connector, kind, n)| super::metrics::GaugeRow {
            labels: vec![connector, kind],
            value: n as f64,
        })
        .collect())
}

/// A kept exception (the key of the finding it covers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Queryable)]
pub struct Exception {
    pub kind: String,
    pub account: String,
    pub entitlement: String,
}

/// Records that `decided_by` kept the finding with this key until `expires_at`.
#[allow(clippy::too_many_arguments)]
pub fn keep(
    c: &mut DbConnection,
    connector: &str,
    kind: &str,
    account: &str,
    entitlement: &str,
    decided_by: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_drift_exceptions (connector, kind, account, entitlement, decided_by, \
         decided_at, expires_at) VALUES (",
    );
    q.text(connector)
        .push(", ")
        .text(kind)
        .push(", ")
        .text(account)
        .push(", ")
        .text(entitlement)
        .push(", ")
        .text(decided_by)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(fmt_ts(expires_at))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// The exceptions of `connector` in force at `now`.
pub fn exceptions(
    c: &mut DbConnection,
    connector: &str,
    now: DateTime<Utc>,
) -> HubResult<Vec<Exception>> {
    let mut q = Sql::<(Text, Text, Text)>::new(
        "SELECT DISTINCT kind, account, entitlement FROM engine_drift_exceptions \
         WHERE connector = ",
    );
    q.text(connector)
        .push(" AND expires_at > ")
        .text(fmt_ts(now));
    Ok(q.load::<Exception>(c)?)
}

/// The finding with id `id`.
pub fn get(c: &mut DbConnection, id: i64) -> HubResult<Option<Finding>> {
    let mut q = Sql::<(
        BigInt,
        Text,
        Text,
        Text,
        Text,
        Nullable<Text>,
        Text,
        Text,
        Text,
        Text,
        Text,
        Nullable<Text>,
    )>::new(
        "SELECT id, connector, kind, account, entitlement, user_id, action, detail, status, \
         first_seen, last_seen, closed_at FROM engine_drift_findings WHERE id = ",
    );
    q.int(id);
    Ok(q.load::<Finding>(c)?.into_iter().next())
}

/// The engine's account records on `connector`: (user id, planned JSON text, the user's
/// lifecycle state), in user order. What a reconcile run compares a listing with.
pub fn connector_accounts(
    c: &mut DbConnection,
    connector: &str,
) -> HubResult<Vec<(String, String, Option<String>)>> {
    let mut q = Sql::<(Text, Text, Nullable<Text>)>::new(
        "SELECT a.user_id, a.planned, u.state FROM engine_accounts a \
         LEFT JOIN engine_users u ON u.user_id = a.user_id WHERE a.connector = ",
    );
    q.text(connector).push(" ORDER BY a.user_id");
    Ok(q.load::<(String, String, Option<String>)>(c)?)
}

/// Users with operations still to run (pending, running or held) on `connector`: their
/// recorded state is in flight, so a run leaves them out.
pub fn users_in_flight(c: &mut DbConnection, connector: &str) -> HubResult<Vec<String>> {
    let mut q = Sql::<Text>::new("SELECT DISTINCT user_id FROM engine_outbox WHERE connector = ");
    q.text(connector)
        .push(" AND status IN ('pending', 'running', 'held')");
    Ok(q.load::<String>(c)?)
}

/// Makes sure `connector` has a pending reconcile timer (key `reconcile:<connector>`) due at
/// `due` unless one is pending already; a done one (the schedule was removed, then put back)
/// is pending again.
pub fn ensure_timer(
    c: &mut DbConnection,
    connector: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let key = format!("reconcile:{connector}");
    let payload = serde_json::json!({ "connector": connector }).to_string();
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_timers (timer_key, user_id, kind, due, payload, status, created) VALUES (",
    );
    q.text(key.as_str())
        .push(", '', 'reconcile', ")
        .text(fmt_ts(due))
        .push(", ")
        .text(payload)
        .push(", 'pending', ")
        .text(fmt_ts(now))
        .push(
            ") ON CONFLICT (timer_key) DO UPDATE SET status = 'pending', due = excluded.due \
             WHERE engine_timers.status <> 'pending'",
        );
    Ok(q.execute(c)? > 0)
}

/// Takes the run lease of `connector` for `run_id` until `until`: true when no other run holds
/// an unexpired lease (one reconcile run per connector at a time, across processes and nodes).
pub fn take_run_lease(
    c: &mut DbConnection,
    connector: &str,
    run_id: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q =
        Sql::<()>::new("INSERT INTO engine_drift_runs (connector, run_id, lease_until) VALUES (");
    q.text(connector)
        .push(", ")
        .text(run_id)
        .push(", ")
        .text(fmt_ts(until))
        .push(
            ") ON CONFLICT (connector) DO UPDATE SET run_id = excluded.run_id, \
             lease_until = excluded.lease_until WHERE engine_drift_runs.lease_until < ",
        )
        .text(fmt_ts(now));
    Ok(q.execute(c)? == 1)
}

/// Extends the lease `run_id` holds; false when it lost it (expired and taken by another run).
pub fn extend_run_lease(
    c: &mut DbConnection,
    connector: &str,
    run_id: &str,
    until: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_drift_runs SET lease_until = ");
    q.text(fmt_ts(until))
        .push(" WHERE connector = ")
        .text(connector)
        .push(" AND run_id = ")
        .text(run_id);
    Ok(q.execute(c)? == 1)
}

/// Releases the lease `run_id` holds (a no-op when it no longer holds it).
pub fn release_run_lease(c: &mut DbConnection, connector: &str, run_id: &str) -> HubResult<()> {
    let mut q = Sql::<()>::new("DELETE FROM engine_drift_runs WHERE connector = ");
    q.text(connector).push(" AND run_id = ").text(run_id);
    q.execute(c)?;
    Ok(())
}
