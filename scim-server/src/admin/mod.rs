//! Admin operations on the engine: approvals, holds, contract extensions, one-click links,
//! simulation — as plain functions over the store ([`Admin`]), for the CLI, tests and the admin
//! HTTP API.

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
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type AdminResult<T> = Result<T, AdminError>;

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
        let now = self.now();
        let row = in_tx(&self.store, |c| {
            let row = approvals::get(c, id)?.ok_or(StoreError::NotFound)?;
            if approvals::decide(c, id, "approved", by, None, now)? && row.kind != "extension" {
                self.engine.replan(c, &row.user_id, Cause::Approval)?;
            }
            Ok(row)
        })
        .map_err(|e| not_found(e, id))?;
        if row.kind == "extension" && row.status == "pending" {
            let end = row
                .detail
                .get("new_end")
                .and_then(Value::as_str)
                .ok_or_else(|| AdminError::Invalid("extension without new_end".into()))?
                .to_string();
            self.set_end_date(&row.user_id, &end)?;
        }
        Ok(in_tx(&self.store, |c| approvals::get(c, id))?.unwrap_or(row))
    }

    pub fn reject(&self, id: &str, by: &str, reason: Option<&str>) -> AdminResult<()> {
        let now = self.now();
        let changed = in_tx(&self.store, |c| {
            approvals::decide(c, id, "rejected", by, reason, now)
        })?;
        if changed {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("pending request {id}")))
        }
    }

    fn set_end_date(&self, user_id: &str, end: &str) -> AdminResult<()> {
        let policy = self.engine.policy.current();
        let attr =
            policy.settings.end_date_attribute.clone().ok_or_else(|| {
                AdminError::Invalid("the policy sets no end_date_attribute".into())
            })?;
        let path = scim_schema::filter::parse_attr_path(&attr)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
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
            )
        })?;
        Ok(id)
    }

    pub fn holds(&self, status: Option<&str>) -> AdminResult<Vec<outbox::Hold>> {
        Ok(in_tx(&self.store, |c| outbox::list_holds(c, status))?)
    }

    /// Confirms a hold: its operations run.
    pub fn confirm_hold(&self, id: &str, by: &str) -> AdminResult<usize> {
        let now = self.now();
        in_tx(&self.store, |c| {
            if !outbox::decide_hold(c, id, "confirmed", by, now)? {
                return Err(StoreError::NotFound);
            }
            Ok(outbox::release_hold_ops(c, id, "pending", now)?.len())
        })
        .map_err(|e| not_found(e, id))
    }

    /// Discards a hold: its operations never run; the users' planned state goes back to what
    /// the connectors hold, so the next change plans them afresh.
    pub fn discard_hold(&self, id: &str, by: &str) -> AdminResult<usize> {
        let now = self.now();
        in_tx(&self.store, |c| {
            if !outbox::decide_hold(c, id, "discarded", by, now)? {
                return Err(StoreError::NotFound);
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
            }
            Ok(users.len())
        })
        .map_err(|e| not_found(e, id))
    }

    /// Acknowledges (ends now) or extends a mover's legacy access, then re-plans.
    pub fn legacy_access(
        &self,
        user_id: &str,
        extend: Option<Duration>,
    ) -> AdminResult<PlanOutcome> {
        let now = self.now();
        Ok(in_tx(&self.store, |c| {
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
            self.engine.replan(c, user_id, Cause::Admin)
        })?)
    }

    /// Runs a one-click link.
    pub fn follow_link(&self, token: &str) -> AdminResult<String> {
        let policy = self.engine.policy.current();
        let key = links::key(&policy)
            .ok_or_else(|| AdminError::Forbidden("one-click links are not configured".into()))?;
        let claims = links::verify(&key, token, self.now())
            .map_err(|e| AdminError::Forbidden(e.to_string()))?;
        match claims.a.as_str() {
            "ack" => {
                self.legacy_access(&claims.u, None)?;
                Ok("Legacy access removed.".into())
            }
            "extend" => {
                self.legacy_access(&claims.u, Some(Duration::days(claims.d.clamp(1, 90))))?;
                Ok(format!("Legacy access extended by {} days.", claims.d))
            }
            _ => Err(AdminError::Forbidden("unknown action".into())),
        }
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

fn not_found(e: StoreError, id: &str) -> AdminError {
    match e {
        StoreError::NotFound => AdminError::NotFound(id.to_string()),
        other => AdminError::Store(other),
    }
}
