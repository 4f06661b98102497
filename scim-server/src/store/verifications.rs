//! Post-change verification results (`engine_verifications`): per plan and connector, what the
//! system read back gave (`verified`, `mismatch`, `unreadable`, `not_verifiable`), the
//! differences or the error, and when. Kept for the reports; one row per finished check.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::Sql;
use super::{fmt_ts, timers, DbConnection};
use crate::error::HubResult;

/// A verification result to record.
#[derive(Debug, Clone)]
pub struct NewVerification<'a> {
    pub plan_id: &'a str,
    pub user_id: &'a str,
    pub connector: &'a str,
    pub event: &'a str,
    pub outcome: &'a str,
    /// JSON: the differences, the error, or notes (what a read cannot show).
    pub detail: serde_json::Value,
    /// Reads tried (1 when the first read answered).
    pub attempts: i64,
    pub checked_at: DateTime<Utc>,
}

pub fn record(c: &mut DbConnection, v: &NewVerification<'_>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_verifications (plan_id, user_id, connector, event, outcome, detail, \
         attempts, checked_at) VALUES (",
    );
    q.text(v.plan_id)
        .push(", ")
        .text(v.user_id)
        .push(", ")
        .text(v.connector)
        .push(", ")
        .text(v.event)
        .push(", ")
        .text(v.outcome)
        .push(", ")
        .text(v.detail.to_string())
        .push(", ")
        .int(v.attempts)
        .push(", ")
        .text(fmt_ts(v.checked_at))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// A recorded verification.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Verification {
    pub id: i64,
    pub plan_id: String,
    pub user_id: String,
    pub connector: String,
    pub event: String,
    pub outcome: String,
    /// JSON text, as stored.
    pub detail: String,
    pub attempts: i64,
    /// RFC 3339, as stored.
    pub checked_at: String,
}

/// Verifications, oldest first, optionally of one user.
pub fn list(c: &mut DbConnection, user_id: Option<&str>) -> HubResult<Vec<Verification>> {
    let mut q = Sql::<(BigInt, Text, Text, Text, Text, Text, Text, BigInt, Text)>::new(
        "SELECT id, plan_id, user_id, connector, event, outcome, detail, attempts, checked_at \
         FROM engine_verifications WHERE 1 = 1",
    );
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id");
    Ok(q.load::<Verification>(c)?)
}

/// Operations of a user on a connector that are still to run (pending, running or held): a
/// verification waits for them, since reading back before they ran would report their
/// absence as a mismatch.
pub fn open_ops(c: &mut DbConnection, user_id: &str, connector: &str) -> HubResult<i64> {
    let mut q = Sql::<BigInt>::new("SELECT COUNT(*) FROM engine_outbox WHERE user_id = ");
    q.text(user_id)
        .push(" AND connector = ")
        .text(connector)
        .push(" AND status IN ('pending', 'running', 'held')");
    Ok(q.get_result::<i64>(c)?)
}

/// The operations a plan queued on a connector, as stored JSON text, in order.
pub fn plan_ops(c: &mut DbConnection, plan_id: &str, connector: &str) -> HubResult<Vec<String>> {
    let mut q = Sql::<Text>::new("SELECT op FROM engine_outbox WHERE plan_id = ");
    q.text(plan_id)
        .push(" AND connector = ")
        .text(connector)
        .push(" ORDER BY id");
    Ok(q.load::<String>(c)?)
}

/// The verifications of one plan, oldest first (one per system and finished check).
pub fn for_plan(c: &mut DbConnection, plan_id: &str) -> HubResult<Vec<Verification>> {
    let mut q = Sql::<(BigInt, Text, Text, Text, Text, Text, Text, BigInt, Text)>::new(
        "SELECT id, plan_id, user_id, connector, event, outcome, detail, attempts, checked_at \
         FROM engine_verifications WHERE plan_id = ",
    );
    q.text(plan_id).push(" ORDER BY id");
    Ok(q.load::<Verification>(c)?)
}

/// Arms the verification of `plan_id` on `connector` again for `due` (operations of the plan
/// were put back after an outage, or the system answered again): a pending check of that plan
/// and system is made due at `due` with its reads counted afresh; otherwise, when the plan was
/// checked there before (e.g. `unreadable` while the system was down), a new check is scheduled,
/// whose read supersedes the earlier outcome. A plan that is not verified on that system (no
/// check pending nor recorded) gets none. Returns whether a check is armed.
pub fn rearm(
    c: &mut DbConnection,
    user_id: &str,
    plan_id: &str,
    connector: &str,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let same = |p: &serde_json::Value| {
        p.get("plan_id").and_then(|v| v.as_str()) == Some(plan_id)
            && p.get("connector").and_then(|v| v.as_str()) == Some(connector)
    };
    let pending: Vec<timers::Timer> = timers::list(c, Some(user_id))?
        .into_iter()
        .filter(|t| t.kind == "verify" && t.status == "pending" && same(&t.payload))
        .collect();
    if !pending.is_empty() {
        for t in pending {
            let mut payload = t.payload.clone();
            if let Some(o) = payload.as_object_mut() {
                o.insert("attempt".into(), 0.into());
            }
            timers::reschedule(c, t.id, due, &payload)?;
        }
        return Ok(true);
    }
    let done: Vec<Verification> = for_plan(c, plan_id)?
        .into_iter()
        .filter(|v| v.connector == connector)
        .collect();
    let Some(last) = done.last() else {
        return Ok(false);
    };
    // One key per re-arm after a recorded outcome: arming twice before the check ran finds the
    // pending timer above.
    let key = format!(
        "verify:{user_id}:{plan_id}:{connector}:rearm:{}",
        done.len()
    );
    let payload = serde_json::json!({
        "plan_id": plan_id,
        "connector": connector,
        "event": last.event,
        "attempt": 0,
        "round": 0,
    });
    timers::schedule(c, &key, user_id, "verify", due, &payload, now)?;
    Ok(true)
}

/// The plans whose latest check on `connector` (the latest of their user there) is
/// `unreadable`, as (user, plan): what to read again once the system answers.
pub fn unreadable_on(c: &mut DbConnection, connector: &str) -> HubResult<Vec<(String, String)>> {
    let mut q = Sql::<(Text, Text)>::new(
        "SELECT v.user_id, v.plan_id FROM engine_verifications v WHERE v.connector = ",
    );
    q.text(connector).push(
        " AND v.outcome = 'unreadable' AND v.id = (SELECT MAX(w.id) FROM \
             engine_verifications w WHERE w.user_id = v.user_id AND w.connector = v.connector) \
             ORDER BY v.id",
    );
    Ok(q.load::<(String, String)>(c)?)
}
