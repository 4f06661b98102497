//! In-memory evaluation for what the store cannot push down to SQL, delegated to `scim-schema`:
//! filters to [`scim_schema::filter::matches`], sort keys to [`scim_schema::sort::sort_key`].
//!
//! Absent values sort as RFC 7644 §3.4.2.3 says, last ascending and first descending
//! ([`scim_schema::sort::compare_keys`]), as the SQL sorts in `search` do, so that a query
//! answers in the same order whether its sort was pushed down or done here.

use std::cmp::Ordering;

use scim_schema::filter::{AttrPath, Filter};
use scim_schema::schema::ResourceSchema;
use scim_schema::sort::{compare_keys, SortOrder};

use super::Doc;

/// Whether `doc` (an assembled resource: id, attributes, meta, and members/groups when the filter
/// needs them) matches `filter`.
pub(crate) fn matches(filter: &Filter, doc: &Doc, schema: &ResourceSchema) -> bool {
    scim_schema::filter::matches(filter, doc, Some(schema))
}

/// A sort key; `None` when the resource lacks the attribute.
pub(crate) type SortKey = Option<scim_schema::sort::SortKey>;

/// The key `doc` sorts by for `path` (RFC 7644 §3.4.2.3).
pub(crate) fn sort_key(doc: &Doc, path: &AttrPath, schema: &ResourceSchema) -> SortKey {
    scim_schema::sort::sort_key(doc, path, schema)
}

/// Ascending order of two keys, absent last (RFC 7644 §3.4.2.3; descending reverses it).
pub(crate) fn cmp_keys(a: &SortKey, b: &SortKey) -> Ordering {
    compare_keys(a.as_ref(), b.as_ref(), SortOrder::Ascending)
}
