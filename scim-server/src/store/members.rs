//! Group membership (`group_members`, one row per member): parsing a `members` array, adding
//! and removing members as a delta whose cost follows the delta rather than the group, and
//! reading the members of groups.

use std::collections::{HashMap, HashSet};

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};
use serde_json::Value;

use super::assemble::ts;
use super::columns::str_of;
use super::resources::{bump, load_row, lock_for_write, CHUNK};
use super::sql::{Bind, Sql};
use super::{
    check_if_match, fmt_ts, Change, ChangeOp, DbConnection, MemberDeltaOutcome, MemberRemoval,
    NewMember, ResourceKind, Store,
};
use crate::error::{HubError, HubResult};

/// A member of a group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub member_id: String,
    /// The member's real type: `User` or `Group`.
    pub member_type: String,
    pub display: Option<String>,
}

/// A `group_members` row as read: `group_id, member_id, member_type, display`.
#[derive(Queryable)]
struct GroupMemberRecord {
    group_id: String,
    member_id: String,
    member_type: String,
    display: Option<String>,
}

/// A resource a new member names: `id, resource_type, display_name`.
#[derive(Queryable)]
struct MemberTarget {
    id: String,
    resource_type: String,
    display_name: Option<String>,
}

/// A group's direct member as the engine reads it: `member_id, member_type`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct DirectMember {
    pub member_id: String,
    pub member_type: String,
}

/// The direct members of a group, in member-id order (the engine expands nested groups itself).
pub fn direct_members(c: &mut DbConnection, group_id: &str) -> HubResult<Vec<DirectMember>> {
    let mut q = Sql::<(Text, Text)>::new(
        "SELECT member_id, member_type FROM group_members WHERE group_id = ",
    );
    q.text(group_id).push(" ORDER BY member_id");
    Ok(q.load::<DirectMember>(c)?)
}

/// The version and lastModified of a group: `version, last_modified`.
#[derive(Queryable)]
struct GroupMeta {
    version: i64,
    last_modified: String,
}

/// Parses a `members` array (`[{"value": id, "type"?, "display"?}]`).
pub fn parse_members(v: &Value) -> HubResult<Vec<NewMember>> {
    let Value::Array(items) = v else {
        return Err(scim_schema::Error::InvalidValue("members must be an array".into()).into());
    };
    items
        .iter()
        .map(|m| {
            let obj = m.as_object().ok_or_else(|| {
                scim_schema::Error::InvalidValue("a member must be an object".into())
            })?;
            let value = str_of(obj, "value").ok_or_else(|| {
                scim_schema::Error::InvalidValue("a member needs a string value".into())
            })?;
            Ok(NewMember {
                value: value.to_string(),
                member_type: str_of(obj, "type").map(str::to_string),
                display: str_of(obj, "display").map(str::to_string),
            })
        })
        .collect()
}

impl Store {
    /// Adds and removes group members without rewriting the member list: cost depends on the
    /// size of the delta, not of the group. Removal runs first, so "replace members" is
    /// `remove: All` plus `add`. Unknown member ids fail the whole change with
    /// [`HubError::UnknownMembers`]. The version and lastModified change only when a row did.
    pub fn apply_member_delta(
        &self,
        group_id: &str,
        add: Vec<NewMember>,
        remove: MemberRemoval,
        if_match: Option<&str>,
    ) -> HubResult<MemberDeltaOutcome> {
        let now_t = self.now();
        let now = fmt_ts(now_t);
        self.write_tx_retry(|c, changes| {
            let mut q = Sql::<(BigInt, Text)>::new(
                "SELECT version, last_modified FROM resources WHERE id = ",
            );
            q.text(group_id).push(" AND resource_type = 'Group'");
            // Locked: the If-Match check and the returned version must see a concurrent
            // writer's bump, not the version before it.
            lock_for_write(c, &mut q);
            let GroupMeta {
                version,
                last_modified,
            } = q
                .get_result::<GroupMeta>(c)
                .optional()?
                .ok_or(HubError::NotFound)?;
            check_if_match(if_match, version)?;
            let changed = member_delta_in(c, changes, group_id, &add, &remove, None)?;
            if changed {
                bump(c, group_id, &now)?;
                Ok(MemberDeltaOutcome {
                    version: version + 1,
                    last_modified: now_t,
                    changed,
                })
            } else {
                Ok(MemberDeltaOutcome {
                    version,
                    last_modified: ts(&last_modified)?,
                    changed,
                })
            }
        })
    }

    /// Members of a group, in id order, without loading the group document.
    pub fn group_members(&self, group_id: &str) -> HubResult<Vec<MemberRow>> {
        let mut conn = self.read_conn()?;
        load_row(&mut conn, ResourceKind::Group, group_id)?.ok_or(HubError::NotFound)?;
        Ok(load_members(&mut conn, &[group_id.to_string()])?
            .remove(group_id)
            .unwrap_or_default())
    }
}

/// Applies a member delta inside a transaction; records a `Members` change (by `client`) when
/// rows changed.
pub(super) fn member_delta_in(
    c: &mut DbConnection,
    changes: &mut Vec<Change>,
    group_id: &str,
    add: &[NewMember],
    remove: &MemberRemoval,
    client: Option<&str>,
) -> HubResult<bool> {
    let removed = match remove {
        MemberRemoval::None => 0,
        MemberRemoval::All => {
            let mut q = Sql::<()>::new("DELETE FROM group_members WHERE group_id = ");
            q.text(group_id);
            q.execute(c)?
        }
        MemberRemoval::Ids(ids) => {
            let mut n = 0;
            for chunk in ids.chunks(CHUNK) {
                let mut q = Sql::<()>::new("DELETE FROM group_members WHERE group_id = ");
                q.text(group_id).push(" AND member_id IN (");
                q.text_list(chunk.iter().map(String::as_str)).push(")");
                n += q.execute(c)?;
            }
            n
        }
    };
    let added = if add.is_empty() {
        Vec::new()
    } else {
        add_members(c, group_id, add)?
    };
    let changed = removed > 0 || !added.is_empty();
    if changed {
        changes.push(Change {
            op: ChangeOp::Members,
            kind: ResourceKind::Group,
            id: group_id.to_string(),
            before: None,
            after: None,
            members_added: added.into_iter().map(|m| m.member_id).collect(),
            members_removed: if removed > 0 {
                remove.clone()
            } else {
                MemberRemoval::None
            },
            client: client.map(str::to_string),
        });
    }
    Ok(changed)
}

