//! Drift findings for the admin API and the CLI: listing them (by connector, kind, status),
//! and a manager's review through one-click links (`drift-keep`: the finding becomes an
//! exception until `[drift] review_expiry` from now, which later runs honour; `drift-remove`:
//! the correction is planned as under `fix`). The links are checked like the mover links
//! (`legacy_access`): signature and expiry before any transaction, then that the addressee is
//! still the user's manager and active, that the finding is still open, and one use per finding.
//! Runs themselves are `jobs::reconcile::run` (they call connectors outside any transaction).

use serde_json::{json, Value};

use super::legacy_access::{inactive_addressee, LinkOutcome, LinkPreview, VerifiedLink};
use super::{in_tx, Admin, AdminError, AdminResult};
use crate::engine::desired::attr_str;
use crate::engine::drift::Kind;
use crate::engine::load_user_doc;
use crate::error::HubResult;
use crate::store::drift::{self, Filter, Finding};
use crate::store::{approvals, audit, DbConnection};

/// The most findings one listing returns.
pub const MAX_LIST: i64 = 10_000;

impl Admin {
    /// Findings matching the filter, oldest first (`status`: `open`, `closed`; `None`: both).
    pub fn drift_findings(
        &self,
        connector: Option<&str>,
        kind: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> AdminResult<Vec<Finding>> {
        if let Some(k) = kind {
            if Kind::parse(k).is_none() {
                return Err(AdminError::Invalid(format!(
                    "unknown drift finding kind {k:?} (one of {})",
                    crate::policy::DRIFT_KINDS.join(", ")
                )));
            }
        }
        if let Some(s) = status {
            if !["open", "closed"].contains(&s) {
                return Err(AdminError::Invalid(format!(
                    "unknown status {s:?} (open, closed or all)"
                )));
            }
        }
        let f = Filter {
            connector,
            kind,
            status,
        };
        Ok(in_tx(&self.store, |c| {
            drift::list(c, &f, limit.clamp(1, MAX_LIST))
        })?)
    }
}

impl Admin {
    /// The checks of a drift review link against the current state: the addressee is still
    /// the user's manager (and the policy trusts the manager attribute) and an active user, the
    /// finding is still
    /// open and about that user, and neither link of the finding was used.
    fn check_drift_link(
        &self,
        c: &mut DbConnection,
        link: &VerifiedLink,
    ) -> HubResult<AdminResult<Finding>> {
        let policy = self.engine.policy.current();
        let claims = &link.claims;
        let manager = load_user_doc(c, &claims.u)?
            .as_ref()
            .and_then(crate::engine::manager_id);
        if claims.r != "manager"
            || !policy.manager_trusted()
            || manager.as_deref() != Some(claims.to.as_str())
        {
            return Ok(Err(AdminError::Forbidden(format!(
                "This link was sent to {} as the user's manager, which they no longer are.",
                claims.to
            ))));
        }
        if let Some(e) = inactive_addressee(c, claims)? {
            return Ok(Err(e));
        }
        if approvals::link_used(c, &claims.ev)? {
            return Ok(Err(AdminError::Conflict(
                "This link has already been used.".into(),
            )));
        }
        match drift::get(c, claims.d)? {
            Some(f) if f.status == "open" && f.user_id.as_deref() == Some(claims.u.as_str()) => {
                Ok(Ok(f))
            }
            _ => Ok(Err(AdminError::Conflict(
                "This finding is closed: there is nothing left to decide.".into(),
            ))),
        }
    }

    fn drift_message(&self, f: &Finding, keep: bool) -> String {
        let what = if f.entitlement.is_empty() {
            format!("{} of account {} on {}", f.kind, f.account, f.connector)
        } else {
            format!(
                "{} {} of account {} on {}",
                f.kind, f.entitlement, f.account, f.connector
            )
        };
        if keep {
            let until = self.now() + self.engine.policy.current().drift.review_expiry;
            format!(
                "Keep {what} as an exception until {}.",
                until.format("%Y-%m-%d")
            )
        } else {
            format!("Remove {what}.")
        }
    }

