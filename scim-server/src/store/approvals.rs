//! Approval requests (entitlements, SoD exceptions, contract extensions) and overrides (legacy
//! access kept through a mover's overlap window or a manager's extension).

use chrono::{DateTime, Utc};
use diesel::sql_types::{Nullable, Text};
use diesel::{OptionalExtension, RunQueryDsl};
use serde::Serialize;

use super::sql::{Bind, Sql};
use super::{fmt_ts, parse_ts, DbConnection, StoreResult};

/// An approval request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRow {
    pub id: String,
    pub user_id: String,
    /// `entitlement`, `sod`, `extension`.
    pub kind: String,
    pub connector: Option<String>,
    /// The entitlement (JSON) for `entitlement`; the SoD rule name for `sod`.
    pub entitlement: Option<String>,
    /// `manager`, `owner`, `security`.
    pub level: String,
    pub detail: serde_json::Value,
    /// `pending`, `approved`, `rejected`.
    pub status: String,
    pub requested: String,
    pub decided: Option<String>,
    /// Who decided: the deciding user's userName (`policy` for requests the policy blocked).
    pub decided_by: Option<String>,
    pub reason: Option<String>,
    /// The SCIM id of the deciding user.
    pub decided_by_user_id: Option<String>,
    /// The credential the decision came with (token name, or the JWT's client).
    pub decided_by_credential: Option<String>,
    /// The authority the policy gave the decider for this request: `manager`, `owner`,
    /// `sponsor` or `security`.
    pub decided_as: Option<String>,
}

type St = (
    Text,
    Text,
    Text,
    Nullable<Text>,
    Nullable<Text>,
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
);
type Tuple = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const COLS: &str = "SELECT id, user_id, kind, connector, entitlement, level, detail, status, \
     requested, decided, decided_by, reason, decided_by_user_id, decided_by_credential, decided_as \
     FROM engine_approvals ";

fn row(t: Tuple) -> ApprovalRow {
    ApprovalRow {
        id: t.0,
        user_id: t.1,
        kind: t.2,
        connector: t.3,
        entitlement: t.4,
        level: t.5,
        detail: serde_json::from_str(&t.6).unwrap_or_default(),
        status: t.7,
        requested: t.8,
        decided: t.9,
        decided_by: t.10,
        reason: t.11,
        decided_by_user_id: t.12,
        decided_by_credential: t.13,
        decided_as: t.14,
    }
}

/// A user's requests (all statuses), oldest first.
pub fn for_user(c: &mut DbConnection, user_id: &str) -> StoreResult<Vec<ApprovalRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE user_id = ")
        .text(user_id)
        .push(" ORDER BY requested, id");
    Ok(q.load::<Tuple>(c)?.into_iter().map(row).collect())
}

pub fn list(c: &mut DbConnection, status: Option<&str>) -> StoreResult<Vec<ApprovalRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE 1 = 1");
    if let Some(s) = status {
        q.push(" AND status = ").text(s);
    }
    q.push(" ORDER BY requested, id");
    Ok(q.load::<Tuple>(c)?.into_iter().map(row).collect())
}

pub fn get(c: &mut DbConnection, id: &str) -> StoreResult<Option<ApprovalRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE id = ").text(id);
    Ok(q.get_result::<Tuple>(c).optional()?.map(row))
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: &'a str,
    pub connector: Option<&'a str>,
    pub entitlement: Option<&'a str>,
    pub level: &'a str,
    pub detail: serde_json::Value,
}

pub fn insert(c: &mut DbConnection, a: &NewApproval<'_>, now: DateTime<Utc>) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_approvals (id, user_id, kind, connector, entitlement, level, detail, \
         status, requested) VALUES (",
    );
    q.text(a.id)
        .push(", ")
        .text(a.user_id)
        .push(", ")
        .text(a.kind)
        .push(", ");
    q.bind(Bind::OptText(a.connector.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(a.entitlement.map(str::to_string)))
        .push(", ")
        .text(a.level)
        .push(", ")
        .text(a.detail.to_string())
        .push(", 'pending', ")
        .text(fmt_ts(now))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// Who decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecidedBy<'a> {
    /// The deciding user's userName (`policy` for what the policy decided by itself).
    pub name: &'a str,
    /// The deciding user's SCIM id.
    pub user_id: Option<&'a str>,
    /// The credential used (token name, or the JWT's client).
    pub credential: Option<&'a str>,
    /// The authority the policy gave the decider: `manager`, `owner`, `sponsor`, `security`.
    pub authority: Option<&'a str>,
}

