//! Resource CRUD: create, read, replace, update (read-modify-write) and delete of one
//! `resources` row, through the one write path (`Store::write_tx`). Membership is in
//! [`super::members`], indexed columns in [`super::columns`], documents in [`super::assemble`].

use std::collections::HashMap;

use diesel::{OptionalExtension, RunQueryDsl};
use scim_schema::json::remove_ci;
use serde_json::Value;

use super::assemble::{parse_doc, ResourceRow, ResourceRowSt};
use super::batch;
use super::columns::{self, extract, insert_values, Extracted};
use super::members::{
    add_members, load_members, member_delta_in, parse_members, replace_members, MemberRow,
};
use super::sql::{Bind, Sql, Uncached};
use super::users::{load_groups, load_user_with_groups, user_for_write};
use super::{
    check_if_match, fmt_ts, Change, ChangeOp, DbConnection, Doc, LoadedResource, MemberRemoval,
    NewMember, ResourceKind, Store, StoredResource,
};
use crate::error::{HubError, HubResult};

/// Statements are chunked so that bind counts stay far below backend limits.
pub(crate) const CHUNK: usize = 500;

/// Removes what the server owns from a client document; returns the Group members it carried.
fn strip(kind: ResourceKind, doc: &mut Doc) -> HubResult<Option<Vec<NewMember>>> {
    remove_ci(doc, "id");
    remove_ci(doc, "meta");
    match kind {
        ResourceKind::User => {
            remove_ci(doc, "groups");
            Ok(None)
        }
        ResourceKind::Group => match remove_ci(doc, "members") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => parse_members(&v).map(Some),
        },
    }
}

impl Store {
    /// Creates a resource. The server assigns `id` (UUID v7) and `meta`; `client_id` scopes the
    /// uniqueness of `externalId`. Group `members` must name existing resources, else
    /// [`HubError::UnknownMembers`] and nothing is written.
    pub fn create(
        &self,
        kind: ResourceKind,
        doc: Doc,
        client_id: Option<&str>,
    ) -> HubResult<StoredResource> {
        let c = self.create_row(kind, doc, client_id, true)?;
        let Some(doc) = c.doc else {
            return Err(HubError::Backend(
                "the created document was not kept".into(),
            ));
        };
        let members = (kind == ResourceKind::Group).then_some(c.members.as_slice());
        Ok(self.assemble_doc(kind, c.id, doc, &c.now, &c.now, 1, members, None))
    }

    /// [`Store::create`], answering with the row as written (for `http::render`, which writes the
    /// response from the stored text instead of serialising the document again).
    pub fn create_loaded(
        &self,
        kind: ResourceKind,
        doc: Doc,
        client_id: Option<&str>,
    ) -> HubResult<LoadedResource> {
        let c = self.create_row(kind, doc, client_id, false)?;
        let (members, groups) = match kind {
            ResourceKind::Group => (Some(c.members), None),
            // A new user belongs to no group yet.
            ResourceKind::User => (None, Some(Vec::new())),
        };
        Ok(LoadedResource {
            kind,
            id: c.id,
            doc: c.text,
            created: c.now.clone(),
            last_modified: c.now,
            version: 1,
            members,
            groups,
        })
    }

