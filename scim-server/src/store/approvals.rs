//! Approval requests (entitlements, SoD exceptions, contract extensions) and overrides (legacy
//! access kept through a mover's overlap window or a manager's extension).

use chrono::{DateTime, Utc};
use diesel::sql_types::{Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};
use serde::Serialize;

use super::sql::{Bind, Sql};
use super::text_enum::text_enum;
use super::{fmt_ts, parse_ts, DbConnection};
use crate::error::HubResult;

text_enum! {
    /// What a request asks for.
    pub enum ApprovalKind {
        /// An entitlement the policy grants only with approval.
        Entitlement = "entitlement",
        /// An exception to a separation-of-duties rule.
        Sod = "sod",
        /// A later end of a contractor's contract (or of an override).
        Extension = "extension",
        /// A time-bound emergency grant (`engine_grants`) whose entitlement needs approval.
        Grant = "grant",
    }
}

text_enum! {
    /// Who may decide a request.
    pub enum ApprovalLevel {
        /// The user's manager (or a security approver).
        Manager = "manager",
        /// An owner of the entitlement (or a security approver).
        Owner = "owner",
        /// A security approver.
        Security = "security",
    }
}

text_enum! {
    /// Where a request stands.
    pub enum ApprovalStatus {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        /// Refused by the policy itself (a SoD rule with `action = "block"`); not decidable.
        Blocked = "blocked",
        /// An entitlement or SoD request, approved or still pending, that ended when the user
        /// left: a rehire asks again.
        Ended = "ended",
    }
}

/// An approval request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRow {
    pub id: String,
    pub user_id: String,
    pub kind: ApprovalKind,
    pub connector: Option<String>,
    /// The entitlement (JSON) for `entitlement`; the SoD rule name for `sod`.
    pub entitlement: Option<String>,
    pub level: ApprovalLevel,
    pub detail: serde_json::Value,
    pub status: ApprovalStatus,
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
/// An `engine_approvals` row as read ([`COLS`], in that order): kinds and statuses still text.
#[derive(Queryable)]
struct ApprovalRecord {
    id: String,
    user_id: String,
    kind: String,
    connector: Option<String>,
    entitlement: Option<String>,
    level: String,
    detail: String,
    status: String,
    requested: String,
    decided: Option<String>,
    decided_by: Option<String>,
    reason: Option<String>,
    decided_by_user_id: Option<String>,
    decided_by_credential: Option<String>,
    decided_as: Option<String>,
}

const COLS: &str = "SELECT id, user_id, kind, connector, entitlement, level, detail, status, \
     requested, decided, decided_by, reason, decided_by_user_id, decided_by_credential, decided_as \
     FROM engine_approvals ";

impl ApprovalRecord {
    fn into_row(self) -> HubResult<ApprovalRow> {
        Ok(ApprovalRow {
            id: self.id,
            user_id: self.user_id,
            kind: ApprovalKind::from_stored(&self.kind)?,
            connector: self.connector,
            entitlement: self.entitlement,
            level: ApprovalLevel::from_stored(&self.level)?,
            detail: serde_json::from_str(&self.detail).unwrap_or_default(),
            status: ApprovalStatus::from_stored(&self.status)?,
            requested: self.requested,
            decided: self.decided,
            decided_by: self.decided_by,
            reason: self.reason,
            decided_by_user_id: self.decided_by_user_id,
            decided_by_credential: self.decided_by_credential,
            decided_as: self.decided_as,
        })
    }
}

fn into_rows(records: Vec<ApprovalRecord>) -> HubResult<Vec<ApprovalRow>> {
    records.into_iter().map(ApprovalRecord::into_row).collect()
}

/// A user's requests (all statuses), oldest first.
pub fn for_user(c: &mut DbConnection, user_id: &str) -> HubResult<Vec<ApprovalRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE user_id = ")
        .text(user_id)
        .push(" ORDER BY requested, id");
    into_rows(q.load::<ApprovalRecord>(c)?)
}

pub fn list(c: &mut DbConnection, status: Option<ApprovalStatus>) -> HubResult<Vec<ApprovalRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE 1 = 1");
    if let Some(s) = status {
        q.push(" AND status = ").text(s.as_str());
    }
    q.push(" ORDER BY requested, id");
    into_rows(q.load::<ApprovalRecord>(c)?)
}

