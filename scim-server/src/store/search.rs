//! Search: filter push-down, sorting, offset and cursor paging.
//!
//! A filter is translated to SQL by a fold over it ([`scim_schema::filter::fold`], implemented
//! by `Translator`) where its attributes have columns (see `Translator::column`):
//! `id`, `externalId`, `displayName`, `meta.created`, `meta.lastModified`, and for Users
//! `userName`, `active`, `emails.value`/`emails.type` (and `emails[...]` value paths), enterprise
//! `employeeNumber` and `manager.value`; for Groups `members.value` (and `members[value ...]`).
//! Every value is a bind parameter; LIKE patterns escape `\`, `%` and `_`. Each translated
//! comparison is two-valued (never SQL NULL), so `not (...)` means what it means in memory.
//!
//! A part that cannot be translated is replaced by TRUE inside `and`; an `or`/`not` containing one
//! becomes TRUE as a whole. When the translation is exact, SQL does everything (count, order,
//! LIMIT/OFFSET or keyset). Otherwise the narrowed candidate set is read in batches of
//! [`BATCH`] rows in id order, evaluated in memory, and only the matching (sort key, id) pairs are
//! kept, so totals are exact without loading the table at once. Sorting by an attribute without a
//! column is done the same way, over the filtered set only.
//!
//! Ordering: NULLs sort first ascending and last descending, ties broken by id. Cursors
//! (RFC 9865) are opaque: base64 of the last sort key and id (keyset, as cheap at page 10,000 as
//! at page 1) or, for in-memory orderings, of an offset.

use std::collections::HashMap;

use base64::Engine;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};
use scim_schema::filter::fold::{fold, FilterFold};
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter};
use scim_schema::schema::ResourceSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::assemble::{ResourceRow, ResourceRowSt};
use super::columns::{case_fold, ENTERPRISE_URN};
use super::in_memory_filter::{self, SortKey};
use super::members::load_members;
use super::ranks::Seek;
use super::resources::load_rows;
use super::sql::{Bind, Sql};
use super::users::load_groups;
use super::{
    fmt_ts, parse_ts, DbConnection, LoadedResource, ResourceKind, Store, StoreError, StoreResult,
    StoredResource,
};

/// Rows read per batch when evaluating in memory.
pub const BATCH: i64 = 1000;

/// A search request, already validated by the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based; values below 1 count as 1. Ignored when `cursor` is set.
    pub start_index: u64,
    /// Page size; 0 returns only `total_results`.
    pub count: u64,
    /// RFC 9865: `Some("")` asks for the first page with cursor paging; `Some(c)` continues.
    pub cursor: Option<String>,
    /// Include Group `members` / User `groups` in the documents.
    pub with_members: bool,
}

impl SearchQuery {
    /// Whether this is a lookup that one index answers in a bounded number of rows: `eq` or `sw`
    /// on `id`, `userName`, `externalId` or `displayName`, in the default order, one page of at
    /// most 1,000 — how Okta and Entra look users up before they create them.
    pub fn is_index_lookup(&self) -> bool {
        let Some(Filter::Compare {
            path,
            op: CompareOp::Eq | CompareOp::Sw,
            value: CompValue::Str(_),
        }) = &self.filter
        else {
            return false;
        };
        path.urn.is_none()
            && path.sub_attr.is_none()
            && ["id", "userName", "externalId", "displayName"]
                .iter()
                .any(|n| path.name.eq_str(n))
            && self.sort_by.is_none()
            && self.cursor.is_none()
            && self.start_index <= 1
            && self.count <= 1000
    }
}

/// One page of results: assembled documents ([`StoredResource`], the default) or rows as loaded
/// ([`LoadedResource`], for renderers that write JSON without building documents).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<R = StoredResource> {
    pub total_results: u64,
    pub start_index: u64,
    pub resources: Vec<R>,
    /// Set when cursor paging was requested and more results follow.
    pub next_cursor: Option<String>,
    /// Set for cursor paging past the first page, when it can be computed (in-memory orderings).
    pub previous_cursor: Option<String>,
}