    /// Writes a new resource's rows. The document moves into the write's [`Change`] (an attempt
    /// run again reads it back from the stored text); `keep_doc`: the caller wants it back too,
    /// so it is copied first.
    fn create_row(
        &self,
        kind: ResourceKind,
        mut doc: Doc,
        client_id: Option<&str>,
        keep_doc: bool,
    ) -> HubResult<Created> {
        let members = strip(kind, &mut doc)?;
        let x = extract(kind, &doc);
        let id = uuid::Uuid::now_v7().to_string();
        let now = fmt_ts(self.now());
        let text = serde_json::to_string(&doc).map_err(|e| HubError::Backend(e.to_string()))?;
        let client = client_id.unwrap_or("").to_string();
        let kept = keep_doc.then(|| doc.clone());
        let mut first_attempt = Some(doc);
        let members = self.write_tx_retry(|c, changes| {
            let rows = NewRows::new(kind, &id, &text, &x, &client, &now);
            // Without a hook nothing reads the rows before the batch's end (the hook plans the
            // change, which reads the directory): they may wait to be inserted with the next
            // creates' (see `batch`).
            let no_members = members.as_ref().is_none_or(|m| m.is_empty());
            let waiting = if self.inner.hook.is_none() && no_members {
                batch::defer_rows(rows)
            } else {
                Some(rows)
            };
            if let Some(rows) = waiting {
                insert_rows(c, std::slice::from_ref(&rows))?;
            }
            let member_rows = match &members {
                Some(m) if !m.is_empty() => add_members(c, &id, m)?,
                _ => Vec::new(),
            };
            changes.push(Change {
                op: ChangeOp::Create,
                kind,
                id: id.clone(),
                before: None,
                after: Some(match first_attempt.take() {
                    Some(doc) => doc,
                    // A rerun attempt: the first one's Change went with its transaction.
                    None => {
                        serde_json::from_str(&text).map_err(|e| HubError::Backend(e.to_string()))?
                    }
                }),
                members_added: member_rows.iter().map(|m| m.member_id.clone()).collect(),
                members_removed: MemberRemoval::None,
                client: client_id.map(str::to_string),
            });
            Ok(member_rows)
        })?;
        Ok(Created {
            id,
            doc: kept,
            text,
            now,
            members,
        })
    }

    /// Reads a resource. `with_members` = false skips Group `members` (excludedAttributes=members)
    /// without touching the membership table, and skips User `groups`.
    pub fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> HubResult<StoredResource> {
        Ok(self.assemble_loaded(self.get_loaded(kind, id, with_members)?))
    }

