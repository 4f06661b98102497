//! The operation queue (`engine_outbox`): the engine enqueues connector operations in the SCIM
//! write's transaction; workers claim, finish, retry or park them; the admin API lists and
//! retries them. Functions take a connection so that they run inside the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};

use super::sql::{Bind, Sql};
use super::text_enum::text_enum;
use super::{fmt_ts, incidents, parse_ts, DbConnection};
use crate::error::HubResult;

text_enum! {
    /// Where an operation is in its life.
    pub enum OutboxStatus {
        /// Waiting for a worker (from `not_before` on).
        Pending = "pending",
        /// Claimed by a worker, which holds it while its lease lasts and renews it while the
        /// call runs.
        Running = "running",
        Done = "done",
        /// Parked after a permanent error or the last retry; an admin may retry it.
        Failed = "failed",
        /// Held back by a blast-radius hold until an admin confirms or discards it.
        Held = "held",
        /// Dropped with its discarded hold.
        Discarded = "discarded",
    }
}

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
    pub status: OutboxStatus,
    pub hold_id: Option<String>,
    pub attempts: i64,
    pub not_before: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// Who holds the current (or last) claim. (`lease_until` is not read: diesel reads at most
    /// 16 columns, and the worker that claimed the row knows when its lease ends.)
    pub lease_owner: Option<String>,
    /// How many times the row was claimed; never reset (unlike `attempts`, which an admin
    /// retry resets), so with `lease_owner` it names one claim: the fencing token every state
    /// change a worker makes is checked against.
    pub claim_seq: i64,
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

pub fn enqueue(c: &mut DbConnection, op: &NewOp<'_>, now: DateTime<Utc>) -> HubResult<()> {
    enqueue_all(c, std::slice::from_ref(op), now)
}

/// Rows per multi-row `INSERT` of [`enqueue_all`] (ten bound values each).
const ENQUEUE_ROWS: usize = 64;

