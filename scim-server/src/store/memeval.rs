//! In-memory filter evaluation and sort keys for what the store cannot push down to SQL.
//!
//! [`matches`] is the one entry point the search uses; it delegates to
//! `scim_schema::filter::eval::matches`. The sort keys (and a local evaluator kept as a test
//! cross-check) are still the store's own until `scim_schema::sort` is wired in. Semantics: a comparison on a multi-valued attribute
//! holds when any value satisfies it; `ne` is the negation of `eq` (so it holds when the attribute
//! is absent); `pr` needs a non-null, non-empty value; string comparisons fold case unless the
//! attribute is caseExact; `meta.created`/`meta.lastModified` and dateTime attributes compare as
//! instants.

// The local evaluator only runs in tests now (as a cross-check of scim-schema's).
#![cfg_attr(not(test), allow(dead_code))]

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use scim_schema::filter::{AttrPath, CompValue, CompareOp, Filter};
use scim_schema::json::get_ci;
use scim_schema::schema::{AttrType, AttributeDef, ResourceSchema};
use serde_json::Value;

use super::resources::fold;
use super::{parse_ts, Doc};

/// Whether `doc` (an assembled resource: id, attributes, meta, and members/groups when the filter
/// needs them) matches `filter`.
pub(crate) fn matches(filter: &Filter, doc: &Doc, schema: &ResourceSchema) -> bool {
    scim_schema::filter::eval::matches(filter, doc, Some(schema))
}

/// The store's own evaluator, kept as a cross-check of the schema crate's (tests only).
#[cfg(test)]
pub(crate) fn matches_local(filter: &Filter, doc: &Doc, schema: &ResourceSchema) -> bool {
    eval(filter, doc, &Scope::Resource(schema))
}

enum Scope<'a> {
    Resource(&'a ResourceSchema),
    /// Inside a value path: paths are sub-attributes of `parent`.
    Complex(Option<&'a AttributeDef>),
}

fn eval(f: &Filter, obj: &Doc, scope: &Scope<'_>) -> bool {
    match f {
        Filter::And(a, b) => eval(a, obj, scope) && eval(b, obj, scope),
        Filter::Or(a, b) => eval(a, obj, scope) || eval(b, obj, scope),
        Filter::Not(a) => !eval(a, obj, scope),
        Filter::Present(path) => values(obj, path, scope).iter().any(|v| present(v)),
        Filter::Compare { path, op, value } => {
            let def = lookup(path, scope);
            let vals = values(obj, path, scope);
            match op {
                CompareOp::Ne => !vals
                    .iter()
                    .any(|v| compare(v, CompareOp::Eq, value, def, path)),
                _ => {
                    if matches!(value, CompValue::Null) && *op == CompareOp::Eq {
                        return !vals.iter().any(|v| present(v));
                    }
                    vals.iter().any(|v| compare(v, *op, value, def, path))
                }
            }
        }
        Filter::ValuePath { path, filter } => {
            let parent = lookup(path, scope);
            let Some(container) = container(obj, path, scope) else {
                return false;
            };
            let inner = Scope::Complex(parent);
            match get_ci(container, path.name.as_str()) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_object)
                    .any(|o| eval(filter, o, &inner)),
                Some(Value::Object(o)) => eval(filter, o, &inner),
                _ => false,
            }
        }
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn lookup<'a>(path: &AttrPath, scope: &Scope<'a>) -> Option<&'a AttributeDef> {
    match scope {
        Scope::Resource(schema) => schema.lookup(path),
        Scope::Complex(parent) => {
            let parent = (*parent)?;
            let sub = parent.sub_attribute(path.name.as_str())?;
            match &path.sub_attr {
                Some(s) => sub.sub_attribute(s.as_str()),
                None => Some(sub),
            }
        }
    }
}

/// The object holding the path's top-level attribute: the extension object for URN-qualified
/// extension paths, else the resource (or the element, inside a value path).
fn container<'a>(obj: &'a Doc, path: &AttrPath, scope: &Scope<'_>) -> Option<&'a Doc> {
    let Scope::Resource(schema) = scope else {
        return Some(obj);
    };
    match &path.urn {
        Some(urn) if schema.is_extension_key(urn.as_str()) => {
            get_ci(obj, urn.as_str()).and_then(Value::as_object)
        }
        Some(urn) if !schema.main.id.eq_str(urn.as_str()) => None,
        _ => {
            if get_ci(obj, path.name.as_str()).is_some() {
                return Some(obj);
            }
            // Unqualified extension attribute.
            for (ext, _) in &schema.extensions {
                if let Some(Value::Object(e)) = get_ci(obj, ext.id.as_str()) {
                    if get_ci(e, path.name.as_str()).is_some() {
                        return Some(e);
                    }
                }
            }
            Some(obj)
        }
    }
}