    /// [`Store::get`] without assembling the document.
    pub fn get_loaded(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> HubResult<LoadedResource> {
        let mut conn = self.read_conn()?;
        self.get_loaded_in(&mut conn, kind, id, with_members)
    }

    /// [`Store::get_loaded`] on a reader connection that is idle right now, or `None` at once
    /// when there is none. For callers on an async worker: a point read costs tens of
    /// microseconds, about what handing it to a blocking thread and back costs, but waiting for
    /// a connection must not stall the worker.
    pub fn try_get_loaded(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> Option<HubResult<LoadedResource>> {
        let mut conn = self.try_read_conn()?;
        Some(self.get_loaded_in(&mut conn, kind, id, with_members))
    }

    fn get_loaded_in(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> HubResult<LoadedResource> {
        if (kind, with_members) == (ResourceKind::User, true) {
            let (row, groups) = load_user_with_groups(c, id)?.ok_or(HubError::NotFound)?;
            return Ok(LoadedResource::from_row(kind, row, None, Some(groups)));
        }
        let row = load_row(c, kind, id)?.ok_or(HubError::NotFound)?;
        let ids = [row.id.clone()];
        match (kind, with_members) {
            (_, false) => Ok(LoadedResource::from_row(kind, row, None, None)),
            (ResourceKind::Group, true) => {
                let members = load_members(c, &ids)?.remove(&row.id).unwrap_or_default();
                Ok(LoadedResource::from_row(kind, row, Some(members), None))
            }
            (ResourceKind::User, true) => {
                let groups = load_groups(c, &ids)?.remove(&row.id).unwrap_or_default();
                Ok(LoadedResource::from_row(kind, row, None, Some(groups)))
            }
        }
    }

    /// Replaces a resource (PUT). Group `members` in `doc` replace the member set; without a
    /// `members` key the group has no members afterwards. The version changes only when
    /// something changed.
    pub fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        doc: Doc,
        if_match: Option<&str>,
        client_id: Option<&str>,
    ) -> HubResult<StoredResource> {
        self.replace_with(kind, id, if_match, client_id, |_| Ok(doc.clone()))
    }

    /// Replace in one transaction, computed from the current resource: `f` receives the current
    /// document (as [`Store::get`] returns it without `members`/`groups`) and returns the
    /// replacement, whose Group `members` (none when absent) replace the member set.
    pub fn replace_with(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        client_id: Option<&str>,
        f: impl Fn(Doc) -> Result<Doc, HubError>,
    ) -> HubResult<StoredResource> {
        self.modify(kind, id, if_match, client_id, ChangeOp::Replace, f)
    }

    /// Read-modify-write in one transaction (the PATCH path). `f` receives the current document
    /// as [`Store::get`] would return it without `members`/`groups`; what it returns is stored
    /// (`id`, `meta` and User `groups` in it are ignored). For Groups, `f` must not return
    /// `members`: membership changes go through [`Store::update_group_with`] or
    /// [`Store::apply_member_delta`]. The version increments only when the document changed.
    pub fn update_with(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        client_id: Option<&str>,
        f: impl Fn(Doc) -> Result<Doc, HubError>,
    ) -> HubResult<StoredResource> {
        self.modify(kind, id, if_match, client_id, ChangeOp::Update, f)
    }

    /// [`Store::update_with`] inside the caller's write transaction (`Store::write_tx`), so a
    /// decision and the write it causes commit together; the write hook sees the change when
    /// that transaction ends.
    pub(crate) fn update_with_in(
        &self,
        c: &mut DbConnection,
        changes: &mut Vec<Change>,
        kind: ResourceKind,
        id: &str,
        f: impl FnOnce(Doc) -> Result<Doc, HubError>,
    ) -> HubResult<StoredResource> {
        self.modify_in(c, changes, kind, id, None, None, ChangeOp::Update, f)
            .map(|m| m.resource)
    }

    /// A Group PATCH in one transaction: `f` changes the document (as in [`Store::update_with`])
    /// and `add`/`remove` change membership at a cost independent of the group's size. The
    /// returned group carries its members only when `with_members` asks for them: loading them
    /// is the one part whose cost grows with the group.
    #[allow(clippy::too_many_arguments)]
    pub fn update_group_with(
        &self,
        id: &str,
        if_match: Option<&str>,
        client_id: Option<&str>,
        add: Vec<NewMember>,
        remove: MemberRemoval,
        with_members: bool,
        f: impl Fn(Doc) -> Result<Doc, HubError>,
    ) -> HubResult<StoredResource> {
        let kind = ResourceKind::Group;
        let now = fmt_ts(self.now());
        let r = self.write_tx_retry(|c, changes| {
            let Modified { bumped, .. } = self.modify_in(
                c,
                changes,
                kind,
                id,
                if_match,
                client_id,
                ChangeOp::Update,
                &f,
            )?;
            let delta = member_delta_in(c, changes, id, &add, &remove, client_id)?;
            if delta && !bumped {
                bump(c, id, &now)?;
            }
            let row = load_row(c, kind, id)?.ok_or(HubError::NotFound)?;
            if !with_members {
                return Ok(self.assemble(kind, row, None, None));
            }
            let members = load_members(c, &[id.to_string()])?
                .remove(id)
                .unwrap_or_default();
            Ok(self.assemble(kind, row, Some(&members), None))
        })?;
        Ok(r)
    }

    #[allow(clippy::too_many_arguments)]
    fn modify(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        client_id: Option<&str>,
        op: ChangeOp,
        f: impl Fn(Doc) -> Result<Doc, HubError>,
    ) -> HubResult<StoredResource> {
        self.write_tx_retry(|c, changes| {
            let Modified {
                resource: res,
                member_rows,
                in_a_group,
                ..
            } = self.modify_in(c, changes, kind, id, if_match, client_id, op, &f)?;
            match kind {
                ResourceKind::Group => {
                    let rows = match member_rows {
                        Some(rows) => rows,
                        None => load_members(c, &[id.to_string()])?
                            .remove(id)
                            .unwrap_or_default(),
                    };
                    Ok(self.with_members(res, &rows))
                }
                ResourceKind::User if in_a_group == Some(false) => Ok(self.with_groups(res, &[])),
                ResourceKind::User => {
                    let groups = load_groups(c, &[id.to_string()])?
                        .remove(id)
                        .unwrap_or_default();
                    Ok(self.with_groups(res, &groups))
                }
            }
        })
    }

    /// The body of replace/update inside a write transaction ([`Modified`]).
    #[allow(clippy::too_many_arguments)]
    fn modify_in(
        &self,
        c: &mut DbConnection,
        changes: &mut Vec<Change>,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        client_id: Option<&str>,
        op: ChangeOp,
        f: impl FnOnce(Doc) -> Result<Doc, HubError>,
    ) -> HubResult<Modified> {
        // A User's row comes with whether the user is in any group: the answer's `groups` then
        // need the recursive walk (a round trip of its own on PostgreSQL) only when it is.
        let (row, in_a_group) = match kind {
            ResourceKind::User => {
                let user = user_for_write(c, id)?.ok_or(HubError::NotFound)?;
                let in_a_group = user.is_member;
                (user.row, Some(in_a_group))
            }
            ResourceKind::Group => (
                load_row_for_write(c, kind, id)?.ok_or(HubError::NotFound)?,
                None,
            ),
        };
        check_if_match(if_match, row.version)?;
        let before = parse_doc(&row.doc)?;
        let current = self.assemble_doc(
            kind,
            row.id.clone(),
            before.clone(),
            &row.created,
            &row.last_modified,
            row.version,
            None,
            None,
        );
        let mut after = f(current.doc)?;
        let returned_members = strip(kind, &mut after)?;
        let members = match (op, kind) {
            (ChangeOp::Update, _) if returned_members.is_some() => {
                return Err(scim_schema::Error::InvalidPath(
                    "members can only be changed through the membership delta".into(),
                )
                .into())
            }
            (ChangeOp::Replace, ResourceKind::Group) => Some(returned_members.unwrap_or_default()),
            _ => None,
        };
        let mut member_rows = None;
        let mut added = Vec::new();
        let mut removed = MemberRemoval::None;
        if let Some(new_members) = members {
            let (rows, a, r) = replace_members(c, id, &new_members)?;
            member_rows = Some(rows);
            added = a;
            removed = r;
        }
        let members_changed = !added.is_empty() || removed != MemberRemoval::None;
        let client = client_id.map(str::to_string);
        if after == before && !members_changed {
            return Ok(Modified {
                resource: self.assemble_doc(
                    kind,
                    row.id,
                    before,
                    &row.created,
                    &row.last_modified,
                    row.version,
                    None,
                    None,
                ),
                member_rows,
                bumped: false,
                in_a_group,
            });
        }
        let now = fmt_ts(self.now());
        let version = row.version + 1;
        if after != before {
            let x = extract(kind, &after);
            let was = extract(kind, &before);
            let doc_text =
                serde_json::to_string(&after).map_err(|e| HubError::Backend(e.to_string()))?;
            update_resource(c, id, &doc_text, &x, &was, client.as_deref(), &now, version)?;
            if x.emails != was.emails {
                let mut q = Sql::<()>::new("DELETE FROM resource_values WHERE resource_id = ");
                q.text(id);
                q.execute(c)?;
                insert_values(c, id, &x)?;
            }
        } else {
            bump(c, id, &now)?;
        }
        changes.push(Change {
            op,
            kind,
            id: id.to_string(),
            before: Some(before),
            after: Some(after.clone()),
            members_added: added,
            members_removed: removed,
            client,
        });
        Ok(Modified {
            resource: self.assemble_doc(
                kind,
                row.id,
                after,
                &row.created,
                &now,
                version,
                None,
                None,
            ),
            member_rows,
            bumped: true,
            in_a_group,
        })
    }

    /// Deletes a resource, its memberships (as member and as group) and its extracted values.
    /// Groups that lose the resource as a member get a new version. A second delete is NotFound.
    pub fn delete(&self, kind: ResourceKind, id: &str, if_match: Option<&str>) -> HubResult<()> {
        self.delete_by(kind, id, if_match, None)
    }

    /// [`Store::delete`] on behalf of the SCIM client `client_id` (recorded in the change).
    pub fn delete_by(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        client_id: Option<&str>,
    ) -> HubResult<()> {
        let now = fmt_ts(self.now());
        self.write_tx_retry(|c, changes| {
            // The groups first, then the resource: the order a group change takes them (its
            // row, then each member's as it plans them). A failed check below rolls the bump
            // back with the rest.
            let mut q =
                Sql::<()>::new("UPDATE resources SET version = version + 1, last_modified = ");
            q.text(now.as_str())
                .push(" WHERE id IN (SELECT group_id FROM group_members WHERE member_id = ");
            q.text(id).push(")");
            q.execute(c)?;
            let row = load_row_for_write(c, kind, id)?.ok_or(HubError::NotFound)?;
            check_if_match(if_match, row.version)?;
            let mut q = Sql::<()>::new("DELETE FROM resources WHERE id = ");
            q.text(id);
            q.execute(c)?;
            changes.push(Change {
                op: ChangeOp::Delete,
                kind,
                id: id.to_string(),
                before: Some(parse_doc(&row.doc)?),
                after: None,
                members_added: Vec::new(),
                members_removed: MemberRemoval::None,
                client: client_id.map(str::to_string),
            });
            Ok(())
        })
    }
}

/// A new version and lastModified for a resource whose stored columns did not change.
pub(super) fn bump(c: &mut DbConnection, id: &str, now: &str) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE resources SET version = version + 1, last_modified = ");
    q.text(now).push(" WHERE id = ");
    q.text(id);
    q.execute(c)?;
    Ok(())
}

/// A resource as [`Store::create`] wrote it.
struct Created {
    id: String,
    /// The document, when `create_row` was asked to keep it.
    doc: Option<Doc>,
    /// `doc` as stored.
    text: String,
    /// `meta.created` and `meta.lastModified`, as stored.
    now: String,
    members: Vec<MemberRow>,
}

/// The row of the resource of `kind` whose id is `id`.
pub(crate) fn load_row(
    c: &mut DbConnection,
    kind: ResourceKind,
    id: &str,
) -> HubResult<Option<ResourceRow>> {
    Ok(row_sql(kind, id).get_result::<ResourceRow>(c).optional()?)
}

/// The row of the resource of `kind` whose id is `id`, read to be changed in the caller's write
/// transaction: locked on PostgreSQL until it ends, so that a concurrent writer's change is
/// seen rather than overwritten (see [`user_for_write`]).
pub(crate) fn load_row_for_write(
    c: &mut DbConnection,
    kind: ResourceKind,
    id: &str,
) -> HubResult<Option<ResourceRow>> {
    let mut q = row_sql(kind, id);
    lock_for_write(c, &mut q);
    Ok(q.get_result::<ResourceRow>(c).optional()?)
}

/// The row of User `id`, read to plan the user outside a SCIM write of them (an approval, a
/// timer, an admin action, a group change): locked on PostgreSQL until the caller's transaction
/// ends, the lock a SCIM write of the user holds while it plans, so the two take turns. A
/// deleted user has no row: an advisory lock on the id serializes plans of them instead
/// ([`super::cluster::lock_user_plans`]).
pub(crate) fn user_row_to_plan(c: &mut DbConnection, id: &str) -> HubResult<Option<ResourceRow>> {
    let row = load_row_for_write(c, ResourceKind::User, id)?;
    if row.is_none() {
        super::cluster::lock_user_plans(c, id)?;
    }
    Ok(row)
}

/// Locks the rows of the stored Users among `ids` for the caller's write transaction, in id
/// order (PostgreSQL; SQLite has one writer): for a transaction that plans several users, so
/// that it takes their rows before anything else a plan locks, as a SCIM write does.
pub(crate) fn lock_users_to_plan<'a>(
    c: &mut DbConnection,
    ids: impl IntoIterator<Item = &'a str>,
) -> HubResult<()> {
    if !matches!(c, DbConnection::Postgresql(_)) {
        return Ok(());
    }
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(CHUNK) {
        let mut q = Sql::<diesel::sql_types::Text>::new(
            "SELECT id FROM resources WHERE resource_type = 'User' AND id IN (",
        );
        q.text_list(chunk.iter().copied())
            .push(") ORDER BY id FOR UPDATE");
        q.load::<String>(c)?;
    }
    Ok(())
}

