//! Search: running a query over one resource type: filter push-down, the in-memory rest,
//! sorting, offset and cursor paging.
//!
//! The filter is translated to SQL where its attributes have columns ([`super::filter_sql`]).
//! When the translation is exact, SQL does everything (count, order, LIMIT/OFFSET or keyset).
//! Otherwise the narrowed candidate set is read in batches of [`BATCH`] rows in id order,
//! evaluated in memory, and only the matching (sort key, id) pairs are kept, so totals are exact
//! without loading the table at once. Sorting by an attribute without a column is done the same
//! way, over the filtered set only.
//!
//! Ordering (RFC 7644 §3.4.2.3): resources without a value sort last ascending and first
//! descending, ties broken by id, in SQL and in memory alike. Cursors
//! (RFC 9865) are opaque: base64 of the last sort key and id (keyset, as cheap at page 10,000 as
//! at page 1) or, for in-memory orderings, of an offset.

use std::collections::HashMap;

use base64::Engine;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::{Queryable, RunQueryDsl};
use scim_schema::filter::fold::{fold, FilterFold};
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter};
use scim_schema::schema::ResourceSchema;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::assemble::{ResourceRow, ResourceRowSt};
use super::filter_sql::{self, sort_column};
use super::in_memory_filter::{self, SortKey};
use super::members::load_members;
use super::pg_ranks::{self, DeepPage, PgIdRanks, Start};
use super::ranks::Seek;
use super::resources::load_rows;
use super::sql::Sql;
use super::users::load_groups;
use super::{DbConnection, LoadedResource, ResourceKind, Store, StoredResource};
use crate::error::{HubError, HubResult};

/// Rows read per batch when evaluating in memory.
pub const BATCH: i64 = 1000;

/// The most rows a search may skip (`startIndex - 1`) and still count as bounded
/// ([`Store::search_is_bounded`]).
pub const BOUNDED_MAX_OFFSET: u64 = 1_000;

/// The most Group members a read may carry and still count as bounded
/// ([`Store::members_within`]).
pub const BOUNDED_MAX_MEMBERS: u64 = 1_000;

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
    /// With `with_members`: the most Group members one page may carry; a page of Groups with
    /// more is refused with `tooMany` before any member is read. `None`: no bound.
    pub max_members: Option<u64>,
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