/// The scalar values a path designates (flattening multi-valued attributes; a complex
/// multi-valued attribute without a sub-attribute stands for its `value`s).
fn values<'a>(obj: &'a Doc, path: &AttrPath, scope: &Scope<'_>) -> Vec<&'a Value> {
    let Some(c) = container(obj, path, scope) else {
        return Vec::new();
    };
    let Some(top) = get_ci(c, path.name.as_str()) else {
        return Vec::new();
    };
    let sub = path.sub_attr.as_ref().map(|s| s.as_str());
    let mut out = Vec::new();
    let mut push = |v: &'a Value| match (v, sub) {
        (Value::Object(o), Some(s)) => {
            if let Some(x) = get_ci(o, s) {
                out.push(x)
            }
        }
        (Value::Object(o), None) => {
            if let Some(x) = get_ci(o, "value") {
                out.push(x)
            }
        }
        (v, None) => out.push(v),
        _ => {}
    };
    match top {
        Value::Array(items) => items.iter().for_each(&mut push),
        v => push(v),
    }
    out
}

fn is_datetime(def: Option<&AttributeDef>, path: &AttrPath) -> bool {
    def.map(|d| d.attr_type == AttrType::DateTime)
        .unwrap_or(false)
        || (path.name.eq_str("meta")
            && path
                .sub_attr
                .as_ref()
                .map(|s| s.eq_str("created") || s.eq_str("lastModified"))
                .unwrap_or(false))
}

fn case_exact(def: Option<&AttributeDef>, path: &AttrPath) -> bool {
    match def {
        Some(d) => d.case_exact,
        None => path.name.eq_str("id") && path.sub_attr.is_none(),
    }
}

fn compare(
    v: &Value,
    op: CompareOp,
    cv: &CompValue,
    def: Option<&AttributeDef>,
    path: &AttrPath,
) -> bool {
    match (v, cv) {
        (Value::String(a), CompValue::Str(b)) => {
            if is_datetime(def, path) {
                return match (parse_ts(a), parse_ts(b)) {
                    (Some(x), Some(y)) => ord_op(op, x.cmp(&y)),
                    _ => false,
                };
            }
            let (a, b) = if case_exact(def, path) {
                (a.clone(), b.clone())
            } else {
                (fold(a), fold(b))
            };
            match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ord_op(op, a.as_str().cmp(b.as_str())),
            }
        }
        (Value::Bool(a), CompValue::Bool(b)) => op == CompareOp::Eq && a == b,
        (Value::Number(a), CompValue::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y).map(|o| ord_op(op, o)).unwrap_or(false),
            _ => false,
        },
        _ => false,
    }
}

fn ord_op(op: CompareOp, o: Ordering) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// A sort key; `Null` sorts before every value (first ascending, last descending), as the SQL
/// ordering does.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub(crate) enum SortKey {
    Null,
    Bool(bool),
    Num(f64),
    Time(DateTime<Utc>),
    Str(String),
}

impl SortKey {
    pub(crate) fn cmp_total(&self, other: &SortKey) -> Ordering {
        self.partial_cmp(other).unwrap_or(Ordering::Equal)
    }
}

/// The sort key of `doc` for `path` (RFC 7644 §3.4.2.3): the primary value of a multi-valued
/// attribute, else its first value.
pub(crate) fn sort_key(doc: &Doc, path: &AttrPath, schema: &ResourceSchema) -> SortKey {
    let scope = Scope::Resource(schema);
    let def = lookup(path, &scope);
    let Some(c) = container(doc, path, &scope) else {
        return SortKey::Null;
    };
    let v = match get_ci(c, path.name.as_str()) {
        Some(Value::Array(items)) => {
            let primary = items
                .iter()
                .find(|i| {
                    i.as_object()
                        .and_then(|o| get_ci(o, "primary"))
                        .and_then(Value::as_bool)
                        == Some(true)
                })
                .or_else(|| items.first());
            primary.and_then(|p| match (p, &path.sub_attr) {
                (Value::Object(o), Some(s)) => get_ci(o, s.as_str()),
                (Value::Object(o), None) => get_ci(o, "value"),
                (v, _) => Some(v),
            })
        }
        Some(Value::Object(o)) => path.sub_attr.as_ref().and_then(|s| get_ci(o, s.as_str())),
        Some(v) if path.sub_attr.is_none() => Some(v),
        _ => None,
    };
    match v {
        Some(Value::String(s)) if is_datetime(def, path) => {
            parse_ts(s).map(SortKey::Time).unwrap_or(SortKey::Null)
        }
        Some(Value::String(s)) if case_exact(def, path) => SortKey::Str(s.clone()),
        Some(Value::String(s)) => SortKey::Str(fold(s)),
        Some(Value::Bool(b)) => SortKey::Bool(*b),
        Some(Value::Number(n)) => n.as_f64().map(SortKey::Num).unwrap_or(SortKey::Null),
        _ => SortKey::Null,
    }
}
