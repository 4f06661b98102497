//! Reading what planning a user needs: the engine's previous state, groups, planned accounts,
//! approvals, overrides, emergency grants in force, the manager's accounts and email, the policy and connector
//! capabilities in force, and the time, into a [`PlanInputs`]; and, when a projection shows it
//! needs them, the [`Contingent`] inputs (blast-radius counts, the link key).

use std::collections::BTreeMap;

use connectors::{AccountRef, Entitlement};

use super::decide::{manager_of, policy_level, BlastFacts, Contingent, PlanInputs, Projection};
use super::desired::{Approvals, EmergencyGrant, Override, Revocation};
use super::plan::AccountRecord;
use super::{links, load_user_doc, Cause, Engine};
use crate::error::{HubError, HubResult};
use crate::policy::Policy;
use crate::store::approvals::{ApprovalKind, ApprovalStatus};
use crate::store::{approvals, incidents, load_groups, DbConnection, Doc};
use crate::store::{engine_state, events, grants, holds};
use scim_schema::json::primary_email;

fn backend(e: impl std::fmt::Display) -> HubError {
    HubError::Backend(e.to_string())
}

/// Everything the decision about `user_id` needs (`doc`: the stored document, `None` when
/// deleted).
pub fn inputs<'a>(
    c: &mut DbConnection,
    engine: &Engine,
    user_id: &str,
    doc: Option<&'a Doc>,
    cause: Cause,
) -> HubResult<PlanInputs<'a>> {
    let now = engine.now();
    let policy = engine.policy.current();
    let prev = engine_state::get_user(c, user_id)?;
    let groups = if doc.is_some() {
        load_groups(c, &[user_id.to_string()])?
            .remove(user_id)
            .unwrap_or_default()
            .into_iter()
            .map(|g| (g.group_id, g.display))
            .collect()
    } else {
        Vec::new()
    };
    let mut planned = BTreeMap::new();
    for account in engine_state::accounts(c, user_id)? {
        let rec: AccountRecord = serde_json::from_str(&account.planned).map_err(backend)?;
        planned.insert(account.connector, rec);
    }
    mark_kept_for_records(c, user_id, &mut planned)?;
    let approval_rows = approvals::for_user(c, user_id)?;
    // Only a user with open requests has anything a plan could end (see `decide`).
    let held_ops = approval_rows.iter().any(|r| {
        matches!(r.status, ApprovalStatus::Approved | ApprovalStatus::Pending)
            && matches!(r.kind, ApprovalKind::Entitlement | ApprovalKind::Sod)
    }) && holds::user_has_held_ops(c, user_id)?;
    let mut decided = Approvals::default();
    for r in &approval_rows {
        if r.status != ApprovalStatus::Approved {
            continue;
        }
        match (r.kind, &r.connector, &r.entitlement) {
            (ApprovalKind::Entitlement, Some(conn), Some(e)) => {
                if let Ok(e) = serde_json::from_str::<Entitlement>(e) {
                    decided
                        .approved
                        .insert((conn.clone(), e, policy_level(r.level)));
                }
            }
            (ApprovalKind::Sod, _, Some(rule)) => {
                decided.sod_approved.insert(rule.clone());
            }
            _ => {}
        }
    }
    let overrides = approvals::overrides(c, user_id)?
        .into_iter()
        .filter(|o| o.until > now)
        .filter_map(|o| {
            Some(Override {
                connector: o.connector,
                entitlement: serde_json::from_str(&o.entitlement).ok()?,
                until: o.until,
            })
        })
        .collect();
    let grants = grants::in_force(c, user_id, now)?
        .into_iter()
        .filter_map(|g| {
            Some(EmergencyGrant {
                entitlement: serde_json::from_str(&g.entitlement).ok()?,
                id: g.id,
                connector: g.connector,
                expires: g.expires,
            })
        })
        .collect();
    let revocations = crate::store::certification::revocations(c, user_id)?
        .into_iter()
        .filter_map(|r| {
            Some(Revocation {
                connector: r.connector,
                entitlement: serde_json::from_str(&r.entitlement).ok()?,
                profiles: serde_json::from_str(&r.profiles).ok()?,
            })
        })
        .collect();
    let manager = manager_of(doc, prev.as_ref());
    // A manager attribute no source owns names whoever a scim:write client chose: such a
    // "manager" is not mailed the user's requests and moves, nor handed a leaver's records (the
    // plan keeps an account it would delete, disabled, for a person to hand over).
    // (Someone the HRIS names as their own manager, a CEO say, takes nothing of their own.)
    let trusted_manager = manager
        .as_deref()
        .filter(|m| policy.manager_trusted() && *m != user_id);
    let manager_accounts = manager_accounts(c, trusted_manager)?;
    let manager_email = match trusted_manager {
        Some(m) => load_user_doc(c, m)?
            .as_ref()
            .and_then(primary_email)
            .map(str::to_string),
        None => None,
    };
    let capabilities = engine.connectors.capabilities(&policy);
    Ok(PlanInputs {
        user_id: user_id.into(),
        doc,
        cause,
        now,
        policy,
        capabilities,
        prev,
        groups,
        planned,
        approvals: decided,
        approval_rows,
        held_ops,
        overrides,
        grants,
        revocations,
        manager,
        manager_accounts,
        manager_email,
    })
}

