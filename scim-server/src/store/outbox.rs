//! Engine tables: per-user engine state, planned/actual accounts, the outbox, events, holds,
//! the audit trail and incidents. Functions take a connection so that they run inside the
//! caller's transaction (the SCIM write's, for plans).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, DbConnection, StoreResult};

fn ts(t: DateTime<Utc>) -> String {
    fmt_ts(t)
}

fn opt_ts(s: Option<String>) -> Option<DateTime<Utc>> {
    s.as_deref().and_then(parse_ts)
}

// ---------------------------------------------------------------------------------------------
// engine_users
// ---------------------------------------------------------------------------------------------

/// The engine's last decision about a user.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineUser {
    pub user_id: String,
    /// `active`, `not_started`, `left`, `expired`.
    pub state: String,
    pub profiles: Vec<String>,
    pub facts: serde_json::Value,
    pub updated: DateTime<Utc>,
}

pub fn get_user(c: &mut DbConnection, user_id: &str) -> StoreResult<Option<EngineUser>> {
    let mut q = Sql::<(Text, Text, Text, Text)>::new(
        "SELECT state, profiles, facts, updated FROM engine_users WHERE user_id = ",
    );
    q.text(user_id);
    Ok(q.get_result::<(String, String, String, String)>(c)
        .optional()?
        .map(|(state, profiles, facts, updated)| EngineUser {
            user_id: user_id.to_string(),
            state,
            profiles: serde_json::from_str(&profiles).unwrap_or_default(),
            facts: serde_json::from_str(&facts).unwrap_or_default(),
            updated: parse_ts(&updated).unwrap_or_default(),
        }))
}

pub fn put_user(c: &mut DbConnection, u: &EngineUser) -> StoreResult<()> {
    let profiles = serde_json::to_string(&u.profiles).unwrap_or_else(|_| "[]".into());
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_users (user_id, state, profiles, facts, updated) VALUES (",
    );
    q.text(u.user_id.as_str())
        .push(", ")
        .text(u.state.as_str())
        .push(", ")
        .text(profiles)
        .push(", ")
        .text(u.facts.to_string())
        .push(", ")
        .text(ts(u.updated))
        .push(
            ") ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, \
             profiles = excluded.profiles, facts = excluded.facts, updated = excluded.updated",
        );
    q.execute(c)?;
    Ok(())
}

/// Users the engine holds as active (the blast-radius denominator).
pub fn count_active_users(c: &mut DbConnection) -> StoreResult<i64> {
    let q = Sql::<BigInt>::new("SELECT COUNT(*) FROM engine_users WHERE state = 'active'");
    Ok(q.get_result::<i64>(c)?)
}

/// All user ids the engine knows.
pub fn user_ids(c: &mut DbConnection) -> StoreResult<Vec<String>> {
    let q = Sql::<Text>::new("SELECT user_id FROM engine_users ORDER BY user_id");
    Ok(q.load::<String>(c)?)
}

// ---------------------------------------------------------------------------------------------
// engine_accounts
// ---------------------------------------------------------------------------------------------

/// `(connector, planned JSON, actual JSON)` of a user's accounts.
pub fn accounts(
    c: &mut DbConnection,
    user_id: &str,
) -> StoreResult<Vec<(String, String, Option<String>)>> {
    let mut q = Sql::<(Text, Text, Nullable<Text>)>::new(
        "SELECT connector, planned, actual FROM engine_accounts WHERE user_id = ",
    );
    q.text(user_id).push(" ORDER BY connector");
    Ok(q.load::<(String, String, Option<String>)>(c)?)
}

pub fn put_planned(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
    planned: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_accounts (user_id, connector, planned, actual, updated) VALUES (",
    );
    q.text(user_id)
        .push(", ")
        .text(connector)
        .push(", ")
        .text(planned)
        .push(", NULL, ")
        .text(ts(now))
        .push(
            ") ON CONFLICT (user_id, connector) DO UPDATE SET planned = excluded.planned, \
             updated = excluded.updated",
        );
    q.execute(c)?;
    Ok(())
}

