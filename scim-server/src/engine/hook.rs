//! The store's write hook: every User change is planned in the transaction that writes it, and
//! so is every user a Group change affects (members added or removed, everyone below a renamed
//! group, everyone when a group is deleted or emptied).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{load_user_doc, Cause, Engine};
use crate::error::HubResult;
use crate::store::{direct_members, engine_state};
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
                for id in affected_users(conn, change)? {
                    let doc = load_user_doc(conn, &id)?;
                    if doc.is_some() || engine_state::get_user(conn, &id)?.is_some() {
                        self.engine.plan_user_for(
                            conn,
                            &id,
                            doc.as_ref(),
                            Cause::Write,
                            change.client.as_deref(),
                        )?;
                    }
                }
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

/// Users affected by a Group change.
fn affected_users(c: &mut DbConnection, change: &Change) -> HubResult<Vec<String>> {
    let everyone =
        matches!(change.members_removed, MemberRemoval::All) || change.op == ChangeOp::Delete;
    if everyone {
        return engine_state::user_ids(c);
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
    Ok(out.into_iter().collect())
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
