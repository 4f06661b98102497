//! Create, read, replace, update, delete, and group membership.

use std::collections::{HashMap, HashSet};

use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel::{OptionalExtension, RunQueryDsl};
use scim_schema::json::{get_ci, remove_ci};
use serde_json::{json, Value};

use super::sql::{Bind, Sql};
use super::{
    check_if_match, etag, fmt_ts, parse_ts, Change, ChangeOp, DbConnection, Doc,
    MemberDeltaOutcome, MemberRemoval, NewMember, ResourceKind, Store, StoreError, StoreResult,
    StoredResource,
};

/// The enterprise extension URN, whose `employeeNumber` and `manager.value` have columns.
pub(crate) const ENTERPRISE_URN: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Statements are chunked so that bind counts stay far below backend limits.
const CHUNK: usize = 500;

pub(crate) type RowSt = (Text, Text, Text, Text, BigInt);
/// `id, doc, created, last_modified, version`
pub(crate) type Row = (String, String, String, String, i64);

/// Lower-cases for case-insensitive columns (the same folding the search uses for values).
pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// The indexed columns extracted from a document.
#[derive(Debug, Default, PartialEq)]
struct Extracted {
    user_name_folded: Option<String>,
    display_name: Option<String>,
    display_name_folded: Option<String>,
    external_id: Option<String>,
    active: Option<bool>,
    employee_number_folded: Option<String>,
    manager_value_folded: Option<String>,
    /// `(type_folded, value_folded)` of each email.
    emails: Vec<(Option<String>, Option<String>)>,
}

fn str_of<'a>(doc: &'a Doc, name: &str) -> Option<&'a str> {
    get_ci(doc, name).and_then(Value::as_str)
}

fn extract(kind: ResourceKind, doc: &Doc) -> Extracted {
    let mut x = Extracted {
        display_name: str_of(doc, "displayName").map(str::to_string),
        display_name_folded: str_of(doc, "displayName").map(fold),
        external_id: str_of(doc, "externalId").map(str::to_string),
        ..Extracted::default()
    };
    if kind == ResourceKind::User {
        x.user_name_folded = str_of(doc, "userName").map(fold);
        x.active = get_ci(doc, "active").and_then(Value::as_bool);
        if let Some(Value::Array(emails)) = get_ci(doc, "emails") {
            for e in emails.iter().filter_map(Value::as_object) {
                // One row per element, so value paths see elements without type or value too.
                x.emails
                    .push((str_of(e, "type").map(fold), str_of(e, "value").map(fold)));
            }
        }
        if let Some(Value::Object(ent)) = get_ci(doc, ENTERPRISE_URN) {
            x.employee_number_folded = str_of(ent, "employeeNumber").map(fold);
            x.manager_value_folded = match get_ci(ent, "manager") {
                Some(Value::Object(m)) => str_of(m, "value").map(fold),
                _ => None,
            };
        }
    }
    x
}

/// Removes what the server owns from a client document; returns the Group members it carried.
fn strip(kind: ResourceKind, doc: &mut Doc) -> StoreResult<Option<Vec<NewMember>>> {
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

/// Parses a `members` array (`[{"value": id, "type"?, "display"?}]`).
pub fn parse_members(v: &Value) -> StoreResult<Vec<NewMember>> {
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

fn parse_doc(s: &str) -> StoreResult<Doc> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Backend(format!("stored document is not JSON: {e}")))
}

fn ts(s: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    parse_ts(s)
        .ok_or_else(|| StoreError::Backend(format!("stored timestamp {s:?} is not RFC 3339")))
}

/// A member row: `member_id, member_type, display`.
pub type MemberRow = (String, String, Option<String>);
/// A group reference of a user: `group id, display, direct`.
pub type GroupRef = (String, Option<String>, bool);

/// A resource as read, before its document is assembled: the stored JSON text (no `id`, `meta`,
/// `members` or `groups`), the meta columns, and Group members or User groups when they were
/// loaded. [`Store::assemble_loaded`] turns it into a [`StoredResource`]; the HTTP layer can
/// also write it as JSON directly, which saves parsing and rebuilding every document of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedResource {
    pub kind: ResourceKind,
    pub id: String,
    pub doc: String,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
    pub members: Option<Vec<MemberRow>>,
    pub groups: Option<Vec<GroupRef>>,
}