/// Sets both planned and actual (worker results; discarding a hold resets planned to actual).
pub fn put_account(
    c: &mut DbConnection,
    user_id: &str,
    connector: &str,
    planned: &str,
    actual: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_accounts (user_id, connector, planned, actual, updated) VALUES (",
    );
    q.text(user_id)
        .push(", ")
        .text(connector)
        .push(", ")
        .text(planned)
        .push(", ")
        .text(actual)
        .push(", ")
        .text(ts(now))
        .push(
            ") ON CONFLICT (user_id, connector) DO UPDATE SET planned = excluded.planned, \
             actual = excluded.actual, updated = excluded.updated",
        );
    q.execute(c)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// engine_outbox
// ---------------------------------------------------------------------------------------------

/// An outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub plan_id: String,
    pub user_id: String,
    pub connector: String,
    pub event: String,
    pub priority: i64,
    /// The operation, JSON.
    pub op: String,
    /// `pending`, `running`, `done`, `failed`, `held`, `discarded`.
    pub status: String,
    pub hold_id: Option<String>,
    pub attempts: i64,
    pub not_before: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewOp<'a> {
    pub plan_id: &'a str,
    pub user_id: &'a str,
    pub connector: &'a str,
    pub event: &'a str,
    pub priority: i64,
    pub op: String,
    pub hold_id: Option<&'a str>,
}

pub fn enqueue(c: &mut DbConnection, op: &NewOp<'_>, now: DateTime<Utc>) -> StoreResult<()> {
    let status = if op.hold_id.is_some() {
        "held"
    } else {
        "pending"
    };
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_outbox (plan_id, user_id, connector, event, priority, op, status, \
         hold_id, attempts, not_before, created) VALUES (",
    );
    q.text(op.plan_id)
        .push(", ")
        .text(op.user_id)
        .push(", ")
        .text(op.connector)
        .push(", ")
        .text(op.event)
        .push(", ")
        .int(op.priority)
        .push(", ")
        .text(op.op.as_str())
        .push(", ")
        .text(status)
        .push(", ");
    q.bind(Bind::OptText(op.hold_id.map(str::to_string)))
        .push(", 0, ")
        .text(ts(now))
        .push(", ")
        .text(ts(now))
        .push(")");
    q.execute(c)?;
    Ok(())
}

type OutboxSt = (
    BigInt,
    Text,
    Text,
    Text,
    Text,
    BigInt,
    Text,
    Text,
    Nullable<Text>,
    BigInt,
    Text,
    Nullable<Text>,
    Text,
    Nullable<Text>,
);
type OutboxTuple = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Option<String>,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
);

const OUTBOX_COLS: &str = "SELECT id, plan_id, user_id, connector, event, priority, op, status, \
     hold_id, attempts, not_before, last_error, created, finished FROM engine_outbox ";

fn outbox_row(t: OutboxTuple) -> OutboxRow {
    OutboxRow {
        id: t.0,
        plan_id: t.1,
        user_id: t.2,
        connector: t.3,
        event: t.4,
        priority: t.5,
        op: t.6,
        status: t.7,
        hold_id: t.8,
        attempts: t.9,
        not_before: parse_ts(&t.10).unwrap_or_default(),
        last_error: t.11,
        created: parse_ts(&t.12).unwrap_or_default(),
        finished: opt_ts(t.13),
    }
}