/// Ends a `SELECT` with `FOR UPDATE` on PostgreSQL, locking the rows it reads for the caller's
/// write transaction (SQLite has one writer and no such clause).
pub(super) fn lock_for_write<ST>(c: &DbConnection, q: &mut Sql<ST>) {
    if matches!(c, DbConnection::Postgresql(_)) {
        q.push(" FOR UPDATE");
    }
}

/// The row of the resource `id` of `kind`.
pub(super) fn row_sql(kind: ResourceKind, id: &str) -> Sql<ResourceRowSt> {
    let mut q =
        Sql::new("SELECT id, doc, created, last_modified, version FROM resources WHERE id = ");
    q.text(id)
        .push(" AND resource_type = ")
        .push(kind.sql_literal());
    q
}

/// Loads rows by id, in the order given (missing ids are skipped).
pub(crate) fn load_rows(
    c: &mut DbConnection,
    kind: ResourceKind,
    ids: &[String],
) -> HubResult<Vec<ResourceRow>> {
    let mut by_id: HashMap<String, ResourceRow> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut q = Sql::<ResourceRowSt>::new(
            "SELECT id, doc, created, last_modified, version FROM resources WHERE id IN (",
        );
        q.text_list(chunk.iter().map(String::as_str))
            .push(") AND resource_type = ")
            .push(kind.sql_literal());
        for row in q.load::<ResourceRow>(c)? {
            by_id.insert(row.id.clone(), row);
        }
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// The `INSERT` of a new resource row.
/// A new resource's rows: its `resources` row as `(…)` and its `resource_values` rows as
/// `(…), (…)` (see [`insert_rows`]).
pub(super) struct NewRows {
    resource: Sql<()>,
    values: Option<Sql<()>>,
}

impl NewRows {
    /// How many bind parameters its rows take.
    pub(super) fn binds(&self) -> usize {
        self.resource.binds() + self.values.as_ref().map_or(0, Sql::binds)
    }

    /// The `resources` row as `(…)` (the columns of `RESOURCE_INSERT`) and the values rows.
    fn new(
        kind: ResourceKind,
        id: &str,
        doc: &str,
        x: &Extracted,
        client: &str,
        now: &str,
    ) -> Self {
        let mut q = Sql::<()>::new("(");
        q.text(id).push(", ").push(kind.sql_literal()).push(", ");
        q.text(doc).push(", ");
        q.bind(Bind::OptText(x.user_name_folded.clone())).push(", ");
        q.bind(Bind::OptText(x.display_name.clone())).push(", ");
        q.bind(Bind::OptText(x.display_name_folded.clone()))
            .push(", ");
        q.bind(Bind::OptText(x.external_id.clone())).push(", ");
        q.text(client).push(", ");
        q.bind(Bind::OptBool(x.active)).push(", ");
        q.bind(Bind::OptText(x.employee_number_folded.clone()))
            .push(", ");
        q.bind(Bind::OptText(x.manager_value_folded.clone()))
            .push(", ");
        q.text(now).push(", ");
        q.text(now).push(", 1)");
        NewRows {
            resource: q,
            values: columns::values_rows(id, x),
        }
    }
}

/// Inserts new resources' rows. On PostgreSQL in one statement, the `resource_values` rows in
/// a data-modifying `WITH` (the foreign key is checked at the statement's end, when the
/// resource rows are there); SQLite has no data-modifying `WITH`, and one create is inserted at
/// a time there.
pub(super) fn insert_rows(c: &mut DbConnection, rows: &[NewRows]) -> HubResult<()> {
    let values: Vec<&Sql<()>> = rows.iter().filter_map(|r| r.values.as_ref()).collect();
    let mut resources = Sql::<()>::new(RESOURCE_INSERT);
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            resources.push(", ");
        }
        resources.append(&r.resource);
    }
    let postgres = matches!(c, DbConnection::Postgresql(_));
    if values.is_empty() || !postgres {
        if rows.len() > 1 {
            // One text per number of rows: not kept as a prepared statement (see below).
            Uncached(resources).execute(c)?;
        } else {
            resources.execute(c)?;
        }
        if !values.is_empty() {
            let mut q = Sql::<()>::new(columns::VALUES_INSERT);
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.append(v);
            }
            q.execute(c)?;
        }
        return Ok(());
    }
    let mut q = Sql::<()>::new("WITH r AS (");
    q.append(&resources).push(") ").push(columns::VALUES_INSERT);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.append(v);
    }
    if rows.len() == 1 {
        q.execute(c)?;
    } else {
        // One text per number of rows and of values: not kept as a prepared statement, or
        // each connection would keep thousands of them.
        Uncached(q).execute(c)?;
    }
    Ok(())
}