pub fn get(c: &mut DbConnection, id: &str) -> HubResult<Option<ApprovalRow>> {
    let mut q = Sql::<St>::new(COLS);
    q.push("WHERE id = ").text(id);
    q.get_result::<ApprovalRecord>(c)
        .optional()?
        .map(ApprovalRecord::into_row)
        .transpose()
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewApproval<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub kind: ApprovalKind,
    pub connector: Option<&'a str>,
    pub entitlement: Option<&'a str>,
    pub level: ApprovalLevel,
    pub detail: serde_json::Value,
}

pub fn insert(c: &mut DbConnection, a: &NewApproval<'_>, now: DateTime<Utc>) -> HubResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_approvals (id, user_id, kind, connector, entitlement, level, detail, \
         status, requested) VALUES (",
    );
    q.text(a.id)
        .push(", ")
        .text(a.user_id)
        .push(", ")
        .text(a.kind.as_str())
        .push(", ");
    q.bind(Bind::OptText(a.connector.map(str::to_string)))
        .push(", ")
        .bind(Bind::OptText(a.entitlement.map(str::to_string)))
        .push(", ")
        .text(a.level.as_str())
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
    status: ApprovalStatus,
    by: &DecidedBy<'_>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let opt = |v: Option<&str>| Bind::OptText(v.map(str::to_string));
    let mut q = Sql::<()>::new("UPDATE engine_approvals SET status = ");
    q.text(status.as_str())
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

/// An `engine_overrides` row as read: `id, connector, entitlement, until, reason`.
#[derive(Queryable)]
struct OverrideRecord {
    id: String,
    connector: String,
    entitlement: String,
    until: String,
    reason: String,
}

/// A user's overrides, soonest end first.
pub fn overrides(c: &mut DbConnection, user_id: &str) -> HubResult<Vec<OverrideRow>> {
    let mut q = Sql::<(Text, Text, Text, Text, Text)>::new(
        "SELECT id, connector, entitlement, until, reason FROM engine_overrides WHERE user_id = ",
    );
    q.text(user_id).push(" ORDER BY until, id");
    Ok(q.load::<OverrideRecord>(c)?
        .into_iter()
        .map(|r| OverrideRow {
            id: r.id,
            user_id: user_id.to_string(),
            connector: r.connector,
            entitlement: r.entitlement,
            until: parse_ts(&r.until).unwrap_or_default(),
            reason: r.reason,
        })
        .collect())
}