    /// What a drift review link would do (`GET`).
    pub(super) fn preview_drift_link(&self, link: VerifiedLink) -> AdminResult<LinkPreview> {
        let (f, name) = in_tx(&self.store, |c| {
            let f = match self.check_drift_link(c, &link)? {
                Ok(f) => f,
                Err(e) => return Ok(Err(e)),
            };
            let name = load_user_doc(c, &link.claims.u)?
                .and_then(|d| attr_str(&d, "userName").map(str::to_string));
            Ok(Ok((f, name)))
        })??;
        let message = self.drift_message(&f, link.claims.a == "drift-keep");
        Ok(LinkPreview {
            action: link.claims.a,
            user_id: link.claims.u,
            user_name: name,
            addressee: link.claims.to,
            addressee_name: None,
            role: link.claims.r,
            message,
        })
    }

    /// Follows a drift review link (`POST`), once per finding: keep records the exception
    /// and closes the finding; remove plans the correction (under the blast-radius guard).
    pub(super) fn follow_drift_link(&self, link: VerifiedLink) -> AdminResult<LinkOutcome> {
        let keep = link.claims.a == "drift-keep";
        let message = self.decision_tx(|c| {
            // Read on each run (a re-run after a deadlock decides at its own time).
            let now = self.now();
            let f = match self.check_drift_link(c, &link)? {
                Ok(f) => f,
                Err(e) => return Ok(Err(e)),
            };
            let actor = format!("one-click link to {} (manager)", link.claims.to);
            if !approvals::use_link(c, &link.claims.ev, &link.claims.u, &actor, now)? {
                return Ok(Err(AdminError::Conflict(
                    "This link has already been used.".into(),
                )));
            }
            let policy = self.engine.policy.current();
            if keep {
                drift::keep(
                    c,
                    &f.connector,
                    &f.kind,
                    &f.account,
                    &f.entitlement,
                    &actor,
                    now,
                    now + policy.drift.review_expiry,
                )?;
                drift::close(c, f.id, now)?;
            } else {
                let detail: Value = serde_json::from_str(&f.detail).unwrap_or(Value::Null);
                let on_leave = policy
                    .connectors
                    .get(&f.connector)
                    .map(|d| d.on_leave)
                    .unwrap_or_default();
                if let Some(found) = crate::engine::drift::Finding::from_stored(
                    &f.kind,
                    &f.account,
                    f.user_id.as_deref(),
                    &detail,
                ) {
                    crate::engine::reconcile::fix(
                        &self.engine,
                        c,
                        &f.connector,
                        on_leave,
                        &[found],
                    )?;
                }
            }
            crate::engine::certification::record_drift_answer(&self.engine, c, f.id, keep, &actor)?;
            audit::append(
                c,
                &audit::AuditEntry {
                    at: now,
                    actor: &actor,
                    user_id: &link.claims.u,
                    connector: Some(&f.connector),
                    action: "drift_review",
                    outcome: if keep { "kept" } else { "removed" },
                    detail: json!({"finding": f.id, "kind": f.kind, "account": f.account,
                                   "entitlement": f.entitlement}),
                },
            )?;
            Ok(Ok(self.drift_message(&f, keep)))
        })??;
        Ok(LinkOutcome {
            action: link.claims.a,
            user_id: link.claims.u,
            message: if keep {
                format!("Kept. {message}")
            } else {
                format!("Removal planned. {message}")
            },
        })
    }
}

/// A finding as the admin API shows it.
pub fn finding_json(f: &Finding) -> Value {
    json!({
        "id": f.id,
        "connector": f.connector,
        "kind": f.kind,
        "account": f.account,
        "entitlement": (!f.entitlement.is_empty()).then_some(&f.entitlement),
        "user_id": f.user_id,
        "action": f.action,
        "detail": serde_json::from_str::<Value>(&f.detail).unwrap_or(Value::Null),
        "status": f.status,
        "first_seen": f.first_seen,
        "last_seen": f.last_seen,
        "closed_at": f.closed_at,
    })
}
