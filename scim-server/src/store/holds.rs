//! Blast-radius holds (`engine_holds`): when a burst of deprovisions crosses the policy's
//! threshold, the engine parks the operations behind a hold until an admin confirms (releases
//! them) or discards it. The held operations themselves are `engine_outbox` rows with
//! [`OutboxStatus::Held`].
//!
//! A change that re-plans many users at once (a group deleted or emptied) is one blast: its
//! plans are written behind a [`HoldStatus::Staging`] hold while they are planned, and only
//! when the last of them is planned does the guard decide on the whole change: the hold becomes
//! [`HoldStatus::Pending`] ([`promote`]) or dissolves and its operations run ([`dissolve`]).

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};
use serde::Serialize;

use super::outbox::OutboxStatus;
use super::resources::lock_for_write;
use super::sql::{Bind, Sql};
use super::text_enum::text_enum;
use super::{fmt_ts, DbConnection};
use crate::error::HubResult;

text_enum! {
    /// A hold's decision.
    pub enum HoldStatus {
        /// A group change whose users are still being planned: nothing is decided or sent yet.
        Staging = "staging",
        /// Waiting for an admin.
        Pending = "pending",
        /// Confirmed: its operations were released.
        Confirmed = "confirmed",
        /// Discarded: its operations were dropped.
        Discarded = "discarded",
    }
}

/// The newest pending hold, if any.
pub fn open_hold(c: &mut DbConnection) -> HubResult<Option<String>> {
    let mut q = Sql::<Text>::new(
        "SELECT id FROM engine_holds WHERE status = 'pending' ORDER BY created DESC LIMIT 1",
    );
    // Locked on PostgreSQL until the plan that joins it commits: a confirm or discard of the
    // hold then waits for the plan, and releases the operations it adds. Unlocked, a decision
    // committed between this read and the plan's commit left the plan's operations held behind
    // a decided hold that nothing releases (and every later operation of those users behind
    // them). Once the decision commits first, the re-checked row no longer matches: the plan
    // joins an older pending hold if there is one (LIMIT under FOR UPDATE skips the decided
    // row), else opens a hold of its own.
    lock_for_write(c, &mut q);
    Ok(q.get_result::<String>(c).optional()?)
}

pub fn create(c: &mut DbConnection, id: &str, reason: &str, now: DateTime<Utc>) -> HubResult<()> {
    create_as(c, id, reason, HoldStatus::Pending, now)
}

/// Creates a hold in `status` (a pending hold, or a staging one for a group change).
pub fn create_as(
    c: &mut DbConnection,
    id: &str,
    reason: &str,
    status: HoldStatus,
    now: DateTime<Utc>,
) -> HubResult<()> {
    create_judged(c, id, reason, status, None, now)
}

/// Creates a hold in `status` whose change is judged by `guard` (the engine's text form of a
/// blast-radius guard) rather than by the policy in force when it is decided.
pub fn create_judged(
    c: &mut DbConnection,
    id: &str,
    reason: &str,
    status: HoldStatus,
    guard: Option<&str>,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut q =
        Sql::<()>::new("INSERT INTO engine_holds (id, created, reason, status, guard) VALUES (");
    q.text(id)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(reason)
        .push(", ")
        .text(status.as_str())
        .push(", ")
        .bind(Bind::OptText(guard.map(str::to_string)))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// The guard hold `id` was created to be judged by ([`create_judged`]); `None` when it is
/// judged by the policy in force.
pub fn guard(c: &mut DbConnection, id: &str) -> HubResult<Option<String>> {
    let mut q = Sql::<Nullable<Text>>::new("SELECT guard FROM engine_holds WHERE id = ");
    q.text(id);
    Ok(q.get_result::<Option<String>>(c).optional()?.flatten())
}

/// The staging hold `id` becomes pending, `reason` (why the guard tripped) put before what the
/// change was; false when it was not staging.
pub fn promote(c: &mut DbConnection, id: &str, reason: &str) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_holds SET status = ");
    q.text(HoldStatus::Pending.as_str())
        .push(", reason = ")
        .text(format!("{reason}: "))
        .push(" || reason WHERE status = 'staging' AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// The staging hold `id` goes (the guard let its change through): its operations become
/// pending, due now, and no longer name it. Returns how many operations were released.
pub fn dissolve(c: &mut DbConnection, id: &str, now: DateTime<Utc>) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_outbox SET status = ");
    q.text(OutboxStatus::Pending.as_str())
        .push(", hold_id = NULL, not_before = ")
        .text(fmt_ts(now))
        .push(" WHERE status = 'held' AND hold_id = ")
        .text(id);
    let released = q.execute(c)?;
    let mut q = Sql::<()>::new("DELETE FROM engine_holds WHERE status = 'staging' AND id = ");
    q.text(id);
    q.execute(c)?;
    Ok(released)
}

/// Locks the staging hold `id` for the rest of the transaction (PostgreSQL: `FOR UPDATE`;
/// SQLite has one writer), so two runners never plan batches of one change at once and the
/// last batch sees every other one committed. False when it is no longer staging.
pub fn lock_staging(c: &mut DbConnection, id: &str) -> HubResult<bool> {
    let mut q = Sql::<Text>::new("SELECT id FROM engine_holds WHERE status = 'staging' AND id = ");
    q.text(id);
    lock_for_write(c, &mut q);
    Ok(q.get_result::<String>(c).optional()?.is_some())
}

/// A hold and what it holds back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hold {
    pub id: String,
    pub created: String,
    pub reason: String,
    pub status: HoldStatus,
    pub users: i64,
    pub operations: i64,
}