/// Marks `kept_for_records` on each disabled account of the user that has an open
/// `records_kept` incident, whether or not its planned record says so: a node of a release
/// before the mark rewrites the record without it (during a rolling upgrade), and the next plan
/// must still hand the records over or keep the account, never delete it. The rule of migration
/// `2026-12-08-000700`; one query, only for a user with such an account unmarked.
fn mark_kept_for_records(
    c: &mut DbConnection,
    user_id: &str,
    planned: &mut BTreeMap<String, AccountRecord>,
) -> HubResult<()> {
    let unmarked = |r: &AccountRecord| r.exists && !r.enabled && !r.kept_for_records;
    if !planned.values().any(unmarked) {
        return Ok(());
    }
    let open = incidents::connectors_open_for(c, "records_kept", user_id)?;
    for (connector, rec) in planned.iter_mut() {
        if unmarked(rec) && open.contains(connector) {
            rec.kept_for_records = true;
        }
    }
    Ok(())
}

/// The manager's enabled account per connector (for ownership transfer).
fn manager_accounts(
    c: &mut DbConnection,
    manager: Option<&str>,
) -> HubResult<BTreeMap<String, AccountRef>> {
    let mut out = BTreeMap::new();
    let Some(m) = manager else { return Ok(out) };
    for account in engine_state::accounts(c, m)? {
        if let Ok(rec) = serde_json::from_str::<AccountRecord>(&account.planned) {
            if rec.exists && rec.enabled {
                out.insert(account.connector, rec.account_ref());
            }
        }
    }
    Ok(out)
}

/// The inputs `projection` shows the decision needs besides [`inputs`]. `stage`: the staging
/// hold of the group change the plan is part of (the guard then counts the change as a whole
/// when it is all planned, so nothing is counted per user here).
pub fn contingent(
    c: &mut DbConnection,
    inputs: &PlanInputs<'_>,
    projection: &Projection,
    stage: Option<&str>,
) -> HubResult<Contingent> {
    let policy: &Policy = &inputs.policy;
    // Read only for a plan that takes access away: the guard in force may be the one of the
    // policy applied before a reload, not this node's file's.
    let guard = match stage.is_none() && projection.needs_blast_check() {
        true => super::replan::guard_in_force(c, policy)?,
        false => None,
    };
    let blast = match guard {
        Some(b) => {
            // one count at a time across nodes, so each sees the losers the last one committed
            crate::store::cluster::lock_blast_guard(c)?;
            let since = inputs.now - b.window;
            let recent = events::count_losers(c, since, None, Some(&inputs.user_id))?;
            let population = events::guard_population(c, since, None)?;
            tracing::debug!(recent, population, "blast-radius check");
            Some(BlastFacts {
                guard: b,
                recent,
                population,
                open_hold: holds::open_hold(c)?,
            })
        }
        None => None,
    };
    // A plan the guard may hold needs the key too: the hold's mail carries links for security.
    let link_key = if projection.needs_links() || blast.is_some() {
        links::key(policy)
    } else {
        None
    };
    let records_kept_raised = if projection.keeps_a_disabled_account(&inputs.planned) {
        incidents::connectors_raised_for(c, "records_kept", &inputs.user_id)?
    } else {
        Default::default()
    };
    Ok(Contingent {
        blast,
        link_key,
        stage: stage.map(str::to_string),
        records_kept_raised,
    })
}