/// Queues `ops` in the order given (their ids ascend in that order, which the workers keep per
/// user and connector), several rows per statement: a plan's operations were one round trip
/// each on PostgreSQL.
pub fn enqueue_all(c: &mut DbConnection, ops: &[NewOp<'_>], now: DateTime<Utc>) -> HubResult<()> {
    let now = fmt_ts(now);
    for chunk in ops.chunks(ENQUEUE_ROWS) {
        let mut q = Sql::<()>::new(
            "INSERT INTO engine_outbox (plan_id, user_id, connector, event, priority, op, status, \
             hold_id, attempts, not_before, created) VALUES ",
        );
        for (i, op) in chunk.iter().enumerate() {
            let status = if op.hold_id.is_some() {
                OutboxStatus::Held
            } else {
                OutboxStatus::Pending
            };
            q.push(if i == 0 { "(" } else { ", (" })
                .text(op.plan_id)
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
                .text(status.as_str())
                .push(", ");
            q.bind(Bind::OptText(op.hold_id.map(str::to_string)))
                .push(", 0, ")
                .text(now.as_str())
                .push(", ")
                .text(now.as_str())
                .push(")");
        }
        q.execute(c)?;
    }
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
    Nullable<Text>,
    BigInt,
);

/// An `engine_outbox` row as read ([`OUTBOX_COLS`], in that order): timestamps and status still
/// text.
#[derive(Queryable)]
struct OutboxRecord {
    id: i64,
    plan_id: String,
    user_id: String,
    connector: String,
    event: String,
    priority: i64,
    op: String,
    status: String,
    hold_id: Option<String>,
    attempts: i64,
    not_before: String,
    last_error: Option<String>,
    created: String,
    finished: Option<String>,
    lease_owner: Option<String>,
    claim_seq: i64,
}

const OUTBOX_COLS: &str = "SELECT id, plan_id, user_id, connector, event, priority, op, status, \
     hold_id, attempts, not_before, last_error, created, finished, lease_owner, claim_seq \
     FROM engine_outbox ";

impl OutboxRecord {
    fn into_row(self) -> HubResult<OutboxRow> {
        Ok(OutboxRow {
            id: self.id,
            plan_id: self.plan_id,
            user_id: self.user_id,
            connector: self.connector,
            event: self.event,
            priority: self.priority,
            op: self.op,
            status: OutboxStatus::from_stored(&self.status)?,
            hold_id: self.hold_id,
            attempts: self.attempts,
            not_before: parse_ts(&self.not_before).unwrap_or_default(),
            last_error: self.last_error,
            created: parse_ts(&self.created).unwrap_or_default(),
            finished: self.finished.as_deref().and_then(parse_ts),
            lease_owner: self.lease_owner,
            claim_seq: self.claim_seq,
        })
    }
}

fn into_rows(records: Vec<OutboxRecord>) -> HubResult<Vec<OutboxRow>> {
    records.into_iter().map(OutboxRecord::into_row).collect()
}

/// An operation a claim may take: `id, priority`.
#[derive(Queryable)]
struct Claimable {
    id: i64,
    priority: i64,
}

/// Claims up to `limit` runnable operations: pending and due (or running with an expired lease,
/// i.e. their worker died or stalled), the first not-yet-done operation of their (user,
/// connector) pair, priority lane first. On PostgreSQL the rows are locked with
/// `FOR UPDATE SKIP LOCKED` so nodes never claim the same row; on SQLite the single writer
/// connection serialises claims.
///
/// Order per pair holds under takeovers: an operation is claimable only while no earlier one of
/// its pair is pending, running (even with an expired lease) or held, so a re-claimed row keeps
/// the later ones waiting until it is done or parked. Operations of a connector whose circuit is
/// not closed (`connector_health`) are not claimed here: they wait for its probe
/// ([`claim_probe`]). Each claim sets `lease_owner`, bumps
/// `claim_seq` (the fencing token) and `attempts`, and returns the rows as claimed.
pub fn claim(
    c: &mut DbConnection,
    owner: &str,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    min_priority: i64,
    limit: i64,
) -> HubResult<Vec<OutboxRow>> {
    let pg = matches!(c, DbConnection::Postgresql(_));
    let now_s = fmt_ts(now);
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
                 AND NOT EXISTS (SELECT 1 FROM connector_health h \
                 WHERE h.connector = o.connector AND h.state <> 'closed') \
                 ORDER BY o.priority DESC, o.id",
            )
            .limit(limit);
        if pg {
            q.push(" FOR UPDATE OF o SKIP LOCKED");
        }
        q
    };
    let mut found: Vec<Claimable> = lane("o.status = 'pending' AND o.not_before <= ").load(c)?;
    found.extend(lane("o.status = 'running' AND o.lease_until < ").load::<Claimable>(c)?);
    found.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
    found.truncate(usize::try_from(limit).unwrap_or(0));
    let ids: Vec<i64> = found.into_iter().map(|f| f.id).collect();
    take(c, &ids, owner, now, lease)
}

/// Claims the rows `ids` for `owner` (see [`claim`]) and returns them as claimed.
fn take(
    c: &mut DbConnection,
    ids: &[i64],
    owner: &str,
    now: DateTime<Utc>,
    lease: chrono::Duration,
) -> HubResult<Vec<OutboxRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut u = Sql::<()>::new("UPDATE engine_outbox SET status = 'running', lease_until = ");
    u.text(fmt_ts(now + lease))
        .push(", lease_owner = ")
        .text(owner)
        .push(", attempts = attempts + 1, claim_seq = claim_seq + 1 WHERE id IN (");
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
    into_rows(s.load::<OutboxRecord>(c)?)
}

/// Claims the one operation that probes `connector`'s circuit (the caller took the probe,
/// `connector_health::take_probe`): the first, by lane and id, of the connector's operations
/// that the claim's per-pair order allows, pending (whatever its backoff: the probe asks
/// whether the connector answers, not whether this operation's wait is over) or running with
/// an expired lease, at `min_priority` or above. Per-user order holds as in [`claim`].
pub fn claim_probe(
    c: &mut DbConnection,
    connector: &str,
    owner: &str,
    now: DateTime<Utc>,
    lease: chrono::Duration,
    min_priority: i64,
) -> HubResult<Option<OutboxRow>> {
    let mut q = Sql::<(BigInt, BigInt)>::new(
        "SELECT o.id, o.priority FROM engine_outbox o WHERE o.connector = ",
    );
    q.text(connector)
        .push(" AND (o.status = 'pending' OR (o.status = 'running' AND o.lease_until < ")
        .text(fmt_ts(now))
        .push(")) AND o.priority >= ")
        .int(min_priority)
        .push(
            " AND NOT EXISTS (SELECT 1 FROM engine_outbox p WHERE p.user_id = o.user_id \
             AND p.connector = o.connector AND p.id < o.id \
             AND p.status IN ('pending', 'running', 'held')) \
             ORDER BY o.priority DESC, o.id",
        )
        .limit(1);
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE OF o SKIP LOCKED");
    }
    let ids: Vec<i64> = q.load::<Claimable>(c)?.into_iter().map(|f| f.id).collect();
    Ok(take(c, &ids, owner, now, lease)?.into_iter().next())
}