/// A hold as read: `id, created, reason, status, users, operations`.
#[derive(Queryable)]
struct HoldRecord {
    id: String,
    created: String,
    reason: String,
    status: String,
    users: i64,
    operations: i64,
}

/// Holds, newest first, optionally of one status.
pub fn list(c: &mut DbConnection, status: Option<HoldStatus>) -> HubResult<Vec<Hold>> {
    let mut q = Sql::<(Text, Text, Text, Text, BigInt, BigInt)>::new(
        "SELECT h.id, h.created, h.reason, h.status, \
         (SELECT COUNT(DISTINCT o.user_id) FROM engine_outbox o WHERE o.hold_id = h.id), \
         (SELECT COUNT(*) FROM engine_outbox o WHERE o.hold_id = h.id) \
         FROM engine_holds h WHERE 1 = 1",
    );
    if let Some(s) = status {
        q.push(" AND h.status = ").text(s.as_str());
    }
    q.push(" ORDER BY h.created DESC");
    q.load::<HoldRecord>(c)?
        .into_iter()
        .map(|r| {
            Ok(Hold {
                id: r.id,
                created: r.created,
                reason: r.reason,
                status: HoldStatus::from_stored(&r.status)?,
                users: r.users,
                operations: r.operations,
            })
        })
        .collect()
}

/// How a hold was decided.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct HoldDecision {
    pub id: String,
    pub reason: String,
    /// `pending`, `confirmed` or `discarded` (as stored).
    pub status: String,
    pub decided: Option<String>,
    pub decided_by: Option<String>,
}

/// Hold `id` with its decision.
pub fn decision(c: &mut DbConnection, id: &str) -> HubResult<Option<HoldDecision>> {
    let mut q = Sql::<(Text, Text, Text, Nullable<Text>, Nullable<Text>)>::new(
        "SELECT id, reason, status, decided, decided_by FROM engine_holds WHERE id = ",
    );
    q.text(id);
    Ok(q.load::<HoldDecision>(c)?.into_iter().next())
}

/// Sets a pending hold's decision; returns false when it was not pending.
pub fn decide(
    c: &mut DbConnection,
    id: &str,
    status: HoldStatus,
    by: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_holds SET status = ");
    q.text(status.as_str())
        .push(", decided = ")
        .text(fmt_ts(now))
        .push(", decided_by = ")
        .text(by)
        .push(" WHERE status = 'pending' AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// What becomes of a hold's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldOps {
    /// Back to [`OutboxStatus::Pending`], due now (the hold was confirmed).
    Release,
    /// [`OutboxStatus::Discarded`] and finished (the hold was discarded).
    Discard,
}

/// Locks the rows of the stored users whose operations the hold `id` holds, in id order, for
/// the rest of the caller's transaction (PostgreSQL; SQLite has one writer): the lock a plan of
/// one of them holds, taken before the hold's own row, in the order a plan takes the two. A
/// discard that resets those users' planned state then never writes over a plan committed
/// after it read them.
pub fn lock_held_users(c: &mut DbConnection, id: &str) -> HubResult<()> {
    if !matches!(c, DbConnection::Postgresql(_)) {
        return Ok(());
    }
    let users = held_users(c, id)?;
    super::resources::lock_users_to_plan(c, users.iter().map(String::as_str))
}

/// The users whose operations the hold `id` holds, in id order.
fn held_users(c: &mut DbConnection, id: &str) -> HubResult<Vec<String>> {
    let mut users = Sql::<Text>::new("SELECT DISTINCT user_id FROM engine_outbox WHERE hold_id = ");
    users.text(id).push(" AND status = 'held' ORDER BY user_id");
    Ok(users.load::<String>(c)?)
}

/// Whether operations of `user_id` wait behind a hold (pending or staging).
pub fn user_has_held_ops(c: &mut DbConnection, user_id: &str) -> HubResult<bool> {
    let mut q = Sql::<Text>::new("SELECT user_id FROM engine_outbox WHERE user_id = ");
    q.text(user_id).push(" AND status = 'held' LIMIT 1");
    Ok(q.get_result::<String>(c).optional()?.is_some())
}

/// The users whose operations the hold `id` holds and who have approved or pending
/// entitlement or SoD requests, in id order: once the hold is decided in favour of its
/// operations, planning them again ends what their new role no longer asks (a held plan ends
/// nothing, see `engine::decide`).
pub fn held_users_with_open_requests(c: &mut DbConnection, id: &str) -> HubResult<Vec<String>> {
    let mut q =
        Sql::<Text>::new("SELECT DISTINCT o.user_id FROM engine_outbox o WHERE o.hold_id = ");
    q.text(id).push(
        " AND o.status = 'held' AND EXISTS (SELECT 1 FROM engine_approvals a \
         WHERE a.user_id = o.user_id AND a.status IN ('approved', 'pending') \
         AND a.kind IN ('entitlement', 'sod')) ORDER BY o.user_id",
    );
    Ok(q.load::<String>(c)?)
}

/// Releases or discards the operations of a hold; returns their users.
pub fn release_ops(
    c: &mut DbConnection,
    id: &str,
    what: HeldOps,
    now: DateTime<Utc>,
) -> HubResult<Vec<String>> {
    let users = held_users(c, id)?;
    let status = match what {
        HeldOps::Release => OutboxStatus::Pending,
        HeldOps::Discard => OutboxStatus::Discarded,
    };
    let mut q = Sql::<()>::new("UPDATE engine_outbox SET status = ");
    q.text(status.as_str())
        .push(", not_before = ")
        .text(fmt_ts(now));
    if what == HeldOps::Discard {
        q.push(", finished = ").text(fmt_ts(now));
    }
    q.push(" WHERE status = 'held' AND hold_id = ").text(id);
    q.execute(c)?;
    Ok(users)
}
