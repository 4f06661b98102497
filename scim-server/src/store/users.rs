//! User lookups: a User by id or by userName (who an approver or a token's user is), and the
//! groups of users, direct and indirect through nested groups, computed on read.

use std::collections::HashMap;

use diesel::sql_types::{Bool, Integer, Nullable, Text};
use diesel::{OptionalExtension, Queryable, RunQueryDsl};

use super::assemble::{ResourceRow, ResourceRowSt};
use super::columns::case_fold;
use super::resources::{load_row, CHUNK};
use super::sql::{Keyed, Sql};
use super::{DbConnection, ResourceKind};
use crate::error::{HubError, HubResult};

/// A group a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub group_id: String,
    pub display: Option<String>,
    /// Whether the user is a member of the group itself (`direct`), not only through a nested
    /// group (`indirect`).
    pub direct: bool,
}

/// A User row with whether the user is a member of any group.
#[derive(Queryable)]
pub(super) struct UserRowWithMembership {
    pub row: ResourceRow,
    pub is_member: bool,
}

/// One row of the group walk: `user id, group id, group display, direct (1) or not (0)`.
#[derive(Queryable)]
pub(super) struct AncestorRecord {
    pub user_id: String,
    pub group_id: String,
    pub display: Option<String>,
    pub direct: i32,
}

/// The row of the User whose id is `id_or_user_name`, else whose userName equals it
/// case-insensitively (userName is `caseExact: false`, RFC 7643 §4.1.1). Used to resolve who an
/// approver or a token's user is.
pub(crate) fn find_user_row(
    c: &mut DbConnection,
    id_or_user_name: &str,
) -> HubResult<Option<ResourceRow>> {
    if let Some(row) = load_row(c, ResourceKind::User, id_or_user_name)? {
        return Ok(Some(row));
    }
    find_user_row_by_name(c, id_or_user_name)
}

/// The row of the User whose userName equals `user_name` case-insensitively.
pub(crate) fn find_user_row_by_name(
    c: &mut DbConnection,
    user_name: &str,
) -> HubResult<Option<ResourceRow>> {
    let mut q = Sql::<ResourceRowSt>::new(
        "SELECT id, doc, created, last_modified, version FROM resources WHERE resource_type = 'User' \
         AND user_name_folded = ",
    );
    q.text(case_fold(user_name));
    Ok(q.get_result::<ResourceRow>(c).optional()?)
}

/// A User's row and its groups (direct and indirect). The row comes with whether the user is a
/// member of anything, and only then does the recursive group walk run: its temporary tables
/// (the walk's queue, the UNION's and GROUP BY's) cost more than reading the row, and a user in
/// no group needs none of them. The walk reads a snapshot a moment later than the row; `groups`
/// is not part of the user's version, so the answer is one a read a moment later could give.
pub(super) fn load_user_with_groups(
    c: &mut DbConnection,
    id: &str,
) -> HubResult<Option<(ResourceRow, Vec<GroupRef>)>> {
    let Some(user) = user_with_membership(id)
        .get_result::<UserRowWithMembership>(c)
        .optional()?
    else {
        return Ok(None);
    };
    let groups = if user.is_member {
        load_groups(c, std::slice::from_ref(&user.row.id))?
            .remove(&user.row.id)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Some((user.row, groups)))
}

/// Names the statement of [`user_with_membership_sql`], whose text is fixed ([`Keyed`]).
pub(super) enum UserWithMembershipQuery {}

/// [`user_with_membership_sql`] as a statement diesel finds by type: a point read runs it.
pub(super) fn user_with_membership(
    id: &str,
) -> Keyed<UserWithMembershipQuery, (ResourceRowSt, Bool)> {
    Keyed::new(user_with_membership_sql(id))
}

/// Names the statement of [`user_for_write`] on PostgreSQL (its text ends in `FOR UPDATE`).
pub(super) enum UserForWriteQuery {}

/// The User row `id` with whether the user is in any group, read to be changed in the caller's
/// write transaction. On PostgreSQL the row is locked until that transaction ends: two nodes (or
/// two write connections of one) patching the same user would otherwise both read version N
/// and both write N + 1 from it, the later commit silently dropping the earlier's change
/// (`READ COMMITTED` lets the second `UPDATE` go ahead once the first commits). SQLite has one
/// writer, so a write transaction's read is already the latest.
pub(super) fn user_for_write(
    c: &mut DbConnection,
    id: &str,
) -> HubResult<Option<UserRowWithMembership>> {
    if !matches!(c, DbConnection::Postgresql(_)) {
        return Ok(user_with_membership(id).get_result(c).optional()?);
    }
    // A group-commit batch may have read and locked it already (`lock_users_ahead`), on this
    // connection: every write transaction on a writer thread runs in its batch.
    if let Some(user) = super::batch::take_user_locked_ahead(id) {
        return Ok(Some(user));
    }
    let mut q = user_with_membership_sql(id);
    q.push(" FOR UPDATE OF resources");
    Ok(Keyed::<UserForWriteQuery, _>::new(q)
        .get_result(c)
        .optional()?)
}