const RESOURCE_INSERT: &str = "INSERT INTO resources (id, resource_type, doc, user_name_folded, \
     display_name, display_name_folded, external_id, external_id_client, active, \
     employee_number_folded, manager_value_folded, created, last_modified, version) VALUES ";

/// Writes a changed document. Only the extracted columns whose values changed are in the SET
/// list: SQLite rewrites the entries of every index over a column it sets, and `resources` has
/// ten indexes, so setting them all made every PATCH write pages of each.
#[allow(clippy::too_many_arguments)]
fn update_resource(
    c: &mut DbConnection,
    id: &str,
    doc: &str,
    x: &Extracted,
    was: &Extracted,
    client: Option<&str>,
    now: &str,
    version: i64,
) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE resources SET doc = ");
    q.text(doc);
    let mut set = |column: &str, now: &Option<String>, before: &Option<String>| {
        if now != before {
            q.push(", ").push(column).push(" = ");
            q.bind(Bind::OptText(now.clone()));
        }
    };
    set(
        "user_name_folded",
        &x.user_name_folded,
        &was.user_name_folded,
    );
    set("display_name", &x.display_name, &was.display_name);
    set(
        "display_name_folded",
        &x.display_name_folded,
        &was.display_name_folded,
    );
    set("external_id", &x.external_id, &was.external_id);
    set(
        "employee_number_folded",
        &x.employee_number_folded,
        &was.employee_number_folded,
    );
    set(
        "manager_value_folded",
        &x.manager_value_folded,
        &was.manager_value_folded,
    );
    if x.active != was.active {
        q.push(", active = ").bind(Bind::OptBool(x.active));
    }
    q.push(", last_modified = ");
    q.text(now).push(", version = ");
    q.int(version);
    // externalId is unique per client: a new externalId belongs to the client that sent it.
    if let Some(client) = client.filter(|_| x.external_id != was.external_id) {
        q.push(", external_id_client = ").text(client);
    }
    q.push(" WHERE id = ").text(id);
    q.execute(c)?;
    if x.display_name != was.display_name {
        renamed_member(c, id, x.display_name.as_deref(), now)?;
    }
    Ok(())
}