/// Claims up to `limit` runnable operations: pending and due (or running with an expired lease,
/// i.e. their worker died), the first not-yet-done operation of their (user, connector) pair,
/// priority lane first. On PostgreSQL the rows are locked with `FOR UPDATE SKIP LOCKED` so nodes
/// never claim the same row; on SQLite the single writer connection serialises claims.
pub fn claim(
    c: &mut DbConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    min_priority: i64,
    limit: i64,
) -> StoreResult<Vec<OutboxRow>> {
    let pg = matches!(c, DbConnection::Postgresql(_));
    let now_s = ts(now);
    // Two queries, one per status, each read in (priority DESC, id) order from
    // `engine_outbox_lane_idx` so that it stops at its LIMIT; one query with an OR over both
    // statuses would sort every pending row on each claim.
    let lane = |due: &str| {
        let mut q =
            Sql::<(BigInt, BigInt)>::new("SELECT o.id, o.priority FROM engine_outbox o WHERE ");
        q.push(due)
            .text(now_s.as_str())
            .push(" AND o.priority >= ")
            .int(min_priority)
            .push(
                " AND NOT EXISTS (SELECT 1 FROM engine_outbox p WHERE p.user_id = o.user_id \
                 AND p.connector = o.connector AND p.id < o.id \
                 AND p.status IN ('pending', 'running', 'held')) \
                 ORDER BY o.priority DESC, o.id",
            )
            .limit(limit);
        if pg {
            q.push(" FOR UPDATE OF o SKIP LOCKED");
        }
        q
    };
    let mut found: Vec<(i64, i64)> = lane("o.status = 'pending' AND o.not_before <= ").load(c)?;
    found.extend(lane("o.status = 'running' AND o.lease_until < ").load::<(i64, i64)>(c)?);
    found.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    found.truncate(usize::try_from(limit).unwrap_or(0));
    let ids: Vec<i64> = found.into_iter().map(|(id, _)| id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut u = Sql::<()>::new("UPDATE engine_outbox SET status = 'running', lease_until = ");
    u.text(ts(now + lease))
        .push(", lease_owner = ")
        .text(owner)
        .push(", attempts = attempts + 1 WHERE id IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            u.push(", ");
        }
        u.int(*id);
    }
    u.push(")");
    u.execute(c)?;
    let mut s = Sql::<OutboxSt>::new(OUTBOX_COLS);
    s.push("WHERE id IN (");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.int(*id);
    }
    s.push(") ORDER BY priority DESC, id");
    Ok(s.load::<OutboxTuple>(c)?
        .into_iter()
        .map(outbox_row)
        .collect())
}

/// Marks an operation done.
pub fn finish(c: &mut DbConnection, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'done', lease_until = NULL, last_error = NULL, finished = ",
    );
    q.text(ts(now)).push(" WHERE id = ").int(id);
    q.execute(c)?;
    Ok(())
}

/// Puts an operation back for a retry at `not_before`.
pub fn retry_later(
    c: &mut DbConnection,
    id: i64,
    not_before: DateTime<Utc>,
    error: &str,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'pending', lease_until = NULL, not_before = ",
    );
    q.text(ts(not_before))
        .push(", last_error = ")
        .text(error)
        .push(" WHERE id = ")
        .int(id);
    q.execute(c)?;
    Ok(())
}

/// Parks an operation as failed.
pub fn park(c: &mut DbConnection, id: i64, error: &str, now: DateTime<Utc>) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'failed', lease_until = NULL, last_error = ",
    );
    q.text(error)
        .push(", finished = ")
        .text(ts(now))
        .push(" WHERE id = ")
        .int(id);
    q.execute(c)?;
    Ok(())
}

/// Outbox rows, newest first, optionally of one user and/or status.
pub fn list_ops(
    c: &mut DbConnection,
    user_id: Option<&str>,
    status: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE 1 = 1");
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    if let Some(s) = status {
        q.push(" AND status = ").text(s);
    }
    q.push(" ORDER BY id DESC").limit(limit);
    Ok(q.load::<OutboxTuple>(c)?
        .into_iter()
        .map(outbox_row)
        .collect())
}

/// One outbox row.
pub fn get_op(c: &mut DbConnection, id: i64) -> StoreResult<Option<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE id = ").int(id);
    Ok(q.get_result::<OutboxTuple>(c).optional()?.map(outbox_row))
}

/// Outbox rows with an id above `after`, oldest first (what one transaction just planned).
pub fn list_ops_after(c: &mut DbConnection, after: i64) -> StoreResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE id > ").int(after).push(" ORDER BY id");
    Ok(q.load::<OutboxTuple>(c)?
        .into_iter()
        .map(outbox_row)
        .collect())
}

/// Whether an operation planned after `row` for the same user and connector has already run.
pub fn later_done(c: &mut DbConnection, row: &OutboxRow) -> StoreResult<bool> {
    let mut q = Sql::<BigInt>::new("SELECT COUNT(*) FROM engine_outbox WHERE user_id = ");
    q.text(row.user_id.as_str())
        .push(" AND connector = ")
        .text(row.connector.as_str())
        .push(" AND id > ")
        .int(row.id)
        .push(" AND status IN ('done', 'running')");
    Ok(q.get_result::<i64>(c)? > 0)
}

