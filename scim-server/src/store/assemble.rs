//! From row to response: the `resources` row as read ([`ResourceRow`]), the resource before its
//! document is built ([`LoadedResource`]), and the document the API returns
//! ([`StoredResource`]: `id`, the stored attributes, `meta`, Group `members` or User `groups`).

use diesel::sql_types::{BigInt, Text};
use diesel::Queryable;
use scim_schema::json::remove_ci;
use serde_json::{json, Value};

use super::members::MemberRow;
use super::users::GroupRef;
use super::{fmt_ts, parse_ts, Doc, ResourceKind, Store, StoredResource};
use crate::error::{HubError, HubResult};

/// The SQL types of [`ResourceRow`].
pub(crate) type ResourceRowSt = (Text, Text, Text, Text, BigInt);

/// A `resources` row as read: `SELECT id, doc, created, last_modified, version`.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub(crate) struct ResourceRow {
    pub id: String,
    /// The stored document, JSON text (no `id`, `meta`, `members` or `groups`).
    pub doc: String,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

pub(super) fn parse_doc(s: &str) -> HubResult<Doc> {
    serde_json::from_str(s)
        .map_err(|e| HubError::Backend(format!("stored document is not JSON: {e}")))
}

/// A stored timestamp, parsed.
pub(super) fn ts(s: &str) -> HubResult<chrono::DateTime<chrono::Utc>> {
    parse_ts(s).ok_or_else(|| HubError::Backend(format!("stored timestamp {s:?} is not RFC 3339")))
}

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
        row: ResourceRow,
        members: Option<Vec<MemberRow>>,
        groups: Option<Vec<GroupRef>>,
    ) -> Self {
        LoadedResource {
            kind,
            id: row.id,
            doc: row.doc,
            created: row.created,
            last_modified: row.last_modified,
            version: row.version,
            members,
            groups,
        }
    }

    /// The weak ETag of this representation ([`super::resource_etag`]).
    pub fn etag(&self) -> String {
        super::resource_etag(self.version, self.groups_digest())
    }

    /// [`super::groups_digest`] of the User groups loaded with it.
    pub fn groups_digest(&self) -> Option<u64> {
        super::groups_digest(self.groups.as_deref())
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
        let row = ResourceRow {
            id: r.id,
            doc: r.doc,
            created: r.created,
            last_modified: r.last_modified,
            version: r.version,
        };
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
        row: ResourceRow,
        members: Option<&[MemberRow]>,
        groups: Option<&[GroupRef]>,
    ) -> StoredResource {
        let stored = parse_doc(&row.doc).unwrap_or_default();
        self.assemble_doc(
            kind,
            row.id,
            stored,
            &row.created,
            &row.last_modified,
            row.version,
            members,
            groups,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn assemble_doc(
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
                .map(|member| {
                    let (mid, mtype, display) =
                        (&member.member_id, &member.member_type, &member.display);
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
                    .map(|group| {
                        let (gid, display, direct) =
                            (&group.group_id, &group.display, group.direct);
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
                            Value::String(if direct { "direct" } else { "indirect" }.into()),
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
        let digest = super::groups_digest(groups);
        meta.insert(
            "version".into(),
            json!(super::resource_etag(version, digest)),
        );
        doc.insert("meta".into(), Value::Object(meta));
        StoredResource {
            kind,
            id,
            version,
            created: parse_ts(created).unwrap_or_default(),
            last_modified: parse_ts(last_modified).unwrap_or_default(),
            doc,
            groups_digest: digest,
        }
    }

    pub(super) fn with_members(&self, r: StoredResource, rows: &[MemberRow]) -> StoredResource {
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

    pub(super) fn with_groups(&self, r: StoredResource, groups: &[GroupRef]) -> StoredResource {
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
}

/// The stored part of an assembled document (without id, meta, members, groups).
pub(super) fn stored_part(mut doc: Doc) -> Doc {
    for k in ["id", "meta", "members", "groups"] {
        remove_ci(&mut doc, k);
    }
    doc
}