/// A resource `id` whose `displayName` became `display`: every group it is a direct member of
/// shows the new name as the member's `display`, and gets a new version and lastModified, so
/// that its representation and ETag change with it. Taken after the member's own row (the
/// reverse of a group change's order): on PostgreSQL a rename racing a change of one of its
/// groups can deadlock, which the write's retry settles; renames are rare.
fn renamed_member(
    c: &mut DbConnection,
    id: &str,
    display: Option<&str>,
    now: &str,
) -> HubResult<()> {
    let mut q = Sql::<()>::new("UPDATE resources SET version = version + 1, last_modified = ");
    q.text(now)
        .push(" WHERE id IN (SELECT group_id FROM group_members WHERE member_id = ");
    q.text(id).push(")");
    q.execute(c)?;
    let mut q = Sql::<()>::new("UPDATE group_members SET display = ");
    q.bind(Bind::OptText(display.map(str::to_string)))
        .push(" WHERE member_id = ");
    q.text(id);
    q.execute(c)?;
    Ok(())
}

/// What [`Store::modify_in`] did: the resource (without members or groups), the new member rows
/// when a Group replacement replaced the member set, whether the version was bumped, and for a
/// User whether it was in any group when its row was read.
struct Modified {
    resource: StoredResource,
    member_rows: Option<Vec<MemberRow>>,
    bumped: bool,
    in_a_group: Option<bool>,
}
