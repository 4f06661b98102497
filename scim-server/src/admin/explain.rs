//! What the policy makes of a user: the plan a change would produce (simulate, nothing
//! committed), which profiles match and why others do not (explain), and the user lookups the
//! CLI and tests use.

use serde_json::{json, Value};

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::engine::desired::attr_value;
use crate::engine::PlanOutcome;
use crate::store::{Doc, ResourceKind};

impl Admin {
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
            "unsupported": out.plan.unsupported.iter().map(|s| s.note()).collect::<Vec<_>>(),
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
            max_members: None,
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