/// Puts a failed operation back to `pending`, due now, with a fresh retry budget, and resolves
/// the incidents it raised. Returns false when it was not failed.
pub fn retry_failed(c: &mut DbConnection, id: i64, now: DateTime<Utc>) -> StoreResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'pending', attempts = 0, lease_until = NULL, \
         finished = NULL, not_before = ",
    );
    q.text(ts(now))
        .push(" WHERE status = 'failed' AND id = ")
        .int(id);
    if q.execute(c)? == 0 {
        return Ok(false);
    }
    let mut r = Sql::<()>::new(
        "UPDATE engine_incidents SET status = 'resolved' WHERE status = 'open' AND outbox_id = ",
    );
    r.int(id);
    r.execute(c)?;
    Ok(true)
}

/// Counts outbox rows by status (`pending` also counts `running`).
pub fn count_open(c: &mut DbConnection) -> StoreResult<i64> {
    let q = Sql::<BigInt>::new(
        "SELECT COUNT(*) FROM engine_outbox WHERE status IN ('pending', 'running')",
    );
    Ok(q.get_result::<i64>(c)?)
}

// ---------------------------------------------------------------------------------------------
// engine_events and engine_holds
// ---------------------------------------------------------------------------------------------

pub fn record_event(
    c: &mut DbConnection,
    at: DateTime<Utc>,
    user_id: &str,
    event: &str,
    plan_id: &str,
    ops: i64,
    hold_id: Option<&str>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_events (at, user_id, event, plan_id, ops, hold_id) VALUES (",
    );
    q.text(ts(at))
        .push(", ")
        .text(user_id)
        .push(", ")
        .text(event)
        .push(", ")
        .text(plan_id)
        .push(", ")
        .int(ops)
        .push(", ");
    q.bind(Bind::OptText(hold_id.map(str::to_string))).push(")");
    q.execute(c)?;
    Ok(())
}

/// Deprovisioning events (leaver, contractor-expiry) with operations since `since`.
pub fn count_deprovisions_since(c: &mut DbConnection, since: DateTime<Utc>) -> StoreResult<i64> {
    let mut q = Sql::<BigInt>::new(
        "SELECT COUNT(DISTINCT user_id) FROM engine_events WHERE event IN ('leaver', \
         'contractor-expiry') AND ops > 0 AND at >= ",
    );
    q.text(ts(since));
    Ok(q.get_result::<i64>(c)?)
}

/// `(at, user_id, event, plan_id, ops, hold_id)`.
pub type EventRow = (String, String, String, String, i64, Option<String>);

/// Recent events, newest first.
pub fn list_events(
    c: &mut DbConnection,
    user_id: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<EventRow>> {
    let mut q = Sql::<(Text, Text, Text, Text, BigInt, Nullable<Text>)>::new(
        "SELECT at, user_id, event, plan_id, ops, hold_id FROM engine_events WHERE 1 = 1",
    );
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id DESC").limit(limit);
    Ok(q.load(c)?)
}

/// The open hold (`status = 'pending'`) created within `since`, if any.
pub fn open_hold(c: &mut DbConnection) -> StoreResult<Option<String>> {
    let q = Sql::<Text>::new(
        "SELECT id FROM engine_holds WHERE status = 'pending' ORDER BY created DESC LIMIT 1",
    );
    Ok(q.get_result::<String>(c).optional()?)
}

pub fn create_hold(
    c: &mut DbConnection,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new("INSERT INTO engine_holds (id, created, reason, status) VALUES (");
    q.text(id)
        .push(", ")
        .text(ts(now))
        .push(", ")
        .text(reason)
        .push(", 'pending')");
    q.execute(c)?;
    Ok(())
}

/// A hold and what it holds back.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Hold {
    pub id: String,
    pub created: String,
    pub reason: String,
    pub status: String,
    pub users: i64,
    pub operations: i64,
}

pub fn list_holds(c: &mut DbConnection, status: Option<&str>) -> StoreResult<Vec<Hold>> {
    let mut q = Sql::<(Text, Text, Text, Text, BigInt, BigInt)>::new(
        "SELECT h.id, h.created, h.reason, h.status, \
         (SELECT COUNT(DISTINCT o.user_id) FROM engine_outbox o WHERE o.hold_id = h.id), \
         (SELECT COUNT(*) FROM engine_outbox o WHERE o.hold_id = h.id) \
         FROM engine_holds h WHERE 1 = 1",
    );
    if let Some(s) = status {
        q.push(" AND h.status = ").text(s);
    }
    q.push(" ORDER BY h.created DESC");
    Ok(q.load::<(String, String, String, String, i64, i64)>(c)?
        .into_iter()
        .map(|(id, created, reason, status, users, operations)| Hold {
            id,
            created,
            reason,
            status,
            users,
            operations,
        })
        .collect())
}