pub fn insert_override(c: &mut DbConnection, o: &OverrideRow, now: DateTime<Utc>) -> HubResult<()> {
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

/// An override still open: when it began (the move that kept the access) and ends.
#[derive(Debug, Clone)]
pub struct OpenOverride {
    pub id: String,
    pub created: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// A user's overrides still open at `now`.
pub fn open_overrides(
    c: &mut DbConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> HubResult<Vec<OpenOverride>> {
    let mut q = Sql::<(Text, Text, Text)>::new(
        "SELECT id, created, until FROM engine_overrides WHERE user_id = ",
    );
    q.text(user_id)
        .push(" AND until > ")
        .text(fmt_ts(now))
        .push(" ORDER BY id");
    Ok(q.load::<(String, String, String)>(c)?
        .into_iter()
        .map(|(id, created, until)| OpenOverride {
            id,
            created: parse_ts(&created).unwrap_or(now),
            until: parse_ts(&until).unwrap_or(now),
        })
        .collect())
}

/// Moves the end of one override, if still open at `now`, to `until`.
pub fn set_one_override_until(
    c: &mut DbConnection,
    id: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_overrides SET until = ");
    q.text(fmt_ts(until))
        .push(" WHERE id = ")
        .text(id)
        .push(" AND until > ")
        .text(fmt_ts(now));
    Ok(q.execute(c)?)
}

/// Moves the end of a user's overrides of `reason` to `until` (acknowledge: now; extend: later).
pub fn set_override_until(
    c: &mut DbConnection,
    user_id: &str,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    // Only those still open: an ended override (its access being revoked) is not brought back.
    let mut q = Sql::<()>::new("UPDATE engine_overrides SET until = ");
    q.text(fmt_ts(until))
        .push(" WHERE user_id = ")
        .text(user_id)
        .push(" AND until > ")
        .text(fmt_ts(now));
    Ok(q.execute(c)?)
}

/// Drops overrides that ended before `now`.
pub fn purge_overrides(
    c: &mut DbConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = Sql::<()>::new("DELETE FROM engine_overrides WHERE user_id = ");
    q.text(user_id).push(" AND until <= ").text(fmt_ts(now));
    Ok(q.execute(c)?)
}

/// Marks the one-click links of event `event_id` (a mover plan id) used by `by`, in the caller's
/// transaction; `false` when they already were. The primary key decides between two concurrent
/// uses: the second insert waits for the first transaction and then inserts nothing.
pub fn use_link(
    c: &mut DbConnection,
    event_id: &str,
    user_id: &str,
    by: &str,
    now: DateTime<Utc>,
) -> HubResult<bool> {
    let mut q = Sql::<()>::new(
        "INSERT INTO engine_used_links (event_id, user_id, used_at, used_by) VALUES (",
    );
    q.text(event_id)
        .push(", ")
        .text(user_id)
        .push(", ")
        .text(fmt_ts(now))
        .push(", ")
        .text(by)
        .push(") ON CONFLICT (event_id) DO NOTHING");
    Ok(q.execute(c)? == 1)
}

#[derive(Queryable)]
struct OneText {
    value: String,
}

/// Whether the one-click links of event `event_id` were used.
pub fn link_used(c: &mut DbConnection, event_id: &str) -> HubResult<bool> {
    let mut q = Sql::<(Text,)>::new("SELECT event_id FROM engine_used_links WHERE event_id = ");
    q.text(event_id);
    Ok(q.get_result::<OneText>(c).optional()?.is_some())
}

/// The plan id of the user's latest mover event, which the one-click links of its notification
/// name: a link of an earlier move does not act on a later one.
pub fn latest_mover_event(c: &mut DbConnection, user_id: &str) -> HubResult<Option<String>> {
    let mut q = Sql::<(Text,)>::new("SELECT plan_id FROM engine_events WHERE user_id = ");
    q.text(user_id)
        .push(" AND event = 'mover' ORDER BY at DESC, id DESC LIMIT 1");
    Ok(q.get_result::<OneText>(c).optional()?.map(|r| r.value))
}

/// Ends request `id` if it is still `was` (`approved` or `pending`): a pending one is closed as
/// decided by the engine with `reason`; an approved one keeps who approved it and why. A
/// request decided meanwhile is left as it is (the decision's own planning judges it again).
pub fn end_request(
    c: &mut DbConnection,
    id: &str,
    was: ApprovalStatus,
    reason: &str,
    now: DateTime<Utc>,
) -> HubResult<usize> {
    let mut q = Sql::<()>::new("UPDATE engine_approvals SET status = ");
    q.text(ApprovalStatus::Ended.as_str());
    if was == ApprovalStatus::Pending {
        q.push(", decided = ")
            .text(fmt_ts(now))
            .push(", decided_by = 'engine', reason = ")
            .text(reason);
    }
    q.push(" WHERE id = ")
        .text(id)
        .push(" AND status = ")
        .text(was.as_str());
    Ok(q.execute(c)?)
}

/// A leaver's overrides and grants end: every override goes, and every entitlement and SoD
/// request (and emergency grant request), approved or pending, is [`ApprovalStatus::Ended`] (an approved one keeps who
/// approved it). A rehire then starts from the new role only, asking again for what needs
/// approval. Returns (overrides dropped, requests ended).
pub fn end_grants(
    c: &mut DbConnection,
    user_id: &str,
    now: DateTime<Utc>,
) -> HubResult<(usize, usize)> {
    let mut q = Sql::<()>::new("DELETE FROM engine_overrides WHERE user_id = ");
    q.text(user_id);
    let overrides = q.execute(c)?;
    let kinds = [
        ApprovalKind::Entitlement.as_str(),
        ApprovalKind::Sod.as_str(),
        ApprovalKind::Grant.as_str(),
    ];
    let mut q = Sql::<()>::new("UPDATE engine_approvals SET status = ");
    q.text(ApprovalStatus::Ended.as_str())
        .push(" WHERE status = 'approved' AND user_id = ")
        .text(user_id)
        .push(" AND kind IN (")
        .text_list(kinds)
        .push(")");
    let mut ended = q.execute(c)?;
    let mut q = Sql::<()>::new("UPDATE engine_approvals SET status = ");
    q.text(ApprovalStatus::Ended.as_str())
        .push(", decided = ")
        .text(fmt_ts(now))
        .push(", decided_by = 'engine', reason = 'the user left' WHERE status = 'pending' AND user_id = ")
        .text(user_id)
        .push(" AND kind IN (")
        .text_list(kinds)
        .push(")");
    ended += q.execute(c)?;
    Ok((overrides, ended))
}
