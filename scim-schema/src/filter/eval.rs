//! Evaluation of a [`Filter`] over a JSON resource (RFC 7644 §3.4.2.2).
//!
//! Rules, each covered by a test below:
//!
//! * Attribute names match case-insensitively. Extension attributes live under their schema URN
//!   (`{"urn:…:enterprise:2.0:User": {"employeeNumber": "1"}}`); a path qualified with the main
//!   schema's URN addresses the top level; an unqualified name that is not at the top level is
//!   looked up in the extensions (with a schema: the extension that defines it, as
//!   [`ResourceSchema::top_level`] does; without: every `urn:` key holding an object).
//! * Strings compare case-insensitively unless the attribute is `caseExact` (without a schema,
//!   or without a definition for the attribute, case-insensitively). Case folding is ASCII for
//!   ASCII text and Unicode lower-casing otherwise; no comparison allocates.
//! * Ordering (`gt` `ge` `lt` `le`): strings lexicographically, dateTime chronologically (RFC 3339
//!   instants, when the attribute's type is dateTime, or, without a definition, when both sides
//!   parse as date-times), numbers numerically (integer and decimal alike). Booleans, null,
//!   objects and mismatched types never match an ordering operator.
//! * Booleans support `eq`/`ne` only. `co`, `sw`, `ew` apply to strings only.
//! * Multi-valued attributes match if ANY value matches. A complex attribute compared without a
//!   sub-attribute (`emails co "example.com"`) is compared through its `value` sub-attribute;
//!   `emails.value eq "x"` compares each element's `value`.
//! * `pr` is false for an absent attribute, `null`, `""`, `[]` and `{}` (and objects/arrays that
//!   hold only such values).
//! * `eq null` is true when the attribute is unassigned — absent, `null`, `[]` or `{}` — because
//!   RFC 7643 §2.5 makes these equivalent. `ne null` is its negation (the attribute is assigned).
//! * `ne` is exactly `not (… eq …)`: it is true for a missing attribute, and on a multi-valued
//!   attribute it is true when NO value equals the literal. (RFC 7644 leaves this open; reading
//!   `ne` as the negation of `eq` keeps `not (a eq x)` and `a ne x` interchangeable, which is
//!   also how the SQL translation should treat it.)
//! * A value path `emails[type eq "work"]` is true if any element satisfies the inner filter,
//!   whose paths are relative to the element. A single-valued complex attribute counts as one
//!   element. Inside an element that is not an object, the path `value` denotes the element.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Number, Value};

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::json::get_ci;
use crate::schema::{AttrType, AttributeDef, ResourceSchema};

/// Whether `resource` matches `filter`. `schema` supplies `caseExact` and types; without it,
/// strings compare case-insensitively and date-times are recognised by their form.
pub fn matches(
    filter: &Filter,
    resource: &Map<String, Value>,
    schema: Option<&ResourceSchema>,
) -> bool {
    let ctx = Top { resource, schema };
    eval(filter, &ctx)
}

/// Whether one element of a multi-valued (complex) attribute matches a value filter, as PATCH
/// uses `emails[type eq "work"]` to select elements. Paths in `filter` are relative to `element`;
/// `parent` is the multi-valued attribute's definition (for its sub-attributes' `caseExact` and
/// types).
pub fn matches_value(filter: &Filter, element: &Value, parent: Option<&AttributeDef>) -> bool {
    let ctx = Element { element, parent };
    eval(filter, &ctx)
}

// ---------------------------------------------------------------------------------------------
// Contexts: where paths are resolved
// ---------------------------------------------------------------------------------------------

/// Resolves attribute paths to values and definitions.
trait Scope {
    /// The value at `path` (already through the sub-attribute for complex single values; for
    /// multi-valued complex attributes, the array: sub-attributes are applied per element by the
    /// caller), and its definition.
    fn resolve<'s>(&'s self, path: &'s AttrPath) -> Resolved<'s>;

