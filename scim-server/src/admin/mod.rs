//! Admin operations on the engine: approvals, holds, contract extensions, one-click links,
//! simulation — as plain functions over the store ([`Admin`]), for the CLI, tests and the admin
//! HTTP API (`http::admin`, mounted under `/admin/v1`; this module knows nothing of HTTP).
//!
//! Every decision is taken at most once: deciding something already decided is
//! [`AdminError::Conflict`], an unknown id [`AdminError::NotFound`]. Approval and extension
//! requests are decided by people with the authority the policy gives them ([`authority`]);
//! anyone else gets [`AdminError::Refused`]. The HTTP layer maps these in `http::error` and
//! nowhere else.
//!
//! A decision that queues work (an approval re-plans, a hold releases operations, a retry puts
//! one back) wakes the outbox workers when its transaction commits, as SCIM writes do through
//! the store's write hook, so it runs at once rather than at the workers' next poll.

pub mod authority;
pub mod simulate;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::auth::{Principal, UserRef};
use crate::engine::desired::{attr_str, attr_value, parse_date};
use crate::engine::{links, load_user_doc, Cause, Engine, PlanOutcome};
use crate::store::approvals::{ApprovalKind, ApprovalLevel, ApprovalStatus};
use crate::store::{
    approvals, audit, engine_state, holds, incidents, load_groups, load_row, outbox, timers,
    DbConnection, Doc, ResourceKind, Store, StoreError, StoreResult,
};
use authority::{Approver, Refusal, Subject};

/// Runs `f` in a write transaction on the store's writer (admin actions and tests).
pub fn in_tx<T>(
    store: &Store,
    f: impl FnOnce(&mut DbConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    store.write_tx(|c, _| f(c))
}

/// Errors of admin actions.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such request, hold, user or operation.
    #[error("not found: {0}")]
    NotFound(String),
    /// Already decided (approved, rejected, confirmed, discarded, link used), or nothing left to
    /// decide.
    #[error("{0}")]
    Conflict(String),
    /// Bad input (a date that is not one, an extension too long, a missing reason).
    #[error("{0}")]
    Invalid(String),
    /// A one-click link that is malformed, tampered with or not configured.
    #[error("{0}")]
    Forbidden(String),
    /// A one-click link past its expiry.
    #[error("{0}")]
    Expired(String),
    /// The caller may not take this decision (who they are, or the authority the policy gives
    /// them); nothing was decided.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The URL of an admin API path (`/approvals/ID/approve`) under the policy's
/// `[notify] link_base_url`, for notification bodies; `None` when no base URL is configured.
pub fn api_url(policy: &crate::policy::Policy, path: &str) -> Option<String> {
    let base = policy
        .notify
        .link_base_url
        .as_deref()?
        .trim_end_matches('/');
    Some(format!("{base}{API_PREFIX}{path}"))
}

/// The body of an approval-request notification, with the admin API URLs to decide it.
pub fn notice_approval(policy: &crate::policy::Policy, row: &approvals::ApprovalRow) -> String {
    let mut body = format!(
        "User {} needs {} {} on {}. Approve or reject request {} in the admin API.",
        row.user_id,
        row.kind,
        row.entitlement.as_deref().unwrap_or(""),
        row.connector.as_deref().unwrap_or(""),
        row.id
    );
    if let (Some(a), Some(r)) = (
        api_url(policy, &format!("/approvals/{}/approve", row.id)),
        api_url(policy, &format!("/approvals/{}/reject", row.id)),
    ) {
        body.push_str(&format!(
            "\n\nApprove: POST {a}\nReject: POST {r} (with a reason)\n"
        ));
    }
    body
}

/// The body of a blast-radius hold notification, with the admin API URLs to decide it.
pub fn notice_hold(policy: &crate::policy::Policy, reason: &str, id: &str) -> String {
    let mut body = format!("{reason}.\nConfirm or discard hold {id} in the admin API.");
    if let (Some(c), Some(d)) = (
        api_url(policy, &format!("/holds/{id}/confirm")),
        api_url(policy, &format!("/holds/{id}/discard")),
    ) {
        body.push_str(&format!("\n\nConfirm: POST {c}\nDiscard: POST {d}\n"));
    }
    body
}

/// Where the admin API is mounted.
pub const API_PREFIX: &str = "/admin/v1";

/// What following a one-click link did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkOutcome {
    /// `ack` or `extend`.
    pub action: String,
    pub user_id: String,
    /// For people: what happened.
    pub message: String,
}

