//! Incidents (`engine_incidents`): what needs a human (an operation parked as failed, a
//! connector that cannot be built, a plan past its SLA, a required step a connector cannot do).
//! Raised `open`; those of an operation are resolved when it is retried.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

/// Opens an incident.
pub fn raise(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    connector: Option<&str>,
    outbox_id: Option<i64>,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_incidents (created, kind, user_id, connector, outbox_id, reason, status) VALUES (",
    );
    q.text(fmt_ts(now)).push(", ").text(kind).push(", ");
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
    audit_raised(c, kind, user_id, connector, reason, now)
}

/// The audit entry of a raised incident (its handling is audited where it is acknowledged or
/// resolved).
fn audit_raised(
    c: &mut DbConnection,
    kind: &str,
    user_id: Option<&str>,
    connector: Option<&str>,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    super::audit_chain::append(
        c,
        &super::audit_chain::NewEntry {
            at: now,
            actor: "hub",
            user_id: user_id.unwrap_or(""),
            connector,
            action: "incident.raise",
            outcome: kind,
            detail: &serde_json::json!({"kind": kind, "reason": reason}),
        },
    )?;
    Ok(())
}

/// An incident raised at most once per `dedupe_key` (an SLA breach per plan, an unsupported
/// step per plan, connector and step).
#[derive(Debug, Clone, Copy)]
pub struct NewIncident<'a> {
    pub kind: &'a str,
    pub user_id: Option<&'a str>,
    pub connector: Option<&'a str>,
    pub reason: &'a str,
    pub dedupe_key: &'a str,
}

/// Opens `i` unless an incident with its key was ever raised; true when it opened one.
pub fn raise_once(
    c: &mut DbConnection,
    i: &NewIncident<'_>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_incidents (created, kind, user_id, connector, outbox_id, reason, status, \
         dedupe_key) VALUES (",
    );
    q.text(fmt_ts(now)).push(", ").text(i.kind).push(", ");
    q.bind(Bind::OptText(i.user_id.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(i.connector.map(str::to_string)))
        .push(", NULL, ")
        .text(i.reason)
        .push(", 'open', ")
        .text(i.dedupe_key)
        .push(") ON CONFLICT (dedupe_key) DO NOTHING");
    let opened = q.execute(c)? > 0;
    if opened {
        audit_raised(c, i.kind, i.user_id, i.connector, i.reason, now)?;
    }
    Ok(opened)
}

/// `UPDATE engine_incidents` resolving open incidents as `by` with `note` at `now`; the caller
/// appends the rest of the `WHERE` (after `status = 'open'`).
fn resolving(by: &str, note: &str, now: DateTime<Utc>) -> Sql<()> {
    let mut q = Sql::<()>::new("UPDATE engine_incidents SET status = 'resolved', resolved_at = ");
    q.text(fmt_ts(now))
        .push(", resolved_by = ")
        .text(by)
        .push(", note = ")
        .text(note)
        .push(" WHERE status = 'open'");
    q
}

/// Resolves the open incident raised with `dedupe_key` (its cause is over), as `by` with
/// `note`; false when there is none open.
pub fn resolve_key(
    c: &mut DbConnection,
    dedupe_key: &str,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = resolving(by, note, now);
    q.push(" AND dedupe_key = ").text(dedupe_key);
    Ok(q.execute(c)? > 0)
}

/// Resolves the open incidents of `kind` for one user and connector (their cause is over: a
/// system that could not be read was read), as `by` with `note`. Returns how many.
pub fn resolve_open_for(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
    connector: &str,
    by: &str,
    note: &str,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = resolving(by, note, now);
    q.push(" AND kind = ")
        .text(kind)
        .push(" AND user_id = ")
        .text(user_id)
        .push(" AND connector = ")
        .text(connector);
    Ok(q.execute(c)?)
}