    /// The definition of the top-level attribute of `path` (for value paths).
    fn parent_def<'s>(&'s self, path: &AttrPath) -> Option<&'s AttributeDef>;
}

/// A path resolved in a scope.
struct Resolved<'s> {
    value: Option<&'s Value>,
    /// The definition of what the path designates (the sub-attribute's, when it has one).
    def: Option<&'s AttributeDef>,
    /// A sub-attribute still to apply to each element, when `value` is an array.
    sub: Option<&'s str>,
}

/// Applies `sub` (if any) to `value`: steps into a single complex value now; for arrays, leaves
/// the sub-attribute to be applied per element.
fn step<'s>(
    value: Option<&'s Value>,
    sub: Option<&'s str>,
    def: Option<&'s AttributeDef>,
) -> Resolved<'s> {
    match (value, sub) {
        (Some(Value::Object(obj)), Some(sub)) => Resolved {
            value: get_ci(obj, sub),
            def,
            sub: None,
        },
        (Some(v @ Value::Array(_)), Some(sub)) => Resolved {
            value: Some(v),
            def,
            sub: Some(sub),
        },
        // A sub-attribute of a simple value does not exist.
        (_, Some(_)) => Resolved {
            value: None,
            def,
            sub: None,
        },
        (value, None) => Resolved {
            value,
            def,
            sub: None,
        },
    }
}

struct Top<'a> {
    resource: &'a Map<String, Value>,
    schema: Option<&'a ResourceSchema>,
}

impl<'a> Top<'a> {
    /// The value of the top-level attribute named in `path`, and its definition.
    fn attribute(&self, path: &AttrPath) -> (Option<&'a Value>, Option<&'a AttributeDef>) {
        let name = path.name.as_str();
        let urn = path.urn.as_ref().map(|u| u.as_str());
        if let Some(schema) = self.schema {
            match schema.top_level(urn, name) {
                // Main-schema and common attributes (`id`, `meta`) are top-level keys.
                Some((s, def)) if std::ptr::eq(s, schema.main.as_ref()) => {
                    return (get_ci(self.resource, name), Some(def))
                }
                Some((s, def)) => {
                    let value = self.in_extension(s.id.as_str(), name);
                    // Tolerate an unqualified extension attribute sent at the top level.
                    let value = if value.is_none() && urn.is_none() {
                        get_ci(self.resource, name)
                    } else {
                        value
                    };
                    return (value, Some(def));
                }
                // Not in the schema: resolve by the resource's shape, as without a schema.
                None => {}
            }
        }
        let value = match urn {
            Some(urn) => match get_ci(self.resource, urn) {
                Some(Value::Object(ext)) => get_ci(ext, name),
                // The core schema's URN: attributes are at the top level.
                _ => get_ci(self.resource, name),
            },
            None => get_ci(self.resource, name).or_else(|| self.in_any_extension(name)),
        };
        (value, None)
    }

    fn in_extension(&self, urn: &str, name: &str) -> Option<&'a Value> {
        match get_ci(self.resource, urn) {
            Some(Value::Object(ext)) => get_ci(ext, name),
            _ => None,
        }
    }

    fn in_any_extension(&self, name: &str) -> Option<&'a Value> {
        self.resource.iter().find_map(|(k, v)| match v {
            Value::Object(ext) if is_urn(k) => get_ci(ext, name),
            _ => None,
        })
    }
}

fn is_urn(key: &str) -> bool {
    key.len() > 4 && key.as_bytes()[..4].eq_ignore_ascii_case(b"urn:")
}

impl Scope for Top<'_> {
    fn resolve<'s>(&'s self, path: &'s AttrPath) -> Resolved<'s> {
        let (value, def) = self.attribute(path);
        let sub = path.sub_attr.as_ref().map(|s| s.as_str());
        let def = match sub {
            Some(sub) => def.and_then(|d| d.sub_attribute(sub)),
            None => def,
        };
        step(value, sub, def)
    }

    fn parent_def<'s>(&'s self, path: &AttrPath) -> Option<&'s AttributeDef> {
        self.attribute(path).1
    }
}

