//! Admin operations on the engine: approvals, holds, contract extensions, one-click links,
//! simulation — as plain functions over the store ([`Admin`]), for the CLI, tests and the admin
//! HTTP API ([`http`], mounted under `/admin/v1`).
//!
//! Every decision is taken at most once: deciding something already decided is
//! [`AdminError::Conflict`], an unknown id [`AdminError::NotFound`]. The HTTP layer maps these
//! in `http::error` and nowhere else.

pub mod http;
pub mod simulate;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::engine::desired::{attr_value, parse_date};
use crate::engine::{links, Cause, Engine, PlanOutcome};
use crate::store::{
    approvals, outbox, timers, DbConnection, Doc, ResourceKind, Store, StoreError, StoreResult,
};

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
        Ok(in_tx(&self.store, |c| approvals::list(c, status))?)
    }

    /// Approves a pending request and applies it: an entitlement or SoD exception is planned at
    /// once; an extension moves the contract end date (a write to the user, so the engine
    /// reschedules expiry and reminders).
    pub fn approve(&self, id: &str, by: &str) -> AdminResult<approvals::ApprovalRow> {
        self.decide_request(id, None, "approved", by, None)
    }

    /// Rejects a pending request; nothing is granted.
    pub fn reject(
        &self,
        id: &str,
        by: &str,
        reason: Option<&str>,
    ) -> AdminResult<approvals::ApprovalRow> {
        self.decide_request(id, None, "rejected", by, reason)
    }

    /// Decides a pending request (of `kind`, when given: `/extensions/{id}` only finds
    /// extensions). 404 when unknown, 409 when no longer pending.
    pub fn decide_request(
        &self,
        id: &str,
        kind: Option<&str>,
        status: &str,
        by: &str,
        reason: Option<&str>,
    ) -> AdminResult<approvals::ApprovalRow> {
        let now = self.now();
        let what = kind.unwrap_or("request");
        let row = in_tx(&self.store, |c| approvals::get(c, id))?
            .filter(|r| kind.is_none_or(|k| r.kind == k))
            .ok_or_else(|| AdminError::NotFound(format!("{what} {id}")))?;
        if row.status != "pending" {
            return Err(AdminError::Conflict(format!(
                "{what} {id} is already {}",
                row.status
            )));
        }
        let approve = status == "approved";
        let new_end = if approve && row.kind == "extension" {
            // Checked before deciding, so a request that cannot be applied stays pending.
            self.end_date_path()?;
            Some(
                row.detail
                    .get("new_end")
                    .and_then(Value::as_str)
                    .ok_or_else(|| AdminError::Invalid("extension without new_end".into()))?
                    .to_string(),
            )
        } else {
            None
        };
        let decided = in_tx(&self.store, |c| {
            if !approvals::decide(c, id, status, by, reason, now)? {
                return Ok(false);
            }
            outbox::audit(
                c,
                &outbox::AuditEntry {
                    at: now,
                    actor: by,
                    user_id: &row.user_id,
                    connector: row.connector.as_deref(),
                    action: "decide_request",
                    outcome: status,
                    detail: json!({"request": id, "kind": row.kind, "reason": reason}),
                },
            )?;
            if approve && row.kind != "extension" {
                self.engine.replan(c, &row.user_id, Cause::Approval)?;
            }
            Ok(true)
        })?;
        if !decided {
            return Err(AdminError::Conflict(format!(
                "{what} {id} was decided concurrently"
            )));
        }
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
                                ))
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

    /// A sponsor's request to move a contractor's end date (approved by `owner`).
    pub fn request_extension(
        &self,
        user_id: &str,
        new_end: &str,
        reason: &str,
        by: &str,
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
        let current = in_tx(&self.store, |c| outbox::get_user(c, user_id))?
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
            approvals::insert(
                c,
                &approvals::NewApproval {
                    id: &id,
                    user_id,
                    kind: "extension",
                    connector: None,
                    entitlement: None,
                    level: "owner",
                    detail: json!({"new_end": new_end, "reason": reason, "requested_by": by}),
                },
                now,
            )?;
            let mut to = policy
                .notify
                .approvers
                .get("owner")
                .cloned()
                .unwrap_or_default();
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

    pub fn holds(&self, status: Option<&str>) -> AdminResult<Vec<outbox::Hold>> {
        Ok(in_tx(&self.store, |c| outbox::list_holds(c, status))?)
    }

    /// The hold `id`, pending: 404 when unknown, 409 when already decided.
    fn pending_hold(&self, id: &str) -> AdminResult<outbox::Hold> {
        let hold = in_tx(&self.store, |c| outbox::list_holds(c, None))?
            .into_iter()
            .find(|h| h.id == id)
            .ok_or_else(|| AdminError::NotFound(format!("hold {id}")))?;
        if hold.status != "pending" {
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
        in_tx(&self.store, |c| {
            if !outbox::decide_hold(c, id, "confirmed", by, now)? {
                return Ok(None);
            }
            let users = outbox::release_hold_ops(c, id, "pending", now)?;
            for u in &users {
                outbox::audit(
                    c,
                    &outbox::AuditEntry {
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
            if !outbox::decide_hold(c, id, "discarded", by, now)? {
                return Ok(None);
            }
            let users = outbox::release_hold_ops(c, id, "discarded", now)?;
            for u in &users {
                for (connector, _, actual) in outbox::accounts(c, u)? {
                    let actual = actual.unwrap_or_else(|| "{}".into());
                    outbox::put_account(c, u, &connector, &actual, &actual, now)?;
                }
                if let Some(mut eu) = outbox::get_user(c, u)? {
                    eu.state = "active".into();
                    eu.updated = now;
                    outbox::put_user(c, &eu)?;
                }
                outbox::audit(
                    c,
                    &outbox::AuditEntry {
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
        in_tx(&self.store, |c| {
            self.legacy_access_in(c, user_id, extend, "admin")
        })?
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
        if outbox::get_user(c, user_id)?.is_none() {
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
        outbox::audit(
            c,
            &outbox::AuditEntry {
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

    /// Runs a one-click link: verifies its signature (403 when tampered) and expiry (410), then
    /// acknowledges or extends the user's legacy access. The two links of one notification
    /// (acknowledge, extend) share one use: once either ran, both answer 409, so a second click,
    /// a replay or a mail scanner fetching both cannot act twice or undo the first decision.
    pub fn follow_link(&self, token: &str) -> AdminResult<LinkOutcome> {
        let policy = self.engine.policy.current();
        let key = links::key(&policy)
            .ok_or_else(|| AdminError::Forbidden("one-click links are not configured".into()))?;
        let claims = links::verify(&key, token, self.now()).map_err(|e| match e {
            links::LinkError::Expired => AdminError::Expired("This link has expired.".into()),
            other => AdminError::Forbidden(format!("This link is not valid ({other}).")),
        })?;
        let extend = match claims.a.as_str() {
            "ack" => None,
            "extend" => Some(Duration::days(claims.d.clamp(1, MAX_LEGACY_EXTENSION_DAYS))),
            _ => return Err(AdminError::Forbidden("unknown action".into())),
        };
        // Both links of a notification carry the same user and expiry.
        let pair = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(
                format!("{}:{}", claims.u, claims.exp).as_bytes(),
            ))
        };
        let now = self.now();
        in_tx(&self.store, |c| {
            let used = outbox::list_audit(c, Some(&claims.u))?
                .into_iter()
                .any(|a| {
                    a.5 == "one_click_link"
                        && serde_json::from_str::<Value>(&a.7)
                            .ok()
                            .and_then(|d| d.get("link").and_then(Value::as_str).map(|l| l == pair))
                            .unwrap_or(false)
                });
            if used {
                return Ok(Err(AdminError::Conflict(
                    "This link has already been used.".into(),
                )));
            }
            if let Err(e) = self.legacy_access_in(c, &claims.u, extend, "one-click link")? {
                return Ok(Err(e));
            }
            outbox::audit(
                c,
                &outbox::AuditEntry {
                    at: now,
                    actor: "one-click link",
                    user_id: &claims.u,
                    connector: None,
                    action: "one_click_link",
                    outcome: &claims.a,
                    detail: json!({"link": pair}),
                },
            )?;
            Ok(Ok(()))
        })??;
        let message = match extend {
            None => "Legacy access removed.".to_string(),
            Some(d) => format!("Legacy access extended by {} days.", d.num_days()),
        };
        Ok(LinkOutcome {
            action: claims.a,
            user_id: claims.u,
            message,
        })
    }

    /// Outbox operations of `status` (`failed`: parked after the retry budget, with the
    /// reason), newest first.
    pub fn outbox(&self, status: Option<&str>, limit: i64) -> AdminResult<Vec<outbox::OutboxRow>> {
        Ok(in_tx(&self.store, |c| {
            outbox::list_ops(c, None, status, limit)
        })?)
    }

    /// Puts a parked (failed) operation back in the outbox with a fresh retry budget and
    /// resolves its incidents. 404 when unknown, 409 when it is not failed or a later operation
    /// on the same user and connector already ran (running the old one now could undo it).
    pub fn retry(&self, id: i64, by: &str) -> AdminResult<outbox::OutboxRow> {
        let now = self.now();
        in_tx(&self.store, |c| {
            let Some(row) = outbox::get_op(c, id)? else {
                return Ok(Err(AdminError::NotFound(format!("operation {id}"))));
            };
            if row.status != "failed" {
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
            outbox::audit(
                c,
                &outbox::AuditEntry {
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
    pub fn incidents(&self) -> AdminResult<Vec<outbox::IncidentRow>> {
        Ok(in_tx(&self.store, outbox::open_incidents)?)
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