impl<'a> DecidedBy<'a> {
    /// A decision the policy took by itself (a SoD rule with `action = "block"`).
    pub fn policy() -> DecidedBy<'a> {
        DecidedBy {
            name: "policy",
            user_id: None,
            credential: None,
            authority: None,
        }
    }
}

/// Decides a pending request; false when it was not pending.
pub fn decide(
    c: &mut DbConnection,
    id: &str,
    status: &str,
    by: &DecidedBy<'_>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let opt = |v: Option<&str>| Bind::OptText(v.map(str::to_string));
    let mut q = Sql::<()>::new("UPDATE engine_approvals SET status = ");
    q.text(status)
        .push(", decided = ")
        .text(fmt_ts(now))
        .push(", decided_by = ")
        .text(by.name)
        .push(", decided_by_user_id = ");
    q.bind(opt(by.user_id))
        .push(", decided_by_credential = ")
        .bind(opt(by.credential))
        .push(", decided_as = ")
        .bind(opt(by.authority))
        .push(", reason = ")
        .bind(opt(reason))
        .push(" WHERE status = 'pending' AND id = ")
        .text(id);
    Ok(q.execute(c)? > 0)
}

/// An override: keep `entitlement` on `connector` until `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideRow {
    pub id: String,
    pub user_id: String,
    pub connector: String,
    pub entitlement: String,
    pub until: DateTime<Utc>,
    pub reason: String,
}

pub fn overrides(c: &mut DbConnection, user_id: &str) -> StoreResult<Vec<OverrideRow>> {
    let mut q = Sql::<(Text, Text, Text, Text, Text)>::new(
        "SELECT id, connector, entitlement, until, reason FROM engine_overrides WHERE user_id = ",
    );
    q.text(user_id).push(" ORDER BY until, id");
    Ok(q.load::<(String, String, String, String, String)>(c)?
        .into_iter()
        .map(|(id, connector, entitlement, until, reason)| OverrideRow {
            id,
            user_id: user_id.to_string(),
            connector,
            entitlement,
            until: parse_ts(&until).unwrap_or_default(),
            reason,
        })
        .collect())
}

pub fn insert_override(
    c: &mut DbConnection,
    o: &OverrideRow,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_overrides (id, user_id, connector, entitlement, until, reason, created) VALUES (",
    );
    q.text(o.id.as_str())
        .push(", ")
        .text(o.user_id.as_str())
        .push(", ")
        .text(o.connector.as_str())
        .push(", ")
        .text(o.entitlement.as_str())
        .push(", ")
        .text(fmt_ts(o.until))
        .push(", ")
        .text(o.reason.as_str())
        .push(", ")
        .text(fmt_ts(now))
        .push(")");
    q.execute(c)?;
    Ok(())
}

/// Moves the end of a user's overrides of `reason` to `until` (acknowledge: now; extend: later).
pub fn set_override_until(
    c: &mut DbConnection,
    user_id: &str,
    until: DateTime<Utc>,
) -> StoreResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_overrides SET until = ");
    q.text(fmt_ts(until))
        .push(" WHERE user_id = ")
        .text(user_id);
    Ok(q.execute(c)?)
}

/// Drops overrides that ended before `now`.
pub fn purge_overrides(
    c: &mut DbConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> StoreResult<usize> {
    let mut q = Sql::<()>::new("DELETE FROM engine_overrides WHERE user_id = ");
    q.text(user_id).push(" AND until <= ").text(fmt_ts(now));
    Ok(q.execute(c)?)
}
