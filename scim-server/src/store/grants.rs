//! Time-bound emergency grants (`engine_grants`, docs/grants.md): an entitlement outside the
//! user's profiles, kept in the user's desired state while it is active and not yet expired.
//! This module only stores and moves rows between states; the engine decides what a grant does
//! (`engine::desired`, `engine::timers`) and the admin layer who may create or end one.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};
use serde::Serialize;

use super::sql::{Bind, Sql};
use super::text_enum::text_enum;
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::{HubError, HubResult};

text_enum! {
    /// Where a grant stands.
    pub enum GrantState {
        /// Waiting for its approval request to be decided; grants nothing yet.
        PendingApproval = "pending_approval",
        /// In the user's desired state until `expires`.
        Active = "active",
        /// Reached `expires` (active or still pending): the access was taken away.
        Expired = "expired",
        /// Ended early by an administrator, or by the engine when the user left.
        Revoked = "revoked",
        /// Its approval request was rejected; nothing was granted.
        Rejected = "rejected",
    }
}

impl GrantState {
    /// Whether the grant may still give access (active, or waiting for approval).
    pub fn is_open(self) -> bool {
        matches!(self, GrantState::PendingApproval | GrantState::Active)
    }
}

/// An `engine_grants` row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantRow {
    pub id: String,
    pub user_id: String,
    pub connector: String,
    /// The entitlement as JSON text (`{"kind", "id", "role"?}`).
    pub entitlement: String,
    pub reason: String,
    /// Who asked (the admin API's principal, or `cli:LOGIN`).
    pub requested_by: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub state: GrantState,
    /// The approval request (kind `grant`), when the entitlement's level needs one.
    pub approval_id: Option<String>,
    /// Who approved or rejected it (when: its approval request's `decided`).
    pub decided_by: Option<String>,
    /// When it became active (at creation, or when approved).
    pub activated: Option<DateTime<Utc>>,
    /// When it stopped (expired, revoked or rejected).
    pub ended: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Why it ended early (the revocation's reason, a rejection's reason, "the user left").
    pub end_reason: Option<String>,
}

impl GrantRow {
    /// Whether the grant gives access at `now`: active and not yet expired.
    pub fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.state == GrantState::Active && self.expires > now
    }
}

type St = (
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
);

/// A row as read ([`COLS`], in that order): times and state still text.
#[derive(Queryable)]
struct GrantRecord {
    id: String,
    user_id: String,
    connector: String,
    entitlement: String,
    reason: String,
    requested_by: String,
    created: String,
    expires: String,
    state: String,
    approval_id: Option<String>,
    decided_by: Option<String>,
    activated: Option<String>,
    ended: Option<String>,
    revoked_by: Option<String>,
    revoked_at: Option<String>,
    end_reason: Option<String>,
}

const COLS: &str = "SELECT id, user_id, connector, entitlement, reason, requested_by, created, \
     expires, state, approval_id, decided_by, activated, ended, revoked_by, revoked_at, \
     end_reason FROM engine_grants ";

fn ts(s: &str) -> HubResult<DateTime<Utc>> {
    parse_ts(s).ok_or_else(|| HubError::Backend(format!("stored grant time {s:?} is unreadable")))
}

fn opt_ts(s: Option<String>) -> HubResult<Option<DateTime<Utc>>> {
    s.as_deref().map(ts).transpose()
}

impl GrantRecord {
    fn into_row(self) -> HubResult<GrantRow> {
        Ok(GrantRow {
            created: ts(&self.created)?,
            expires: ts(&self.expires)?,
            state: GrantState::from_stored(&self.state)?,
            activated: opt_ts(self.activated)?,
            ended: opt_ts(self.ended)?,
            revoked_at: opt_ts(self.revoked_at)?,
            id: self.id,
            user_id: self.user_id,
            connector: self.connector,
            entitlement: self.entitlement,
            reason: self.reason,
            requested_by: self.requested_by,
            approval_id: self.approval_id,
            decided_by: self.decided_by,
            revoked_by: self.revoked_by,
            end_reason: self.end_reason,
        })
    }
}

fn load(q: Sql<St>, c: &mut DbConnection) -> HubResult<Vec<GrantRow>> {
    q.load::<GrantRecord>(c)?
        .into_iter()
        .map(GrantRecord::into_row)
        .collect()
}

/// A new grant.
#[derive(Debug, Clone)]
pub struct NewGrant<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub connector: &'a str,
    pub entitlement: &'a str,
    pub reason: &'a str,
    pub requested_by: &'a str,
    pub expires: DateTime<Utc>,
    /// [`GrantState::Active`] or [`GrantState::PendingApproval`].
    pub state: GrantState,
    pub approval_id: Option<&'a str>,
}

pub fn insert(c: &mut DbConnection, g: &NewGrant<'_>, now: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_grants (id, user_id, connector, entitlement, reason, requested_by, \
         created, expires, state, approval_id, activated) VALUES (",
    );
    q.text(g.id)
        .push(", ")
        .text(g.user_id)
        .push(", ")
        .text(g.connector)
        .push(", ")
        .text(g.entitlement)
        .push(", ")
        .text(g.reason)
        .push(", ")
        .text(g.requested_by)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(fmt_ts(g.expires))
        .push(", ")
        .text(g.state.as_str())
        .push(", ");
    q.bind(Bind::OptText(g.approval_id.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(
            (g.state == GrantState::Active).then(|| fmt_ts(now)),
        ))
        .push(")");
    q.execute(c)?;
    Ok(())
}