fn decode_cursor(s: &str, sig: &str) -> HubResult<Cursor> {
    let bad = || {
        HubError::Scim(scim_schema::Error::InvalidCursor(
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

/// A resource the in-memory evaluation kept: what it sorts by, and its id.
struct Match {
    key: SortKey,
    id: String,
}

pub(super) type SortRowSt = (ResourceRowSt, Nullable<Text>, Nullable<Bool>);

/// A page row read with its sort key: `id, doc, created, last_modified, version, <sort column>`,
/// and for a page of Users in id order that wants their groups, whether the user is in any
/// group (else `NULL`).
#[derive(Queryable)]
pub(super) struct SortRow {
    pub row: ResourceRow,
    pub sort_key: Option<String>,
    pub is_member: Option<bool>,
}

impl Store {
    /// Searches resources of `kind` (see the module docs for what runs where).
    pub fn search(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> HubResult<Page> {
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
    ) -> HubResult<Page<LoadedResource>> {
        let mut conn = self.read_conn()?;
        self.search_loaded_in(&mut conn, kind, q, schema)
    }

    /// Whether a search's work is bounded by the page rather than by the table, so that an async
    /// worker may run it itself ([`Store::read_here`]) without stalling its other requests for
    /// long: SQL answers it exactly (no in-memory evaluation, which reads every candidate), its
    /// filter compares only through index ranges (`eq`, `sw`, `gt`, `ge`, `lt`, `le`, `pr`;
    /// `co`, `ew`, `ne` and `not` visit every row of the type), the page starts at most
    /// [`BOUNDED_MAX_OFFSET`] rows in (a cursor, or an unfiltered list in id order once the id
    /// ranks are loaded and usable, which seeks, starts anywhere), and a page of Groups carries
    /// no members. Its total may still count the matches, an index range.
    pub fn search_is_bounded(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> bool {
        let filter_ok = match &q.filter {
            None => true,
            Some(f) => index_ranges_only(f) && filter_sql::translate(kind, schema, f).1,
        };
        let sort_ok = q
            .sort_by
            .as_ref()
            .is_none_or(|p| sort_column(kind, p, schema).is_some());
        let seeks = q.filter.is_none()
            && q.sort_by.is_none()
            && self.id_ranks().is_some_and(|r| r.ready(kind));
        let offset_ok = q.cursor.is_some() || seeks || q.start_index <= BOUNDED_MAX_OFFSET + 1;
        let members_ok = !(kind == ResourceKind::Group && q.with_members);
        filter_ok && sort_ok && offset_ok && members_ok
    }

    /// Whether the Group `id` has at most `max` members; the count stops at `max + 1`.
    pub fn members_within(&self, id: &str, max: u64) -> HubResult<bool> {
        let mut c = self.read_conn()?;
        Ok(count_members_upto(&mut c, &[id.to_string()], max)? <= max)
    }

    /// [`Store::search_loaded`] on a reader connection that is idle right now, or `None` at
    /// once when there is none (see [`Store::try_get_loaded`]).
    pub fn try_search_loaded(
        &self,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> Option<HubResult<Page<LoadedResource>>> {
        let mut conn = self.try_read_conn()?;
        Some(self.search_loaded_in(&mut conn, kind, q, schema))
    }

    fn search_loaded_in(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        q: &SearchQuery,
        schema: &ResourceSchema,
    ) -> HubResult<Page<LoadedResource>> {
        let (base, exact) = search_base(kind, q, schema);
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
    ) -> HubResult<Page<LoadedResource>> {
        let start_index = q.start_index.max(1);
        if q.count == 0 {
            return Ok(Page::empty(self.count_of(c, kind, q, base)?, start_index));
        }
        let asc = !q.descending;
        let cursor = match q.cursor.as_deref() {
            Some("") | None => None,
            Some(s) => Some(decode_cursor(s, sig)?),
        };
        let after = match &cursor {
            Some(cur) => match &cur.i {
                Some(id) => Some((cur.k.as_deref(), id.as_str())),
                None => {
                    return Err(scim_schema::Error::InvalidCursor(
                        "invalid or expired cursor".into(),
                    )
                    .into())
                }
            },
            None => None,
        };
        let mut offset_rows = if q.cursor.is_none() {
            start_index - 1
        } else {
            0
        };
        // PostgreSQL: an index page deep in the default (id) order seeks through id ranks
        // that its own statement checks (see `pg_ranks`), and knows its total from them.
        let checked = match self.pg_ranks() {
            Some(ranks) if col == "id" && offset_rows > 0 && q.filter.is_none() => {
                deep_page_pg(c, ranks, kind, q, base, asc, offset_rows)?
            }
            _ => None,
        };
        let known_total = checked.as_ref().map(|(_, total)| *total);
        let mut rows: Vec<SortRow> = if let Some((rows, _)) = checked {
            rows
        } else if col == "id" {
            let mut page = id_page_head(kind, q, base);
            if let Some((_, id)) = after {
                page.push(if asc { " AND id > " } else { " AND id < " })
                    .text(id);
            }
            // An index page deep in the default (id) order seeks to its first id instead of
            // stepping over the rows before it.
            if offset_rows > 0 && q.filter.is_none() && !self.is_sqlite() {
                // PostgreSQL without usable ranks: the rows before the page are stepped over
                // in the (resource_type, id) index alone, an index-only scan where the
                // visibility map allows, and only the page's own rows are read from the
                // table. A cursor (keyset) page needs neither and costs the same at any depth.
                page.push(if asc {
                    " AND id >= (SELECT s.id FROM resources s WHERE s.resource_type = "
                } else {
                    " AND id <= (SELECT s.id FROM resources s WHERE s.resource_type = "
                })
                .push(kind.sql_literal())
                .push(if asc {
                    " ORDER BY s.id ASC"
                } else {
                    " ORDER BY s.id DESC"
                })
                .push(" LIMIT 1 OFFSET ")
                .int(sql_int(offset_rows))
                .push(")");
                offset_rows = 0;
            }
            if offset_rows > 0 && q.filter.is_none() {
                if let Some(ranks) = self.id_ranks() {
                    self.notice_other_writers(c)?;
                    // On an HTTP worker nothing scans the type: without loaded ranks a shallow
                    // page walks, a deep one goes back to the blocking pool.
                    let here = super::local_reader::in_place();
                    let seek = ranks.seek(c, kind, offset_rows, !asc, !here)?;
                    if here && seek == Seek::Unavailable && offset_rows > BOUNDED_MAX_OFFSET {
                        return Err(HubError::NotHere);
                    }
                    match seek {
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
            id_page_tail(&mut page, asc, q.count, offset_rows);
            page.load(c)?
        } else {
            by_column(
                base,
                col,
                after,
                asc,
                q.count,
                offset_rows,
                self.is_sqlite(),
            )
            .load(c)?
        };
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
        let total = if let Some(total) = known_total {
            total
        } else if cursor.is_none() && !more && (!rows.is_empty() || offset == 0) {
            offset.saturating_add(rows.len() as u64)
        } else {
            self.count_of(c, kind, q, base)?
        };
        let next_cursor = match (&q.cursor, more, rows.last()) {
            (Some(_), true, Some(last)) => Some(encode_cursor(&Cursor {
                s: sig.to_string(),
                k: if col == "id" {
                    Some(last.row.id.clone())
                } else {
                    last.sort_key.clone()
                },
                i: Some(last.row.id.clone()),
                o: None,
            })),
            _ => None,
        };
        let in_no_group = !rows.is_empty() && rows.iter().all(|r| r.is_member == Some(false));
        let rows: Vec<ResourceRow> = rows.into_iter().map(|r| r.row).collect();
        let resources = if in_no_group {
            rows.into_iter()
                .map(|r| LoadedResource::from_row(kind, r, None, Some(Vec::new())))
                .collect()
        } else {
            self.page_loaded_bounded(c, kind, rows, q)?
        };
        Ok(Page {
            total_results: total,
            start_index,
            resources,
            next_cursor,
            previous_cursor: None,
        })
    }

    /// The number of matches: for unfiltered lists from the per-type cache on SQLite and from
    /// the per-type count table on PostgreSQL, otherwise `COUNT(*)`.
    pub(super) fn count_of(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        q: &SearchQuery,
        base: &Sql,
    ) -> HubResult<u64> {
        if q.filter.is_none() && !self.is_sqlite() {
            return type_count_pg(c, kind);
        }
        let cache = self.type_counts().filter(|_| q.filter.is_none());
        if cache.is_some() {
            self.notice_other_writers(c)?;
        }
        if let Some(n) = cache.and_then(|cache| cache.get(kind)) {
            return Ok(n);
        }
        let generation = cache.map(|cache| cache.generation());
        // The count is cached only from a read that began after the generation was read: a
        // thread's kept snapshot may be older than a commit the generation already counts.
        let fresh = cache.is_some() && super::local_reader::fresh_read(c);
        let n = count_sql(base).get_result::<i64>(c)?.max(0) as u64;
        if let (Some(cache), Some(generation), true) = (cache, generation, fresh) {
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
    ) -> HubResult<Page<LoadedResource>> {
        let filter = if exact { None } else { q.filter.as_ref() };
        let needs_members = q
            .filter
            .as_ref()
            .map(|f| mentions(f, kind))
            .unwrap_or(false)
            && filter.is_some();
        let sort_by = q.sort_by.as_ref();
        let mut matched: Vec<Match> = Vec::new();
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
                    matched.push(Match { key, id: r.id });
                }
            }
            if (n as i64) < BATCH {
                break;
            }
        }
        let desc = q.descending;
        matched.sort_by(|a, b| {
            let o = in_memory_filter::cmp_keys(&a.key, &b.key).then_with(|| a.id.cmp(&b.id));
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
                HubError::Scim(scim_schema::Error::InvalidCursor(
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
            .map(|m| m.id.clone())
            .collect();
        let rows = load_rows(c, kind, &ids)?;
        let resources = self.page_loaded_bounded(c, kind, rows, q)?;
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

    /// Resources of `kind` by id, in the order given (ids that name none are left out), with
    /// their members or groups when `with_members`: the page of a merge that sorted and cut
    /// without them (`POST /.search` across types).
    pub fn read_many(
        &self,
        kind: ResourceKind,
        ids: &[String],
        with_members: bool,
        max_members: Option<u64>,
    ) -> HubResult<Vec<StoredResource>> {
        let mut c = self.read_conn()?;
        let rows = load_rows(&mut c, kind, ids)?;
        let q = SearchQuery {
            with_members,
            max_members,
            ..Default::default()
        };
        Ok(self
            .page_loaded_bounded(&mut c, kind, rows, &q)?
            .into_iter()
            .map(|r| self.assemble_loaded(r))
            .collect())
    }

    /// Refuses with `tooMany` when the Groups `group_ids` have more than `max` members together.
    /// The count stops at `max + 1`, so checking a huge group costs no more than the bound.
    pub fn check_member_bound(&self, group_ids: &[String], max: u64) -> HubResult<()> {
        let mut c = self.read_conn()?;
        member_bound(&mut c, group_ids, max)
    }

    /// [`Store::page_loaded`] under the query's member bound.
    fn page_loaded_bounded(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        rows: Vec<ResourceRow>,
        q: &SearchQuery,
    ) -> HubResult<Vec<LoadedResource>> {
        if let (true, ResourceKind::Group, Some(max)) = (q.with_members, kind, q.max_members) {
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            member_bound(c, &ids, max)?;
        }
        self.page_loaded(c, kind, rows, q.with_members)
    }

    /// Assembles rows, loading members (Groups) or groups (Users) for the whole page in one query.
    fn page_resources(
        &self,
        c: &mut DbConnection,
        kind: ResourceKind,
        rows: Vec<ResourceRow>,
        with_members: bool,
    ) -> HubResult<Vec<StoredResource>> {
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
    ) -> HubResult<Vec<LoadedResource>> {
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

/// The rows of an unfiltered index page `offset_rows` deep in id order on PostgreSQL, sought
/// through `ranks` and checked in the same statement against the population they were read at,
/// and the type's total then; `None` when the page must walk (`OFFSET`). A check that fails
/// reads no rows (an exact seek finds at least its first id): the ranks catch up and the page
/// runs once more. Shallow pages walk: stepping over a few rows costs less than reading every
/// id once.
fn deep_page_pg(
    c: &mut DbConnection,
    ranks: &PgIdRanks,
    kind: ResourceKind,
    q: &SearchQuery,
    base: &Sql,
    asc: bool,
    offset_rows: u64,
) -> HubResult<Option<(Vec<SortRow>, u64)>> {
    if offset_rows < pg_ranks::RANKED_FROM_OFFSET {
        return Ok(None);
    }
    // The ranks are a shortcut: when reading or checking them fails (a statement timeout on a
    // read of every id, a fold that deadlocked), the page walks instead of failing. Outside a
    // transaction (they read nothing inside one), so the walk's statement is not spoiled.
    let shortcut = |what: &str, e: HubError| {
        tracing::warn!(error = %e, kind = ?kind, "deep page: {what} failed; stepping over the rows instead");
        ranks.count(DeepPage::Walk);
    };
    for how in [DeepPage::Seek, DeepPage::CaughtUp] {
        let seek = match ranks.seek(c, kind, offset_rows, !asc) {
            Ok(Some(seek)) => seek,
            Ok(None) => break,
            Err(e) => {
                shortcut("reading the id ranks", e);
                return Ok(None);
            }
        };
        match &seek.start {
            Start::From(first) => {
                let mut page = id_page_head(kind, q, base);
                page.push(if asc { " AND id >= " } else { " AND id <= " })
                    .text(first)
                    .append(&pg_ranks::check_sql(kind, &seek.marker));
                id_page_tail(&mut page, asc, q.count, 0);
                let rows: Vec<SortRow> = page.load(c)?;
                if !rows.is_empty() {
                    ranks.count(how);
                    return Ok(Some((rows, seek.total)));
                }
            }
            // No row for a check to find: the marker is read on its own.
            Start::PastEnd => {
                let now = match pg_ranks::marker_now(c, kind) {
                    Ok(now) => now,
                    Err(e) => {
                        shortcut("reading the population marker", e);
                        return Ok(None);
                    }
                };
                if now == seek.marker {
                    ranks.count(how);
                    return Ok(Some((Vec::new(), seek.total)));
                }
            }
        }
        if how == DeepPage::Seek {
            if let Err(e) = ranks.catch_up(c, kind, &seek.marker) {
                shortcut("catching the id ranks up", e);
                return Ok(None);
            }
        }
    }
    ranks.count(DeepPage::Walk);
    Ok(None)
}

/// `FROM resources WHERE` the type and the filter's SQL, and whether that SQL answers the filter
/// exactly (else the rows it selects are evaluated in memory).
pub(super) fn search_base(
    kind: ResourceKind,
    q: &SearchQuery,
    schema: &ResourceSchema,
) -> (Sql, bool) {
    let (frag, exact) = match &q.filter {
        Some(f) => filter_sql::translate(kind, schema, f),
        None => (None, true),
    };
    let mut base = Sql::new(" FROM resources WHERE resources.resource_type = ");
    base.push(kind.sql_literal());
    if let Some(f) = &frag {
        base.push(" AND ").append(f);
    }
    (base, exact)
}

/// The select list and `base` of a page in id order.
pub(super) fn id_page_head(kind: ResourceKind, q: &SearchQuery, base: &Sql) -> Sql<SortRowSt> {
    let mut page = Sql::<SortRowSt>::new("SELECT id, doc, created, last_modified, version, NULL, ");
    // Whether each user is in any group: when none on the page is, the recursive group walk
    // (a statement of its own, a round trip on PostgreSQL) is not needed. That is the common
    // answer to a `userName eq` lookup before a create.
    page.push(if kind == ResourceKind::User && q.with_members {
        "EXISTS (SELECT 1 FROM group_members WHERE member_id = resources.id)"
    } else {
        "NULL"
    });
    page.append(base);
    page
}

/// The order and bounds of a page in id order: `count` rows and one more, which says whether
/// more follow, after `offset_rows`.
pub(super) fn id_page_tail(page: &mut Sql<SortRowSt>, asc: bool, count: u64, offset_rows: u64) {
    page.push(if asc {
        " ORDER BY id ASC"
    } else {
        " ORDER BY id DESC"
    });
    // The page size is bounded by the HTTP layer; the saturation keeps a larger one from
    // wrapping to a negative LIMIT (which SQLite reads as "no limit" and PostgreSQL refuses).
    page.limit(sql_int(count).saturating_add(1));
    if offset_rows > 0 {
        page.push(" OFFSET ").int(sql_int(offset_rows));
    }
}

/// `SELECT COUNT(*)` over `base`.
pub(super) fn count_sql(base: &Sql) -> Sql<BigInt> {
    let mut count = Sql::<BigInt>::new("SELECT COUNT(*)");
    count.append(base);
    count
}

/// Deltas left unfolded before a count folds them into its base (see [`type_count_pg`]).
pub(super) const FOLD_AFTER: i64 = 512;

/// The number of resources of `kind` on PostgreSQL: the folded base in `resource_type_counts`
/// plus the deltas the `resources` triggers appended since (migration
/// `2026-12-07-000300_type_counts`), in one statement and so one snapshot. When many deltas
/// have piled up, and outside any transaction, they are folded into the base in a statement
/// of their own: a write only ever appends a delta, and only a fold updates the base row.
fn type_count_pg(c: &mut DbConnection, kind: ResourceKind) -> HubResult<u64> {
    #[derive(diesel::Queryable)]
    struct TypeCount {
        n: i64,
        deltas: i64,
    }
    let lit = kind.sql_literal();
    let q = Sql::<(BigInt, BigInt)>::new(&format!(
        "SELECT COALESCE((SELECT n FROM resource_type_counts WHERE resource_type = {lit}), 0) \
         + COALESCE((SELECT SUM(delta) FROM resource_type_count_deltas WHERE resource_type = {lit}), 0)::BIGINT, \
         (SELECT COUNT(*) FROM resource_type_count_deltas WHERE resource_type = {lit})"
    ));
    let count = q.get_result::<TypeCount>(c)?;
    if count.deltas > FOLD_AFTER && !in_transaction(c)? {
        // The count above stands whatever this does: a concurrent fold moves the same total.
        fold_type_count(c, kind)?;
    }
    Ok(count.n.max(0) as u64)
}

/// Moves `kind`'s deltas into its base row. The update bumps the row's `folds` (a trigger),
/// which tells every node's id ranks that deltas they may have counted are gone.
pub(super) fn fold_type_count(c: &mut DbConnection, kind: ResourceKind) -> HubResult<()> {
    let lit = kind.sql_literal();
    Sql::<()>::new(&format!(
        "WITH moved AS (DELETE FROM resource_type_count_deltas WHERE resource_type = {lit} \
         RETURNING delta) \
         UPDATE resource_type_counts SET n = n + (SELECT COALESCE(SUM(delta), 0) FROM moved) \
         WHERE resource_type = {lit}"
    ))
    .execute(c)?;
    Ok(())
}

/// Whether `c` is inside a transaction (a fold writes, which a read-only one refuses).
pub(super) fn in_transaction(c: &mut DbConnection) -> HubResult<bool> {
    use diesel::connection::{Connection, TransactionManager};
    type Tm = <DbConnection as Connection>::TransactionManager;
    Ok(Tm::transaction_manager_status_mut(c)
        .transaction_depth()?
        .is_some())
}

/// A count or offset as an SQL integer (BIGINT), saturating instead of wrapping negative.
fn sql_int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// See [`Store::check_member_bound`].
fn member_bound(c: &mut DbConnection, group_ids: &[String], max: u64) -> HubResult<()> {
    if count_members_upto(c, group_ids, max)? > max {
        return Err(scim_schema::Error::TooMany(format!(
            "The response would carry more than {max} group members (the server's \
             max_group_members); read the group with excludedAttributes=members (and change \
             its members by PATCH, which this bound does not limit)."
        ))
        .into());
    }
    Ok(())
}

/// The members of the Groups `group_ids` together, counted up to `max + 1`.
fn count_members_upto(c: &mut DbConnection, group_ids: &[String], max: u64) -> HubResult<u64> {
    if group_ids.is_empty() {
        return Ok(0);
    }
    let mut q =
        Sql::<BigInt>::new("SELECT COUNT(*) FROM (SELECT 1 FROM group_members WHERE group_id IN (");
    q.text_list(group_ids.iter().map(String::as_str))
        .push(")")
        .limit(sql_int(max).saturating_add(1))
        .push(") AS bounded");
    Ok(q.get_result::<i64>(c)?.max(0) as u64)
}

/// Whether every comparison in `f` can follow an index range (see [`Store::search_is_bounded`]).
fn index_ranges_only(f: &Filter) -> bool {
    match f {
        Filter::Compare { op, .. } => matches!(
            op,
            CompareOp::Eq
                | CompareOp::Sw
                | CompareOp::Gt
                | CompareOp::Ge
                | CompareOp::Lt
                | CompareOp::Le
        ),
        Filter::Present(_) => true,
        Filter::And(a, b) | Filter::Or(a, b) => index_ranges_only(a) && index_ranges_only(b),
        Filter::Not(_) => false,
        Filter::ValuePath { filter, .. } => index_ranges_only(filter),
    }
}

/// A page ordered by an indexed column (RFC 7644 §3.4.2.3): present values in order, ties by
/// id, and resources without a value last ascending and first descending (all in id order).
///
/// The two parts are read separately and merged: each one follows an index, (type, column, id)
/// for present values and, since every part is `col IS NULL` there, (type, column, id) again for
/// absent ones, where `NULLS LAST`/`NULLS FIRST` on one query would make SQLite (whose indexes
/// hold NULLs first) sort every matching row. (userName's absent part on SQLite, below, sorts
/// the rows without a userName, which Users do not have.) Each part reads at most
/// `offset + count + 1` rows; the merge orders that bounded set. `after` is a keyset cursor: the last row's (key, id).
///
/// The parts and the merge carry only what the index holds (a row key, the sort key and the
/// tie-break), so the rows a deep `startIndex` steps over are never read from the table nor
/// sorted with their documents; only the page's own rows are joined back. The row key is
/// SQLite's rowid (`rowid_key`), which every SQLite index holds, else the id.
///
/// `userName` is unique per type (`resources_user_name_uq`), so its present values have no ties:
/// that part orders and seeks by the column alone, and walks the unique index without sorting.
pub(super) fn by_column(
    base: &Sql,
    col: &str,
    after: Option<(Option<&str>, &str)>,
    asc: bool,
    count: u64,
    offset: u64,
    rowid_key: bool,
) -> Sql<SortRowSt> {
    let (cmp, dir) = if asc {
        (" > ", " ASC")
    } else {
        (" < ", " DESC")
    };
    // Each part holds only NULLs or none, so where they would go changes nothing but the plan:
    // PostgreSQL's sort indexes hold them first, and only an ORDER BY that says the same (or,
    // walked backwards, its reverse) can follow the index instead of sorting every row.
    // SQLite's own order is the same, so it keeps its plan.
    let present_dir = if asc {
        " ASC NULLS FIRST"
    } else {
        " DESC NULLS LAST"
    };
    let each = sql_int(offset)
        .saturating_add(sql_int(count))
        .saturating_add(1);
    let unique = col == "user_name_folded";
    // On SQLite the unique userName index holds no id: `+id` keeps the planner from walking
    // the (type, id) index and reading every User row to find the few without a userName; it
    // looks those up in the userName index and sorts them instead.
    let absent_id = if unique && rowid_key { "+id" } else { "id" };
    let key = if rowid_key { "rowid" } else { "id" };
    let part = |present: bool, after_key: Option<(Option<&str>, &str)>| {
        let mut p = Sql::<SortRowSt>::new("SELECT * FROM (SELECT ");
        p.push("resources.")
            .push(key)
            .push(" AS k, ")
            .push(col)
            .push(" AS sort_key, ");
        // Present values of a unique column need no tie-break (and on SQLite, whose unique
        // index holds the rowid but not the id, reading it would cost a table read per row).
        p.push(if present && unique {
            "NULL AS tie"
        } else {
            "resources.id AS tie"
        })
        .append(base);
        p.push(" AND ")
            .push(col)
            .push(if present { " IS NOT NULL" } else { " IS NULL" });
        match after_key {
            Some((Some(k), _)) if unique => {
                p.push(" AND ").push(col).push(cmp).text(k);
            }
            Some((Some(k), id)) => {
                p.push(" AND (")
                    .push(col)
                    .push(", id)")
                    .push(cmp)
                    .push("(")
                    .text(k);
                p.push(", ").text(id).push(")");
            }
            Some((None, id)) => {
                p.push(" AND ").push(absent_id).push(cmp).text(id);
            }
            None => {}
        }
        if present {
            p.push(" ORDER BY ").push(col).push(present_dir);
            if !unique {
                p.push(", id").push(dir);
            }
        } else {
            // Every row here has no value, so this is id order; naming the column first lets
            // PostgreSQL walk the column's index (`IS NULL` pins no order there) instead of
            // sorting every row without a value.
            p.push(" ORDER BY ")
                .push(col)
                .push(present_dir)
                .push(", ")
                .push(absent_id)
                .push(dir);
        }
        p.limit(each)
            .push(if present { ") present" } else { ") absent" });
        p
    };
    // Which parts a cursor still reaches: ascending, present values come first, so a cursor on
    // an absent row has left them behind; descending, absent rows come first.
    let parts = match after {
        None => vec![part(true, None), part(false, None)],
        Some((Some(k), id)) if asc => vec![part(true, Some((Some(k), id))), part(false, None)],
        Some((Some(k), id)) => vec![part(true, Some((Some(k), id)))],
        Some((None, id)) if asc => vec![part(false, Some((None, id)))],
        Some((None, id)) => vec![part(true, None), part(false, Some((None, id)))],
    };
    // Absent keys last ascending (`sort_key IS NULL` is false, then true), first descending.
    let order = |q: &mut Sql<SortRowSt>, of: &str| {
        q.push(" ORDER BY (")
            .push(of)
            .push("sort_key IS NULL)")
            .push(dir)
            .push(", ")
            .push(of)
            .push("sort_key")
            .push(dir)
            .push(", ")
            .push(of)
            .push("tie")
            .push(dir);
    };
    let mut page = Sql::<SortRowSt>::new(
        "SELECT r.id, r.doc, r.created, r.last_modified, r.version, m.sort_key, NULL \
         FROM (SELECT k, sort_key, tie FROM (",
    );
    for (n, p) in parts.iter().enumerate() {
        if n > 0 {
            page.push(" UNION ALL ");
        }
        page.append(p);
    }
    page.push(") merged");
    order(&mut page, "");
    page.limit(sql_int(count).saturating_add(1));
    if offset > 0 {
        page.push(" OFFSET ").int(sql_int(offset));
    }
    page.push(") m JOIN resources r ON r.")
        .push(key)
        .push(" = m.k");
    order(&mut page, "m.");
    page
}

/// Whether the filter reads Group `members` or User `groups`, which in-memory evaluation then
/// needs in the documents.
fn mentions(f: &Filter, kind: ResourceKind) -> bool {
    let name = match kind {
        ResourceKind::Group => "members",
        ResourceKind::User => "groups",
    };
    fold(&mut Mentions(name), f)
}

/// Whether a filter names an attribute (`members`, `groups`) at its top level or as a value
/// path (the element filter inside a value path is not searched: it names sub-attributes).
struct Mentions(&'static str);

impl FilterFold for Mentions {
    type Output = bool;

    fn compare(
        &mut self,
        _: Option<&AttrPath>,
        path: &AttrPath,
        _: CompareOp,
        _: &CompValue,
    ) -> bool {
        path.name.eq_str(self.0)
    }

    fn present(&mut self, _: Option<&AttrPath>, path: &AttrPath) -> bool {
        path.name.eq_str(self.0)
    }

    fn and(&mut self, a: bool, b: bool) -> bool {
        a || b
    }

    fn or(&mut self, a: bool, b: bool) -> bool {
        a || b
    }

    fn not(&mut self, inner: bool) -> bool {
        inner
    }

    fn value_path(&mut self, path: &AttrPath, _inner: bool) -> bool {
        path.name.eq_str(self.0)
    }
}