/// Appends the fence of `claim` to an UPDATE: it applies only while the row is still running
/// under that very claim. A worker that lost its claim (its lease ran out and another worker
/// took the row over) matches nothing, so its write is a no-op.
fn fenced(q: &mut Sql<()>, claim: &OutboxRow) {
    q.push(" WHERE id = ")
        .int(claim.id)
        .push(" AND status = 'running' AND lease_owner = ")
        .text(claim.lease_owner.clone().unwrap_or_default())
        .push(" AND claim_seq = ")
        .int(claim.claim_seq);
}

/// Extends the lease of `claim` to `until`. Returns false when the claim was lost.
pub fn renew(c: &mut DbConnection, claim: &OutboxRow, until: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_outbox SET lease_until = ");
    q.text(fmt_ts(until));
    fenced(&mut q, claim);
    Ok(q.execute(c)? > 0)
}

/// Marks the operation of `claim` done. Returns false (and changes nothing) when the claim was
/// lost.
pub fn finish(c: &mut DbConnection, claim: &OutboxRow, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'done', lease_until = NULL, last_error = NULL, finished = ",
    );
    q.text(fmt_ts(now));
    fenced(&mut q, claim);
    Ok(q.execute(c)? > 0)
}

/// Puts the operation of `claim` back for a retry at `not_before`. Returns false (and changes
/// nothing) when the claim was lost.
pub fn retry_later(
    c: &mut DbConnection,
    claim: &OutboxRow,
    not_before: DateTime<Utc>,
    error: &str,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'pending', lease_until = NULL, not_before = ",
    );
    q.text(fmt_ts(not_before))
        .push(", last_error = ")
        .text(error);
    fenced(&mut q, claim);
    Ok(q.execute(c)? > 0)
}

/// Puts the operation of `claim` back to wait for its connector's circuit: pending from
/// `not_before` (the next probe), with the attempt of this claim given back (an outage does not
/// burn an operation's retry budget). Returns false (and changes nothing) when the claim was
/// lost.
pub fn wait_for_circuit(
    c: &mut DbConnection,
    claim: &OutboxRow,
    not_before: DateTime<Utc>,
    error: &str,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'pending', lease_until = NULL, \
         attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, not_before = ",
    );
    q.text(fmt_ts(not_before))
        .push(", last_error = ")
        .text(error);
    fenced(&mut q, claim);
    Ok(q.execute(c)? > 0)
}

/// Parks the operation of `claim` as failed. Returns false (and changes nothing) when the claim
/// was lost.
pub fn park(
    c: &mut DbConnection,
    claim: &OutboxRow,
    error: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'failed', lease_until = NULL, last_error = ",
    );
    q.text(error).push(", finished = ").text(fmt_ts(now));
    fenced(&mut q, claim);
    Ok(q.execute(c)? > 0)
}

/// Puts every running operation whose claim is not one of `instance`'s (owners starting with
/// `instance`) back to pending at once, rather than when its lease runs out. Only for a process
/// that is the one writer of its database (single-node SQLite), at start: any other claim then
/// belongs to a process that died. Returns how many were released.
pub fn release_foreign_claims(c: &mut DbConnection, instance: &str) -> HubResult<usize> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'pending', lease_until = NULL, lease_owner = NULL \
         WHERE status = 'running' AND (lease_owner IS NULL OR substr(lease_owner, 1, ",
    );
    // The length is a literal: PostgreSQL has no substr(text, integer, bigint).
    q.push(&instance.chars().count().to_string())
        .push(") <> ")
        .text(instance)
        .push(")");
    Ok(q.execute(c)?)
}

/// Outbox rows, newest first, optionally of one user and/or status.
pub fn list_ops(
    c: &mut DbConnection,
    user_id: Option<&str>,
    status: Option<OutboxStatus>,
    limit: i64,
) -> HubResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE 1 = 1");
    if let Some(u) = user_id {
        q.push(" AND user_id = ").text(u);
    }
    if let Some(s) = status {
        q.push(" AND status = ").text(s.as_str());
    }
    q.push(" ORDER BY id DESC").limit(limit);
    into_rows(q.load::<OutboxRecord>(c)?)
}