/// What a one-click link would do, shown before anything happens (`GET` of the link).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkPreview {
    /// `ack` or `extend`.
    pub action: String,
    pub user_id: String,
    /// The user's userName, when they still exist.
    pub user_name: Option<String>,
    /// Who the link was sent to (the manager's id, or a security address) and as what
    /// (`manager`, `security`).
    pub addressee: String,
    pub role: String,
    /// For people: what confirming will do.
    pub message: String,
}

/// A verified link, checked against the current state (not used, addressee still entitled,
/// legacy access still open).
struct CheckedLink {
    claims: links::LinkClaims,
    extend: Option<Duration>,
    /// Shared by every link of one mover event: one use between them.
    pair: String,
}

pub type AdminResult<T> = Result<T, AdminError>;

/// The longest a manager may extend a mover's legacy access in one step, in days.
pub const MAX_LEGACY_EXTENSION_DAYS: i64 = 90;

/// The admin operations.
#[derive(Debug, Clone)]
pub struct Admin {
    pub store: Store,
    pub engine: Arc<Engine>,
}

impl Admin {
    pub fn new(store: Store, engine: Arc<Engine>) -> Self {
        Admin { store, engine }
    }

    fn now(&self) -> DateTime<Utc> {
        self.engine.now()
    }

    pub fn approvals(&self, status: Option<&str>) -> AdminResult<Vec<approvals::ApprovalRow>> {
        // A status no request can have matches none.
        let status = match status.map(ApprovalStatus::parse) {
            Some(None) => return Ok(Vec::new()),
            other => other.flatten(),
        };
        Ok(in_tx(&self.store, |c| approvals::list(c, status))?)
    }

