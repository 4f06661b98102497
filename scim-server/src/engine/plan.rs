//! The diff of desired against planned state: a plan of idempotent operations, and the event
//! classification. Pure.

use std::collections::{BTreeMap, BTreeSet};

use connectors::{AccountRef, AccountSpec, Capabilities, Capability, Entitlement};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::desired::{Desired, DesiredAccount, Doc, Lifecycle};
use crate::policy::{OnLeave, Policy};

/// What the engine believes one connector holds for a user: `planned` (after every queued
/// operation) or `actual` (confirmed by operations done).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountRecord {
    pub exists: bool,
    pub enabled: bool,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// SHA-256 of the account attributes last sent.
    #[serde(default)]
    pub attributes_hash: String,
    #[serde(default)]
    pub entitlements: BTreeSet<Entitlement>,
    /// Disabled and kept because deleting it would lose records nobody took: it stays until
    /// they are handed over (or its user gets it back), whatever later plans want of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_for_records: bool,
}

impl AccountRecord {
    pub fn account_ref(&self) -> AccountRef {
        AccountRef {
            key: self.key.clone(),
            id: self.id.clone(),
        }
    }
}

/// One idempotent operation on a connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    CreateOrAdopt {
        spec: AccountSpec,
    },
    Update {
        spec: AccountSpec,
    },
    SetEnabled {
        account: AccountRef,
        enabled: bool,
    },
    Grant {
        account: AccountRef,
        entitlement: Entitlement,
    },
    Revoke {
        account: AccountRef,
        entitlement: Entitlement,
    },
    RevokeSessions {
        account: AccountRef,
    },
    RevokeCredentials {
        account: AccountRef,
    },
    TransferOwnership {
        account: AccountRef,
        to: AccountRef,
    },
    Delete {
        account: AccountRef,
    },
}

impl Operation {
    /// Whether this operation takes access away: disabling or deleting an account, or revoking
    /// an entitlement, sessions or credentials. What the blast-radius guard counts, whatever
    /// the event (a leaver's disable, or a mover's revoke after a group was deleted).
    pub fn takes_access(&self) -> bool {
        matches!(
            self,
            Operation::SetEnabled { enabled: false, .. }
                | Operation::Revoke { .. }
                | Operation::RevokeSessions { .. }
                | Operation::RevokeCredentials { .. }
                | Operation::Delete { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Operation::CreateOrAdopt { .. } => "create_or_adopt",
            Operation::Update { .. } => "update",
            Operation::SetEnabled { .. } => "set_enabled",
            Operation::Grant { .. } => "grant",
            Operation::Revoke { .. } => "revoke",
            Operation::RevokeSessions { .. } => "revoke_sessions",
            Operation::RevokeCredentials { .. } => "revoke_credentials",
            Operation::TransferOwnership { .. } => "transfer_ownership",
            Operation::Delete { .. } => "delete",
        }
    }

    /// One line for plans and audit entries.
    pub fn describe(&self) -> String {
        let e = |e: &Entitlement| match &e.role {
            Some(r) => format!("{}:{} ({r})", e.kind, e.id),
            None => format!("{}:{}", e.kind, e.id),
        };
        match self {
            Operation::CreateOrAdopt { spec } => format!("create_or_adopt {}", spec.account.key),
            Operation::Update { spec } => format!("update {}", spec.account.key),
            Operation::SetEnabled { account, enabled } => {
                format!("set_enabled {} {enabled}", account.key)
            }
            Operation::Grant {
                account,
                entitlement,
            } => format!("grant {} {}", account.key, e(entitlement)),
            Operation::Revoke {
                account,
                entitlement,
            } => format!("revoke {} {}", account.key, e(entitlement)),
            Operation::RevokeSessions { account } => format!("revoke_sessions {}", account.key),
            Operation::RevokeCredentials { account } => {
                format!("revoke_credentials {}", account.key)
            }
            Operation::TransferOwnership { account, to } => {
                format!("transfer_ownership {} -> {}", account.key, to.key)
            }
            Operation::Delete { account } => format!("delete {}", account.key),
        }
    }

    /// The capability the operation needs.
    pub fn capability(&self) -> Capability {
        match self {
            Operation::CreateOrAdopt { .. } => Capability::CreateAccount,
            Operation::Update { .. } => Capability::UpdateAccount,
            Operation::SetEnabled { .. } => Capability::EnableDisable,
            Operation::Grant { .. } => Capability::Grant,
            Operation::Revoke { .. } => Capability::Revoke,
            Operation::RevokeSessions { .. } => Capability::RevokeSessions,
            Operation::RevokeCredentials { .. } => Capability::RevokeCredentials,
            Operation::TransferOwnership { .. } => Capability::TransferOwnership,
            Operation::Delete { .. } => Capability::DeleteAccount,
        }
    }

    /// Applies the operation's effect to a record (planned state at plan time, actual state when
    /// the operation is done).
    pub fn apply(&self, r: &mut AccountRecord) {
        match self {
            Operation::CreateOrAdopt { spec } => {
                r.exists = true;
                r.enabled = true;
                r.key = spec.account.key.clone();
                r.attributes_hash = attributes_hash(&spec.attributes);
            }
            Operation::Update { spec } => r.attributes_hash = attributes_hash(&spec.attributes),
            Operation::SetEnabled { enabled, .. } => r.enabled = *enabled,
            Operation::Grant { entitlement, .. } => {
                r.entitlements.insert(entitlement.clone());
            }
            Operation::Revoke { entitlement, .. } => {
                r.entitlements.remove(entitlement);
            }
            Operation::RevokeSessions { .. }
            | Operation::RevokeCredentials { .. }
            | Operation::TransferOwnership { .. } => {}
            Operation::Delete { .. } => {
                *r = AccountRecord {
                    key: r.key.clone(),
                    ..Default::default()
                }
            }
        }
    }
}

/// SHA-256 (hex) of the attributes' JSON.
pub fn attributes_hash(attrs: &Doc) -> String {
    let text = serde_json::to_string(attrs).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The named event a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    Joiner,
    Mover,
    Leaver,
    Rehire,
    ContractorExpiry,
    Update,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Joiner => "joiner",
            EventKind::Mover => "mover",
            EventKind::Leaver => "leaver",
            EventKind::Rehire => "rehire",
            EventKind::ContractorExpiry => "contractor-expiry",
            EventKind::Update => "update",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::Joiner,
            EventKind::Mover,
            EventKind::Leaver,
            EventKind::Rehire,
            EventKind::ContractorExpiry,
            EventKind::Update,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
    }

