//! Time-bound emergency grants (docs/grants.md): asking for one (`scimhub grant`,
//! `POST /admin/v1/users/{id}/grants`), listing them and revoking one early.
//!
//! A grant is checked before anything is written: the entitlement's connector and kind exist in
//! the policy, the duration is within `[grants] max_duration`, the user is active, no open grant
//! already gives the same entitlement, a contractor is not given access on a connector
//! contractors are excluded from, and no separation-of-duties rule with `action = "block"`
//! forbids it together with what the user has (refused; a rule with `action = "approval"` lets
//! the grant through and planning asks security for the exception, as for a profile's
//! entitlement). Then it is active at once when its entitlement needs no approval
//! ([`crate::policy::Policy::grant_approval`]), or waits for an approval request of kind `grant`
//! decided like any other (`/approvals/{id}/approve`, one-click links). Every step is an audit
//! chain entry; the engine ([`crate::engine::grants`]) expires it at its end.

use chrono::{DateTime, Duration, Utc};
use connectors::Entitlement;
use serde::Serialize;
use serde_json::{json, Value};

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::auth::UserRef;
use crate::engine::desired::{lifecycle, Lifecycle};
use crate::engine::grants::{audit_step, label, parse_entitlement};
use crate::engine::outcome::ApprovalRequest;
use crate::engine::timers::{self, Timer, TimerKind};
use crate::engine::{commit, decide, links, load, Cause};
use crate::error::HubError;
use crate::policy::connector_config::ConnectorConfig;
use crate::policy::{fmt_duration, Approval, Policy, SodAction};
use crate::store::approvals::{self, ApprovalKind, ApprovalLevel, ApprovalRow, ApprovalStatus};
use crate::store::grants::{self, GrantQuery, GrantRow, GrantState};
use crate::store::{load_row, DbConnection, Doc, ResourceKind};

/// What asking for a grant takes.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    /// The user's id or userName.
    pub user: &'a str,
    /// `CONNECTOR:KIND:ID` or `CONNECTOR:KIND:ID:ROLE`.
    pub entitlement: &'a str,
    pub duration: Duration,
    pub reason: &'a str,
    /// Who asks, for the audit (the API's principal, `cli:LOGIN`).
    pub requested_by: &'a str,
    /// The directory user behind the call, if any: they may not approve their own grant.
    pub requester: Option<&'a UserRef>,
}

/// A new grant and what it waits for.
#[derive(Debug, Clone, Serialize)]
pub struct GrantCreated {
    pub grant: Value,
    /// Whether it waits for an approval before it gives anything.
    pub waits_for_approval: bool,
    /// The approval request, when it waits for one.
    pub approval: Option<ApprovalRow>,
    /// The SoD rule (with `action = "approval"`) whose exception security must approve before
    /// the entitlement is provisioned.
    pub sod_exception: Option<String>,
}

/// A grant as the API and the CLI show it: the row, the entitlement as an object, its
/// `CONNECTOR:KIND:ID` label and whether it gives access now.
pub fn grant_json(g: &GrantRow, now: DateTime<Utc>) -> Value {
    let mut v = json!(g);
    if let Ok(e) = serde_json::from_str::<Value>(&g.entitlement) {
        v["entitlement"] = e;
    }
    v["label"] = json!(label(&g.connector, &g.entitlement));
    v["in_force"] = json!(g.in_force(now));
    v
}

fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError::Invalid(msg.into())
}

/// The user `user` names (an id, else a userName): `(id, document)`.
fn resolve_user(c: &mut DbConnection, user: &str) -> AdminResult<(String, Doc)> {
    let row = match load_row(c, ResourceKind::User, user)? {
        Some(r) => Some(r),
        None => crate::store::find_user_row_by_name(c, user)?,
    };
    let row = row.ok_or_else(|| AdminError::NotFound(format!("user {user:?}")))?;
    let doc =
        serde_json::from_str::<Doc>(&row.doc).map_err(|e| HubError::Backend(e.to_string()))?;
    Ok((row.id, doc))
}