/// Checks that the members exist and inserts them (existing memberships are left alone).
/// Returns the member rows actually inserted.
pub(super) fn add_members(
    c: &mut DbConnection,
    group_id: &str,
    members: &[NewMember],
) -> HubResult<Vec<MemberRow>> {
    let mut seen = HashSet::new();
    let members: Vec<&NewMember> = members
        .iter()
        .filter(|m| seen.insert(m.value.as_str()))
        .collect();
    // Existence and real type of each member, in one query per chunk.
    let mut found: HashMap<String, MemberTarget> = HashMap::with_capacity(members.len());
    for chunk in members.chunks(CHUNK) {
        let mut q = Sql::<(Text, Text, Nullable<Text>)>::new(
            "SELECT id, resource_type, display_name FROM resources WHERE id IN (",
        );
        q.text_list(chunk.iter().map(|m| m.value.as_str()))
            .push(")");
        for target in q.load::<MemberTarget>(c)? {
            found.insert(target.id.clone(), target);
        }
    }
    let unknown: Vec<String> = members
        .iter()
        .filter(|m| !found.contains_key(&m.value))
        .map(|m| m.value.clone())
        .collect();
    if !unknown.is_empty() {
        return Err(HubError::UnknownMembers(unknown));
    }
    let rows: Vec<MemberRow> = members
        .iter()
        .map(|m| {
            let target = &found[&m.value];
            MemberRow {
                member_id: m.value.clone(),
                member_type: target.resource_type.clone(),
                // The member's own name, kept current when it is renamed
                // (`resources::renamed_member`); the client's `display` only for a member
                // without one.
                display: target.display_name.clone().or_else(|| m.display.clone()),
            }
        })
        .collect();
    let mut inserted = Vec::with_capacity(rows.len());
    // One statement per row keeps the statement cached and tells which rows were new.
    for row in rows {
        let mut q = Sql::<()>::new(
            "INSERT INTO group_members (group_id, member_id, member_type, display) VALUES (",
        );
        q.text(group_id)
            .push(", ")
            .text(row.member_id.as_str())
            .push(", ")
            .text(row.member_type.as_str())
            .push(", ");
        q.bind(Bind::OptText(row.display.clone()))
            .push(") ON CONFLICT (group_id, member_id) DO NOTHING");
        if q.execute(c)? > 0 {
            inserted.push(row);
        }
    }
    Ok(inserted)
}

/// Replaces a group's member set by the difference to the current one.
/// Returns the new member rows, the ids added and the removal.
pub(super) fn replace_members(
    c: &mut DbConnection,
    group_id: &str,
    new_members: &[NewMember],
) -> HubResult<(Vec<MemberRow>, Vec<String>, MemberRemoval)> {
    let current = load_members(c, &[group_id.to_string()])?
        .remove(group_id)
        .unwrap_or_default();
    let wanted: HashSet<&str> = new_members.iter().map(|m| m.value.as_str()).collect();
    let have: HashSet<&str> = current.iter().map(|m| m.member_id.as_str()).collect();
    let gone: Vec<String> = have.difference(&wanted).map(|s| s.to_string()).collect();
    let to_add: Vec<NewMember> = new_members
        .iter()
        .filter(|m| !have.contains(m.value.as_str()))
        .cloned()
        .collect();
    let removal = if gone.is_empty() {
        MemberRemoval::None
    } else {
        MemberRemoval::Ids(gone.clone())
    };
    for chunk in gone.chunks(CHUNK) {
        let mut q = Sql::<()>::new("DELETE FROM group_members WHERE group_id = ");
        q.text(group_id).push(" AND member_id IN (");
        q.text_list(chunk.iter().map(String::as_str)).push(")");
        q.execute(c)?;
    }
    let added = if to_add.is_empty() {
        Vec::new()
    } else {
        add_members(c, group_id, &to_add)?
    };
    let added_ids = added.iter().map(|m| m.member_id.clone()).collect();
    let rows = load_members(c, &[group_id.to_string()])?
        .remove(group_id)
        .unwrap_or_default();
    Ok((rows, added_ids, removal))
}

/// Members of each group in `group_ids`, in member-id order.
pub(crate) fn load_members(
    c: &mut DbConnection,
    group_ids: &[String],
) -> HubResult<HashMap<String, Vec<MemberRow>>> {
    let mut out: HashMap<String, Vec<MemberRow>> = HashMap::new();
    for chunk in group_ids.chunks(CHUNK) {
        let mut q = Sql::<(Text, Text, Text, Nullable<Text>)>::new(
            "SELECT group_id, member_id, member_type, display FROM group_members WHERE group_id IN (",
        );
        q.text_list(chunk.iter().map(String::as_str))
            .push(") ORDER BY group_id, member_id");
        for m in q.load::<GroupMemberRecord>(c)? {
            out.entry(m.group_id).or_default().push(MemberRow {
                member_id: m.member_id,
                member_type: m.member_type,
                display: m.display,
            });
        }
    }
    Ok(out)
}