/// Resolves the open incidents an outbox operation raised (it is being retried).
pub(crate) fn resolve_for_op(c: &mut DbConnection, outbox_id: i64) -> HubResult<()> {
    let mut r = Sql::<()>::new(
        "UPDATE engine_incidents SET status = 'resolved' WHERE status = 'open' AND outbox_id = ",
    );
    r.int(outbox_id);
    r.execute(c)?;
    Ok(())
}

/// An open incident.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct Incident {
    pub id: i64,
    /// RFC 3339, as stored.
    pub created: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub connector: Option<String>,
    pub reason: String,
}

/// Open incidents, oldest first.
pub fn list_open(c: &mut DbConnection) -> HubResult<Vec<Incident>> {
    let q = Sql::<(BigInt, Text, Text, Nullable<Text>, Nullable<Text>, Text)>::new(
        "SELECT id, created, kind, user_id, connector, reason FROM engine_incidents \
         WHERE status = 'open' ORDER BY id",
    );
    Ok(q.load::<Incident>(c)?)
}

/// Opens an incident unless one of the same kind is open for the same user and connector (a
/// check that keeps failing is one thing to review, not one per attempt). Returns whether it
/// opened one.
pub fn raise_unless_open(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
    connector: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<BigInt>::new(
        "SELECT COUNT(*) FROM engine_incidents WHERE status = 'open' AND kind = ",
    );
    q.text(kind)
        .push(" AND user_id = ")
        .text(user_id)
        .push(" AND connector = ")
        .text(connector);
    if q.get_result::<i64>(c)? > 0 {
        return Ok(false);
    }
    raise(c, kind, Some(user_id), Some(connector), None, reason, now)?;
    Ok(true)
}

/// One incident with its notice ladder and who acknowledged or resolved it.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct IncidentDetail {
    pub id: i64,
    pub created: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub connector: Option<String>,
    pub reason: String,
    /// `open` or `resolved`.
    pub status: String,
    /// Notices queued so far.
    pub notify_count: i64,
    /// When the next notice is due (NULL: at once, while open and unacknowledged).
    pub next_notify_at: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<String>,
    pub resolved_by: Option<String>,
    pub note: Option<String>,
}

type DetailSt = (
    BigInt,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
    Text,
    Text,
    BigInt,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
);

const DETAIL_COLS: &str = "SELECT id, created, kind, user_id, connector, reason, status, \
     notify_count, next_notify_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by, \
     note FROM engine_incidents";

/// One incident by id.
pub fn get(c: &mut DbConnection, id: i64) -> HubResult<Option<IncidentDetail>> {
    let mut q = Sql::<DetailSt>::new(DETAIL_COLS);
    q.push(" WHERE id = ").int(id);
    Ok(q.load::<IncidentDetail>(c)?.into_iter().next())
}

/// Open, unacknowledged incidents whose next notice is due at `now`, oldest first (locked
/// with `SKIP LOCKED` on PostgreSQL; SQLite has a single writer).
pub fn due_for_notice(
    c: &mut DbConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> HubResult<Vec<IncidentDetail>> {
    let mut q = Sql::<DetailSt>::new(DETAIL_COLS);
    q.push(
        " WHERE status = 'open' AND acknowledged_at IS NULL AND (next_notify_at IS NULL OR \
         next_notify_at <= ",
    )
    .text(fmt_ts(now))
    .push(") ORDER BY id LIMIT ")
    .int(limit);
    // Two nodes ticking at once must not both queue the same step: the rows stay locked until
    // the caller's transaction has moved them along the ladder.
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE SKIP LOCKED");
    }
    Ok(q.load::<IncidentDetail>(c)?)
}

/// Records that notice `count` of incident `id` was queued; the next is due at `next`.
pub fn noticed(c: &mut DbConnection, id: i64, count: i64, next: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE engine_incidents SET notify_count = ");
    q.int(count)
        .push(", next_notify_at = ")
        .text(fmt_ts(next))
        .push(" WHERE id = ")
        .int(id);
    q.execute(c)?;
    Ok(())
}