impl<R> Page<R> {
    /// A page without resources (`count=0`, or a start past the end).
    fn empty(total_results: u64, start_index: u64) -> Self {
        Page {
            total_results,
            start_index,
            resources: Vec::new(),
            next_cursor: None,
            previous_cursor: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColType {
    /// Text compared as stored (caseExact).
    Exact,
    /// Text stored lower-cased; values are folded before comparing.
    Folded,
    Bool,
    /// Fixed-width RFC 3339 UTC text.
    Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A column of `resources`.
    Col(&'static str, ColType),
    /// A column of `resource_values v` for attribute `attr`.
    Value(&'static str, &'static str, ColType),
    /// `group_members gm.member_id`.
    Member,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Resource,
    Emails,
    Members,
}

struct Translator<'a> {
    kind: ResourceKind,
    schema: &'a ResourceSchema,
}

fn urn_ok(urn: Option<&scim_schema::CiString>, expected: &str) -> bool {
    urn.map(|u| u.eq_str(expected)).unwrap_or(true)
}

impl Translator<'_> {
    /// The case-exactness the schema declares for `path`, when it declares one.
    fn case_exact(&self, path: &AttrPath) -> Option<bool> {
        self.schema.lookup(path).map(|d| d.case_exact)
    }

    /// The column for `path` in `scope`, when the store has one whose folding matches the
    /// attribute's caseExact.
    fn column(&self, path: &AttrPath, scope: Scope) -> Option<Target> {
        let name = path.name.as_str();
        let sub = path.sub_attr.as_ref().map(|s| s.as_str());
        let is = |a: &str| name.eq_ignore_ascii_case(a);
        let sub_is = |a: &str| sub.map(|s| s.eq_ignore_ascii_case(a)).unwrap_or(false);
        match scope {
            Scope::Emails => {
                return match (sub, name) {
                    (None, n) if n.eq_ignore_ascii_case("value") => {
                        Some(Target::Value("emails", "v.value_folded", ColType::Folded))
                    }
                    (None, n) if n.eq_ignore_ascii_case("type") => {
                        Some(Target::Value("emails", "v.type_folded", ColType::Folded))
                    }
                    _ => None,
                };
            }
            Scope::Members => return (sub.is_none() && is("value")).then_some(Target::Member),
            Scope::Resource => {}
        }
        let main = self.schema.main.id.as_str();
        let core = urn_ok(path.urn.as_ref(), main);
        let t = match self.kind {
            _ if core && is("id") && sub.is_none() => Target::Col("id", ColType::Exact),
            _ if core && is("externalId") && sub.is_none() => {
                Target::Col("external_id", ColType::Exact)
            }
            _ if core && is("displayName") && sub.is_none() => {
                Target::Col("display_name_folded", ColType::Folded)
            }
            _ if core && is("meta") && sub_is("created") => {
                return Some(Target::Col("created", ColType::Time))
            }
            _ if core && is("meta") && sub_is("lastModified") => {
                return Some(Target::Col("last_modified", ColType::Time))
            }
            ResourceKind::User if core && is("userName") && sub.is_none() => {
                Target::Col("user_name_folded", ColType::Folded)
            }
            ResourceKind::User if core && is("active") && sub.is_none() => {
                Target::Col("active", ColType::Bool)
            }
            ResourceKind::User if core && is("emails") && sub_is("value") => {
                Target::Value("emails", "v.value_folded", ColType::Folded)
            }
            ResourceKind::User if core && is("emails") && sub_is("type") => {
                Target::Value("emails", "v.type_folded", ColType::Folded)
            }
            ResourceKind::User
                if urn_ok(path.urn.as_ref(), ENTERPRISE_URN)
                    && is("employeeNumber")
                    && sub.is_none() =>
            {
                Target::Col("employee_number_folded", ColType::Folded)
            }
            ResourceKind::User
                if urn_ok(path.urn.as_ref(), ENTERPRISE_URN)
                    && is("manager")
                    && sub_is("value") =>
            {
                Target::Col("manager_value_folded", ColType::Folded)
            }
            ResourceKind::Group if core && is("members") && sub_is("value") => Target::Member,
            _ => return None,
        };
        // The column's folding must agree with the attribute's declared caseExact.
        let ty = match t {
            Target::Col(_, ty) | Target::Value(_, _, ty) => ty,
            Target::Member => ColType::Exact,
        };
        match (ty, self.case_exact(path)) {
            (ColType::Folded, Some(true)) => None,
            (ColType::Exact, Some(false)) if !is("id") => None,
            _ => Some(t),
        }
    }

    /// The scope a leaf is in: the resource itself at the top level, or the child table of the
    /// value path around it (`emails[...]` for Users, `members[...]` for Groups). `None` for a
    /// value path the store has no child table for.
    fn scope_of(&self, value_path: Option<&AttrPath>) -> Option<Scope> {
        match value_path {
            None => Some(Scope::Resource),
            Some(p) => match self.kind {
                ResourceKind::User if p.name.eq_str("emails") => Some(Scope::Emails),
                ResourceKind::Group if p.name.eq_str("members") => Some(Scope::Members),
                _ => None,
            },
        }
    }

    /// A comparison (`Some((op, value))`) or presence test (`None`) on one path.
    fn leaf(
        &self,
        path: &AttrPath,
        cmp: Option<(CompareOp, &CompValue)>,
        scope: Scope,
    ) -> Option<Sql> {
        let target = self.column(path, scope)?;
        let (col, ty, child) = match target {
            Target::Col(c, ty) => (c, ty, None),
            Target::Value(attr, c, ty) if scope == Scope::Resource => {
                (c, ty, Some(Scope::Emails).filter(|_| attr == "emails"))
            }
            Target::Value(_, c, ty) => (c, ty, None),
            Target::Member if scope == Scope::Resource => {
                ("gm.member_id", ColType::Exact, Some(Scope::Members))
            }
            Target::Member => ("gm.member_id", ColType::Exact, None),
        };
        // `ne` on a child table is NOT EXISTS(eq), matching "no value equals".
        let (negate, cmp) = match cmp {
            Some((CompareOp::Ne, v)) if child.is_some() => (true, Some((CompareOp::Eq, v))),
            other => (false, other),
        };
        let cond = condition(col, ty, cmp)?;
        let out = match child {
            None => cond,
            Some(child_scope) => exists(child_scope, &cond),
        };
        if negate {
            let mut s = Sql::new("(NOT ");
            s.append(&out).push(")");
            Some(s)
        } else {
            Some(out)
        }
    }
}

/// The translation of a filter (or part of one).
struct Pushdown {
    /// The SQL condition; `None` means TRUE (nothing pushed down).
    sql: Option<Sql>,
    /// Whether `sql` is the whole filter (no in-memory check needed).
    exact: bool,
    /// Whether a value path is inside: value paths do not nest, so one around it is not pushed
    /// down (the parser refuses nested ones; this keeps a hand-built filter from being pushed).
    has_value_path: bool,
}

impl Pushdown {
    fn exact(sql: Option<Sql>) -> Pushdown {
        match sql {
            Some(s) => Pushdown {
                sql: Some(s),
                exact: true,
                has_value_path: false,
            },
            None => Pushdown::none(false),
        }
    }

    /// Nothing pushed down: everything is checked in memory.
    fn none(has_value_path: bool) -> Pushdown {
        Pushdown {
            sql: None,
            exact: false,
            has_value_path,
        }
    }
}

/// The SQL translator is a fold over the filter (`scim_schema::filter::fold`): leaves become
/// column conditions, `and` keeps whichever halves translate, `or` and `not` only when theirs
/// are exact, a value path becomes `EXISTS` over its child table.
impl FilterFold for Translator<'_> {
    type Output = Pushdown;

    fn compare(
        &mut self,
        scope: Option<&AttrPath>,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Pushdown {
        match self.scope_of(scope) {
            Some(scope) => Pushdown::exact(self.leaf(path, Some((op, value)), scope)),
            None => Pushdown::none(false),
        }
    }

    fn present(&mut self, scope: Option<&AttrPath>, path: &AttrPath) -> Pushdown {
        match self.scope_of(scope) {
            Some(scope) => Pushdown::exact(self.leaf(path, None, scope)),
            None => Pushdown::none(false),
        }
    }

    fn and(&mut self, a: Pushdown, b: Pushdown) -> Pushdown {
        let sql = match (a.sql, b.sql) {
            (Some(x), Some(y)) => {
                let mut s = Sql::new("(");
                s.append(&x).push(" AND ").append(&y).push(")");
                Some(s)
            }
            (Some(x), None) | (None, Some(x)) => Some(x),
            (None, None) => None,
        };
        Pushdown {
            sql,
            exact: a.exact && b.exact,
            has_value_path: a.has_value_path || b.has_value_path,
        }
    }

    fn or(&mut self, a: Pushdown, b: Pushdown) -> Pushdown {
        let has_value_path = a.has_value_path || b.has_value_path;
        match (a.sql, b.sql) {
            (Some(x), Some(y)) => {
                let mut s = Sql::new("(");
                s.append(&x).push(" OR ").append(&y).push(")");
                Pushdown {
                    sql: Some(s),
                    exact: a.exact && b.exact,
                    has_value_path,
                }
            }
            _ => Pushdown::none(has_value_path),
        }
    }

    fn not(&mut self, inner: Pushdown) -> Pushdown {
        match inner {
            Pushdown {
                sql: Some(x),
                exact: true,
                has_value_path,
            } => {
                let mut s = Sql::new("(NOT ");
                s.append(&x).push(")");
                Pushdown {
                    sql: Some(s),
                    exact: true,
                    has_value_path,
                }
            }
            other => Pushdown::none(other.has_value_path),
        }
    }

    fn value_path(&mut self, path: &AttrPath, inner: Pushdown) -> Pushdown {
        if inner.has_value_path || path.sub_attr.is_some() {
            return Pushdown::none(true);
        }
        let main = self.schema.main.id.as_str();
        if !urn_ok(path.urn.as_ref(), main) {
            return Pushdown::none(true);
        }
        let Some(inner_scope) = self.scope_of(Some(path)) else {
            return Pushdown::none(true);
        };
        match inner {
            Pushdown {
                sql: Some(sql),
                exact: true,
                ..
            } => Pushdown {
                sql: Some(exists(inner_scope, &sql)),
                exact: true,
                has_value_path: true,
            },
            _ => Pushdown::none(true),
        }
    }
}

/// `EXISTS (SELECT 1 FROM <child> WHERE <link> AND cond)`.
fn exists(scope: Scope, cond: &Sql) -> Sql {
    let mut s = match scope {
        Scope::Emails => Sql::new(
            "EXISTS (SELECT 1 FROM resource_values v WHERE v.resource_id = resources.id AND v.attr = 'emails' AND ",
        ),
        _ => Sql::new("EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = resources.id AND "),
    };
    s.append(cond).push(")");
    s
}

/// Escapes LIKE wildcards (escape character `\`).
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for ch in s.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The least string greater than every string starting with `prefix` (byte order), if any.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        while next <= char::MAX as u32 {
            if let Some(c) = char::from_u32(next) {
                chars.push(c);
                return Some(chars.into_iter().collect());
            }
            next += 1;
        }
    }
    None
}