    /// Runs `f` in a write transaction and, once it has committed, wakes the outbox workers:
    /// what the decision queued runs now, not at the workers' next poll.
    fn decision_tx<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let out = in_tx(&self.store, f)?;
        self.engine.wake_workers();
        Ok(out)
    }

    /// Approves a pending request as `by` and applies it: an entitlement or SoD exception is
    /// planned at once; an extension moves the contract end date (a write to the user, so the
    /// engine reschedules expiry and reminders).
    pub fn approve(&self, id: &str, by: &Principal) -> AdminResult<approvals::ApprovalRow> {
        self.decide_request(id, None, "approved", by, None)
    }

    /// Rejects a pending request as `by`; nothing is granted.
    pub fn reject(
        &self,
        id: &str,
        by: &Principal,
        reason: Option<&str>,
    ) -> AdminResult<approvals::ApprovalRow> {
        self.decide_request(id, None, "rejected", by, reason)
    }

    /// The directory user a principal acts as, with what deciding needs to know of them.
    fn approver(&self, c: &mut DbConnection, by: &Principal) -> AdminResult<Approver> {
        let user = by.user.as_ref().ok_or_else(|| Refusal::NoUser {
            credential: by.client.clone(),
        })?;
        let row = match user {
            UserRef::Id(id) => load_row(c, ResourceKind::User, id)?,
            UserRef::UserName(name) => crate::store::find_user_row_by_name(c, name)?,
        };
        let (id, doc) = match row {
            Some(row) => (
                row.id,
                serde_json::from_str::<Doc>(&row.doc)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            ),
            None => {
                return Err(Refusal::UnknownUser {
                    credential: by.client.clone(),
                    user: user.as_str().to_string(),
                }
                .into())
            }
        };
        let groups = load_groups(c, std::slice::from_ref(&id))?
            .remove(&id)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| g.display)
            .collect();
        Ok(Approver::from_doc(&id, &doc, groups, &by.client))
    }

    /// Decides a pending request (of `kind`, when given: `/extensions/{id}` only finds
    /// extensions) as `by`. 404 when unknown, 409 when no longer pending, 403 when `by` has no
    /// authority over it (see [`authority`]); a refused request stays pending.
    pub fn decide_request(
        &self,
        id: &str,
        kind: Option<&str>,
        status: &str,
        by: &Principal,
        reason: Option<&str>,
    ) -> AdminResult<approvals::ApprovalRow> {
        let now = self.now();
        let policy = self.engine.policy.current();
        let what = kind.unwrap_or("request");
        let approve = status == "approved";
        let decided = self.decision_tx(|c| {
            let Some(row) =
                approvals::get(c, id)?.filter(|r| kind.is_none_or(|k| r.kind.as_str() == k))
            else {
                return Ok(Err(AdminError::NotFound(format!("{what} {id}"))));
            };
            if row.status != ApprovalStatus::Pending {
                return Ok(Err(AdminError::Conflict(format!(
                    "{what} {id} is already {}",
                    row.status
                ))));
            }
            let approver = match self.approver(c, by) {
                Ok(a) => a,
                Err(AdminError::Store(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            let doc = load_user_doc(c, &row.user_id)?;
            let facts = engine_state::get_user(c, &row.user_id)?.map(|u| u.facts);
            let fact = |k: &str| {
                facts
                    .as_ref()
                    .and_then(|f| f.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            // The current record decides who the manager and sponsor are; the engine's last
            // facts stand in when the user was deleted.
            let manager = doc
                .as_ref()
                .and_then(crate::engine::manager_id)
                .or_else(|| fact("manager"));
            let sponsor = match (&doc, policy.settings.sponsor_attribute.as_deref()) {
                (Some(d), Some(attr)) => attr_str(d, attr).map(str::to_string),
                _ => fact("sponsor"),
            };
            let subject = Subject {
                user_id: &row.user_id,
                manager_id: manager.as_deref(),
                sponsor: sponsor.as_deref(),
            };
            let authority = match authority::authority(&policy, &row, &subject, &approver) {
                Ok(a) => a,
                Err(refusal) => {
                    tracing::info!(
                        request = %id, credential = %by.client, user = %approver.user_name,
                        reason = %refusal, "approval decision refused"
                    );
                    return Ok(Err(refusal.into()));
                }
            };
            let new_end = if approve && row.kind == ApprovalKind::Extension {
                // Checked before deciding, so a request that cannot be applied stays pending.
                if let Err(e) = self.end_date_path() {
                    return Ok(Err(e));
                }
                match row.detail.get("new_end").and_then(Value::as_str) {
                    Some(end) => Some(end.to_string()),
                    None => {
                        return Ok(Err(AdminError::Invalid("extension without new_end".into())))
                    }
                }
            } else {
                None
            };
            let decided_by = approvals::DecidedBy {
                name: &approver.user_name,
                user_id: Some(&approver.user_id),
                credential: Some(&approver.credential),
                authority: Some(authority.as_str()),
            };
            let decision = if approve {
                ApprovalStatus::Approved
            } else {
                ApprovalStatus::Rejected
            };
            if !approvals::decide(c, id, decision, &decided_by, reason, now)? {
                return Ok(Err(AdminError::Conflict(format!(
                    "{what} {id} was decided concurrently"
                ))));
            }
            let actor = format!(
                "{} (credential {})",
                approver.user_name, approver.credential
            );
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: &actor,
                    user_id: &row.user_id,
                    connector: row.connector.as_deref(),
                    action: "decide_request",
                    outcome: status,
                    detail: json!({
                        "request": id,
                        "kind": row.kind,
                        "level": row.level,
                        "reason": reason,
                        "decided_by": {
                            "user_id": approver.user_id,
                            "userName": approver.user_name,
                            "credential": approver.credential,
                            "as": authority.as_str(),
                        },
                    }),
                },
            )?;
            if approve && row.kind != ApprovalKind::Extension {
                self.engine.replan(c, &row.user_id, Cause::Approval)?;
            }
            Ok(Ok((row, new_end)))
        })??;
        let (row, new_end) = decided;
        if let Some(end) = new_end {
            self.set_end_date(&row.user_id, &end)?;
        }
        Ok(in_tx(&self.store, |c| approvals::get(c, id))?.unwrap_or(row))
    }

    fn end_date_path(&self) -> AdminResult<scim_schema::filter::AttrPath> {
        let policy = self.engine.policy.current();
        let attr =
            policy.settings.end_date_attribute.clone().ok_or_else(|| {
                AdminError::Invalid("the policy sets no end_date_attribute".into())
            })?;
        scim_schema::filter::parse_attr_path(&attr).map_err(|e| AdminError::Invalid(e.to_string()))
    }

    fn set_end_date(&self, user_id: &str, end: &str) -> AdminResult<()> {
        let path = self.end_date_path()?;
        let end = end.to_string();
        self.store.update_with(
            ResourceKind::User,
            user_id,
            None,
            None,
            move |mut doc: Doc| {
                let target = match &path.urn {
                    Some(urn) => {
                        let entry = doc
                            .entry(urn.as_str().to_string())
                            .or_insert_with(|| Value::Object(Default::default()));
                        match entry.as_object_mut() {
                            Some(o) => o,
                            None => {
                                return Err(scim_schema::Error::InvalidValue(
                                    "extension is not an object".into(),
                                )
                                .into())
                            }
                        }
                    }
                    None => &mut doc,
                };
                target.insert(path.name.as_str().to_string(), Value::String(end));
                Ok(doc)
            },
        )?;
        Ok(())
    }

    /// A request to move a contractor's end date, decided by the contractor's sponsor, a
    /// contractor owner or security ([`authority`]). `by` names who asks (free text: the sponsor's
    /// address, say); `requester` is the directory user behind the call, if any, recorded so they
    /// cannot decide their own request.
    pub fn request_extension(
        &self,
        user_id: &str,
        new_end: &str,
        reason: &str,
        by: &str,
        requester: Option<&UserRef>,
    ) -> AdminResult<String> {
        let policy = self.engine.policy.current();
        let rules = policy
            .contractor
            .as_ref()
            .ok_or_else(|| AdminError::Invalid("the policy has no contractor rules".into()))?;
        let end = parse_date(new_end)
            .ok_or_else(|| AdminError::Invalid(format!("{new_end:?} is not a date")))?;
        if reason.trim().is_empty() {
            return Err(AdminError::Invalid("an extension needs a reason".into()));
        }
        if self.store.get(ResourceKind::User, user_id, false).is_err() {
            return Err(AdminError::NotFound(format!("user {user_id}")));
        }
        let now = self.now();
        let current = in_tx(&self.store, |c| engine_state::get_user(c, user_id))?
            .and_then(|u| u.facts.get("end_date").cloned())
            .and_then(|v| serde_json::from_value::<Option<DateTime<Utc>>>(v).ok())
            .flatten()
            .unwrap_or(now);
        if end <= current {
            return Err(AdminError::Invalid("the new end date must be later".into()));
        }
        if end - current > rules.max_extension {
            return Err(AdminError::Invalid(format!(
                "an extension may add at most {}",
                crate::policy::fmt_duration(rules.max_extension)
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        in_tx(&self.store, |c| {
            let requester_id = match requester {
                Some(UserRef::Id(u)) => load_row(c, ResourceKind::User, u)?.map(|r| r.id),
                Some(UserRef::UserName(u)) => {
                    crate::store::find_user_row_by_name(c, u)?.map(|r| r.id)
                }
                None => None,
            };
            let mut detail = json!({"new_end": new_end, "reason": reason, "requested_by": by});
            if let Some(r) = &requester_id {
                detail["requested_by_user_id"] = json!(r);
            }
            approvals::insert(
                c,
                &approvals::NewApproval {
                    id: &id,
                    user_id,
                    kind: ApprovalKind::Extension,
                    connector: None,
                    entitlement: None,
                    level: ApprovalLevel::Owner,
                    detail,
                },
                now,
            )?;
            // Those who may decide it: the sponsor (an address, or a user id the sender
            // resolves), the contractor owners, the owner approvers' addresses; else security.
            let mut to: Vec<String> = Vec::new();
            if let Some(sponsor) = engine_state::get_user(c, user_id)?.and_then(|u| {
                u.facts
                    .get("sponsor")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }) {
                to.push(sponsor);
            }
            to.extend(crate::engine::user_ids_by_name(c, &rules.owners)?);
            to.extend(
                policy
                    .notify
                    .approvers
                    .get("owner")
                    .cloned()
                    .unwrap_or_default(),
            );
            if to.is_empty() {
                to = policy.notify.security.clone();
            }
            if !to.is_empty() {
                let mut body = format!(
                    "{by} asks to extend the contract of user {user_id} to {new_end}: {reason}\n\
                     Approve or reject extension request {id} in the admin API."
                );
                if let (Some(a), Some(r)) = (
                    api_url(&policy, &format!("/extensions/{id}/approve")),
                    api_url(&policy, &format!("/extensions/{id}/reject")),
                ) {
                    body.push_str(&format!("\nApprove: POST {a}\nReject: POST {r}\n"));
                }
                crate::store::notifications::enqueue(
                    c,
                    "extension_request",
                    Some(user_id),
                    &to,
                    "scimhub: contract extension requested",
                    &body,
                    now,
                )?;
            }
            Ok(())
        })?;
        Ok(id)
    }

    pub fn holds(&self, status: Option<&str>) -> AdminResult<Vec<holds::Hold>> {
        // A status no hold can have matches none.
        let status = match status.map(holds::HoldStatus::parse) {
            Some(None) => return Ok(Vec::new()),
            other => other.flatten(),
        };
        Ok(in_tx(&self.store, |c| holds::list(c, status))?)
    }

    /// The hold `id`, pending: 404 when unknown, 409 when already decided.
    fn pending_hold(&self, id: &str) -> AdminResult<holds::Hold> {
        let hold = in_tx(&self.store, |c| holds::list(c, None))?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| AdminError::NotFound(format!("hold {id}")))?;
        if hold.status != holds::HoldStatus::Pending {
            return Err(AdminError::Conflict(format!(
                "hold {id} is already {}",
                hold.status
            )));
        }
        Ok(hold)
    }

    /// Confirms a hold: its operations run (they become pending, due now). Returns how many
    /// operations were released.
    pub fn confirm_hold(&self, id: &str, by: &str) -> AdminResult<usize> {
        let hold = self.pending_hold(id)?;
        let now = self.now();
        self.decision_tx(|c| {
            if !holds::decide(c, id, holds::HoldStatus::Confirmed, by, now)? {
                return Ok(None);
            }
            let users = holds::release_ops(c, id, holds::HeldOps::Release, now)?;
            for u in &users {
                audit::append(
                    c,
                    &audit::AuditEntry {
                        at: now,
                        actor: by,
                        user_id: u,
                        connector: None,
                        action: "hold",
                        outcome: "confirmed",
                        detail: json!({"hold": id}),
                    },
                )?;
            }
            Ok(Some(hold.operations as usize))
        })?
        .ok_or_else(|| AdminError::Conflict(format!("hold {id} was decided concurrently")))
    }

    /// Discards a hold: its operations never run; the users' planned state goes back to what
    /// the connectors hold, so the next change plans them afresh. Returns how many users.
    pub fn discard_hold(&self, id: &str, by: &str) -> AdminResult<usize> {
        self.pending_hold(id)?;
        let now = self.now();
        in_tx(&self.store, |c| {
            if !holds::decide(c, id, holds::HoldStatus::Discarded, by, now)? {
                return Ok(None);
            }
            let users = holds::release_ops(c, id, holds::HeldOps::Discard, now)?;
            for u in &users {
                for account in engine_state::accounts(c, u)? {
                    let actual = account.actual.unwrap_or_else(|| "{}".into());
                    engine_state::put_account(c, u, &account.connector, &actual, &actual, now)?;
                }
                if let Some(mut eu) = engine_state::get_user(c, u)? {
                    eu.state = "active".into();
                    eu.updated = now;
                    engine_state::put_user(c, &eu)?;
                }
                audit::append(
                    c,
                    &audit::AuditEntry {
                        at: now,
                        actor: by,
                        user_id: u,
                        connector: None,
                        action: "hold",
                        outcome: "discarded",
                        detail: json!({"hold": id}),
                    },
                )?;
            }
            Ok(Some(users.len()))
        })?
        .ok_or_else(|| AdminError::Conflict(format!("hold {id} was decided concurrently")))
    }

    /// Acknowledges (ends now) or extends a mover's legacy access, then re-plans. 404 for an
    /// unknown user, 409 when no legacy access is open.
    pub fn legacy_access(
        &self,
        user_id: &str,
        extend: Option<Duration>,
    ) -> AdminResult<PlanOutcome> {
        self.decision_tx(|c| self.legacy_access_in(c, user_id, extend, "admin"))?
    }

    fn legacy_access_in(
        &self,
        c: &mut DbConnection,
        user_id: &str,
        extend: Option<Duration>,
        actor: &str,
    ) -> StoreResult<AdminResult<PlanOutcome>> {
        let now = self.now();
        if let Some(d) = extend {
            if d <= Duration::zero() || d > Duration::days(MAX_LEGACY_EXTENSION_DAYS) {
                return Ok(Err(AdminError::Invalid(format!(
                    "legacy access may be extended by 1 to {MAX_LEGACY_EXTENSION_DAYS} days"
                ))));
            }
        }
        if engine_state::get_user(c, user_id)?.is_none() {
            return Ok(Err(AdminError::NotFound(format!("user {user_id}"))));
        }
        let open = approvals::overrides(c, user_id)?
            .into_iter()
            .filter(|o| o.until > now)
            .count();
        if open == 0 {
            return Ok(Err(AdminError::Conflict(format!(
                "user {user_id} has no legacy access left to acknowledge or extend"
            ))));
        }
        let until = match extend {
            None => now,
            Some(d) => now + d,
        };
        approvals::set_override_until(c, user_id, until)?;
        if extend.is_some() {
            timers::schedule(
                c,
                &format!("overlap_end:{user_id}:{}", until.timestamp()),
                user_id,
                "overlap_end",
                until,
                &json!({}),
                now,
            )?;
        }
        audit::append(
            c,
            &audit::AuditEntry {
                at: now,
                actor,
                user_id,
                connector: None,
                action: "legacy_access",
                outcome: if extend.is_some() {
                    "extended"
                } else {
                    "acknowledged"
                },
                detail: json!({"until": until, "overrides": open}),
            },
        )?;
        Ok(Ok(self.engine.replan(c, user_id, Cause::Admin)?))
    }

    /// Verifies a one-click link and checks it against the current state, without acting: the
    /// signature (403 when tampered), the expiry (410), that its addressee still holds the role
    /// it was sent to them for (403: a manager who is no longer the user's manager, an address
    /// no longer on the security list), that no link of the same notification was used (409)
    /// and that legacy access is still open (409).
    fn check_link(
        &self,
        c: &mut DbConnection,
        token: &str,
    ) -> StoreResult<AdminResult<CheckedLink>> {
        let policy = self.engine.policy.current();
        let Some(key) = links::key(&policy) else {
            return Ok(Err(AdminError::Forbidden(
                "one-click links are not configured".into(),
            )));
        };
        let claims = match links::verify(&key, token, self.now()) {
            Ok(c) => c,
            Err(links::LinkError::Expired) => {
                return Ok(Err(AdminError::Expired("This link has expired.".into())))
            }
            Err(other) => {
                return Ok(Err(AdminError::Forbidden(format!(
                    "This link is not valid ({other})."
                ))))
            }
        };
        let extend = match claims.a.as_str() {
            "ack" => None,
            "extend" => Some(Duration::days(claims.d.clamp(1, MAX_LEGACY_EXTENSION_DAYS))),
            _ => return Ok(Err(AdminError::Forbidden("unknown action".into()))),
        };
        // The signature proves who the link was sent to; the addressee must still be entitled.
        let entitled = match claims.r.as_str() {
            "manager" => {
                let manager = load_user_doc(c, &claims.u)?
                    .as_ref()
                    .and_then(crate::engine::manager_id);
                manager.as_deref() == Some(claims.to.as_str())
            }
            "security" => policy
                .notify
                .security
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&claims.to)),
            _ => false,
        };
        if !entitled {
            return Ok(Err(AdminError::Forbidden(format!(
                "This link was sent to {} as the user's {}, which they no longer are.",
                claims.to, claims.r
            ))));
        }
        // Every link of one mover event carries the same user and expiry: one use between them.
        let pair = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                format!("{}:{}", claims.u, claims.exp).as_bytes(),
            ))
        };
        let used = audit::list(c, Some(&claims.u))?.into_iter().any(|a| {
            a.action == "one_click_link"
                && serde_json::from_str::<Value>(&a.detail)
                    .ok()
                    .and_then(|d| d.get("link").and_then(Value::as_str).map(|l| l == pair))
                    .unwrap_or(false)
        });
        if used {
            return Ok(Err(AdminError::Conflict(
                "This link has already been used.".into(),
            )));
        }
        let now = self.now();
        let open = approvals::overrides(c, &claims.u)?
            .into_iter()
            .any(|o| o.until > now);
        if !open {
            return Ok(Err(AdminError::Conflict(format!(
                "user {} has no legacy access left to acknowledge or extend",
                claims.u
            ))));
        }
        Ok(Ok(CheckedLink {
            claims,
            extend,
            pair,
        }))
    }

    /// What a one-click link would do, after every check [`Admin::follow_link`] makes, without
    /// doing it: following a link with `GET` shows this, so a mail scanner that fetches links
    /// changes nothing.
    pub fn preview_link(&self, token: &str) -> AdminResult<LinkPreview> {
        let (link, name) = in_tx(&self.store, |c| {
            let link = match self.check_link(c, token)? {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            let name = load_user_doc(c, &link.claims.u)?
                .and_then(|d| attr_str(&d, "userName").map(str::to_string));
            Ok(Ok((link, name)))
        })??;
        let who = name.clone().unwrap_or_else(|| link.claims.u.clone());
        let message = match link.extend {
            None => format!("Remove {who}'s legacy access now."),
            Some(d) => format!("Extend {who}'s legacy access by {} days.", d.num_days()),
        };
        Ok(LinkPreview {
            action: link.claims.a,
            user_id: link.claims.u,
            user_name: name,
            addressee: link.claims.to,
            role: link.claims.r,
            message,
        })
    }

    /// Runs a one-click link (after the checks of [`Admin::preview_link`]): acknowledges or
    /// extends the user's legacy access. The links of one mover event share one use: once one
    /// ran, all answer 409, so a second click, a replay or another recipient's link cannot act
    /// twice or undo the first decision. The audit records who the link was sent to: the
    /// signature is the proof of identity here, there is no login.
    pub fn follow_link(&self, token: &str) -> AdminResult<LinkOutcome> {
        let now = self.now();
        let link = self.decision_tx(|c| {
            let link = match self.check_link(c, token)? {
                Ok(l) => l,
                Err(e) => return Ok(Err(e)),
            };
            let actor = format!("one-click link to {} ({})", link.claims.to, link.claims.r);
            if let Err(e) = self.legacy_access_in(c, &link.claims.u, link.extend, &actor)? {
                return Ok(Err(e));
            }
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: &actor,
                    user_id: &link.claims.u,
                    connector: None,
                    action: "one_click_link",
                    outcome: &link.claims.a,
                    detail: json!({"link": link.pair, "to": link.claims.to, "as": link.claims.r}),
                },
            )?;
            Ok(Ok(link))
        })??;
        let message = match link.extend {
            None => "Legacy access removed.".to_string(),
            Some(d) => format!("Legacy access extended by {} days.", d.num_days()),
        };
        Ok(LinkOutcome {
            action: link.claims.a,
            user_id: link.claims.u,
            message,
        })
    }

    /// Outbox operations of `status` (`failed`: parked after the retry budget, with the
    /// reason), newest first.
    pub fn outbox(&self, status: Option<&str>, limit: i64) -> AdminResult<Vec<outbox::OutboxRow>> {
        // A status no operation can have matches none.
        let status = match status.map(outbox::OutboxStatus::parse) {
            Some(None) => return Ok(Vec::new()),
            other => other.flatten(),
        };
        Ok(in_tx(&self.store, |c| {
            outbox::list_ops(c, None, status, limit)
        })?)
    }

    /// Puts a parked (failed) operation back in the outbox with a fresh retry budget and
    /// resolves its incidents. 404 when unknown, 409 when it is not failed or a later operation
    /// on the same user and connector already ran (running the old one now could undo it).
    pub fn retry(&self, id: i64, by: &str) -> AdminResult<outbox::OutboxRow> {
        let now = self.now();
        self.decision_tx(|c| {
            let Some(row) = outbox::get_op(c, id)? else {
                return Ok(Err(AdminError::NotFound(format!("operation {id}"))));
            };
            if row.status != outbox::OutboxStatus::Failed {
                return Ok(Err(AdminError::Conflict(format!(
                    "operation {id} is {}, not failed",
                    row.status
                ))));
            }
            if outbox::later_done(c, &row)? {
                return Ok(Err(AdminError::Conflict(format!(
                    "operation {id} is superseded: a later operation on {} for this user already ran",
                    row.connector
                ))));
            }
            outbox::retry_failed(c, id, now)?;
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: by,
                    user_id: &row.user_id,
                    connector: Some(&row.connector),
                    action: "retry",
                    outcome: "queued",
                    detail: json!({"operation": id, "last_error": row.last_error}),
                },
            )?;
            Ok(Ok(outbox::get_op(c, id)?.unwrap_or(row)))
        })?
    }

    /// Open incidents.
    pub fn incidents(&self) -> AdminResult<Vec<incidents::Incident>> {
        Ok(in_tx(&self.store, incidents::list_open)?)
    }

    /// The plan a change would produce, without committing anything. `doc` is the user's
    /// document after the change (`None`: the user is deleted).
    pub fn simulate(&self, user_id: &str, doc: Option<&Doc>) -> AdminResult<PlanOutcome> {
        Ok(in_tx(&self.store, |c| {
            self.engine.compute(c, user_id, doc)
        })?)
    }

    /// Explains which profiles match a user and what they get.
    pub fn explain(&self, user: &str) -> AdminResult<Value> {
        let (id, doc) = self.find_user(user)?;
        let out = self.simulate(&id, Some(&doc))?;
        let policy = self.engine.policy.current();
        let mut unmatched = Vec::new();
        for p in &policy.profiles {
            if !out.desired.matched.iter().any(|m| m.profile == p.name) {
                if let Some(m) = &p.match_expr {
                    unmatched.push(json!({"profile": p.name, "match": m}));
                }
            }
        }
        Ok(json!({
            "user": id,
            "lifecycle": out.desired.lifecycle,
            "contractor": out.desired.contractor,
            "matched": out.desired.matched,
            "not_matched": unmatched,
            "accounts": out.desired.accounts,
            "needs_approval": out.desired.needs_approval,
            "sod": out.desired.sod,
            "notes": out.desired.notes,
            "pending_plan": out.plan.ops,
        }))
    }

    /// Finds a user by id or userName; returns the id and stored document.
    pub fn find_user(&self, user: &str) -> AdminResult<(String, Doc)> {
        if let Ok(r) = self.store.get(ResourceKind::User, user, false) {
            return Ok((r.id, r.doc));
        }
        let q = crate::store::SearchQuery {
            filter: Some(
                scim_schema::filter::parse_filter(&format!(
                    "userName eq {}",
                    serde_json::Value::String(user.to_string())
                ))
                .map_err(|e| AdminError::Invalid(e.to_string()))?,
            ),
            sort_by: None,
            descending: false,
            start_index: 1,
            count: 1,
            cursor: None,
            with_members: false,
        };
        let schema = scim_schema::schema::SchemaRegistry::core()
            .resource_schema("User")
            .ok_or_else(|| AdminError::Invalid("no User schema".into()))?;
        let page = self.store.search(ResourceKind::User, &q, &schema)?;
        let r = page
            .resources
            .into_iter()
            .next()
            .ok_or_else(|| AdminError::NotFound(format!("user {user}")))?;
        Ok((r.id, r.doc))
    }

    /// Reads an attribute of a user's stored document (for tests and the CLI).
    pub fn user_attr(&self, user_id: &str, path: &str) -> Option<Value> {
        let r = self.store.get(ResourceKind::User, user_id, false).ok()?;
        attr_value(&r.doc, path).cloned()
    }
}