struct Element<'a> {
    element: &'a Value,
    parent: Option<&'a AttributeDef>,
}

impl Scope for Element<'_> {
    fn resolve<'s>(&'s self, path: &'s AttrPath) -> Resolved<'s> {
        let name = path.name.as_str();
        let def = self.parent.and_then(|p| p.sub_attribute(name));
        let value = match self.element {
            Value::Object(obj) => get_ci(obj, name),
            // A simple multi-valued attribute's element: `value` is the element itself.
            other if name.eq_ignore_ascii_case("value") => Some(other),
            _ => None,
        };
        let sub = path.sub_attr.as_ref().map(|s| s.as_str());
        let def = match sub {
            Some(sub) => def.and_then(|d| d.sub_attribute(sub)),
            None => def,
        };
        step(value, sub, def)
    }

    fn parent_def<'s>(&'s self, path: &AttrPath) -> Option<&'s AttributeDef> {
        self.parent
            .and_then(|p| p.sub_attribute(path.name.as_str()))
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

fn eval<S: Scope>(filter: &Filter, scope: &S) -> bool {
    match filter {
        Filter::And(a, b) => eval(a, scope) && eval(b, scope),
        Filter::Or(a, b) => eval(a, scope) || eval(b, scope),
        Filter::Not(inner) => !eval(inner, scope),
        Filter::Present(path) => {
            let r = scope.resolve(path);
            r.value.is_some_and(|v| present_at(v, r.sub))
        }
        Filter::Compare {
            path,
            op,
            value: lit,
        } => {
            let r = scope.resolve(path);
            match op {
                CompareOp::Ne => !compare_at(r.value, CompareOp::Eq, lit, r.def, r.sub),
                _ => compare_at(r.value, *op, lit, r.def, r.sub),
            }
        }
        Filter::ValuePath { path, filter } => {
            let parent = scope.parent_def(path);
            match scope.resolve(path).value {
                Some(Value::Array(items)) => items.iter().any(|e| matches_value(filter, e, parent)),
                Some(v @ Value::Object(_)) => matches_value(filter, v, parent),
                _ => false,
            }
        }
    }
}

/// `pr` for a resolved value. `sub` is the path's sub-attribute, still to be applied to the
/// elements of an array.
fn present_at(value: &Value, sub: Option<&str>) -> bool {
    match (value, sub) {
        (Value::Array(items), Some(sub)) => items.iter().any(|e| match e {
            Value::Object(obj) => get_ci(obj, sub).is_some_and(present),
            _ => false,
        }),
        (v, _) => present(v),
    }
}

/// RFC 7644 Table 3 `pr`: a non-empty value, or a complex value with a non-empty node.
fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(present),
        Value::Object(obj) => obj.values().any(present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Unassigned in the sense of RFC 7643 §2.5: absent, null, an empty array or an empty object.
fn unassigned(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(|v| unassigned(Some(v))),
        Some(Value::Object(obj)) => obj.values().all(|v| unassigned(Some(v))),
        Some(_) => false,
    }
}

/// A comparison (never `ne`, which the caller negates) on a resolved value.
fn compare_at(
    value: Option<&Value>,
    op: CompareOp,
    lit: &CompValue,
    def: Option<&AttributeDef>,
    sub: Option<&str>,
) -> bool {
    if let CompValue::Null = lit {
        // Only `eq null` (and its negation `ne null`) can match.
        return op == CompareOp::Eq && unassigned_at(value, sub);
    }
    let Some(value) = value else { return false };
    match value {
        Value::Array(items) => items.iter().any(|item| match (item, sub) {
            (Value::Object(obj), Some(sub)) => {
                get_ci(obj, sub).is_some_and(|v| compare_one(v, op, lit, def))
            }
            (item, _) => compare_one(item, op, lit, def),
        }),
        v => compare_one(v, op, lit, def),
    }
}