/// The connector and entitlement checked against the policy: the connector exists and knows
/// the kind.
fn checked_entitlement(policy: &Policy, text: &str) -> AdminResult<(String, Entitlement)> {
    let (connector, e) = parse_entitlement(text).map_err(|e| invalid(e.to_string()))?;
    let Some(def) = policy.connectors.get(&connector) else {
        let known: Vec<&str> = policy.connectors.keys().map(String::as_str).collect();
        return Err(invalid(format!(
            "no connector {connector:?} in the policy (it has {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let kinds = ConnectorConfig::parse(&def.kind, &def.settings)
        .ok()
        .and_then(|c| c.entitlement_kinds());
    if let Some(kinds) = kinds {
        if !kinds.iter().any(|k| k == &e.kind) {
            return Err(invalid(format!(
                "connector {connector:?} has no entitlement kind {:?} (it knows {})",
                e.kind,
                if kinds.is_empty() {
                    "none".to_string()
                } else {
                    kinds.join(", ")
                }
            )));
        }
    }
    Ok((connector, e))
}

/// Whether someone could decide a request of `level` for a user whose manager is `manager`
/// (a security approver decides every level).
fn decidable(
    policy: &Policy,
    level: Approval,
    connector: &str,
    e: &Entitlement,
    manager: bool,
) -> bool {
    policy.approvals.has_security()
        || match level {
            Approval::None => true,
            Approval::Manager => manager && policy.manager_trusted(),
            Approval::Owner => !policy.entitlement_owners(connector, e).is_empty(),
            Approval::Security => false,
        }
}

impl Admin {
    /// Asks for a time-bound emergency grant (see the module documentation for the checks).
    pub fn create_grant(&self, r: &GrantRequest<'_>) -> AdminResult<GrantCreated> {
        let policy = self.engine.policy.current();
        let reason = r.reason.trim();
        if reason.is_empty() {
            return Err(invalid("a grant needs a reason"));
        }
        let (connector, entitlement) = checked_entitlement(&policy, r.entitlement)?;
        let max = policy.grants.max_duration;
        if r.duration <= Duration::zero() {
            return Err(invalid("a grant's duration must be above zero"));
        }
        if r.duration > max {
            return Err(invalid(format!(
                "a grant may last at most {} (the policy's [grants] max_duration); {} was asked",
                fmt_duration(max),
                fmt_duration(r.duration)
            )));
        }
        let ent_json =
            serde_json::to_string(&entitlement).map_err(|e| HubError::Backend(e.to_string()))?;
        let level = policy.grant_approval(&connector, &entitlement);
        let what = label(&connector, &ent_json);
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides, and starts the grant, at its
            // own time).
            let now = self.now();
            let expires = now + r.duration;
            let (user_id, _) = match resolve_user(c, r.user) {
                Ok(u) => u,
                Err(AdminError::Store(e)) => return Err(e),
                Err(e) => return Ok(Err(e)),
            };
            // The user's row locked on PostgreSQL for the rest of the decision (read again, as
            // it was found unlocked): two requests for one grant take turns, and the second
            // sees the first's open grant below instead of adding a second one.
            let Some(locked) = crate::store::load_row_for_write(c, ResourceKind::User, &user_id)?
            else {
                return Ok(Err(AdminError::NotFound(format!("user {:?}", r.user))));
            };
            let doc = serde_json::from_str::<Doc>(&locked.doc)
                .map_err(|e| HubError::Backend(e.to_string()))?;
            let name = crate::engine::desired::attr_str(&doc, "userName")
                .unwrap_or(&user_id)
                .to_string();
            let (state, contractor, ..) = lifecycle(Some(&doc), &policy, now);
            if state != Lifecycle::Active {
                let why = match &state {
                    Lifecycle::Left { reason } => format!("left ({reason})"),
                    Lifecycle::NotStarted { start } => format!("not started (starts {start})"),
                    Lifecycle::Expired { end } => format!("past their contract end ({end})"),
                    Lifecycle::Active => "active".into(),
                };
                return Ok(Err(invalid(format!(
                    "user {name} is {why}: a grant would never be provisioned, so none is made"
                ))));
            }
            if contractor
                && policy
                    .contractor
                    .as_ref()
                    .is_some_and(|r| r.exclude_connectors.contains(&connector))
            {
                return Ok(Err(invalid(format!(
                    "{name} is a contractor and contractors never get an account on {connector} \
                     ([contractor] exclude_connectors): a grant would never be provisioned"
                ))));
            }
            if let Some(g) = grants::open_for_user(c, &user_id)?
                .into_iter()
                .find(|g| g.connector == connector && g.entitlement == ent_json)
            {
                return Ok(Err(AdminError::Conflict(format!(
                    "emergency grant {} already {} {what} to {name} until {}",
                    g.id,
                    if g.state == GrantState::Active {
                        "gives"
                    } else {
                        "asks for"
                    },
                    g.expires
                ))));
            }
            // Separation of duties against what the user has now (profiles, overrides, grants).
            let current = self.engine.compute(c, &user_id, Some(&doc))?;
            let holds = |r: &crate::policy::EntRef| {
                current
                    .desired
                    .accounts
                    .get(&r.connector)
                    .is_some_and(|a| a.enabled && a.entitlements.iter().any(|e| r.matches(&r.connector, e)))
            };
            let mut sod_exception = None;
            for rule in &policy.sod {
                let other = if rule.a.matches(&connector, &entitlement) {
                    &rule.b
                } else if rule.b.matches(&connector, &entitlement) {
                    &rule.a
                } else {
                    continue;
                };
                if !holds(other) {
                    continue;
                }
                match rule.action {
                    SodAction::Block => {
                        return Ok(Err(AdminError::Conflict(format!(
                            "separation of duties: rule {:?} forbids {what} together with {other}, \
                             which {name} has; the grant is refused",
                            rule.name
                        ))))
                    }
                    SodAction::Approval => sod_exception = Some(rule.name.clone()),
                }
            }
            let manager = crate::engine::manager_id(&doc).is_some();
            if !decidable(&policy, level, &connector, &entitlement, manager) {
                return Ok(Err(invalid(format!(
                    "a grant of {what} needs {} approval and nobody could decide it: declare \
                     security approvers in [approvals] security",
                    level.as_str()
                ))));
            }
            let grant_id = uuid::Uuid::now_v7().to_string();
            let requester_id = match r.requester {
                Some(UserRef::Id(u)) => load_row(c, ResourceKind::User, u)?.map(|r| r.id),
                Some(UserRef::UserName(u)) => {
                    crate::store::find_user_row_by_name(c, u)?.map(|r| r.id)
                }
                None => None,
            };
            // Whoever asked may not approve: that needs to know who asked. A credential that
            // acts as nobody (the bootstrap token, a token issued without --user) could ask and
            // then approve with its holder's own token.
            if ApprovalLevel::parse(level.as_str()).is_some() && requester_id.is_none() {
                return Ok(Err(invalid(format!(
                    "a grant of {what} needs {} approval, and whoever asks for it may not \
                     approve it, so the asker must be a directory user: ask with a token issued \
                     with --user (this credential acts as nobody), or with `scimhub grant --as \
                     USERNAME`",
                    level.as_str()
                ))));
            }
            let approval = match ApprovalLevel::parse(level.as_str()) {
                Some(l) => {
                    let mut detail = json!({
                        "grant": grant_id,
                        "reason": reason,
                        "expires": expires,
                        "requested_by": r.requested_by,
                    });
                    if let Some(u) = &requester_id {
                        detail["requested_by_user_id"] = json!(u);
                    }
                    Some(ApprovalRequest {
                        id: uuid::Uuid::now_v7().to_string(),
                        kind: ApprovalKind::Grant,
                        connector: connector.clone(),
                        entitlement: ent_json.clone(),
                        level: l,
                        detail,
                        blocked: false,
                    })
                }
                None => None,
            };
            if let Some(a) = &approval {
                approvals::insert(
                    c,
                    &approvals::NewApproval {
                        id: &a.id,
                        user_id: &user_id,
                        kind: a.kind,
                        connector: Some(&a.connector),
                        entitlement: Some(&a.entitlement),
                        level: a.level,
                        detail: a.detail.clone(),
                    },
                    now,
                )?;
            }
            let state = match approval {
                Some(_) => GrantState::PendingApproval,
                None => GrantState::Active,
            };
            grants::insert(
                c,
                &grants::NewGrant {
                    id: &grant_id,
                    user_id: &user_id,
                    connector: &connector,
                    entitlement: &ent_json,
                    reason,
                    requested_by: r.requested_by,
                    expires,
                    state,
                    approval_id: approval.as_ref().map(|a| a.id.as_str()),
                },
                now,
            )?;
            timers::schedule(
                c,
                &Timer {
                    user_id: user_id.clone(),
                    kind: TimerKind::GrantExpiry {
                        grant_id: grant_id.clone(),
                    },
                    due: expires,
                },
                now,
            )?;
            let row = grants::get(c, &grant_id)?
                .ok_or_else(|| HubError::Backend(format!("grant {grant_id} vanished")))?;
            audit_step(
                c,
                &row,
                r.requested_by,
                "requested",
                json!({"level": level.as_str(), "state": state, "requested_by_user_id": requester_id,
                       "sod_exception": sod_exception}),
                now,
            )?;
            match &approval {
                None => {
                    audit_step(
                        c,
                        &row,
                        r.requested_by,
                        "activated",
                        json!({"approved_by": Value::Null, "why": "the entitlement needs no approval"}),
                        now,
                    )?;
                    self.engine.replan(c, &user_id, Cause::Admin)?;
                }
                Some(a) => {
                    // The request's notices, as planning words and addresses them (with
                    // one-click links when they are configured).
                    let inputs = load::inputs(c, &self.engine, &user_id, Some(&doc), Cause::Admin)?;
                    let extra = decide::Contingent {
                        link_key: links::key(&policy),
                        ..Default::default()
                    };
                    for n in decide::approval_notices(&inputs, &extra, std::slice::from_ref(a)) {
                        commit::queue(c, &n, now)?;
                    }
                }
            }
            let approval = match &approval {
                Some(a) => approvals::get(c, &a.id)?,
                None => None,
            };
            let row = grants::get(c, &grant_id)?.unwrap_or(row);
            Ok(Ok(GrantCreated {
                grant: grant_json(&row, now),
                waits_for_approval: approval.is_some(),
                approval,
                sod_exception,
            }))
        })?
    }

    /// Grants, newest first: of one user (id or userName), only those in force now.
    pub fn grants(&self, user: Option<&str>, active_only: bool) -> AdminResult<Vec<Value>> {
        let now = self.now();
        in_tx(&self.store, |c| {
            let user_id = match user {
                Some(u) => match resolve_user(c, u) {
                    Ok((id, _)) => Some(id),
                    Err(AdminError::Store(e)) => return Err(e),
                    Err(e) => return Ok(Err(e)),
                },
                None => None,
            };
            let rows = grants::list(
                c,
                &GrantQuery {
                    user_id: user_id.as_deref(),
                    active_at: active_only.then_some(now),
                    state: None,
                },
            )?;
            Ok(Ok(rows.iter().map(|g| grant_json(g, now)).collect()))
        })?
    }

    /// Grants in force at some time in `[from, to)` or created in it (the period report's
    /// list).
    pub fn grants_in_period(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> AdminResult<Vec<GrantRow>> {
        Ok(in_tx(&self.store, |c| grants::in_period(c, from, to))?)
    }

    /// Ends grant `id` early as `by`: its request (if still pending) ends, its expiry timer is
    /// cancelled, the step is audited and the user re-planned, so the outbox revokes the
    /// entitlement.
    pub fn revoke_grant(&self, id: &str, by: &str, reason: &str) -> AdminResult<Value> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(invalid("revoking a grant needs a reason"));
        }
        self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            let Some(g) = grants::get(c, id)? else {
                return Ok(Err(AdminError::NotFound(format!("grant {id}"))));
            };
            // The user's row first, as an approval decision and a SCIM write take it.
            crate::store::lock_users_to_plan(c, [g.user_id.as_str()])?;
            if !grants::revoke(c, id, by, reason, now)? {
                return Ok(Err(AdminError::Conflict(format!(
                    "grant {id} is already {}",
                    g.state
                ))));
            }
            if let Some(a) = &g.approval_id {
                if approvals::get(c, a)?.is_some_and(|r| r.status == ApprovalStatus::Pending) {
                    approvals::decide(
                        c,
                        a,
                        ApprovalStatus::Ended,
                        &approvals::DecidedBy {
                            name: by,
                            user_id: None,
                            credential: None,
                            authority: None,
                        },
                        Some("the emergency grant was revoked"),
                        now,
                    )?;
                }
            }
            crate::store::timers::cancel_key(c, &timers::grant_expiry_key(id))?;
            audit_step(
                c,
                &g,
                by,
                "revoked",
                json!({"why": reason, "was": g.state}),
                now,
            )?;
            self.engine.replan(c, &g.user_id, Cause::Admin)?;
            let row = grants::get(c, id)?.unwrap_or(g);
            Ok(Ok(grant_json(&row, now)))
        })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[[connector]]
name = "mem"
type = "memory"

[[connector]]
name = "hook"
type = "webhook"
settings = { url = "http://127.0.0.1:1/hook", entitlement_kinds = ["role"] }
credentials = { signing_secret = { env = "T" } }
"#;

    #[test]
    fn the_connector_and_its_kind_must_be_in_the_policy() {
        let p = Policy::parse(POLICY, "grants.toml").expect("policy");
        let (c, e) = checked_entitlement(&p, "hook:role:admin").expect("a known kind");
        assert_eq!((c.as_str(), e.kind.as_str()), ("hook", "role"));
        // A memory connector takes any kind.
        assert!(checked_entitlement(&p, "mem:anything:x").is_ok());
        let kind = checked_entitlement(&p, "hook:group:admins")
            .expect_err("unknown kind")
            .to_string();
        assert_eq!(
            kind,
            "connector \"hook\" has no entitlement kind \"group\" (it knows role)"
        );
        let conn = checked_entitlement(&p, "jira:group:admins")
            .expect_err("unknown connector")
            .to_string();
        assert_eq!(
            conn,
            "no connector \"jira\" in the policy (it has hook, mem)"
        );
    }
}
