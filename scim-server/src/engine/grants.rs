//! Time-bound emergency grants, the engine's part (docs/grants.md): what `CONNECTOR:KIND:ID`
//! names, the audit entry of each step of a grant's life, and the steps the engine takes by
//! itself — activation once approved, expiry when its timer fires, revocation when the user
//! leaves. A grant in force is read by [`super::load`] into the desired state
//! ([`super::desired::EmergencyGrant`]); every change of its state re-plans the user, so the
//! ordinary diff queues the grant or the revoke through the outbox (guard, audit and
//! verification as for any plan).

use chrono::{DateTime, Utc};
use connectors::Entitlement;
use serde_json::json;

use super::{Cause, Engine};
use crate::error::HubResult;
use crate::store::approvals::{self, ApprovalStatus};
use crate::store::grants::{self, GrantRow};
use crate::store::{audit, DbConnection};

/// The audit action of every step of a grant's life; the outcome names the step
/// (`requested`, `activated`, `rejected`, `expired`, `revoked`).
pub const AUDIT_ACTION: &str = "emergency_grant";

/// Why `CONNECTOR:KIND:ID` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an entitlement: write CONNECTOR:KIND:ID or CONNECTOR:KIND:ID:ROLE \
     (e.g. github:team:eng)"
)]
pub struct BadEntitlement(pub String);

/// Reads `CONNECTOR:KIND:ID` (or `CONNECTOR:KIND:ID:ROLE`).
pub fn parse_entitlement(s: &str) -> Result<(String, Entitlement), BadEntitlement> {
    let parts: Vec<&str> = s.trim().split(':').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(BadEntitlement(s.to_string()));
    }
    match parts.as_slice() {
        [c, k, i] => Ok((c.to_string(), Entitlement::new(*k, *i))),
        [c, k, i, r] => Ok((
            c.to_string(),
            Entitlement {
                role: Some(r.to_string()),
                ..Entitlement::new(*k, *i)
            },
        )),
        _ => Err(BadEntitlement(s.to_string())),
    }
}

/// `CONNECTOR:KIND:ID[:ROLE]` of a stored grant (as the CLI takes it).
pub fn label(connector: &str, entitlement_json: &str) -> String {
    match serde_json::from_str::<Entitlement>(entitlement_json) {
        Ok(e) => match e.role {
            Some(r) => format!("{connector}:{}:{}:{r}", e.kind, e.id),
            None => format!("{connector}:{}:{}", e.kind, e.id),
        },
        Err(_) => format!("{connector}:(unreadable entitlement)"),
    }
}

/// Appends the audit entry of a step of grant `g`'s life.
pub fn audit_step(
    c: &mut DbConnection,
    g: &GrantRow,
    actor: &str,
    outcome: &str,
    extra: serde_json::Value,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let mut detail = json!({
        "grant": g.id,
        "entitlement": serde_json::from_str::<serde_json::Value>(&g.entitlement)
            .unwrap_or_else(|_| json!(g.entitlement)),
        "expires": g.expires,
        "reason": g.reason,
        "requested_by": g.requested_by,
        "approval": g.approval_id,
    });
    if let (Some(d), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
        d.extend(extra);
    }
    audit::append(
        c,
        &audit::AuditEntry {
            at: now,
            actor,
            user_id: &g.user_id,
            connector: Some(&g.connector),
            action: AUDIT_ACTION,
            outcome,
            detail,
        },
    )
}

/// Activates the grant behind approval request `approval_id` (just approved by `decided_by`),
/// when it is still waiting and not yet past its end: audited; the caller re-plans the user.
/// Returns the grant when it was activated.
pub fn activate_for_approval(
    c: &mut DbConnection,
    approval_id: &str,
    decided_by: &str,
    now: DateTime<Utc>,
) -> HubResult<Option<GrantRow>> {
    let Some(g) = grants::by_approval(c, approval_id)? else {
        return Ok(None);
    };
    if g.expires <= now || !grants::activate(c, &g.id, decided_by, now)? {
        return Ok(None);
    }
    audit_step(
        c,
        &g,
        decided_by,
        "activated",
        json!({"approved_by": decided_by}),
        now,
    )?;
    Ok(Some(g))
}

/// Rejects the grant behind approval request `approval_id` (just rejected by `decided_by`).
pub fn reject_for_approval(
    c: &mut DbConnection,
    approval_id: &str,
    decided_by: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let Some(g) = grants::by_approval(c, approval_id)? else {
        return Ok(());
    };
    if grants::reject(c, &g.id, decided_by, reason, now)? {
        audit_step(
            c,
            &g,
            decided_by,
            "rejected",
            json!({"rejected_by": decided_by, "why": reason}),
            now,
        )?;
    }
    Ok(())
}

/// A grant's expiry timer fired: an open grant becomes `expired` (a request still pending
/// ends with it), the step is audited and the user re-planned, so the outbox revokes the
/// entitlement. A grant already ended (revoked, rejected) changes nothing.
pub fn expire(
    c: &mut DbConnection,
    engine: &Engine,
    grant_id: &str,
    now: DateTime<Utc>,
) -> HubResult<()> {
    let Some(g) = grants::get(c, grant_id)? else {
        return Ok(());
    };
    // The user's row before the grant's, the order an approval decision and a SCIM write of the
    // user take them: an expiry meeting either then waits instead of deadlocking.
    crate::store::lock_users_to_plan(c, [g.user_id.as_str()])?;
    if !grants::expire(c, grant_id, now)? {
        return Ok(());
    }
    if let Some(a) = &g.approval_id {
        approvals::decide(
            c,
            a,
            ApprovalStatus::Ended,
            &approvals::DecidedBy {
                name: "engine",
                user_id: None,
                credential: None,
                authority: None,
            },
            Some("the emergency grant expired before it was decided"),
            now,
        )?;
    }
    audit_step(c, &g, "timer", "expired", json!({"was": g.state}), now)?;
    let out = engine.replan(c, &g.user_id, Cause::Timer)?;
    tracing::info!(user = %g.user_id, grant = %g.id, ops = out.plan.ops.len(), "emergency grant expired");
    Ok(())
}

/// The user left (or their contract expired): every open grant of theirs is revoked by the
/// engine, audited, so a rehire does not bring emergency access back. Its request, if still
/// pending, ends with the user's other requests ([`approvals::end_grants`]).
pub fn end_for_leaver(c: &mut DbConnection, user_id: &str, now: DateTime<Utc>) -> HubResult<()> {
    for g in grants::open_for_user(c, user_id)? {
        if grants::revoke(c, &g.id, "engine", "the user left", now)? {
            audit_step(
                c,
                &g,
                "engine",
                "revoked",
                json!({"why": "the user left"}),
                now,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entitlements_read_as_the_cli_writes_them() {
        assert_eq!(
            parse_entitlement("github:team:eng"),
            Ok(("github".into(), Entitlement::new("team", "eng")))
        );
        let (c, e) = parse_entitlement("github:org:acme:admin").expect("with a role");
        assert_eq!((c.as_str(), e.role.as_deref()), ("github", Some("admin")));
        assert_eq!(
            label("github", &serde_json::to_string(&e).expect("json")),
            "github:org:acme:admin"
        );
        for bad in ["github", "github:team", "github::eng", "a:b:c:d:e", ""] {
            assert!(parse_entitlement(bad).is_err(), "{bad}");
        }
    }
}