/// Sets a pending hold's decision; returns false when it was not pending.
pub fn decide_hold(
    c: &mut DbConnection,
    id: &str,
    status: &str,
    by: &str,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_holds SET status = ");
    q.text(status)
        .push(", decided = ")
        .text(ts(now))
        .push(", decided_by = ")
        .text(by)
        .push(" WHERE status = 'pending' AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// Releases (`pending`) or discards (`discarded`) the operations of a hold; returns the users.
pub fn release_hold_ops(
    c: &mut DbConnection,
    id: &str,
    status: &str,
    now: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let mut users = Sql::<Text>::new("SELECT DISTINCT user_id FROM engine_outbox WHERE hold_id = ");
    users.text(id).push(" AND status = 'held' ORDER BY user_id");
    let users = users.load::<String>(c)?;
    let mut q = Sql::<()>::new("UPDATE engine_outbox SET status = ");
    q.text(status).push(", not_before = ").text(ts(now));
    if status == "discarded" {
        q.push(", finished = ").text(ts(now));
    }
    q.push(" WHERE status = 'held' AND hold_id = ").text(id);
    q.execute(c)?;
    Ok(users)
}

// ---------------------------------------------------------------------------------------------
// engine_audit and engine_incidents
// ---------------------------------------------------------------------------------------------

/// One audit entry (append-only).
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub user_id: &'a str,
    pub connector: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub detail: serde_json::Value,
}

pub fn audit(c: &mut DbConnection, e: &AuditEntry<'_>) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_audit (at, actor, user_id, connector, action, outcome, detail) VALUES (",
    );
    q.text(ts(e.at))
        .push(", ")
        .text(e.actor)
        .push(", ")
        .text(e.user_id)
        .push(", ");
    q.bind(Bind::OptText(e.connector.map(str::to_string)))
        .push(", ")
        .text(e.action)
        .push(", ")
        .text(e.outcome)
        .push(", ")
        .text(e.detail.to_string())
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// `(id, at, actor, user_id, connector, action, outcome, detail)`, oldest first.
pub type AuditRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
);

pub fn list_audit(c: &mut DbConnection, user_id: Option<&str>) -> StoreResult<Vec<AuditRow>> {
    let mut q = Sql::<(BigInt, Text, Text, Text, Nullable<Text>, Text, Text, Text)>::new(
        "SELECT id, at, actor, user_id, connector, action, outcome, detail FROM engine_audit WHERE 1 = 1",
    );
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    q.push(" ORDER BY id");
    Ok(q.load::<AuditRow>(c)?)
}

pub fn incident(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    connector: Option<&str>,
    outbox_id: Option<i64>,
    reason: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_incidents (created, kind, user_id, connector, outbox_id, reason, status) VALUES (",
    );
    q.text(ts(now)).push(", ").text(kind).push(", ");
    q.bind(Bind::OptText(user_id.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(connector.map(str::to_string)))
        .push(", ");
    match outbox_id {
        Some(id) => q.int(id),
        None => q.push("NULL"),
    };
    q.push(", ").text(reason).push(", 'open')");
    q.execute(c)?;
    Ok(())
}

/// `(id, created, kind, user_id, connector, reason)`.
pub type IncidentRow = (i64, String, String, Option<String>, Option<String>, String);

/// Open incidents.
pub fn open_incidents(c: &mut DbConnection) -> StoreResult<Vec<IncidentRow>> {
    let q = Sql::<(BigInt, Text, Text, Nullable<Text>, Nullable<Text>, Text)>::new(
        "SELECT id, created, kind, user_id, connector, reason FROM engine_incidents \
         WHERE status = 'open' ORDER BY id",
    );
    Ok(q.load(c)?)
}

/// `(member_id, member_type)` of a group's direct members.
pub fn group_members(c: &mut DbConnection, group_id: &str) -> StoreResult<Vec<(String, String)>> {
    let mut q = Sql::<(Text, Text)>::new(
        "SELECT member_id, member_type FROM group_members WHERE group_id = ",
    );
    q.text(group_id).push(" ORDER BY member_id");
    Ok(q.load::<(String, String)>(c)?)
}
