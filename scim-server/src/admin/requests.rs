//! Approval requests (entitlements, SoD exceptions, contract extensions): listing them and
//! deciding them. Whoever decides must act as a directory user with authority over the request
//! ([`super::authority`]); the decision is audited, an approved grant is re-planned at once (an
//! emergency grant's approval activates it first, its rejection ends it) and
//! an approved extension moves the contract end date ([`super::extensions`]).

use serde_json::{json, Value};

use super::authority::{self, Approver, Refusal, Subject};
use super::{in_tx, Admin, AdminError, AdminResult};
use crate::auth::{Principal, UserRef};
use crate::engine::desired::attr_str;
use crate::engine::{load_user_doc, Cause};
use crate::error::HubError;
use crate::store::approvals::{ApprovalKind, ApprovalStatus};
use crate::store::{approvals, audit, engine_state, load_row, DbConnection, Doc, ResourceKind};

/// The authority `approver` has over `row` under `policy`, with the subject's manager and
/// sponsor as the directory holds them now (the engine's last facts when the user was deleted),
/// each counted only when the policy trusts the attribute (its `[[source]]` is its only
/// writer).
fn authority_over(
    c: &mut DbConnection,
    policy: &crate::policy::Policy,
    row: &approvals::ApprovalRow,
    approver: &Approver,
) -> Result<Result<authority::Authority, Refusal>, HubError> {
    let doc = load_user_doc(c, &row.user_id)?;
    let facts = engine_state::get_user(c, &row.user_id)?.map(|u| u.facts);
    let fact = |k: &str| {
        facts
            .as_ref()
            .and_then(|f| f.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let manager = doc
        .as_ref()
        .and_then(crate::engine::manager_id)
        .or_else(|| fact("manager"))
        .filter(|_| policy.manager_trusted());
    let sponsor = match (&doc, policy.settings.sponsor_attribute.as_deref()) {
        (Some(d), Some(attr)) => attr_str(d, attr).map(str::to_string),
        _ => fact("sponsor"),
    }
    .filter(|_| policy.sponsor_trusted());
    let subject = Subject {
        user_id: &row.user_id,
        manager_id: manager.as_deref(),
        sponsor: sponsor.as_deref(),
    };
    Ok(authority::authority(policy, row, &subject, approver))
}

impl Admin {
    /// Every request (of `status`, when given), for administrators and tools.
    pub fn approvals(&self, status: Option<&str>) -> AdminResult<Vec<approvals::ApprovalRow>> {
        // A status no request can have matches none.
        let status = match status.map(ApprovalStatus::parse) {
            Some(None) => return Ok(Vec::new()),
            other => other.flatten(),
        };
        Ok(in_tx(&self.store, |c| approvals::list(c, status))?)
    }

    /// The requests (of `status`) `by` may see: all of them with the `admin` scope; with only
    /// `approvals`, those the person the credential acts as may decide (a credential acting as
    /// nobody, or as an inactive user, sees none). Decided requests are shown to whoever would
    /// have had authority over them.
    pub fn approvals_for(
        &self,
        by: &Principal,
        status: Option<&str>,
    ) -> AdminResult<Vec<approvals::ApprovalRow>> {
        let all = self.approvals(status)?;
        if by.scopes.contains(&crate::auth::Scope::Admin) {
            return Ok(all);
        }
        let policy = self.engine.policy.current();
        Ok(in_tx(&self.store, |c| {
            let approver = match self.approver(c, by) {
                Ok(a) => a,
                Err(AdminError::Store(e)) => return Err(e),
                Err(_) => return Ok(Vec::new()),
            };
            let mut mine = Vec::new();
            for row in all {
                if authority_over(c, &policy, &row, &approver)?.is_ok() {
                    mine.push(row);
                }
            }
            Ok(mine)
        })?)
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
    pub(super) fn approver(&self, c: &mut DbConnection, by: &Principal) -> AdminResult<Approver> {
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
                    .map_err(|e| HubError::Backend(e.to_string()))?,
            ),
            None => {
                return Err(Refusal::UnknownUser {
                    credential: by.client.clone(),
                    user: user.as_str().to_string(),
                }
                .into())
            }
        };
        Ok(Approver::from_doc(&id, &doc, &by.client))
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
        let policy = self.engine.policy.current();
        let what = kind.unwrap_or("request");
        let approve = status == "approved";
        let decided = self.decision_tx_with_changes(|c, changes| {
            // Read on each run: a run again after a deadlock checks the grant's end against
            // the time it decides at.
            let now = self.now();
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
            // The user's row first, as a SCIM write of the user takes it before anything its
            // plan locks (the grant below, the request's own row): the decision and such a
            // write then take turns instead of deadlocking.
            crate::store::lock_users_to_plan(c, [row.user_id.as_str()])?;
            let approver = match self.approver(c, by) {
                Ok(a) => a,
                Err(AdminError::Store(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            let authority = match authority_over(c, &policy, &row, &approver)? {
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
                let path = match self.end_date_path() {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(e)),
                };
                match row.detail.get("new_end").and_then(Value::as_str) {
                    Some(end) => Some((path, end.to_string())),
                    None => {
                        return Ok(Err(AdminError::Invalid("extension without new_end".into())))
                    }
                }
            } else {
                None
            };
            if row.kind == ApprovalKind::Grant {
                // A grant past its end (its timer not run yet) or ended is not decided any more.
                // Locked: its expiry or a revoke committed after this check would otherwise
                // leave the request approved and the grant ended (never activated).
                match crate::store::grants::by_approval_for_update(c, id)? {
                    Some(g) if g.state.is_open() && g.expires > now => {}
                    Some(g) => {
                        return Ok(Err(AdminError::Conflict(format!(
                            "{what} {id}: emergency grant {} is {}",
                            g.id,
                            if g.state.is_open() {
                                "past its end"
                            } else {
                                g.state.as_str()
                            }
                        ))))
                    }
                    None => {
                        return Ok(Err(AdminError::NotFound(format!(
                            "the emergency grant of {what} {id}"
                        ))))
                    }
                }
            }
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
            if row.kind == ApprovalKind::Grant {
                let who = approver.user_name.as_str();
                if approve {
                    crate::engine::grants::activate_for_approval(c, id, who, now)?;
                } else {
                    crate::engine::grants::reject_for_approval(c, id, who, reason, now)?;
                }
            }
            if approve && row.kind != ApprovalKind::Extension {
                self.engine.replan(c, &row.user_id, Cause::Approval)?;
            }
            // The new end date is written in this transaction: if it cannot be (the user is
            // gone), the approval rolls back with it and the request stays pending.
            if let Some((path, end)) = &new_end {
                self.set_end_date_in(c, changes, path, &row.user_id, end)?;
            }
            Ok(Ok(row))
        })??;
        Ok(in_tx(&self.store, |c| approvals::get(c, id))?.unwrap_or(decided))
    }
}
