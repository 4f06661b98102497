//! Post-change verification, the pure part: what a system read back ([`AccountState`]) against
//! what the engine planned ([`AccountRecord`] and the plan's operations), as one outcome per
//! system, and the record to plan from again when they differ. No I/O: the runner
//! (`jobs::verify`) reads and records.

use std::collections::BTreeSet;

use connectors::{AccountState, Entitlement};
use serde_json::{json, Value};

use super::plan::{AccountRecord, Operation};

/// What verifying one system gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The read matched the plan.
    Verified,
    /// The read differs from the plan (see [`Check::differences`]).
    Mismatch,
    /// The system could not be read (after retries).
    Unreadable,
    /// The connector cannot read accounts back: nothing is claimed either way.
    NotVerifiable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::Mismatch => "mismatch",
            Outcome::Unreadable => "unreadable",
            Outcome::NotVerifiable => "not_verifiable",
        }
    }
}

/// The comparison of one system's read against the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub outcome: Outcome,
    /// What differs, one line each (empty unless a mismatch).
    pub differences: Vec<String>,
    /// What a read cannot show (sessions), one line each.
    pub notes: Vec<String>,
}

impl Check {
    /// The detail stored with the outcome.
    pub fn detail(&self) -> Value {
        json!({"differences": self.differences, "notes": self.notes})
    }
}

/// Entitlements the plan's operations took away.
pub fn revoked(ops: &[Operation]) -> BTreeSet<Entitlement> {
    ops.iter()
        .filter_map(|o| match o {
            Operation::Revoke { entitlement, .. } => Some(entitlement.clone()),
            _ => None,
        })
        .collect()
}