fn unassigned_at(value: Option<&Value>, sub: Option<&str>) -> bool {
    match (value, sub) {
        (Some(Value::Array(items)), Some(sub)) => items.iter().all(|e| match e {
            Value::Object(obj) => unassigned(get_ci(obj, sub)),
            _ => true,
        }),
        (v, _) => unassigned(v),
    }
}

/// Compares one (non-array) value. Complex values compare through their `value` sub-attribute.
fn compare_one(value: &Value, op: CompareOp, lit: &CompValue, def: Option<&AttributeDef>) -> bool {
    match (value, lit) {
        (Value::Object(obj), _) => {
            let def = def.and_then(|d| d.sub_attribute("value"));
            match get_ci(obj, "value") {
                Some(Value::Object(_)) | None => false,
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|v| !v.is_object() && compare_one(v, op, lit, def)),
                Some(v) => compare_one(v, op, lit, def),
            }
        }
        (Value::String(s), CompValue::Str(l)) => compare_str(s, op, l, def),
        (Value::Number(n), CompValue::Number(l)) => match op {
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            _ => ordering_matches(op, cmp_numbers(n, l)),
        },
        (Value::Bool(b), CompValue::Bool(l)) => op == CompareOp::Eq && b == l,
        _ => false,
    }
}

fn ordering_matches(op: CompareOp, ord: Option<Ordering>) -> bool {
    let Some(ord) = ord else { return false };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn compare_str(s: &str, op: CompareOp, lit: &str, def: Option<&AttributeDef>) -> bool {
    let (case_exact, is_datetime) = match def {
        Some(d) => (d.case_exact, Some(d.attr_type == AttrType::DateTime)),
        None => (false, None),
    };
    // dateTime: compare instants when both sides are RFC 3339 date-times.
    if is_datetime != Some(false) && !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
        if let (Some(a), Some(b)) = (datetime(s), datetime(lit)) {
            return ordering_matches(op, Some(a.cmp(&b)));
        }
    }
    match op {
        CompareOp::Co => {
            if case_exact {
                s.contains(lit)
            } else {
                contains_ci(s, lit)
            }
        }
        CompareOp::Sw => {
            if case_exact {
                s.starts_with(lit)
            } else {
                starts_with_ci(s, lit).is_some()
            }
        }
        CompareOp::Ew => {
            if case_exact {
                s.ends_with(lit)
            } else {
                ends_with_ci(s, lit)
            }
        }
        _ => {
            let ord = if case_exact {
                s.cmp(lit)
            } else {
                cmp_ci(s, lit)
            };
            ordering_matches(op, Some(ord))
        }
    }
}

/// An RFC 3339 date-time, if `s` looks like one (cheap check first, then chrono).
pub(crate) fn datetime(s: &str) -> Option<DateTime<FixedOffset>> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    DateTime::parse_from_rfc3339(s).ok()
}

// ---------------------------------------------------------------------------------------------
// Case-insensitive string operations without allocation
// ---------------------------------------------------------------------------------------------

fn lower_chars(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// Case-insensitive ordering (ASCII fast path; Unicode lower-casing otherwise).
fn cmp_ci(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        let x = a.bytes().map(|c| c.to_ascii_lowercase());
        let y = b.bytes().map(|c| c.to_ascii_lowercase());
        x.cmp(y)
    } else {
        lower_chars(a).cmp(lower_chars(b))
    }
}

/// If `s` starts with `prefix` ignoring case, the byte length of the matched part of `s`.
fn starts_with_ci(s: &str, prefix: &str) -> Option<usize> {
    if s.is_ascii() && prefix.is_ascii() {
        let n = prefix.len();
        return (s.len() >= n && s.as_bytes()[..n].eq_ignore_ascii_case(prefix.as_bytes()))
            .then_some(n);
    }
    let mut want = lower_chars(prefix).peekable();
    let mut consumed = 0;
    for (pos, c) in s.char_indices() {
        if want.peek().is_none() {
            return Some(pos);
        }
        for lc in c.to_lowercase() {
            match want.next() {
                Some(w) if w == lc => {}
                // Either a mismatch, or the prefix ended in the middle of one character's
                // lower-case expansion: no match at a character boundary.
                _ => return None,
            }
        }
        consumed = pos + c.len_utf8();
    }
    want.peek().is_none().then_some(consumed)
}