    /// Outbox priority: leavers and expiries take the priority lane.
    pub fn priority(self) -> i64 {
        match self {
            EventKind::Leaver | EventKind::ContractorExpiry => 100,
            _ => 0,
        }
    }

    /// Whether this event deprovisions the user (a leaver or an expired contract): their
    /// overrides and grants end. The blast-radius guard does not look at the event but at
    /// what a plan takes away ([`Plan::revocations`]).
    pub fn deprovisions(self) -> bool {
        matches!(self, EventKind::Leaver | EventKind::ContractorExpiry)
    }
}

/// Classifies a change from the previous engine state (`engine_users.state` and matched
/// profiles; `None` for a user the engine has never seen) and the new desired state.
pub fn classify(prev: Option<(&str, &[String])>, desired: &Desired) -> EventKind {
    let prev_state = prev.map(|p| p.0);
    match &desired.lifecycle {
        Lifecycle::Left { .. } => match prev_state {
            Some("left") | Some("expired") | None => EventKind::Update,
            _ => EventKind::Leaver,
        },
        Lifecycle::Expired { .. } => match prev_state {
            Some("expired") | Some("left") | None => EventKind::Update,
            _ => EventKind::ContractorExpiry,
        },
        Lifecycle::NotStarted { .. } => match prev_state {
            None => EventKind::Joiner,
            _ => EventKind::Update,
        },
        Lifecycle::Active => match prev {
            None | Some(("not_started", _)) => EventKind::Joiner,
            Some(("left", _)) | Some(("expired", _)) => EventKind::Rehire,
            Some((_, profiles)) => {
                let before: BTreeSet<&String> = profiles.iter().collect();
                let now: BTreeSet<String> = desired.profile_names().into_iter().collect();
                if before != now.iter().collect() {
                    EventKind::Mover
                } else {
                    EventKind::Update
                }
            }
        },
    }
}

/// One operation of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedOp {
    pub connector: String,
    pub op: Operation,
}

/// A plan: operations in execution order, and the planned state once they are done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub ops: Vec<PlannedOp>,
    pub next: BTreeMap<String, AccountRecord>,
    /// Operations left out because the connector does not support them.
    pub skipped: Vec<String>,
    /// Of those, the ones the connector lacks the capability for, as steps: what the event
    /// records and what a `[leaver] required` step raises an incident about.
    pub unsupported: Vec<UnsupportedStep>,
    /// Leavers' accounts kept disabled instead of deleted, as `(connector, account key)`: the
    /// connector hands a leaver's records to the manager, and no trusted manager has an
    /// account there to take them.
    pub kept_for_records: Vec<(String, String)>,
}

/// An operation the plan needed that its connector cannot do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnsupportedStep {
    pub connector: String,
    /// The operation's name ([`Operation::name`]), e.g. `revoke_sessions`.
    pub step: &'static str,
}