/// The two-valued SQL condition for one column.
fn condition(col: &str, ty: ColType, cmp: Option<(CompareOp, &CompValue)>) -> Option<Sql> {
    let mut s = Sql::new("(");
    s.push(col).push(" IS NOT NULL");
    let Some((op, value)) = cmp else {
        if matches!(ty, ColType::Exact | ColType::Folded) {
            s.push(" AND ").push(col).push(" <> ''");
        }
        s.push(")");
        return Some(s);
    };
    let cmp_sql = |op: CompareOp| match op {
        CompareOp::Eq | CompareOp::Ne => " = ",
        CompareOp::Gt => " > ",
        CompareOp::Ge => " >= ",
        CompareOp::Lt => " < ",
        CompareOp::Le => " <= ",
        _ => "",
    };
    let (op, negate) = if op == CompareOp::Ne {
        (CompareOp::Eq, true)
    } else {
        (op, false)
    };
    match (ty, value) {
        (ColType::Bool, CompValue::Bool(b)) if op == CompareOp::Eq => {
            s.push(" AND ").push(col).push(" = ").bind(Bind::Bool(*b));
        }
        (ColType::Time, CompValue::Str(v))
            if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) =>
        {
            let t = fmt_ts(parse_ts(v)?);
            s.push(" AND ").push(col).push(cmp_sql(op)).text(t);
        }
        (ColType::Exact | ColType::Folded, CompValue::Str(v)) => {
            let v = if ty == ColType::Folded {
                case_fold(v)
            } else {
                v.clone()
            };
            match op {
                CompareOp::Co => {
                    s.push(" AND ")
                        .push(col)
                        .push(" LIKE ")
                        .text(format!("%{}%", like_escape(&v)))
                        .push(" ESCAPE '\\'");
                }
                CompareOp::Ew => {
                    s.push(" AND ")
                        .push(col)
                        .push(" LIKE ")
                        .text(format!("%{}", like_escape(&v)))
                        .push(" ESCAPE '\\'");
                }
                CompareOp::Sw => match prefix_upper_bound(&v) {
                    // A range uses the index on both backends (LIKE with ESCAPE does not on SQLite).
                    Some(upper) => {
                        s.push(" AND ").push(col).push(" >= ").text(v);
                        s.push(" AND ").push(col).push(" < ").text(upper);
                    }
                    None if v.is_empty() => {}
                    None => {
                        s.push(" AND ")
                            .push(col)
                            .push(" LIKE ")
                            .text(format!("{}%", like_escape(&v)))
                            .push(" ESCAPE '\\'");
                    }
                },
                _ => {
                    s.push(" AND ").push(col).push(cmp_sql(op)).text(v);
                }
            }
        }
        _ => return None,
    }
    s.push(")");
    if negate {
        let mut n = Sql::new("(NOT ");
        n.append(&s).push(")");
        Some(n)
    } else {
        Some(s)
    }
}