fn contains_ci(s: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if s.is_ascii() && needle.is_ascii() {
        let (h, n) = (s.as_bytes(), needle.as_bytes());
        return h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    s.char_indices()
        .any(|(pos, _)| starts_with_ci(&s[pos..], needle).is_some())
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    if s.is_ascii() && suffix.is_ascii() {
        let n = suffix.len();
        return s.len() >= n && s.as_bytes()[s.len() - n..].eq_ignore_ascii_case(suffix.as_bytes());
    }
    if suffix.is_empty() {
        return true;
    }
    s.char_indices()
        .any(|(pos, _)| starts_with_ci(&s[pos..], suffix) == Some(s.len() - pos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::filter::parse::parse_filter;
    use crate::schema::{ResourceType, Schema};

    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// A cut-down User schema (RFC 7643 §4.1 shapes) plus a caseExact `code`, an integer `age`,
    /// a decimal `score` and a dateTime `meta.lastModified`, with the enterprise extension.
    fn schema() -> ResourceSchema {
        let main: Schema = serde_json::from_value(json!({
            "id": USER,
            "attributes": [
                {"name": "userName", "type": "string", "caseExact": false},
                {"name": "title", "type": "string"},
                {"name": "code", "type": "string", "caseExact": true},
                {"name": "active", "type": "boolean"},
                {"name": "age", "type": "integer"},
                {"name": "score", "type": "decimal"},
                {"name": "name", "type": "complex", "subAttributes": [
                    {"name": "givenName", "type": "string"},
                    {"name": "familyName", "type": "string"}
                ]},
                {"name": "emails", "type": "complex", "multiValued": true, "subAttributes": [
                    {"name": "value", "type": "string"},
                    {"name": "type", "type": "string"},
                    {"name": "primary", "type": "boolean"}
                ]},
                {"name": "tags", "type": "string", "multiValued": true, "caseExact": true},
                {"name": "meta", "type": "complex", "subAttributes": [
                    {"name": "lastModified", "type": "dateTime"},
                    {"name": "version", "type": "string", "caseExact": true}
                ]}
            ]
        }))
        .unwrap();
        let ext: Schema = serde_json::from_value(json!({
            "id": ENTERPRISE,
            "attributes": [
                {"name": "employeeNumber", "type": "string"},
                {"name": "manager", "type": "complex", "subAttributes": [
                    {"name": "value", "type": "string", "caseExact": true},
                    {"name": "displayName", "type": "string"}
                ]}
            ]
        }))
        .unwrap();
        let rt: ResourceType = serde_json::from_value(json!({
            "id": "User", "name": "User", "endpoint": "/Users", "schema": USER,
            "schemaExtensions": [{"schema": ENTERPRISE, "required": false}]
        }))
        .unwrap();
        ResourceSchema {
            resource_type: rt,
            main: Arc::new(main),
            extensions: vec![(Arc::new(ext), false)],
        }
    }

    fn user() -> Map<String, Value> {
        let Value::Object(m) = json!({
            "schemas": [USER, ENTERPRISE],
            "id": "2819c223",
            "userName": "bjensen",
            "title": "Tour Guide",
            "code": "AbC",
            "active": true,
            "age": 42,
            "score": 2.5,
            "nickName": "",
            "displayName": null,
            "phoneNumbers": [],
            "x509Certificates": {},
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "tags": ["Red", "green"],
            "meta": {"lastModified": "2011-05-13T06:42:34+02:00", "version": "W/\"a330bc54f0671c9\""},
            "localName": "Ålesund Émile",
            ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "26118915", "displayName": "John Smith"}}
        }) else {
            panic!("object")
        };
        m
    }

    /// Evaluates `filter` against [`user`] with and without the schema; returns both results.
    fn both(filter: &str) -> (bool, bool) {
        let f = parse_filter(filter).unwrap();
        let r = user();
        let s = schema();
        (matches(&f, &r, Some(&s)), matches(&f, &r, None))
    }
    fn yes(filter: &str) {
        assert_eq!(
            both(filter),
            (true, true),
            "{filter} should match (with schema, without)"
        );
    }
    fn no(filter: &str) {
        assert_eq!(
            both(filter),
            (false, false),
            "{filter} should not match (with schema, without)"
        );
    }

    #[test]
    fn rfc7644_3_4_2_2_example_01_against_user() {
        yes(r#"userName eq "bjensen""#);
        no(r#"userName eq "bjensen2""#);
    }

    #[test]
    fn attribute_names_are_case_insensitive() {
        yes(r#"USERNAME eq "bjensen""#);
        yes(r#"Name.FamilyName eq "Jensen""#);
        yes(r#"EMAILS[TYPE eq "work"]"#);
    }

    #[test]
    fn extension_attributes_under_their_urn() {
        yes(&format!(r#"{ENTERPRISE}:employeeNumber eq "701984""#));
        yes(&format!(r#"{ENTERPRISE}:manager.value eq "26118915""#));
        // Unqualified extension attribute: found in the extension.
        yes(r#"employeeNumber eq "701984""#);
        yes(r#"manager.displayName sw "john""#);
        // The core schema's URN addresses the top level.
        yes(&format!(r#"{USER}:userName eq "bjensen""#));
        yes(&format!(r#"{}:USERNAME eq "bjensen""#, USER.to_uppercase()));
        no(&format!(r#"{ENTERPRISE}:userName eq "bjensen""#));
    }

    #[test]
    fn strings_are_case_insensitive_unless_case_exact() {
        yes(r#"userName eq "BJensen""#);
        yes(r#"title co "GUIDE""#);
        // `code` is caseExact: exact with the schema, folded without one.
        assert_eq!(both(r#"code eq "abc""#), (false, true));
        assert_eq!(both(r#"code eq "AbC""#), (true, true));
        assert_eq!(both(r#"code sw "ab""#), (false, true));
        assert_eq!(both(r#"code ew "BC""#), (false, true));
        assert_eq!(both(r#"code co "b""#), (true, true));
        assert_eq!(both(r#"code co "B""#), (false, true));
        assert_eq!(
            both(r#"code gt "aaa""#),
            (false, true),
            "'A' < 'a' exactly; folded 'abc' > 'aaa'"
        );
        // Sub-attribute caseExact (manager.value) and multi-valued simple caseExact (tags).
        assert_eq!(both(r#"tags eq "red""#), (false, true));
        yes(r#"tags eq "Red""#);
    }

    #[test]
    fn unicode_case_folding_without_allocation() {
        yes(r#"localName eq "ålesund émile""#);
        yes(r#"localName sw "ÅLES""#);
        yes(r#"localName ew "ÉMILE""#);
        yes(r#"localName co "SUND é""#);
        no(r#"localName co "sundé""#);
        assert_eq!(cmp_ci("Émile", "émile"), Ordering::Equal);
        assert_eq!(cmp_ci("b", "A"), Ordering::Greater);
        assert!(ends_with_ci("xÉ", "é"));
        assert!(!ends_with_ci("é", "xé"));
        assert!(starts_with_ci("", "").is_some());
        assert!(contains_ci("abc", ""));
    }

    #[test]
    fn datetime_ordering_by_instant() {
        // 06:42:34+02:00 is the same instant as 04:42:34Z; as strings it would be greater.
        yes(r#"meta.lastModified eq "2011-05-13T04:42:34Z""#);
        yes(r#"meta.lastModified ge "2011-05-13T04:42:34Z""#);
        no(r#"meta.lastModified gt "2011-05-13T04:42:34Z""#);
        yes(r#"meta.lastModified lt "2011-05-13T04:42:35Z""#);
        yes(r#"meta.lastModified le "2011-05-13T04:42:34Z""#);
        yes(r#"meta.lastModified gt "2011-05-13T04:42:33.999Z""#);
        // A literal that is not a date-time falls back to string comparison.
        yes(r#"meta.lastModified sw "2011-05-13T06""#);
        // A string-typed attribute holding date-times compares as text when the schema says so.
        let f = parse_filter(r#"title gt "2011-05-13T04:42:34Z""#).unwrap();
        let mut r = user();
        r.insert("title".into(), json!("2011-05-13T06:42:34+02:00"));
        assert!(
            matches(&f, &r, Some(&schema())),
            "string order: '06' > '04'"
        );
        assert!(
            !matches(&f, &r, None),
            "without a schema both parse as date-times: same instant"
        );
    }

    #[test]
    fn numbers_compare_numerically() {
        yes("age eq 42");
        yes("age eq 42.0");
        yes("age gt 9");
        yes("age lt 100");
        no("age gt 42");
        yes("age ge 42");
        yes("age le 4.2e1");
        yes("score gt 2");
        yes("score lt 10");
        yes("score eq 25e-1");
        yes("age gt -1");
        no(r#"age eq "42""#);
        no("age co 4");
        no("age sw 4");
        let n = |s: &str| s.parse::<Number>().unwrap();
        assert_eq!(
            cmp_numbers(&n("18446744073709551615"), &n("-1")),
            Some(Ordering::Greater)
        );
        assert_eq!(
            cmp_numbers(&n("9007199254740993"), &n("9007199254740992")),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn booleans_support_eq_and_ne_only() {
        yes("active eq true");
        yes("active eq TRUE");
        no("active eq false");
        yes("active ne false");
        no("active gt false");
        no("active ge true");
        no("active lt true");
        no(r#"active eq "true""#);
        no("active co true");
        yes("emails[primary eq true]");
    }

    #[test]
    fn co_sw_ew_on_strings_only() {
        yes(r#"userName sw "bj""#);
        yes(r#"userName ew "SEN""#);
        yes(r#"userName co "jen""#);
        yes(r#"userName co """#);
        no(r#"userName sw "jen""#);
        no(r#"active co "t""#);
        no(r#"name co "Jensen""#);
    }

    #[test]
    fn string_ordering_is_lexicographic() {
        yes(r#"userName gt "a""#);
        yes(r#"userName gt "B""#);
        yes(r#"userName lt "c""#);
        no(r#"userName lt "bjensen""#);
        yes(r#"userName le "BJENSEN""#);
    }

    #[test]
    fn multi_valued_any_value_matches() {
        yes(r#"emails.value eq "babs@jensen.org""#);
        yes(r#"emails.type eq "home""#);
        no(r#"emails.type eq "other""#);
        yes(r#"tags eq "green""#);
        yes(r#"emails.primary eq true"#);
    }

    #[test]
    fn complex_multi_valued_without_sub_attribute_uses_value() {
        // RFC 7644 §3.4.2.2 example 13: `emails co "example.com"`.
        yes(r#"emails co "example.com""#);
        yes(r#"emails eq "BJENSEN@example.com""#);
        yes(r#"emails ew ".org""#);
        no(r#"emails co "work""#);
        yes(&format!(r#"{ENTERPRISE}:manager eq "26118915""#));
    }

    #[test]
    fn present() {
        yes("title pr");
        yes("emails pr");
        yes("name pr");
        yes("emails.type pr");
        yes("active pr");
        no("nickName pr"); // ""
        no("displayName pr"); // null
        no("phoneNumbers pr"); // []
        no("x509Certificates pr"); // {}
        no("missing pr");
        no("name.middleName pr");
        no("emails.display pr");
        let f = parse_filter("name pr").unwrap();
        let Value::Object(r) = json!({"name": {"givenName": "", "familyName": null}}) else {
            panic!()
        };
        assert!(
            !matches(&f, &r, None),
            "a complex value with only empty nodes is not present"
        );
    }

    #[test]
    fn eq_null_means_unassigned() {
        // RFC 7643 §2.5: unassigned, null and [] are equivalent.
        yes("missing eq null");
        yes("displayName eq null");
        yes("phoneNumbers eq null");
        yes("x509Certificates eq null");
        no("nickName eq null"); // "" is a value
        no("title eq null");
        yes("title ne null");
        no("missing ne null");
        yes("name.middleName eq null");
        yes("emails.display eq null");
        no("emails.type eq null");
        // Ordering and substring operators never match null.
        no("title gt null");
        no("missing co null");
    }

    #[test]
    fn ne_is_not_eq() {
        yes(r#"missing ne "x""#);
        yes(r#"userName ne "someone""#);
        no(r#"userName ne "BJENSEN""#);
        // Multi-valued: true only when no value is equal.
        no(r#"emails.type ne "work""#);
        yes(r#"emails.type ne "other""#);
        // Type mismatch: not equal.
        yes(r#"age ne "42""#);
        for (a, b) in [
            (r#"userName ne "x""#, r#"not (userName eq "x")"#),
            (r#"emails.type ne "work""#, r#"not (emails.type eq "work")"#),
            ("missing ne 1", "not (missing eq 1)"),
        ] {
            assert_eq!(both(a), both(b), "{a} vs {b}");
        }
    }

    #[test]
    fn value_path_needs_one_element_to_satisfy_all() {
        yes(r#"emails[type eq "work" and value co "@example.com"]"#);
        no(r#"emails[type eq "home" and value co "@example.com"]"#);
        // Across elements the flat form matches, the value path does not.
        yes(r#"emails.type eq "home" and emails.value co "@example.com""#);
        yes(r#"emails[type eq "home" or value co "nothing"]"#);
        yes(r#"emails[not (type eq "work")]"#);
        no(r#"missing[type eq "work"]"#);
        no(r#"userName[value eq "bjensen"]"#);
        // A single-valued complex attribute counts as one element.
        yes(r#"name[givenName eq "barbara"]"#);
        // Simple multi-valued: `value` is the element.
        yes(r#"tags[value eq "green"]"#);
        // RFC 7644 §3.4.2.2 example 16.
        yes(
            r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"] or title pr"#,
        );
    }

    #[test]
    fn logic() {
        yes(r#"userName eq "bjensen" and not (title eq "x")"#);
        no(r#"userName eq "bjensen" and not (title pr)"#);
        yes(r#"userName eq "x" or title pr"#);
        no(r#"userName eq "x" or (title pr and active eq false)"#);
    }

    #[test]
    fn matches_value_selects_patch_targets() {
        let s = schema();
        let emails = s.main.attribute("emails");
        let f = parse_filter(r#"type eq "WORK""#).unwrap();
        let r = user();
        let selected: Vec<_> = r["emails"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| matches_value(&f, e, emails))
            .collect();
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0]["value"], "bjensen@example.com");
        // caseExact of a sub-attribute comes from the parent definition.
        let manager = s.extensions[0].0.attribute("manager");
        let f = parse_filter(r#"value eq "ABC""#).unwrap();
        assert!(!matches_value(&f, &json!({"value": "abc"}), manager));
        assert!(matches_value(&f, &json!({"value": "abc"}), None));
        // Members of a group by value.
        let f = parse_filter(r#"value eq "2819c223-7f76-453a-919d-413861904646""#).unwrap();
        assert!(matches_value(
            &f,
            &json!({"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs"}),
            None
        ));
        assert!(!matches_value(&f, &json!({"value": "other"}), None));
        assert!(!matches_value(&f, &json!("2819c223"), None));
    }
}