impl UnsupportedStep {
    /// "not supported by CONNECTOR: STEP", as events and `simulate` show it.
    pub fn note(&self) -> String {
        format!("not supported by {}: {}", self.connector, self.step)
    }
}

impl Plan {
    /// How many of the operations take access away ([`Operation::takes_access`]); a plan with
    /// any makes its user one who loses access, for the blast-radius guard.
    pub fn revocations(&self) -> usize {
        self.ops.iter().filter(|o| o.op.takes_access()).count()
    }
}

/// Whether the policy treats an entitlement as privileged (removed first on leave).
pub fn is_privileged(policy: &Policy, connector: &str, e: &Entitlement) -> bool {
    policy.profiles.iter().flat_map(|p| &p.grants).any(|g| {
        g.connector == connector
            && g.entitlement.as_ref() == Some(e)
            && (g.privileged || g.approval != crate::policy::Approval::None)
    })
}

/// Diffs `desired` against `planned`. `caps` gives each connector's capabilities (a connector
/// missing from it is assumed to support everything); `manager` the manager's account per
/// connector, for ownership transfer.
pub fn diff(
    desired: &Desired,
    planned: &BTreeMap<String, AccountRecord>,
    policy: &Policy,
    caps: &BTreeMap<String, Capabilities>,
    manager: &BTreeMap<String, AccountRef>,
) -> Plan {
    let mut plan = Plan {
        ops: Vec::new(),
        next: planned.clone(),
        skipped: Vec::new(),
        unsupported: Vec::new(),
        kept_for_records: Vec::new(),
    };
    let names: BTreeSet<&String> = desired.accounts.keys().chain(planned.keys()).collect();
    let leaving = matches!(
        desired.lifecycle,
        Lifecycle::Left { .. } | Lifecycle::Expired { .. }
    );
    // Someone whose start date is still ahead has no access yet, but nothing of theirs is
    // destroyed before they start: a rehire's account kept for its records, or the accounts of
    // someone whose start date moved later, are disabled, not deleted, until the start decides.
    let not_started = matches!(desired.lifecycle, Lifecycle::NotStarted { .. });
    for name in names {
        let current = planned.get(name).cloned().unwrap_or_default();
        let want = desired.accounts.get(name);
        let supports = |c: Capability| caps.get(name).is_none_or(|k| k.supports(c));
        let mut rec = current.clone();
        let mut ops: Vec<Operation> = Vec::new();
        match want {
            Some(d @ DesiredAccount { enabled: true, .. }) => {
                let Some(key) = d.key.clone() else { continue };
                let spec = |account: AccountRef| AccountSpec {
                    account,
                    attributes: d.attributes.clone(),
                };
                if !current.exists {
                    ops.push(Operation::CreateOrAdopt {
                        spec: spec(AccountRef::new(key)),
                    });
                } else {
                    let account = current.account_ref();
                    if current.attributes_hash != attributes_hash(&d.attributes) {
                        ops.push(Operation::Update {
                            spec: spec(account.clone()),
                        });
                    }
                    if !current.enabled {
                        ops.push(Operation::SetEnabled {
                            account,
                            enabled: true,
                        });
                    }
                }
                // Its user has it again, records and all: nothing is kept for anyone now.
                rec.kept_for_records = false;
                let account = if current.exists {
                    current.account_ref()
                } else {
                    AccountRef::new(d.key.clone().unwrap_or_default())
                };
                for e in d.entitlements.difference(&current.entitlements) {
                    ops.push(Operation::Grant {
                        account: account.clone(),
                        entitlement: e.clone(),
                    });
                }
                for e in current.entitlements.difference(&d.entitlements) {
                    ops.push(Operation::Revoke {
                        account: account.clone(),
                        entitlement: e.clone(),
                    });
                }
            }
            _ => {
                if !current.exists {
                    continue;
                }
                let account = current.account_ref();
                let delete = !not_started
                    && (want.is_none_or(|d| !d.exists)
                        || policy
                            .connectors
                            .get(name)
                            .is_some_and(|c| c.on_leave == OnLeave::Delete));
                // A kept account still holds records to hand over, whoever its user is now (a
                // rehire whose new role has no account here).
                let transfers = (leaving || current.kept_for_records)
                    && policy
                        .connectors
                        .get(name)
                        .is_some_and(|c| c.transfer_ownership);
                // A disabled account still here while the connector deletes leavers' accounts
                // was kept for want of someone to take its records: they move before it goes.
                let to = manager
                    .get(name)
                    .filter(|_| transfers && (current.enabled || delete));
                // Deleting would lose the records nobody (no trusted manager with an account
                // here) took: the account stays, disabled, for a person to hand over. (Where
                // the connector cannot hand records over at all, there is nothing to keep; where
                // it cannot disable, keeping would keep the access: the delete stands.)
                let kept = delete
                    && transfers
                    && to.is_none()
                    && supports(Capability::TransferOwnership)
                    && supports(Capability::EnableDisable);
                if current.enabled {
                    if supports(Capability::EnableDisable) || !delete {
                        ops.push(Operation::SetEnabled {
                            account: account.clone(),
                            enabled: false,
                        });
                    }
                    ops.push(Operation::RevokeSessions {
                        account: account.clone(),
                    });
                    ops.push(Operation::RevokeCredentials {
                        account: account.clone(),
                    });
                }
                let (privileged, rest): (Vec<&Entitlement>, Vec<&Entitlement>) = current
                    .entitlements
                    .iter()
                    .partition(|e| is_privileged(policy, name, e));
                for e in privileged {
                    ops.push(Operation::Revoke {
                        account: account.clone(),
                        entitlement: e.clone(),
                    });
                }
                if let Some(to) = to {
                    ops.push(Operation::TransferOwnership {
                        account: account.clone(),
                        to: to.clone(),
                    });
                }
                if kept {
                    plan.kept_for_records
                        .push((name.clone(), account.key.clone()));
                }
                // Before a start date nothing is deleted, so a kept account stays marked as such
                // until the start decides.
                rec.kept_for_records = kept || (current.kept_for_records && to.is_none());
                if delete && !kept {
                    ops.push(Operation::Delete { account });
                } else {
                    for e in rest {
                        ops.push(Operation::Revoke {
                            account: account.clone(),
                            entitlement: e.clone(),
                        });
                    }
                }
            }
        }
        for op in ops {
            let kind_unknown = match &op {
                Operation::Grant { entitlement, .. } | Operation::Revoke { entitlement, .. } => {
                    caps.get(name).is_some_and(|k| {
                        !k.entitlement_kinds.is_empty() && !k.knows_kind(&entitlement.kind)
                    })
                }
                _ => false,
            };
            if kind_unknown {
                plan.skipped.push(format!(
                    "{name}: {} (entitlement kind not known to the connector)",
                    op.describe()
                ));
                op.apply(&mut rec);
                continue;
            }
            if !supports(op.capability()) {
                plan.skipped
                    .push(format!("{name}: {} (not supported)", op.describe()));
                let step = UnsupportedStep {
                    connector: name.clone(),
                    step: op.name(),
                };
                if !plan.unsupported.contains(&step) {
                    plan.unsupported.push(step);
                }
                // A state change the connector cannot make still counts as decided, so the
                // engine does not plan it again on every write.
                op.apply(&mut rec);
                continue;
            }
            op.apply(&mut rec);
            plan.ops.push(PlannedOp {
                connector: name.clone(),
                op,
            });
        }
        if rec != current || planned.contains_key(name) {
            plan.next.insert(name.clone(), rec);
        }
    }
    plan
}

