//! The policy in force and its reload on request (`GET /admin/v1/policy`,
//! `POST /admin/v1/policy/reload`): what SIGHUP does, asked through the admin API, with who
//! asked and what came of it in the audit chain. A rejected file leaves the policy in force
//! unchanged and answers its line-precise errors.

use serde_json::{json, Value};

use super::{in_tx, Admin, AdminError, AdminResult};
use crate::store::audit_chain;

impl Admin {
    /// What runs (file, hash of the bytes parsed, generation), whether the file on disk now
    /// differs from it (an edit not loaded yet, or rejected), and the connectors and profiles
    /// in force.
    pub fn policy_status(&self) -> AdminResult<Value> {
        let status = self.engine.policy.status();
        let policy = self.engine.policy.current();
        let on_disk = self.engine.policy.file_sha256();
        let connectors: Vec<Value> = policy
            .connectors
            .values()
            .map(|c| json!({ "name": c.name, "type": c.kind }))
            .collect();
        let profiles: Vec<&str> = policy.profiles.iter().map(|p| p.name.as_str()).collect();
        Ok(json!({
            "path": status.path,
            "sha256": status.sha256,
            "generation": status.generation,
            "file_sha256": on_disk,
            "file_differs": on_disk.is_some() && on_disk != status.sha256,
            "connectors": connectors,
            "profiles": profiles,
        }))
    }

    /// Re-reads the policy file now, as SIGHUP does, and records the request (`policy_reload`,
    /// by `by`, outcome `ok` or `rejected`). A valid file is swapped in (the engine, the
    /// workers and, through the heartbeat's announcement, the other nodes follow); an invalid
    /// one is refused with every problem found (`Invalid`) and the policy in force stays.
    /// `Conflict` when the policy was not loaded from a file.
    pub fn reload_policy(&self, by: &str) -> AdminResult<Value> {
        let before = self.engine.policy.status();
        let Some(path) = before.path.clone() else {
            return Err(AdminError::Conflict(
                "the policy in force was not loaded from a file: there is nothing to reload".into(),
            ));
        };
        let result = self.engine.policy.reload();
        let after = self.engine.policy.status();
        let (outcome, detail) = match &result {
            Ok(_) => (
                "ok",
                json!({
                    "path": path.display().to_string(),
                    "previous_sha256": before.sha256,
                    "sha256": after.sha256,
                    "generation": after.generation,
                }),
            ),
            Err(e) => (
                "rejected",
                json!({
                    "path": path.display().to_string(),
                    "sha256": before.sha256,
                    "generation": before.generation,
                    "errors": e.to_string(),
                }),
            ),
        };
        let now = self.now();
        in_tx(&self.store, |c| {
            audit_chain::append(
                c,
                &audit_chain::NewEntry {
                    at: now,
                    actor: by,
                    user_id: "",
                    connector: None,
                    action: "policy_reload",
                    outcome,
                    detail: &detail,
                },
            )
        })?;
        match result {
            Ok(_) => Ok(json!({
                "reloaded": true,
                "changed": before.sha256 != after.sha256,
                "path": path,
                "previous_sha256": before.sha256,
                "sha256": after.sha256,
                "generation": after.generation,
            })),
            Err(e) => Err(AdminError::Invalid(format!(
                "the policy file was rejected; the policy in force (generation {}) stays:\n{e}",
                before.generation
            ))),
        }
    }
}
