//! Drift findings for the admin API and the CLI: listing them (by connector, kind, status).
//! Runs themselves are `jobs::reconcile::run` (they call connectors outside any transaction).

use serde_json::{json, Value};

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::engine::drift::Kind;
use crate::store::drift::{self, Filter, Finding};

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