/// The planned and actual account records once `op` is done: `op` applied to the actual record
/// (stored JSON; an unreadable one reads as empty), and the id the connector returned recorded
/// in both (in the planned record only while it still plans the same account).
pub fn settle(
    planned: &str,
    actual: Option<&str>,
    op: &Operation,
    id: Option<String>,
) -> (AccountRecord, AccountRecord) {
    let mut planned: AccountRecord = serde_json::from_str(planned).unwrap_or_default();
    let mut actual: AccountRecord = actual
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default();
    op.apply(&mut actual);
    if let Some(id) = id {
        actual.id = Some(id.clone());
        if planned.key == actual.key && planned.exists {
            planned.id = Some(id);
        }
    }
    (planned, actual)
}

#[cfg(test)]
mod tests {
    use super::*;
    use connectors::AccountSpec;

    fn created(key: &str) -> Operation {
        Operation::CreateOrAdopt {
            spec: AccountSpec {
                account: AccountRef::new(key),
                attributes: Doc::new(),
            },
        }
    }

    #[test]
    fn a_done_create_records_the_id_in_actual_and_planned() {
        let planned = r#"{"exists":true,"enabled":true,"key":"ann"}"#;
        let (p, a) = settle(planned, None, &created("ann"), Some("42".into()));
        assert_eq!((a.exists, a.enabled, a.key.as_str()), (true, true, "ann"));
        assert_eq!(a.id.as_deref(), Some("42"));
        assert_eq!(p.id.as_deref(), Some("42"));
    }

    #[test]
    fn the_id_stays_out_of_a_plan_for_another_account() {
        let planned = r#"{"exists":true,"enabled":true,"key":"ann.b"}"#;
        let (p, a) = settle(
            planned,
            Some("not json"),
            &created("ann"),
            Some("42".into()),
        );
        assert_eq!(a.id.as_deref(), Some("42"));
        assert_eq!(p.id, None);
    }
}