/// A sort that SQL can do: the column (NOT NULL columns need no NULL handling).
fn sort_column(
    kind: ResourceKind,
    path: &AttrPath,
    schema: &ResourceSchema,
) -> Option<&'static str> {
    let t = Translator { kind, schema };
    match t.column(path, Scope::Resource)? {
        Target::Col(
            c @ ("id"
            | "user_name_folded"
            | "display_name_folded"
            | "external_id"
            | "created"
            | "last_modified"),
            _,
        ) => Some(c),
        _ => None,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// Query signature: a cursor only continues the query it came from.
    s: String,
    /// Keyset: last sort key (absent = NULL) and id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    i: Option<String>,
    /// In-memory ordering: offset (0-based) of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<u64>,
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(s: &str, sig: &str) -> StoreResult<Cursor> {
    let bad = || {
        StoreError::Scim(scim_schema::Error::InvalidValue(
            "invalid or expired cursor".into(),
        ))
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.s != sig {
        return Err(bad());
    }
    Ok(c)
}

fn signature(kind: ResourceKind, q: &SearchQuery) -> String {
    let mut h = sha2::Sha256::new();
    h.update(format!(
        "{kind}|{:?}|{:?}|{}",
        q.filter, q.sort_by, q.descending
    ));
    hex::encode(&h.finalize()[..6])
}

type SortRowSt = (Text, Text, Text, Text, BigInt, Nullable<Text>);

/// A page row read with its sort key: `id, doc, created, last_modified, version, <sort column>`.
#[derive(Queryable)]
struct SortRow {
    id: String,
    doc: String,
    created: String,
    last_modified: String,
    version: i64,
    sort_key: Option<String>,
}

impl SortRow {
    fn into_row(self) -> ResourceRow {
        ResourceRow {
            id: self.id,
            doc: self.doc,
            created: self.created,
            last_modified: self.last_modified,
            version: self.version,
        }
    }
}

impl Store {
    /// Searches resources of `kind` (see the module docs for what runs where).
    pub fn search(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> StoreResult<Page> {
        let page = self.search_loaded(kind, q, schema)?;
        Ok(Page {
            total_results: page.total_results,
            start_index: page.start_index,
            resources: page
                .resources
                .into_iter()
                .map(|r| self.assemble_loaded(r))
                .collect(),
            next_cursor: page.next_cursor,
            previous_cursor: page.previous_cursor,
        })
    }

    /// [`Store::search`] without assembling documents.
    pub fn search_loaded(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> StoreResult<Page<LoadedResource>> {
        let mut conn = self.read_conn()?;
        self.search_loaded_in(&mut conn, kind, q, schema)
    }

    /// [`Store::search_loaded`] on a reader connection that is idle right now, or `None` at
    /// once when there is none (see [`Store::try_get_loaded`]).
    pub fn try_search_loaded(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> Option<StoreResult<Page<LoadedResource>>> {
        let mut conn = self.try_read_conn()?;
        Some(self.search_loaded_in(&mut conn, kind, q, schema))
    }

    fn search_loaded_in(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> StoreResult<Page<LoadedResource>> {
        let mut tr = Translator { kind, schema };
        let (frag, exact) = match &q.filter {
            Some(f) => {
                let pushed = fold(&mut tr, f);
                (pushed.sql, pushed.exact)
            }
            None => (None, true),
        };
        let mut base = Sql::new(" FROM resources WHERE resources.resource_type = ");
        base.push(kind.sql_literal());
        if let Some(f) = &frag {
            base.push(" AND ").append(f);
        }
        let sort_col = match &q.sort_by {
            None => Some("id"),
            Some(p) => sort_column(kind, p, schema),
        };
        let sig = signature(kind, q);
        match sort_col {
            Some(col) if exact => self.search_sql(c, kind, q, &base, col, &sig),
            _ => self.search_memory(c, kind, q, schema, &base, exact, &sig),
        }
    }

    fn search_sql(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        q: &SearchQuery,
        base: &Sql,
        col: &'static str,
        sig: &str,
    ) -> StoreResult<Page<LoadedResource>> {
        let start_index = q.start_index.max(1);
        if q.count == 0 {
            return Ok(Page::empty(self.count_of(c, kind, q, base)?, start_index));
        }
        let sort_expr = if col == "id" { "NULL" } else { col };
        let mut page = Sql::<SortRowSt>::new("SELECT id, doc, created, last_modified, version, ");
        page.push(sort_expr).append(base);
        let asc = !q.descending;
        let cursor = match q.cursor.as_deref() {
            Some("") | None => None,
            Some(s) => Some(decode_cursor(s, sig)?),
        };
        if let Some(cur) = &cursor {
            let Some(id) = &cur.i else {
                return Err(
                    scim_schema::Error::InvalidValue("invalid or expired cursor".into()).into(),
                );
            };
            page.push(" AND ");
            keyset(&mut page, col, cur.k.as_deref(), id, asc);
        }
        // An index page deep in the default (id) order seeks to its first id instead of
        // stepping over the rows before it.
        let mut offset_rows = if q.cursor.is_none() {
            start_index - 1
        } else {
            0
        };
        if offset_rows > 0 && col == "id" && q.filter.is_none() {
            if let Some(ranks) = self.id_ranks() {
                match ranks.seek(c, kind, offset_rows, !asc)? {
                    Seek::From(first) => {
                        page.push(if asc { " AND id >= " } else { " AND id <= " })
                            .text(&first);
                        offset_rows = 0;
                    }
                    Seek::PastEnd => {
                        return Ok(Page::empty(self.count_of(c, kind, q, base)?, start_index))
                    }
                    Seek::Unavailable => {}
                }
            }
        }
        // NULLs first ascending, last descending (ties by id).
        if col == "id" {
            page.push(if asc {
                " ORDER BY id ASC"
            } else {
                " ORDER BY id DESC"
            });
        } else if asc {
            page.push(" ORDER BY ")
                .push(col)
                .push(" ASC NULLS FIRST, id ASC");
        } else {
            page.push(" ORDER BY ")
                .push(col)
                .push(" DESC NULLS LAST, id DESC");
        }
        page.limit(q.count as i64 + 1);
        if offset_rows > 0 {
            page.push(" OFFSET ").int(offset_rows as i64);
        }
        let mut rows: Vec<SortRow> = page.load(c)?;
        let more = rows.len() as u64 > q.count;
        rows.truncate(q.count as usize);
        // An index page that ends before `count` ran out of matches: the total follows from
        // where it started, and the (often dearer) COUNT(*) is not needed. This is the common
        // case for `userName eq` and `sw` lookups.
        // (A cursor continuation starts after an unknown number of rows; a first cursor page,
        // `cursor=""`, starts at the beginning whatever startIndex says.)
        let offset = if q.cursor.is_none() {
            start_index - 1
        } else {
            0
        };
        let total = if cursor.is_none() && !more && (!rows.is_empty() || offset == 0) {
            offset + rows.len() as u64
        } else {
            self.count_of(c, kind, q, base)?
        };
        let next_cursor = match (&q.cursor, more, rows.last()) {
            (Some(_), true, Some(last)) => Some(encode_cursor(&Cursor {
                s: sig.to_string(),
                k: if col == "id" {
                    Some(last.id.clone())
                } else {
                    last.sort_key.clone()
                },
                i: Some(last.id.clone()),
                o: None,
            })),
            _ => None,
        };
        let rows: Vec<ResourceRow> = rows.into_iter().map(SortRow::into_row).collect();
        let resources = self.page_loaded(c, kind, rows, q.with_members)?;
        Ok(Page {
            total_results: total,
            start_index,
            resources,
            next_cursor,
            previous_cursor: None,
        })
    }

    /// The number of matches: from the per-type cache for unfiltered lists on SQLite,
    /// otherwise `COUNT(*)`.
    fn count_of(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        q: &SearchQuery,
        base: &Sql,
    ) -> StoreResult<u64> {
        let cache = self.type_counts().filter(|_| q.filter.is_none());
        if let Some(n) = cache.and_then(|cache| cache.get(kind)) {
            return Ok(n);
        }
        let generation = cache.map(|cache| cache.generation());
        let mut count = Sql::<BigInt>::new("SELECT COUNT(*)");
        count.append(base);
        let n = count.get_result::<i64>(c)?.max(0) as u64;
        if let (Some(cache), Some(generation)) = (cache, generation) {
            cache.put(kind, generation, n);
        }
        Ok(n)
    }

    #[allow(clippy::too_many_arguments)]
    fn search_memory(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
        base: &Sql,
        exact: bool,
        sig: &str,
    ) -> StoreResult<Page<LoadedResource>> {
        let filter = if exact { None } else { q.filter.as_ref() };
        let needs_members = q
            .filter
            .as_ref()
            .map(|f| mentions(f, kind))
            .unwrap_or(false)
            && filter.is_some();
        let sort_by = q.sort_by.as_ref();
        let mut matched: Vec<(SortKey, String)> = Vec::new();
        let mut last_id: Option<String> = None;
        loop {
            let mut batch =
                Sql::<ResourceRowSt>::new("SELECT id, doc, created, last_modified, version");
            batch.append(base);
            if let Some(id) = &last_id {
                batch.push(" AND id > ").text(id.as_str());
            }
            batch.push(" ORDER BY id").limit(BATCH);
            let rows: Vec<ResourceRow> = batch.load(c)?;
            let n = rows.len();
            last_id = rows.last().map(|r| r.id.clone());
            let docs = self.page_resources(c, kind, rows, needs_members)?;
            for r in docs {
                if filter
                    .map(|f| in_memory_filter::matches(f, &r.doc, schema))
                    .unwrap_or(true)
                {
                    let key = sort_by.and_then(|p| in_memory_filter::sort_key(&r.doc, p, schema));
                    matched.push((key, r.id));
                }
            }
            if (n as i64) < BATCH {
                break;
            }
        }
        let desc = q.descending;
        matched.sort_by(|a, b| {
            let o = in_memory_filter::cmp_keys(&a.0, &b.0).then_with(|| a.1.cmp(&b.1));
            if desc {
                o.reverse()
            } else {
                o
            }
        });
        let total = matched.len() as u64;
        let offset = match q.cursor.as_deref() {
            Some("") => 0,
            Some(s) => decode_cursor(s, sig)?.o.ok_or_else(|| {
                StoreError::Scim(scim_schema::Error::InvalidValue(
                    "invalid or expired cursor".into(),
                ))
            })?,
            None => q.start_index.max(1) - 1,
        };
        let start_index = offset + 1;
        if q.count == 0 {
            return Ok(Page::empty(total, start_index));
        }
        let end = offset.saturating_add(q.count).min(total);
        let ids: Vec<String> = matched
            .get(offset.min(total) as usize..end as usize)
            .unwrap_or(&[])
            .iter()
            .map(|m| m.1.clone())
            .collect();
        let rows = load_rows(c, kind, &ids)?;
        let resources = self.page_loaded(c, kind, rows, q.with_members)?;
        let (next_cursor, previous_cursor) = match &q.cursor {
            Some(_) => (
                (end < total).then(|| {
                    encode_cursor(&Cursor {
                        s: sig.to_string(),
                        k: None,
                        i: None,
                        o: Some(end),
                    })
                }),
                (offset > 0).then(|| {
                    encode_cursor(&Cursor {
                        s: sig.to_string(),
                        k: None,
                        i: None,
                        o: Some(offset.saturating_sub(q.count)),
                    })
                }),
            ),
            None => (None, None),
        };
        Ok(Page {
            total_results: total,
            start_index,
            resources,
            next_cursor,
            previous_cursor,
        })
    }

    /// Assembles rows, loading members (Groups) or groups (Users) for the whole page in one query.
    fn page_resources(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        rows: Vec<ResourceRow>,
        with_members: bool,
    ) -> StoreResult<Vec<StoredResource>> {
        Ok(self
            .page_loaded(c, kind, rows, with_members)?
            .into_iter()
            .map(|r| self.assemble_loaded(r))
            .collect())
    }

    /// Rows with members (Groups) or groups (Users) for the whole page, loaded in one query.
    fn page_loaded(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        rows: Vec<ResourceRow>,
        with_members: bool,
    ) -> StoreResult<Vec<LoadedResource>> {
        if !with_members || rows.is_empty() {
            return Ok(rows
                .into_iter()
                .map(|r| LoadedResource::from_row(kind, r, None, None))
                .collect());
        }
        let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
        Ok(match kind {
            ResourceKind::Group => {
                let mut m = load_members(c, &ids)?;
                rows.into_iter()
                    .map(|r| {
                        let members = m.remove(&r.id).unwrap_or_default();
                        LoadedResource::from_row(kind, r, Some(members), None)
                    })
                    .collect()
            }
            ResourceKind::User => {
                let mut g: HashMap<_, _> = load_groups(c, &ids)?;
                rows.into_iter()
                    .map(|r| {
                        let groups = g.remove(&r.id).unwrap_or_default();
                        LoadedResource::from_row(kind, r, None, Some(groups))
                    })
                    .collect()
            }
        })
    }
}

/// The keyset condition "after (key, id)" in the order NULLs-first ascending / NULLs-last
/// descending. Row-value comparisons let both backends use the (type, column, id) index.
fn keyset(s: &mut Sql<SortRowSt>, col: &str, key: Option<&str>, id: &str, asc: bool) {
    if col == "id" {
        s.push(if asc { "id > " } else { "id < " }).text(id);
        return;
    }
    match (key, asc) {
        (None, true) => {
            s.push("((")
                .push(col)
                .push(" IS NULL AND id > ")
                .text(id)
                .push(") OR ")
                .push(col)
                .push(" IS NOT NULL)");
        }
        (None, false) => {
            s.push("(")
                .push(col)
                .push(" IS NULL AND id < ")
                .text(id)
                .push(")");
        }
        (Some(k), true) => {
            s.push("(")
                .push(col)
                .push(", id) > (")
                .text(k)
                .push(", ")
                .text(id)
                .push(")");
        }
        (Some(k), false) => {
            s.push("((")
                .push(col)
                .push(", id) < (")
                .text(k)
                .push(", ")
                .text(id)
                .push(") OR ")
                .push(col)
                .push(" IS NULL)");
        }
    }
}

/// Whether the filter reads Group `members` or User `groups`, which in-memory evaluation then
/// needs in the documents.
fn mentions(f: &Filter, kind: ResourceKind) -> bool {
    let name = match kind {
        ResourceKind::Group => "members",
        ResourceKind::User => "groups",
    };
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => mentions(a, kind) || mentions(b, kind),
        Filter::Not(a) => mentions(a, kind),
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath { path, .. } => {
            path.name.eq_str(name)
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn store_like_escape_and_prefix_bound() {
        assert_eq!(like_escape(r"a%b_c\d"), r"a\%b\_c\\d");
        assert_eq!(prefix_upper_bound("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
    }
}
