//! The store's write hook: every User change is planned in the transaction that writes it; the
//! users a Group change affects (members added or removed, everyone below a renamed group,
//! everyone when a group is deleted or emptied) are planned as one blast, in the write when
//! they are few and in the background when they are many ([`super::replan`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::replan::{self, Affected};
use super::{Cause, Engine};
use crate::error::HubResult;
use crate::store::direct_members;
use crate::store::{
    load_row, Change, ChangeOp, DbConnection, MemberRemoval, ResourceKind, Store, WriteHook,
};

/// The store hook: plans every User change, and the users a Group change affects.
#[derive(Debug, Clone)]
pub struct EngineHook {
    pub engine: Arc<Engine>,
}

impl WriteHook for EngineHook {
    fn on_write(&self, conn: &mut DbConnection, change: &Change) -> HubResult<()> {
        match change.kind {
            ResourceKind::User => {
                self.engine.plan_user_for(
                    conn,
                    &change.id,
                    change.after.as_ref(),
                    Cause::Write,
                    change.client.as_deref(),
                )?;
            }
            ResourceKind::Group => {
                let affected = affected_users(conn, change)?;
                replan::group_change(
                    &self.engine,
                    conn,
                    affected,
                    &describe(change),
                    change.client.as_deref(),
                )?;
            }
        }
        Ok(())
    }

    fn after_commit(&self) {
        self.engine.wake_workers();
    }
}

/// Opens a store with the engine hook installed.
pub fn install(store: Store, engine: Arc<Engine>) -> Store {
    store.with_hook(Arc::new(EngineHook { engine }))
}

/// What a Group change was, for the reason of its staging hold.
fn describe(change: &Change) -> String {
    let name = change
        .before
        .as_ref()
        .or(change.after.as_ref())
        .and_then(|d| d.get("displayName"))
        .and_then(|v| v.as_str())
        .unwrap_or(change.id.as_str());
    match (change.op, &change.members_removed) {
        (ChangeOp::Delete, _) => format!("group {name} deleted"),
        (_, MemberRemoval::All) => format!("members of group {name} replaced"),
        _ => format!("group {name} changed"),
    }
}

/// Users affected by a Group change.
fn affected_users(c: &mut DbConnection, change: &Change) -> HubResult<Affected> {
    let everyone =
        matches!(change.members_removed, MemberRemoval::All) || change.op == ChangeOp::Delete;
    if everyone {
        return Ok(Affected::Everyone);
    }
    let mut ids: Vec<String> = change.members_added.clone();
    if let MemberRemoval::Ids(r) = &change.members_removed {
        ids.extend(r.iter().cloned());
    }
    let renamed = change.before.as_ref().and_then(|b| b.get("displayName"))
        != change.after.as_ref().and_then(|a| a.get("displayName"));
    if renamed {
        // Everyone below the group (a match on groups.display may change).
        ids.extend(members_below(c, &change.id)?);
    }
    // Members that are groups stand for their users.
    let mut out = BTreeSet::new();
    for id in ids {
        match load_row(c, ResourceKind::User, &id)? {
            Some(_) => {
                out.insert(id);
            }
            None => {
                if load_row(c, ResourceKind::Group, &id)?.is_some() {
                    out.extend(members_below(c, &id)?);
                } else {
                    out.insert(id);
                }
            }
        }
    }
    Ok(Affected::Users(out.into_iter().collect()))
}

/// User ids under a group, through nested groups.
fn members_below(c: &mut DbConnection, group: &str) -> HubResult<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut users = BTreeSet::new();
    let mut stack = vec![group.to_string()];
    while let Some(g) = stack.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        for member in direct_members(c, &g)? {
            let (id, kind) = (member.member_id, member.member_type);
            if kind == "Group" {
                stack.push(id);
            } else {
                users.insert(id);
            }
        }
    }
    Ok(users.into_iter().collect())
}