/// Names the statement of [`lock_users_ahead`] on PostgreSQL.
pub(super) enum UsersAheadQuery {}

/// The rows of the stored Users among `ids`, each with whether the user is in any group, read
/// and locked as [`user_for_write`] reads and locks one, in id order, in one round trip
/// (PostgreSQL only): a group-commit batch of User writes takes its users' rows this way
/// before its writes run (see `batch`). The ids travel as one JSON array, so that every batch
/// size shares one prepared statement.
pub(super) fn lock_users_ahead(
    c: &mut DbConnection,
    ids: &[&str],
) -> HubResult<Vec<UserRowWithMembership>> {
    let ids = serde_json::to_string(ids).map_err(|e| HubError::Backend(e.to_string()))?;
    let mut q = Sql::<(ResourceRowSt, Bool)>::new(
        "SELECT id, doc, created, last_modified, version, \
         EXISTS (SELECT 1 FROM group_members WHERE member_id = resources.id) \
         FROM resources WHERE resource_type = 'User' AND id = ANY (ARRAY(\
         SELECT jsonb_array_elements_text(CAST(",
    );
    q.text(ids)
        .push(" AS jsonb)))) ORDER BY id FOR UPDATE OF resources");
    Ok(Keyed::<UsersAheadQuery, _>::new(q).load(c)?)
}

/// The User row `id` with whether the user is in any group ([`UserRowWithMembership`]).
pub(super) fn user_with_membership_sql(id: &str) -> Sql<(ResourceRowSt, Bool)> {
    let mut q = Sql::new(
        "SELECT id, doc, created, last_modified, version, \
         EXISTS (SELECT 1 FROM group_members WHERE member_id = resources.id) \
         FROM resources WHERE id = ",
    );
    q.text(id).push(" AND resource_type = 'User'");
    q
}

/// The groups of each user in `user_ids`, direct and indirect (through nested groups), in one
/// recursive query per chunk. `UNION` (not `UNION ALL`) makes cycles terminate. `CROSS JOIN`
/// pins the join order (SQLite honours it; PostgreSQL treats it as a plain join): without it the
/// bundled SQLite's planner scanned all of `resources` for every user, since it cannot know the
/// ancestor set is tiny — get-by-id fell to ~150/s at 100,000 users.
pub(crate) fn load_groups(
    c: &mut DbConnection,
    user_ids: &[String],
) -> HubResult<HashMap<String, Vec<GroupRef>>> {
    let mut out: HashMap<String, Vec<GroupRef>> = HashMap::new();
    for chunk in user_ids.chunks(CHUNK) {
        add_groups(&mut out, groups_sql(chunk).load::<AncestorRecord>(c)?);
    }
    Ok(out)
}

/// The group walk of [`load_groups`] for at most [`CHUNK`] users.
pub(super) fn groups_sql(user_ids: &[String]) -> Sql<(Text, Text, Nullable<Text>, Integer)> {
    let mut q = Sql::new(
        "WITH RECURSIVE anc(root, gid, direct) AS (\
         SELECT member_id, group_id, 1 FROM group_members WHERE member_id IN (",
    );
    q.text_list(user_ids.iter().map(String::as_str)).push(
        ") UNION SELECT anc.root, gm.group_id, 0 FROM anc CROSS JOIN group_members gm WHERE gm.member_id = anc.gid) \
         SELECT anc.root, r.id, r.display_name, MAX(anc.direct) FROM anc CROSS JOIN resources r WHERE r.id = anc.gid \
         GROUP BY anc.root, r.id, r.display_name ORDER BY anc.root, r.id",
    );
    q
}

/// Files the rows of a group walk under their users.
pub(super) fn add_groups(out: &mut HashMap<String, Vec<GroupRef>>, records: Vec<AncestorRecord>) {
    for g in records {
        out.entry(g.user_id).or_default().push(GroupRef {
            group_id: g.group_id,
            display: g.display,
            direct: g.direct != 0,
        });
    }
}