impl LoadedResource {
    pub(crate) fn from_row(
        kind: ResourceKind,
        (id, doc, created, last_modified, version): Row,
        members: Option<Vec<MemberRow>>,
        groups: Option<Vec<GroupRef>>,
    ) -> Self {
        LoadedResource {
            kind,
            id,
            doc,
            created,
            last_modified,
            version,
            members,
            groups,
        }
    }

    /// The weak ETag of this version.
    pub fn etag(&self) -> String {
        etag(self.version)
    }
}

impl Store {
    fn location(&self, kind: ResourceKind, id: &str) -> Option<String> {
        self.inner
            .base_url
            .as_ref()
            .map(|b| format!("{b}/{}/{id}", kind.endpoint()))
    }

    /// The document of a loaded resource.
    pub fn assemble_loaded(&self, r: LoadedResource) -> StoredResource {
        let row = (r.id, r.doc, r.created, r.last_modified, r.version);
        self.assemble(r.kind, row, r.members.as_deref(), r.groups.as_deref())
    }

    /// The base URL documents carry in `meta.location`, when the store was given one.
    pub fn base_url(&self) -> Option<&str> {
        self.inner.base_url.as_deref()
    }

    /// Builds the response document from a row and, optionally, members or groups.
    pub(crate) fn assemble(
        &self,
        kind: ResourceKind,
        row: Row,
        members: Option<&[MemberRow]>,
        groups: Option<&[GroupRef]>,
    ) -> StoredResource {
        let (id, doc, created, last_modified, version) = row;
        let stored = parse_doc(&doc).unwrap_or_default();
        self.assemble_doc(
            kind,
            id,
            stored,
            &created,
            &last_modified,
            version,
            members,
            groups,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble_doc(
        &self,
        kind: ResourceKind,
        id: String,
        stored: Doc,
        created: &str,
        last_modified: &str,
        version: i64,
        members: Option<&[MemberRow]>,
        groups: Option<&[GroupRef]>,
    ) -> StoredResource {
        let mut doc = Doc::new();
        let mut rest = stored;
        if let Some(s) = remove_ci(&mut rest, "schemas") {
            doc.insert("schemas".into(), s);
        }
        doc.insert("id".into(), Value::String(id.clone()));
        doc.extend(rest);
        if let Some(members) = members {
            let arr = members
                .iter()
                .map(|(mid, mtype, display)| {
                    let mut m = Doc::new();
                    m.insert("value".into(), Value::String(mid.clone()));
                    if let Some(kind) = ResourceKind::parse(mtype) {
                        if let Some(r) = self.location(kind, mid) {
                            m.insert("$ref".into(), Value::String(r));
                        }
                    }
                    m.insert("type".into(), Value::String(mtype.clone()));
                    if let Some(d) = display {
                        m.insert("display".into(), Value::String(d.clone()));
                    }
                    Value::Object(m)
                })
                .collect();
            doc.insert("members".into(), Value::Array(arr));
        }
        if let Some(groups) = groups {
            if !groups.is_empty() {
                let arr = groups
                    .iter()
                    .map(|(gid, display, direct)| {
                        let mut g = Doc::new();
                        g.insert("value".into(), Value::String(gid.clone()));
                        if let Some(r) = self.location(ResourceKind::Group, gid) {
                            g.insert("$ref".into(), Value::String(r));
                        }
                        if let Some(d) = display {
                            g.insert("display".into(), Value::String(d.clone()));
                        }
                        g.insert(
                            "type".into(),
                            Value::String(if *direct { "direct" } else { "indirect" }.into()),
                        );
                        Value::Object(g)
                    })
                    .collect();
                doc.insert("groups".into(), Value::Array(arr));
            }
        }
        let mut meta = Doc::new();
        meta.insert("resourceType".into(), json!(kind.as_str()));
        meta.insert("created".into(), json!(created));
        meta.insert("lastModified".into(), json!(last_modified));
        if let Some(loc) = self.location(kind, &id) {
            meta.insert("location".into(), json!(loc));
        }
        meta.insert("version".into(), json!(etag(version)));
        doc.insert("meta".into(), Value::Object(meta));
        StoredResource {
            kind,
            id,
            version,
            created: parse_ts(created).unwrap_or_default(),
            last_modified: parse_ts(last_modified).unwrap_or_default(),
            doc,
        }
    }

    /// Creates a resource. The server assigns `id` (UUID v7) and `meta`; `client_id` scopes the
    /// uniqueness of `externalId`. Group `members` must name existing resources, else
    /// [`StoreError::UnknownMembers`] and nothing is written.
    pub fn create(
        &self,
        kind: ResourceKind,
        doc: Doc,
        client_id: Option<&str>,
    ) -> StoreResult<StoredResource> {
        let c = self.create_row(kind, doc, client_id)?;
        let members = (kind == ResourceKind::Group).then_some(c.members.as_slice());
        Ok(self.assemble_doc(kind, c.id, c.doc, &c.now, &c.now, 1, members, None))
    }

    /// [`Store::create`], answering with the row as written (for `http::render`, which writes the
    /// response from the stored text instead of serialising the document again).
    pub fn create_loaded(
        &self,
        kind: ResourceKind,
        doc: Doc,
        client_id: Option<&str>,
    ) -> StoreResult<LoadedResource> {
        let c = self.create_row(kind, doc, client_id)?;
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

    fn create_row(
        &self,
        kind: ResourceKind,
        mut doc: Doc,
        client_id: Option<&str>,
    ) -> StoreResult<Created> {
        let members = strip(kind, &mut doc)?;
        let x = extract(kind, &doc);
        let id = uuid::Uuid::now_v7().to_string();
        let now = fmt_ts(self.now());
        let text = serde_json::to_string(&doc).map_err(|e| StoreError::Backend(e.to_string()))?;
        let client = client_id.unwrap_or("").to_string();
        let members = self.write_tx(|c, changes| {
            insert_resource(c, kind, &id, &text, &x, &client, &now)?;
            insert_values(c, &id, &x)?;
            let member_rows = match &members {
                Some(m) if !m.is_empty() => add_members(c, &id, m)?,
                _ => Vec::new(),
            };
            changes.push(Change {
                op: ChangeOp::Create,
                kind,
                id: id.clone(),
                before: None,
                after: Some(doc.clone()),
                members_added: member_rows.iter().map(|m| m.0.clone()).collect(),
                members_removed: MemberRemoval::None,
            });
            Ok(member_rows)
        })?;
        Ok(Created {
            id,
            doc,
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
    ) -> StoreResult<StoredResource> {
        Ok(self.assemble_loaded(self.get_loaded(kind, id, with_members)?))
    }

    /// [`Store::get`] without assembling the document.
    pub fn get_loaded(
        &self,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> StoreResult<LoadedResource> {
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
    ) -> Option<StoreResult<LoadedResource>> {
        let mut conn = self.try_read_conn()?;
        Some(self.get_loaded_in(&mut conn, kind, id, with_members))
    }

    fn get_loaded_in(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        id: &str,
        with_members: bool,
    ) -> StoreResult<LoadedResource> {
        if (kind, with_members) == (ResourceKind::User, true) {
            let (row, groups) = load_user_with_groups(c, id)?.ok_or(StoreError::NotFound)?;
            return Ok(LoadedResource::from_row(kind, row, None, Some(groups)));
        }
        let row = load_row(c, kind, id)?.ok_or(StoreError::NotFound)?;
        let ids = [row.0.clone()];
        match (kind, with_members) {
            (_, false) => Ok(LoadedResource::from_row(kind, row, None, None)),
            (ResourceKind::Group, true) => {
                let members = load_members(c, &ids)?.remove(&row.0).unwrap_or_default();
                Ok(LoadedResource::from_row(kind, row, Some(members), None))
            }
            (ResourceKind::User, true) => {
                let groups = load_groups(c, &ids)?.remove(&row.0).unwrap_or_default();
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
    ) -> StoreResult<StoredResource> {
        self.replace_with(kind, id, if_match, client_id, |_| Ok(doc))
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
        f: impl FnOnce(Doc) -> Result<Doc, StoreError>,
    ) -> StoreResult<StoredResource> {
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
        f: impl FnOnce(Doc) -> Result<Doc, StoreError>,
    ) -> StoreResult<StoredResource> {
        self.modify(kind, id, if_match, client_id, ChangeOp::Update, f)
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
        f: impl FnOnce(Doc) -> Result<Doc, StoreError>,
    ) -> StoreResult<StoredResource> {
        let kind = ResourceKind::Group;
        let now = fmt_ts(self.now());
        let r = self.write_tx(|c, changes| {
            let (_, _, bumped) = self.modify_in(
                c,
                changes,
                kind,
                id,
                if_match,
                client_id,
                ChangeOp::Update,
                f,
            )?;
            let delta = member_delta_in(c, changes, id, &add, &remove)?;
            if delta && !bumped {
                bump(c, id, &now)?;
            }
            let row = load_row(c, kind, id)?.ok_or(StoreError::NotFound)?;
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
        f: impl FnOnce(Doc) -> Result<Doc, StoreError>,
    ) -> StoreResult<StoredResource> {
        self.write_tx(|c, changes| {
            let (res, member_rows, _) =
                self.modify_in(c, changes, kind, id, if_match, client_id, op, f)?;
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
                ResourceKind::User => {
                    let groups = load_groups(c, &[id.to_string()])?
                        .remove(id)
                        .unwrap_or_default();
                    Ok(self.with_groups(res, &groups))
                }
            }
        })
    }

    fn with_members(&self, r: StoredResource, rows: &[MemberRow]) -> StoredResource {
        let (created, lm) = (fmt_ts(r.created), fmt_ts(r.last_modified));
        self.assemble_doc(
            r.kind,
            r.id,
            stored_part(r.doc),
            &created,
            &lm,
            r.version,
            Some(rows),
            None,
        )
    }

    fn with_groups(&self, r: StoredResource, groups: &[GroupRef]) -> StoredResource {
        let (created, lm) = (fmt_ts(r.created), fmt_ts(r.last_modified));
        self.assemble_doc(
            r.kind,
            r.id,
            stored_part(r.doc),
            &created,
            &lm,
            r.version,
            None,
            Some(groups),
        )
    }

    /// The body of replace/update inside a write transaction. Returns the resource (without
    /// members), the new member rows when a Group replacement replaced the member set, and
    /// whether the version was bumped.
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
        f: impl FnOnce(Doc) -> Result<Doc, StoreError>,
    ) -> StoreResult<(StoredResource, Option<Vec<MemberRow>>, bool)> {
        let row = load_row(c, kind, id)?.ok_or(StoreError::NotFound)?;
        check_if_match(if_match, row.4)?;
        let before = parse_doc(&row.1)?;
        let current = self.assemble_doc(
            kind,
            row.0.clone(),
            before.clone(),
            &row.2,
            &row.3,
            row.4,
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
            return Ok((
                self.assemble_doc(kind, row.0, before, &row.2, &row.3, row.4, None, None),
                member_rows,
                false,
            ));
        }
        let now = fmt_ts(self.now());
        let version = row.4 + 1;
        if after != before {
            let x = extract(kind, &after);
            let was = extract(kind, &before);
            let doc_text =
                serde_json::to_string(&after).map_err(|e| StoreError::Backend(e.to_string()))?;
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
        });
        Ok((
            self.assemble_doc(kind, row.0, after, &row.2, &now, version, None, None),
            member_rows,
            true,
        ))
    }

    /// Deletes a resource, its memberships (as member and as group) and its extracted values.
    /// Groups that lose the resource as a member get a new version. A second delete is NotFound.
    pub fn delete(&self, kind: ResourceKind, id: &str, if_match: Option<&str>) -> StoreResult<()> {
        let now = fmt_ts(self.now());
        self.write_tx(|c, changes| {
            let row = load_row(c, kind, id)?.ok_or(StoreError::NotFound)?;
            check_if_match(if_match, row.4)?;
            let mut q =
                Sql::<()>::new("UPDATE resources SET version = version + 1, last_modified = ");
            q.text(now.as_str())
                .push(" WHERE id IN (SELECT group_id FROM group_members WHERE member_id = ");
            q.text(id).push(")");
            q.execute(c)?;
            let mut q = Sql::<()>::new("DELETE FROM resources WHERE id = ");
            q.text(id);
            q.execute(c)?;
            changes.push(Change {
                op: ChangeOp::Delete,
                kind,
                id: id.to_string(),
                before: Some(parse_doc(&row.1)?),
                after: None,
                members_added: Vec::new(),
                members_removed: MemberRemoval::None,
            });
            Ok(())
        })
    }

    /// Adds and removes group members without rewriting the member list: cost depends on the
    /// size of the delta, not of the group. Removal runs first, so "replace members" is
    /// `remove: All` plus `add`. Unknown member ids fail the whole change with
    /// [`StoreError::UnknownMembers`]. The version and lastModified change only when a row did.
    pub fn apply_member_delta(
        &self,
        group_id: &str,
        add: Vec<NewMember>,
        remove: MemberRemoval,
        if_match: Option<&str>,
    ) -> StoreResult<MemberDeltaOutcome> {
        let now_t = self.now();
        let now = fmt_ts(now_t);
        self.write_tx(|c, changes| {
            let mut q = Sql::<(BigInt, Text)>::new(
                "SELECT version, last_modified FROM resources WHERE id = ",
            );
            q.text(group_id).push(" AND resource_type = 'Group'");
            let (version, last_modified): (i64, String) =
                q.get_result(c).optional()?.ok_or(StoreError::NotFound)?;
            check_if_match(if_match, version)?;
            let changed = member_delta_in(c, changes, group_id, &add, &remove)?;
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
    pub fn group_members(&self, group_id: &str) -> StoreResult<Vec<MemberRow>> {
        let mut conn = self.read_conn()?;
        load_row(&mut conn, ResourceKind::Group, group_id)?.ok_or(StoreError::NotFound)?;
        Ok(load_members(&mut conn, &[group_id.to_string()])?
            .remove(group_id)
            .unwrap_or_default())
    }
}

/// The stored part of an assembled document (without id, meta, members, groups).
fn stored_part(mut doc: Doc) -> Doc {
    for k in ["id", "meta", "members", "groups"] {
        remove_ci(&mut doc, k);
    }
    doc
}

/// Applies a member delta inside a transaction; records a `Members` change when rows changed.
fn member_delta_in(
    c: &mut DbConnection,
    changes: &mut Vec<Change>,
    group_id: &str,
    add: &[NewMember],
    remove: &MemberRemoval,
) -> StoreResult<bool> {
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
            members_added: added.into_iter().map(|m| m.0).collect(),
            members_removed: if removed > 0 {
                remove.clone()
            } else {
                MemberRemoval::None
            },
        });
    }
    Ok(changed)
}

fn bump(c: &mut DbConnection, id: &str, now: &str) -> StoreResult<()> {
    let mut q = Sql::<()>::new("UPDATE resources SET version = version + 1, last_modified = ");
    q.text(now).push(" WHERE id = ");
    q.text(id);
    q.execute(c)?;
    Ok(())
}

/// A resource as [`Store::create`] wrote it.
struct Created {
    id: String,
    doc: Doc,
    /// `doc` as stored.
    text: String,
    /// `meta.created` and `meta.lastModified`, as stored.
    now: String,
    members: Vec<MemberRow>,
}

pub(crate) fn load_row(
    c: &mut DbConnection,
    kind: ResourceKind,
    id: &str,
) -> StoreResult<Option<Row>> {
    let mut q = Sql::<RowSt>::new(
        "SELECT id, doc, created, last_modified, version FROM resources WHERE id = ",
    );
    q.text(id)
        .push(" AND resource_type = ")
        .push(kind.sql_literal());
    Ok(q.get_result::<Row>(c).optional()?)
}

/// The row of the User whose id is `id_or_user_name`, else whose userName equals it
/// case-insensitively (userName is `caseExact: false`, RFC 7643 §4.1.1). Used to resolve who an
/// approver or a token's user is.
pub(crate) fn find_user_row(
    c: &mut DbConnection,
    id_or_user_name: &str,
) -> StoreResult<Option<Row>> {
    if let Some(row) = load_row(c, ResourceKind::User, id_or_user_name)? {
        return Ok(Some(row));
    }
    find_user_row_by_name(c, id_or_user_name)
}

/// The row of the User whose userName equals `user_name` case-insensitively.
pub(crate) fn find_user_row_by_name(
    c: &mut DbConnection,
    user_name: &str,
) -> StoreResult<Option<Row>> {
    let mut q = Sql::<RowSt>::new(
        "SELECT id, doc, created, last_modified, version FROM resources WHERE resource_type = 'User' \
         AND user_name_folded = ",
    );
    q.text(fold(user_name));
    Ok(q.get_result::<Row>(c).optional()?)
}

/// A User's row and its groups (direct and indirect). The row comes with whether the user is a
/// member of anything, and only then does the recursive group walk run: its temporary tables
/// (the walk's queue, the UNION's and GROUP BY's) cost more than reading the row, and a user in
/// no group needs none of them. The walk reads a snapshot a moment later than the row; `groups`
/// is not part of the user's version, so the answer is one a read a moment later could give.
fn load_user_with_groups(
    c: &mut DbConnection,
    id: &str,
) -> StoreResult<Option<(Row, Vec<GroupRef>)>> {
    let mut q = Sql::<(Text, Text, Text, Text, BigInt, diesel::sql_types::Bool)>::new(
        "SELECT id, doc, created, last_modified, version, \
         EXISTS (SELECT 1 FROM group_members WHERE member_id = resources.id) \
         FROM resources WHERE id = ",
    );
    q.text(id).push(" AND resource_type = 'User'");
    let Some((uid, doc, created, lm, version, member)) = q
        .get_result::<(String, String, String, String, i64, bool)>(c)
        .optional()?
    else {
        return Ok(None);
    };
    let groups = if member {
        load_groups(c, std::slice::from_ref(&uid))?
            .remove(&uid)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(Some(((uid, doc, created, lm, version), groups)))
}

/// Loads rows by id, in the order given (missing ids are skipped).
pub(crate) fn load_rows(
    c: &mut DbConnection,
    kind: ResourceKind,
    ids: &[String],
) -> StoreResult<Vec<Row>> {
    let mut by_id: HashMap<String, Row> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let mut q = Sql::<RowSt>::new(
            "SELECT id, doc, created, last_modified, version FROM resources WHERE id IN (",
        );
        q.text_list(chunk.iter().map(String::as_str))
            .push(") AND resource_type = ")
            .push(kind.sql_literal());
        for row in q.load::<Row>(c)? {
            by_id.insert(row.0.clone(), row);
        }
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

fn insert_resource(
    c: &mut DbConnection,
    kind: ResourceKind,
    id: &str,
    doc: &str,
    x: &Extracted,
    client: &str,
    now: &str,
) -> StoreResult<()> {
    let mut q = Sql::<()>::new(
        "INSERT INTO resources (id, resource_type, doc, user_name_folded, display_name, display_name_folded, \
         external_id, external_id_client, active, employee_number_folded, manager_value_folded, created, \
         last_modified, version) VALUES (",
    );
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
    q.execute(c)?;
    Ok(())
}

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
) -> StoreResult<()> {
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
    Ok(())
}

fn insert_values(c: &mut DbConnection, id: &str, x: &Extracted) -> StoreResult<()> {
    if x.emails.is_empty() {
        return Ok(());
    }
    let mut q = Sql::<()>::new(
        "INSERT INTO resource_values (resource_id, attr, type_folded, value_folded) VALUES ",
    );
    for (i, (t, v)) in x.emails.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push("(").text(id).push(", 'emails', ");
        q.bind(Bind::OptText(t.clone())).push(", ");
        q.bind(Bind::OptText(v.clone())).push(")");
    }
    q.execute(c)?;
    Ok(())
}

/// Checks that the members exist and inserts them (existing memberships are left alone).
/// Returns the member rows actually inserted.
fn add_members(
    c: &mut DbConnection,
    group_id: &str,
    members: &[NewMember],
) -> StoreResult<Vec<MemberRow>> {
    let mut seen = HashSet::new();
    let members: Vec<&NewMember> = members
        .iter()
        .filter(|m| seen.insert(m.value.as_str()))
        .collect();
    // Existence and real type of each member, in one query per chunk.
    let mut found: HashMap<String, (String, Option<String>)> =
        HashMap::with_capacity(members.len());
    for chunk in members.chunks(CHUNK) {
        let mut q = Sql::<(Text, Text, Nullable<Text>)>::new(
            "SELECT id, resource_type, display_name FROM resources WHERE id IN (",
        );
        q.text_list(chunk.iter().map(|m| m.value.as_str()))
            .push(")");
        for (id, rtype, display) in q.load::<(String, String, Option<String>)>(c)? {
            found.insert(id, (rtype, display));
        }
    }
    let unknown: Vec<String> = members
        .iter()
        .filter(|m| !found.contains_key(&m.value))
        .map(|m| m.value.clone())
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::UnknownMembers(unknown));
    }
    let rows: Vec<MemberRow> = members
        .iter()
        .map(|m| {
            let (rtype, display) = &found[&m.value];
            (
                m.value.clone(),
                rtype.clone(),
                m.display.clone().or_else(|| display.clone()),
            )
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
            .text(row.0.as_str())
            .push(", ")
            .text(row.1.as_str())
            .push(", ");
        q.bind(Bind::OptText(row.2.clone()))
            .push(") ON CONFLICT (group_id, member_id) DO NOTHING");
        if q.execute(c)? > 0 {
            inserted.push(row);
        }
    }
    Ok(inserted)
}

/// Replaces a group's member set by the difference to the current one.
/// Returns the new member rows, the ids added and the removal.
fn replace_members(
    c: &mut DbConnection,
    group_id: &str,
    new_members: &[NewMember],
) -> StoreResult<(Vec<MemberRow>, Vec<String>, MemberRemoval)> {
    let current = load_members(c, &[group_id.to_string()])?
        .remove(group_id)
        .unwrap_or_default();
    let wanted: HashSet<&str> = new_members.iter().map(|m| m.value.as_str()).collect();
    let have: HashSet<&str> = current.iter().map(|m| m.0.as_str()).collect();
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
    let added_ids = added.iter().map(|m| m.0.clone()).collect();
    let rows = load_members(c, &[group_id.to_string()])?
        .remove(group_id)
        .unwrap_or_default();
    Ok((rows, added_ids, removal))
}

/// Members of each group in `group_ids`, in member-id order.
pub(crate) fn load_members(
    c: &mut DbConnection,
    group_ids: &[String],
) -> StoreResult<HashMap<String, Vec<MemberRow>>> {
    let mut out: HashMap<String, Vec<MemberRow>> = HashMap::new();
    for chunk in group_ids.chunks(CHUNK) {
        let mut q = Sql::<(Text, Text, Text, Nullable<Text>)>::new(
            "SELECT group_id, member_id, member_type, display FROM group_members WHERE group_id IN (",
        );
        q.text_list(chunk.iter().map(String::as_str))
            .push(") ORDER BY group_id, member_id");
        for (gid, mid, mtype, display) in q.load::<(String, String, String, Option<String>)>(c)? {
            out.entry(gid).or_default().push((mid, mtype, display));
        }
    }
    Ok(out)
}

/// The groups of each user in `user_ids`, direct and indirect (through nested groups), in one
/// recursive query per chunk. `UNION` (not `UNION ALL`) makes cycles terminate. `CROSS JOIN`
/// pins the join order (SQLite honours it; PostgreSQL treats it as a plain join): without it the
/// bundled SQLite's planner scanned all of `resources` for every user, since it cannot know the
/// ancestor set is tiny — get-by-id fell to ~150/s at 100,000 users.
pub(crate) fn load_groups(
    c: &mut DbConnection,
    user_ids: &[String],
) -> StoreResult<HashMap<String, Vec<GroupRef>>> {
    let mut out: HashMap<String, Vec<GroupRef>> = HashMap::new();
    for chunk in user_ids.chunks(CHUNK) {
        let mut q = Sql::<(Text, Text, Nullable<Text>, Integer)>::new(
            "WITH RECURSIVE anc(root, gid, direct) AS (\
             SELECT member_id, group_id, 1 FROM group_members WHERE member_id IN (",
        );
        q.text_list(chunk.iter().map(String::as_str)).push(
            ") UNION SELECT anc.root, gm.group_id, 0 FROM anc CROSS JOIN group_members gm WHERE gm.member_id = anc.gid) \
             SELECT anc.root, r.id, r.display_name, MAX(anc.direct) FROM anc CROSS JOIN resources r WHERE r.id = anc.gid \
             GROUP BY anc.root, r.id, r.display_name ORDER BY anc.root, r.id",
        );
        for (root, gid, display, direct) in q.load::<(String, String, Option<String>, i32)>(c)? {
            out.entry(root)
                .or_default()
                .push((gid, display, direct != 0));
        }
    }
    Ok(out)
}