pub fn get(c: &mut DbConnection, id: &str) -> HubResult<Option<GrantRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE id = ").text(id);
    q.get_result::<GrantRecord>(c)
        .optional()?
        .map(GrantRecord::into_row)
        .transpose()
}

/// The grant whose approval request is `approval_id`.
pub fn by_approval(c: &mut DbConnection, approval_id: &str) -> HubResult<Option<GrantRow>> {
    by_approval_sql(c, approval_id, false)
}

/// [`by_approval`], its row locked until the transaction ends (PostgreSQL; SQLite has one
/// writer): the approval decision that checked the grant is still open and not past its end
/// then activates it before its expiry timer or a revoke can end it in between.
pub fn by_approval_for_update(
    c: &mut DbConnection,
    approval_id: &str,
) -> HubResult<Option<GrantRow>> {
    by_approval_sql(c, approval_id, true)
}

fn by_approval_sql(
    c: &mut DbConnection,
    approval_id: &str,
    for_update: bool,
) -> HubResult<Option<GrantRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE approval_id = ").text(approval_id);
    if for_update {
        super::resources::lock_for_write(c, &mut q);
    }
    q.get_result::<GrantRecord>(c)
        .optional()?
        .map(GrantRecord::into_row)
        .transpose()
}

/// What [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct GrantQuery<'a> {
    pub user_id: Option<&'a str>,
    /// Only grants in force at this time (active and not yet expired).
    pub active_at: Option<DateTime<Utc>>,
    pub state: Option<GrantState>,
}

/// Grants, newest first.
pub fn list(c: &mut DbConnection, query: &GrantQuery<'_>) -> HubResult<Vec<GrantRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE 1 = 1");
    if let Some(u) = query.user_id {
        q.push(" AND user_id = ").text(u);
    }
    if let Some(s) = query.state {
        q.push(" AND state = ").text(s.as_str());
    }
    if let Some(t) = query.active_at {
        q.push(" AND state = 'active' AND expires > ")
            .text(fmt_ts(t));
    }
    q.push(" ORDER BY created DESC, id DESC");
    load(q, c)
}

/// Every grant in force at `now` (a certification campaign marks their items).
pub fn all_in_force(c: &mut DbConnection, now: DateTime<Utc>) -> HubResult<Vec<GrantRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE state = 'active' AND expires > ")
        .text(fmt_ts(now))
        .push(" ORDER BY created, id");
    load(q, c)
}

/// A user's grants in force at `now` (what planning adds to the desired state).
pub fn in_force(
    c: &mut DbConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> HubResult<Vec<GrantRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE user_id = ")
        .text(user_id)
        .push(" AND state = 'active' AND expires > ")
        .text(fmt_ts(now))
        .push(" ORDER BY created, id");
    load(q, c)
}

/// Grants that were in force at some time in `[from, to)` or were created in it, oldest first:
/// the grants a period report lists (an expired, revoked or rejected one too, when it falls in
/// the period). A grant is in force from `activated` to the earlier of `expires` and `ended`
/// (an expiry timer that ran late does not stretch it).
pub fn in_period(
    c: &mut DbConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> HubResult<Vec<GrantRow>> {
    let (f, t) = (fmt_ts(from), fmt_ts(to));
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE (created >= ")
        .text(f.clone())
        .push(" AND created < ")
        .text(t.clone())
        .push(") OR (activated IS NOT NULL AND activated < ")
        .text(t)
        .push(
            " AND (CASE WHEN ended IS NOT NULL AND ended < expires THEN ended ELSE expires END) > ",
        )
        .text(f)
        .push(") ORDER BY created, id");
    load(q, c)
}

/// Activates a pending grant (its approval was granted); false when it was not pending.
pub fn activate(
    c: &mut DbConnection,
    id: &str,
    decided_by: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_grants SET state = 'active', activated = ");
    q.text(fmt_ts(now))
        .push(", decided_by = ")
        .text(decided_by)
        .push(" WHERE state = 'pending_approval' AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// Rejects a pending grant (its approval was refused); false when it was not pending.
pub fn reject(
    c: &mut DbConnection,
    id: &str,
    decided_by: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_grants SET state = 'rejected', ended = ");
    q.text(fmt_ts(now))
        .push(", decided_by = ")
        .text(decided_by)
        .push(", end_reason = ")
        .bind(Bind::OptText(reason.map(str::to_string)))
        .push(" WHERE state = 'pending_approval' AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// Marks an open grant expired (its `expires` arrived); false when it was no longer open.
pub fn expire(c: &mut DbConnection, id: &str, now: DateTime<Utc>) -> HubResult<bool> {
    let mut q = Sql::<()>::new("UPDATE engine_grants SET state = 'expired', ended = ");
    q.text(fmt_ts(now))
        .push(" WHERE state IN ('active', 'pending_approval') AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// Revokes an open grant; false when it was no longer open.
pub fn revoke(
    c: &mut DbConnection,
    id: &str,
    by: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let n = fmt_ts(now);
    let mut q = Sql::<()>::new("UPDATE engine_grants SET state = 'revoked', ended = ");
    q.text(n.clone())
        .push(", revoked_at = ")
        .text(n)
        .push(", revoked_by = ")
        .text(by)
        .push(", end_reason = ")
        .text(reason)
        .push(" WHERE state IN ('active', 'pending_approval') AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// The user's open grants (active or pending approval), oldest first.
pub fn open_for_user(c: &mut DbConnection, user_id: &str) -> HubResult<Vec<GrantRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE user_id = ")
        .text(user_id)
        .push(" AND state IN ('active', 'pending_approval') ORDER BY created, id");
    load(q, c)
}