/// The operations of plan `plan_id` not done yet: pending, running, held or parked as failed
/// (what keeps the plan from being complete; discarded ones were dropped by an admin), in order.
pub fn outstanding(c: &mut DbConnection, plan_id: &str) -> HubResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE plan_id = ")
        .text(plan_id)
        .push(" AND status IN ('pending', 'running', 'held', 'failed') ORDER BY id");
    into_rows(q.load::<OutboxRecord>(c)?)
}

/// One outbox row.
pub fn get_op(c: &mut DbConnection, id: i64) -> HubResult<Option<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE id = ").int(id);
    q.get_result::<OutboxRecord>(c)
        .optional()?
        .map(OutboxRecord::into_row)
        .transpose()
}

/// Outbox rows with an id above `after`, oldest first (what one transaction just planned).
pub fn list_ops_after(c: &mut DbConnection, after: i64) -> HubResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE id > ").int(after).push(" ORDER BY id");
    into_rows(q.load::<OutboxRecord>(c)?)
}

/// Whether an operation planned after `row` for the same user and connector has already run.
pub fn later_done(c: &mut DbConnection, row: &OutboxRow) -> HubResult<bool> {
    if let DbConnection::Postgresql(_) = c {
        // The later operations still pending are locked too, until the caller's transaction
        // ends: a worker claims with SKIP LOCKED, so none of them starts between this answer
        // and the retry it allows (which would run the old operation after a newer one).
        let mut q = Sql::<Text>::new("SELECT status FROM engine_outbox WHERE user_id = ");
        q.text(row.user_id.as_str())
            .push(" AND connector = ")
            .text(row.connector.as_str())
            .push(" AND id > ")
            .int(row.id)
            .push(" AND status IN ('pending', 'done', 'running') FOR UPDATE");
        let statuses = q.load::<String>(c)?;
        return Ok(statuses.iter().any(|s| s == "done" || s == "running"));
    }
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
pub fn retry_failed(c: &mut DbConnection, id: i64, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "UPDATE engine_outbox SET status = 'pending', attempts = 0, lease_until = NULL, \
         finished = NULL, not_before = ",
    );
    q.text(fmt_ts(now))
        .push(" WHERE status = 'failed' AND id = ")
        .int(id);
    if q.execute(c)? == 0 {
        return Ok(false);
    }
    incidents::resolve_for_op(c, id)?;
    Ok(true)
}

/// The operations of `connector` in `status`, oldest first (the order they were planned in).
pub fn list_connector(
    c: &mut DbConnection,
    connector: &str,
    status: OutboxStatus,
) -> HubResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE connector = ")
        .text(connector)
        .push(" AND status = ")
        .text(status.as_str())
        .push(" ORDER BY id");
    into_rows(q.load::<OutboxRecord>(c)?)
}

/// Makes the pending operations of `connector` that wait out a backoff due now, with a fresh
/// retry budget (the connector is back: no reason to wait, nor to park them on the attempts its
/// outage burnt). Their order is the claim's (per user and connector, by id). Returns how many.
pub fn resume_waiting(
    c: &mut DbConnection,
    connector: &str,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_outbox SET attempts = 0, not_before = ");
    q.text(fmt_ts(now))
        .push(" WHERE status = 'pending' AND connector = ")
        .text(connector)
        .push(" AND (not_before > ")
        .text(fmt_ts(now))
        .push(" OR attempts > 0)");
    Ok(q.execute(c)?)
}

/// Counts outbox rows by status (`pending` also counts `running`).
pub fn count_open(c: &mut DbConnection) -> HubResult<i64> {
    let q = Sql::<BigInt>::new(
        "SELECT COUNT(*) FROM engine_outbox WHERE status IN ('pending', 'running')",
    );
    Ok(q.get_result::<i64>(c)?)
}

/// Every operation a plan queued, in order (whatever their status).
pub fn list_plan(c: &mut DbConnection, plan_id: &str) -> HubResult<Vec<OutboxRow>> {
    let mut q = Sql::<OutboxSt>::new(OUTBOX_COLS);
    q.push("WHERE plan_id = ")
        .text(plan_id)
        .push(" ORDER BY id");
    into_rows(q.load::<OutboxRecord>(c)?)
}