/// Access keys or credentials the system reports as still usable (IAM's `accessKeys` with
/// status `Active`); systems that report none have nothing to check here.
fn live_credentials(read: &AccountState) -> Vec<String> {
    read.attributes
        .get("accessKeys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter(|k| k.get("status").and_then(Value::as_str) != Some("Inactive"))
                .map(|k| {
                    k.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Compares what the system holds (`read`, `None` when the account does not exist) with what
/// the engine planned for it (`planned`, the record after every queued operation) and what the
/// plan did (`ops`).
pub fn compare(planned: &AccountRecord, ops: &[Operation], read: Option<&AccountState>) -> Check {
    let mut differences = Vec::new();
    let mut notes = Vec::new();
    if ops
        .iter()
        .any(|o| matches!(o, Operation::RevokeSessions { .. }))
    {
        notes.push("session revocation cannot be read back".to_string());
    }
    let gone = revoked(ops);
    match read {
        None => {
            // A leaver's account planned disabled and found deleted has no access either.
            if planned.exists && planned.enabled {
                differences.push("account is missing".to_string());
            }
        }
        Some(r) => {
            if planned.exists && planned.enabled && !r.enabled {
                differences.push("account is disabled".to_string());
            }
            if (!planned.exists || !planned.enabled) && r.enabled {
                differences.push(if planned.exists {
                    "account is still enabled".to_string()
                } else {
                    "account still exists and is enabled".to_string()
                });
            }
            let held: BTreeSet<&Entitlement> = r.entitlements.iter().collect();
            for e in &gone {
                if held.contains(e) {
                    differences.push(format!("still holds {}:{}", e.kind, e.id));
                }
            }
            if planned.exists && planned.enabled {
                for e in &planned.entitlements {
                    if !held.contains(e) {
                        differences.push(format!("does not hold {}:{}", e.kind, e.id));
                    }
                }
            }
            if ops
                .iter()
                .any(|o| matches!(o, Operation::RevokeCredentials { .. }))
            {
                for k in live_credentials(r) {
                    differences.push(format!("credential {k} is still active"));
                }
            }
        }
    }
    Check {
        outcome: if differences.is_empty() {
            Outcome::Verified
        } else {
            Outcome::Mismatch
        },
        differences,
        notes,
    }
}

/// The record the engine plans from after a mismatch: what the system really holds, so that
/// the normal diff queues again what did not take effect (a disable, a revoke, a delete, a
/// credential revocation). Only the entitlements the engine manages are taken from the read
/// (those it planned, and those the plan revoked); others on the system stay out of its view.
pub fn reconcile(
    planned: &AccountRecord,
    ops: &[Operation],
    read: Option<&AccountState>,
) -> AccountRecord {
    let Some(r) = read else {
        return AccountRecord {
            key: planned.key.clone(),
            ..Default::default()
        };
    };
    let gone = revoked(ops);
    let held: BTreeSet<&Entitlement> = r.entitlements.iter().collect();
    let entitlements = planned
        .entitlements
        .iter()
        .chain(gone.iter())
        .filter(|e| held.contains(e))
        .cloned()
        .collect();
    let credentials_left = ops
        .iter()
        .any(|o| matches!(o, Operation::RevokeCredentials { .. }))
        && !live_credentials(r).is_empty();
    AccountRecord {
        exists: true,
        // Live credentials on a disabled account: recorded as enabled so that the leaver diff
        // (which revokes credentials with the disable) runs again.
        enabled: r.enabled || credentials_left,
        key: planned.key.clone(),
        id: r.account.id.clone().or_else(|| planned.id.clone()),
        attributes_hash: planned.attributes_hash.clone(),
        entitlements,
        kept_for_records: planned.kept_for_records,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::AccountRef;

    fn ent(id: &str) -> Entitlement {
        Entitlement::new("group", id)
    }

    fn state(enabled: bool, ents: &[&str]) -> AccountState {
        AccountState {
            account: AccountRef::new("ann").with_id("7"),
            enabled,
            attributes: serde_json::Map::new(),
            entitlements: ents.iter().map(|e| ent(e)).collect(),
        }
    }

    fn leaver_ops() -> Vec<Operation> {
        let account = AccountRef::new("ann");
        vec![
            Operation::SetEnabled {
                account: account.clone(),
                enabled: false,
            },
            Operation::RevokeSessions {
                account: account.clone(),
            },
            Operation::RevokeCredentials {
                account: account.clone(),
            },
            Operation::Revoke {
                account,
                entitlement: ent("eng"),
            },
        ]
    }

    fn disabled() -> AccountRecord {
        AccountRecord {
            exists: true,
            enabled: false,
            key: "ann".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_leaver_applied_is_verified_with_sessions_noted() {
        let c = compare(&disabled(), &leaver_ops(), Some(&state(false, &["other"])));
        assert_eq!(c.outcome, Outcome::Verified);
        assert!(c.differences.is_empty());
        assert_eq!(c.notes, vec!["session revocation cannot be read back"]);
        assert_eq!(
            compare(&disabled(), &leaver_ops(), None).outcome,
            Outcome::Verified
        );
    }

    #[test]
    fn a_disable_or_revoke_not_applied_is_a_mismatch() {
        let c = compare(&disabled(), &leaver_ops(), Some(&state(true, &["eng"])));
        assert_eq!(c.outcome, Outcome::Mismatch);
        assert_eq!(
            c.differences,
            vec!["account is still enabled", "still holds group:eng"]
        );
        let deleted = AccountRecord {
            key: "ann".into(),
            ..Default::default()
        };
        let c = compare(&deleted, &leaver_ops(), Some(&state(true, &[])));
        assert_eq!(c.differences, vec!["account still exists and is enabled"]);
    }

    #[test]
    fn live_access_keys_after_a_credential_revocation_are_a_mismatch() {
        let mut s = state(false, &[]);
        s.attributes.insert(
            "accessKeys".into(),
            json!([{"id": "AKIA1", "status": "Active"}, {"id": "AKIA2", "status": "Inactive"}]),
        );
        let c = compare(&disabled(), &leaver_ops(), Some(&s));
        assert_eq!(c.differences, vec!["credential AKIA1 is still active"]);
        // The disabled account is planned from as enabled, so the diff revokes credentials again.
        assert!(reconcile(&disabled(), &leaver_ops(), Some(&s)).enabled);
    }

    #[test]
    fn a_joiner_missing_access_is_a_mismatch() {
        let planned = AccountRecord {
            exists: true,
            enabled: true,
            key: "ann".into(),
            entitlements: [ent("eng")].into(),
            ..Default::default()
        };
        assert_eq!(
            compare(&planned, &[], None).differences,
            vec!["account is missing"]
        );
        assert_eq!(
            compare(&planned, &[], Some(&state(false, &[]))).differences,
            vec!["account is disabled", "does not hold group:eng"]
        );
    }

    #[test]
    fn reconcile_takes_the_read_for_managed_entitlements_only() {
        let r = reconcile(
            &disabled(),
            &leaver_ops(),
            Some(&state(true, &["eng", "other"])),
        );
        assert!(r.exists && r.enabled);
        assert_eq!(r.entitlements, [ent("eng")].into());
        assert_eq!(r.id.as_deref(), Some("7"));
        assert!(!reconcile(&disabled(), &leaver_ops(), None).exists);
    }
}