/// Acknowledges an open incident (stops its notices); false when it is not open or already
/// acknowledged.
pub fn acknowledge(
    c: &mut DbConnection,
    id: i64,
    by: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_incidents SET acknowledged_at = ");
    q.text(fmt_ts(now))
        .push(", acknowledged_by = ")
        .text(by)
        .push(", note = COALESCE(")
        .bind(Bind::OptText(note.map(str::to_string)))
        .push(", note) WHERE status = 'open' AND acknowledged_at IS NULL AND id = ")
        .int(id);
    Ok(q.execute(c)? > 0)
}

/// Resolves an open incident; false when it is not open.
pub fn resolve(
    c: &mut DbConnection,
    id: i64,
    by: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_incidents SET status = 'resolved', resolved_at = ");
    q.text(fmt_ts(now))
        .push(", resolved_by = ")
        .text(by)
        .push(", note = COALESCE(")
        .bind(Bind::OptText(note.map(str::to_string)))
        .push(", note) WHERE status = 'open' AND id = ")
        .int(id);
    Ok(q.execute(c)? > 0)
}

/// The incidents raised at or after `from` and before `to`, oldest first, at most `limit`.
pub fn created_between(
    c: &mut DbConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> HubResult<Vec<IncidentDetail>> {
    let mut q = Sql::<DetailSt>::new(DETAIL_COLS);
    q.push(" WHERE created >= ")
        .text(fmt_ts(from))
        .push(" AND created < ")
        .text(fmt_ts(to))
        .push(" ORDER BY id")
        .limit(limit);
    Ok(q.load::<IncidentDetail>(c)?)
}

/// The incidents a plan raised, oldest first: those keyed to it (its SLA breach, its
/// unsupported steps), those of its operations (parked or refused), and the verification
/// incidents naming it ("plan PLAN (...)").
pub fn for_plan(c: &mut DbConnection, plan_id: &str) -> HubResult<Vec<IncidentDetail>> {
    let mut q = Sql::<DetailSt>::new(DETAIL_COLS);
    q.push(" WHERE dedupe_key IN (")
        .text(format!("sla_breach:{plan_id}"))
        .push(") OR dedupe_key LIKE ")
        .text(format!("unsupported_step:{}:%", like_escape(plan_id)))
        .push(" ESCAPE '\\' OR outbox_id IN (SELECT id FROM engine_outbox WHERE plan_id = ")
        .text(plan_id)
        .push(") OR (kind LIKE 'verification%' AND reason LIKE ")
        .text(format!("plan {} %", like_escape(plan_id)))
        .push(" ESCAPE '\\') ORDER BY id");
    Ok(q.load::<IncidentDetail>(c)?)
}

/// The connectors for which an incident of `kind` was ever raised about `user_id`, open or not.
pub fn connectors_raised_for(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
) -> HubResult<std::collections::BTreeSet<String>> {
    connectors_with_incidents(c, kind, user_id, false)
}

/// The connectors of the user's open incidents of `kind`.
pub fn connectors_open_for(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
) -> HubResult<std::collections::BTreeSet<String>> {
    connectors_with_incidents(c, kind, user_id, true)
}

fn connectors_with_incidents(
    c: &mut DbConnection,
    kind: &str,
    user_id: &str,
    open_only: bool,
) -> HubResult<std::collections::BTreeSet<String>> {
    let mut q =
        Sql::<Nullable<Text>>::new("SELECT DISTINCT connector FROM engine_incidents WHERE kind = ");
    q.text(kind).push(" AND user_id = ").text(user_id);
    if open_only {
        q.push(" AND status = 'open'");
    }
    Ok(q.load::<Option<String>>(c)?.into_iter().flatten().collect())
}

/// `s` with LIKE's wildcards and the escape character escaped (by `\`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}
