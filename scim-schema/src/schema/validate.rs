//! Validation of a resource against its resource type, in context (RFC 7643 §2, §3, §7;
//! RFC 7644 §3.3, §3.5.1).
//!
//! [`validate`] checks a resource and returns a normalised copy: attribute names rewritten to the
//! schema's spelling (`USERNAME` → `userName`), extension attributes under their canonical URN
//! key, unassigned values (null, `[]`, `{}`) removed, and `schemas` listing exactly the main
//! schema and the extensions present. What is checked depends on the [`ValidationContext`]:
//!
//! | rule                                   | Create | Replace / Patch | Response |
//! |----------------------------------------|--------|-----------------|----------|
//! | `readOnly` input ignored (dropped)     | yes    | yes             | no       |
//! | `immutable` must not change            | –      | yes             | –        |
//! | `writeOnly` / `returned: never` dropped| –      | –               | yes      |
//! | `required` attributes present          | yes    | yes             | –        |
//! | `schemas` present and consistent       | yes    | yes             | recomputed |
//! | unknown attributes                     | option | option          | dropped  |
//! | types, `primary`, canonical values     | yes    | yes             | yes      |
//!
//! Decisions where the RFCs leave room:
//!
//! * Unknown attributes, with [`ValidationOptions::reject_unknown_attributes`] (the default),
//!   are [`Error::InvalidSyntax`]: the body "did not conform to the request schema"
//!   (RFC 7644 §3.12). Without it they are dropped. An unknown schema URN (in `schemas` or as an
//!   extension key) is always [`Error::InvalidValue`], as is any other schema/type mismatch.
//! * A single value given for a multi-valued attribute is rejected here; accepting it is a client
//!   quirk that belongs to the dialect module.
//! * Immutability (RFC 7644 §3.5.1): an immutable value may be set when none exists; a different
//!   value is [`Error::Mutability`]; an immutable attribute omitted from a replacement keeps its
//!   existing value (it cannot be cleared). Values of a multi-valued complex attribute have no
//!   identity beyond their contents, so the immutable sub-attributes of `members` do not stop
//!   members from being added or removed: only single-valued paths are compared.
//! * Strings compare case-insensitively for immutability unless `caseExact`.
//! * `integer` accepts only JSON integers (`1.5` and `1.0` are rejected); `dateTime` accepts
//!   xsd:dateTime, i.e. RFC 3339 with an optional zone (no zone means UTC); `binary` is standard
//!   base64 (RFC 4648 §4), padding optional.
//! * Error messages name attributes and expected types, never the values given, so nothing
//!   sensitive (a `writeOnly` password) can leak into an error response.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value};

use crate::error::Error;
use crate::json::get_ci;
use crate::name::eq_ci;

use super::attribute::{AttrType, AttributeDef, Mutability, Returned};
use super::core::common_attributes;
use super::registry::ResourceSchema;

/// What the resource is being validated for.
#[derive(Debug, Clone, Copy)]
pub enum ValidationContext<'a> {
    /// A POST body.
    Create,
    /// A PUT body; `existing` is the stored resource it replaces.
    Replace { existing: &'a Map<String, Value> },
    /// The result of applying PATCH operations to `existing`; checked like a replacement.
    Patch { existing: &'a Map<String, Value> },
    /// A resource about to be returned to a client.
    Response,
}

impl<'a> ValidationContext<'a> {
    fn existing(&self) -> Option<&'a Map<String, Value>> {
        match *self {
            ValidationContext::Replace { existing } | ValidationContext::Patch { existing } => {
                Some(existing)
            }
            _ => None,
        }
    }

    fn is_input(&self) -> bool {
        !matches!(self, ValidationContext::Response)
    }
}

/// Knobs for behaviour the RFCs leave to the service provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationOptions {
    /// Reject attributes no schema defines ([`Error::InvalidSyntax`]) instead of dropping them.
    /// Default `true`. Ignored in [`ValidationContext::Response`], where they are dropped.
    pub reject_unknown_attributes: bool,
    /// Require string values to be one of the attribute's `canonicalValues` (RFC 7643 §2.3.1:
    /// service providers MAY). Default `false`, so `emails.type` may be any label.
    pub enforce_canonical_values: bool,
}

impl Default for ValidationOptions {
    fn default() -> Self {
        ValidationOptions {
            reject_unknown_attributes: true,
            enforce_canonical_values: false,
        }
    }
}

impl ValidationOptions {
    /// Unknown attributes are dropped rather than rejected.
    pub fn lenient() -> Self {
        ValidationOptions {
            reject_unknown_attributes: false,
            ..Self::default()
        }
    }
}

/// Validates `resource` as a resource of `schema` in context `ctx` and returns its normalised
/// form (see the module documentation for the rules).
pub fn validate(
    resource: &Map<String, Value>,
    schema: &ResourceSchema,
    ctx: ValidationContext<'_>,
    opts: ValidationOptions,
) -> Result<Map<String, Value>, Error> {
    Validator { ctx, opts }.resource(resource, schema)
}

/// Parses an xsd:dateTime (RFC 7643 §2.3.5): RFC 3339, or without a zone offset (taken as UTC).
pub fn parse_date_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Whether `s` is standard base64 (RFC 4648 §4), with or without padding.
pub fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    let padding = s.len() - body.len();
    let alphabet_ok = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    let length_ok = if padding == 0 {
        body.len() % 4 != 1
    } else {
        padding <= 2 && s.len().is_multiple_of(4)
    };
    alphabet_ok && length_ok
}

struct Validator<'a> {
    ctx: ValidationContext<'a>,
    opts: ValidationOptions,
}

/// Where a value sits, for error messages: `name`, `prefix.name` or `path[i]`. Built on the
/// stack and formatted only when an error names it (every key of every request passes here).
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Child(&'p Path<'p>, &'p str),
    Item(&'p Path<'p>, usize),
}

impl<'p> Path<'p> {
    fn child(&'p self, name: &'p str) -> Path<'p> {
        Path::Child(self, name)
    }
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Child(Path::Root, name) => f.write_str(name),
            Path::Child(parent, name) => write!(f, "{parent}.{name}"),
            Path::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Whether `input` has a key equal to its `index`th key ignoring ASCII case before it (keys are
/// unique as written, so only a case-insensitive repeat can be a duplicate). Small objects are
/// compared pairwise, large ones through `seen` (lower-cased keys), so a body with many keys
/// stays linear without allocating for the usual few.
fn repeats_earlier_key(
    input: &Map<String, Value>,
    index: usize,
    key: &str,
    seen: &mut Option<HashSet<String>>,
) -> bool {
    const PAIRWISE: usize = 24;
    if input.len() <= PAIRWISE {
        return input
            .keys()
            .take(index)
            .any(|k| k.eq_ignore_ascii_case(key));
    }
    !seen
        .get_or_insert_with(|| HashSet::with_capacity(input.len()))
        .insert(key.to_ascii_lowercase())
}

/// Whether a value counts as unassigned (RFC 7643 §2.5: null, `[]`, and by extension `{}`).
fn is_unassigned(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn find_def<'d>(groups: &[&'d [AttributeDef]], name: &str) -> Option<&'d AttributeDef> {
    groups
        .iter()
        .flat_map(|g| g.iter())
        .find(|d| d.name.eq_str(name))
}

fn type_name(t: AttrType) -> &'static str {
    match t {
        AttrType::String => "a string",
        AttrType::Boolean => "a boolean",
        AttrType::Decimal => "a number",
        AttrType::Integer => "an integer",
        AttrType::DateTime => "an xsd:dateTime string",
        AttrType::Reference => "a reference (string)",
        AttrType::Binary => "a base64 string",
        AttrType::Complex => "an object",
    }
}

impl<'a> Validator<'a> {
    fn resource(
        &self,
        input: &Map<String, Value>,
        schema: &ResourceSchema,
    ) -> Result<Map<String, Value>, Error> {
        let listed = if self.ctx.is_input() {
            Some(self.listed_schemas(input, schema)?)
        } else {
            None
        };
        let existing = self.ctx.existing();

        let mut out = Map::new();
        out.insert("schemas".to_owned(), Value::Null); // placeholder keeps `schemas` first
                                                       // Lower-cased keys already seen: a case-insensitive duplicate is an error, and a set keeps
                                                       // a body with many keys linear.
        let mut seen = None;
        let mut ext_keys_present = vec![false; schema.extensions.len()];
        let main_defs = [schema.main.attributes.as_slice(), common_attributes()];

        for (index, (key, value)) in input.iter().enumerate() {
            if repeats_earlier_key(input, index, key, &mut seen) {
                return Err(Error::InvalidSyntax(format!(
                    "attribute '{key}' is given more than once"
                )));
            }
            if eq_ci(key, "schemas") {
                continue;
            }
            if let Some(idx) = schema.extension_index(key) {
                let ext = &schema.extensions[idx].0;
                if let Some(listed) = &listed {
                    if !listed[idx + 1] {
                        return Err(Error::InvalidValue(format!(
                            "extension '{}' is present but not listed in 'schemas'",
                            ext.id
                        )));
                    }
                }
                ext_keys_present[idx] = true;
                let obj = match value {
                    Value::Null => continue,
                    Value::Object(obj) => obj,
                    _ => {
                        return Err(Error::InvalidValue(format!(
                            "extension '{}' must be an object",
                            ext.id
                        )))
                    }
                };
                let ex = existing
                    .and_then(|m| get_ci(m, ext.id.as_str()))
                    .and_then(Value::as_object);
                let normalised = self.object(
                    &[&ext.attributes],
                    obj,
                    ex,
                    &Path::Root.child(ext.id.as_str()),
                    false,
                )?;
                if !normalised.is_empty() {
                    out.insert(ext.id.to_string(), Value::Object(normalised));
                }
                continue;
            }
            if let Some(def) = find_def(&main_defs, key) {
                let ex = existing.and_then(|m| get_ci(m, def.name.as_str()));
                let path = Path::Root.child(def.name.as_str());
                if let Some(v) = self.attribute(def, value, ex, &path, false)? {
                    out.insert(def.name.to_string(), v);
                }
                continue;
            }
            if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
                if self.ctx.is_input() {
                    return Err(Error::InvalidValue(format!(
                        "'{key}' is not a schema extension of resource type '{}'",
                        schema.resource_type.id
                    )));
                }
                continue;
            }
            self.unknown(&Path::Root.child(key))?;
        }
        self.complete(&main_defs, &mut out, existing, &Path::Root, false)?;

        if let Some(listed) = &listed {
            for (idx, (ext, required)) in schema.extensions.iter().enumerate() {
                if listed[idx + 1] && !ext_keys_present[idx] {
                    return Err(Error::InvalidValue(format!(
                        "'schemas' lists extension '{}' but the resource does not carry it",
                        ext.id
                    )));
                }
                if *required && !out.contains_key(ext.id.as_str()) {
                    return Err(Error::InvalidValue(format!(
                        "required extension '{}' is missing",
                        ext.id
                    )));
                }
                if out.contains_key(ext.id.as_str()) {
                    continue;
                }
                // An immutable extension attribute keeps its value even when the extension is omitted.
                let ex = existing
                    .and_then(|m| get_ci(m, ext.id.as_str()))
                    .and_then(Value::as_object);
                if let Some(carried) = ex.and_then(|ex| carry_immutable(&[&ext.attributes], ex)) {
                    out.insert(ext.id.to_string(), Value::Object(carried));
                }
            }
        }

        let urns = schema
            .schema_urns_for(&out)
            .into_iter()
            .map(Value::String)
            .collect();
        out.insert("schemas".to_owned(), Value::Array(urns));
        Ok(out)
    }

    /// Checks the input's `schemas`; returns, for the main schema (index 0) and each extension
    /// (index i + 1), whether it is listed.
    fn listed_schemas(
        &self,
        input: &Map<String, Value>,
        schema: &ResourceSchema,
    ) -> Result<Vec<bool>, Error> {
        let Some(Value::Array(urns)) = get_ci(input, "schemas") else {
            return Err(Error::InvalidValue(
                "'schemas' is required and must be an array of schema URNs".into(),
            ));
        };
        let mut listed = vec![false; schema.extensions.len() + 1];
        for urn in urns {
            let Value::String(urn) = urn else {
                return Err(Error::InvalidValue(
                    "'schemas' must contain only strings".into(),
                ));
            };
            if schema.main.id.eq_str(urn) {
                listed[0] = true;
            } else if let Some(idx) = schema.extension_index(urn) {
                listed[idx + 1] = true;
            } else {
                return Err(Error::InvalidValue(format!(
                    "'schemas' lists '{urn}', which is not a schema of resource type '{}'",
                    schema.resource_type.id
                )));
            }
        }
        if !listed[0] {
            return Err(Error::InvalidValue(format!(
                "'schemas' must include the core schema '{}'",
                schema.main.id
            )));
        }
        Ok(listed)
    }

    fn unknown(&self, path: &Path<'_>) -> Result<(), Error> {
        if self.ctx.is_input() && self.opts.reject_unknown_attributes {
            Err(Error::InvalidSyntax(format!("unknown attribute '{path}'")))
        } else {
            Ok(())
        }
    }

    /// Validates the attributes of an object (an extension or a complex value).
    fn object(
        &self,
        defs: &[&[AttributeDef]],
        input: &Map<String, Value>,
        existing: Option<&Map<String, Value>>,
        prefix: &Path<'_>,
        in_multi: bool,
    ) -> Result<Map<String, Value>, Error> {
        let mut out = Map::new();
        // Case-insensitive duplicates, as in `resource`.
        let mut seen = None;
        for (index, (key, value)) in input.iter().enumerate() {
            if repeats_earlier_key(input, index, key, &mut seen) {
                return Err(Error::InvalidSyntax(format!(
                    "attribute '{}' is given more than once",
                    prefix.child(key)
                )));
            }
            let Some(def) = find_def(defs, key) else {
                self.unknown(&prefix.child(key))?;
                continue;
            };
            let ex = existing.and_then(|m| get_ci(m, def.name.as_str()));
            if let Some(v) =
                self.attribute(def, value, ex, &prefix.child(def.name.as_str()), in_multi)?
            {
                out.insert(def.name.to_string(), v);
            }
        }
        self.complete(defs, &mut out, existing, prefix, in_multi)?;
        Ok(out)
    }

    /// After an object's own attributes: carries immutable values over from `existing` and checks
    /// that required attributes are present.
    fn complete(
        &self,
        defs: &[&[AttributeDef]],
        out: &mut Map<String, Value>,
        existing: Option<&Map<String, Value>>,
        prefix: &Path<'_>,
        in_multi: bool,
    ) -> Result<(), Error> {
        if !self.ctx.is_input() {
            return Ok(());
        }
        for def in defs.iter().flat_map(|g| g.iter()) {
            if let Some(v) = out.get(def.name.as_str()) {
                // A resource's required name (userName, a Group's displayName) is how people
                // and clients find it: blank is no name.
                let blank = matches!(v, Value::String(text) if text.trim().is_empty());
                if blank
                    && def.required
                    && def.attr_type == AttrType::String
                    && matches!(prefix, Path::Root)
                {
                    return Err(Error::InvalidValue(format!(
                        "required attribute '{}' is empty",
                        def.name
                    )));
                }
                continue;
            }
            if !in_multi && self.ctx.existing().is_some() {
                let carried = existing.and_then(|m| carry_one(def, m));
                if let Some(v) = carried {
                    out.insert(def.name.to_string(), v);
                    continue;
                }
            }
            if def.required && def.mutability != Mutability::ReadOnly {
                return Err(Error::InvalidValue(format!(
                    "required attribute '{}' is missing",
                    prefix.child(def.name.as_str())
                )));
            }
        }
        Ok(())
    }

    /// Validates one attribute's value; `None` when it is unassigned or dropped in this context.
    fn attribute(
        &self,
        def: &AttributeDef,
        value: &Value,
        existing: Option<&Value>,
        path: &Path<'_>,
        in_multi: bool,
    ) -> Result<Option<Value>, Error> {
        if value.is_null() {
            return Ok(None);
        }
        match self.ctx {
            ValidationContext::Response
                if def.mutability == Mutability::WriteOnly || def.returned == Returned::Never =>
            {
                return Ok(None);
            }
            ValidationContext::Create
            | ValidationContext::Replace { .. }
            | ValidationContext::Patch { .. }
                if def.mutability == Mutability::ReadOnly =>
            {
                return Ok(None);
            }
            _ => {}
        }
        let result = if def.multi_valued {
            let Value::Array(items) = value else {
                return Err(Error::InvalidValue(format!(
                    "attribute '{path}' is multi-valued and must be an array"
                )));
            };
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    continue;
                }
                if let Some(v) = self.single(def, item, None, &Path::Item(path, i), true)? {
                    values.push(v);
                }
            }
            if def.attr_type == AttrType::Complex {
                let primaries = values.iter().filter(|v| {
                    v.as_object().and_then(|o| get_ci(o, "primary")) == Some(&Value::Bool(true))
                });
                if primaries.count() > 1 {
                    return Err(Error::InvalidValue(format!(
                        "attribute '{path}' has more than one value with \"primary\": true (RFC 7643 §2.4)"
                    )));
                }
            }
            (!values.is_empty()).then_some(Value::Array(values))
        } else {
            self.single(def, value, existing, path, in_multi)?
        };

        if def.mutability == Mutability::Immutable && !in_multi && self.ctx.existing().is_some() {
            if let (Some(new), Some(old)) = (&result, existing.filter(|v| !is_unassigned(v))) {
                if !equivalent(def, old, new) {
                    return Err(Error::Mutability(format!(
                        "attribute '{path}' is immutable and cannot be changed"
                    )));
                }
            }
        }
        Ok(result)
    }

    /// Validates one (non-array) value of `def`.
    fn single(
        &self,
        def: &AttributeDef,
        value: &Value,
        existing: Option<&Value>,
        path: &Path<'_>,
        in_multi: bool,
    ) -> Result<Option<Value>, Error> {
        let ok = match (def.attr_type, value) {
            (AttrType::Complex, Value::Object(obj)) => {
                let ex = existing.and_then(Value::as_object);
                let normalised = self.object(&[&def.sub_attributes], obj, ex, path, in_multi)?;
                return Ok((!normalised.is_empty()).then_some(Value::Object(normalised)));
            }
            (AttrType::String | AttrType::Reference, Value::String(_)) => true,
            (AttrType::Boolean, Value::Bool(_)) => true,
            (AttrType::Decimal, Value::Number(_)) => true,
            (AttrType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (AttrType::DateTime, Value::String(s)) => parse_date_time(s).is_some(),
            (AttrType::Binary, Value::String(s)) => is_base64(s),
            _ => false,
        };
        if !ok {
            return Err(Error::InvalidValue(format!(
                "attribute '{path}' must be {}",
                type_name(def.attr_type)
            )));
        }
        if self.opts.enforce_canonical_values && !def.canonical_values.is_empty() {
            if let Value::String(s) = value {
                let allowed = def.canonical_values.iter().any(|c| {
                    if def.case_exact {
                        c == s
                    } else {
                        c.to_lowercase() == s.to_lowercase()
                    }
                });
                if !allowed {
                    return Err(Error::InvalidValue(format!(
                        "attribute '{path}' must be one of: {}",
                        def.canonical_values.join(", ")
                    )));
                }
            }
        }
        Ok(Some(value.clone()))
    }
}

/// The immutable values among `defs` in `existing` (recursing into single-valued complex
/// attributes): what an omitted attribute keeps on replacement. `None` when there are none.
fn carry_immutable(
    defs: &[&[AttributeDef]],
    existing: &Map<String, Value>,
) -> Option<Map<String, Value>> {
    let carried: Map<String, Value> = defs
        .iter()
        .flat_map(|g| g.iter())
        .filter_map(|def| carry_one(def, existing).map(|v| (def.name.to_string(), v)))
        .collect();
    (!carried.is_empty()).then_some(carried)
}

fn carry_one(def: &AttributeDef, existing: &Map<String, Value>) -> Option<Value> {
    let ex = get_ci(existing, def.name.as_str()).filter(|v| !is_unassigned(v))?;
    match def.mutability {
        Mutability::Immutable => Some(ex.clone()),
        Mutability::ReadOnly => None,
        _ if def.attr_type == AttrType::Complex && !def.multi_valued => {
            carry_immutable(&[&def.sub_attributes], ex.as_object()?).map(Value::Object)
        }
        _ => None,
    }
}

/// Whether two values of `def` are the same for immutability: case-insensitive strings unless
/// `caseExact`, instants for dateTime, numbers by value, multi-valued as unordered collections,
/// complex values compared over their non-readOnly sub-attributes with unassigned = absent.
fn equivalent(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    if def.multi_valued {
        let (Value::Array(a), Value::Array(b)) = (a, b) else {
            return false;
        };
        return a.len() == b.len()
            && a.iter()
                .all(|x| b.iter().any(|y| single_equivalent(def, x, y)))
            && b.iter()
                .all(|y| a.iter().any(|x| single_equivalent(def, x, y)));
    }
    single_equivalent(def, a, b)
}

fn single_equivalent(def: &AttributeDef, a: &Value, b: &Value) -> bool {
    match (def.attr_type, a, b) {
        (AttrType::Complex, Value::Object(a), Value::Object(b)) => def
            .sub_attributes
            .iter()
            .filter(|s| s.mutability != Mutability::ReadOnly)
            .all(|s| {
                let x = get_ci(a, s.name.as_str()).filter(|v| !is_unassigned(v));
                let y = get_ci(b, s.name.as_str()).filter(|v| !is_unassigned(v));
                match (x, y) {
                    (None, None) => true,
                    (Some(x), Some(y)) => equivalent(s, x, y),
                    _ => false,
                }
            }),
        (AttrType::DateTime, Value::String(x), Value::String(y)) => {
            match (parse_date_time(x), parse_date_time(y)) {
                (Some(x), Some(y)) => x == y,
                _ => x == y,
            }
        }
        (_, Value::String(x), Value::String(y)) if !def.case_exact => {
            x.to_lowercase() == y.to_lowercase()
        }
        (_, Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert!(is_base64("TWFu"));
        assert!(is_base64("TWE="));
        assert!(is_base64("TWE"));
        assert!(is_base64("TQ=="));
        assert!(is_base64(""));
        assert!(!is_base64("TWFu!"));
        assert!(!is_base64("T"));
        assert!(!is_base64("TQ="));
        assert!(!is_base64("T==="));
        assert!(!is_base64("TW-_"));
    }

    #[test]
    fn date_times() {
        assert!(parse_date_time("2008-01-23T04:56:22Z").is_some());
        assert!(parse_date_time("2008-01-23T04:56:22.123+02:00").is_some());
        assert!(parse_date_time("2008-01-23T04:56:22").is_some());
        assert!(parse_date_time("2008-01-23").is_none());
        assert!(parse_date_time("yesterday").is_none());
        assert_eq!(
            parse_date_time("2008-01-23T06:56:22+02:00"),
            parse_date_time("2008-01-23T04:56:22Z")
        );
    }

    #[test]
    fn equivalence_honours_case_exact() {
        let ci = AttributeDef {
            name: "a".into(),
            attr_type: AttrType::String,
            multi_valued: false,
            description: None,
            required: false,
            canonical_values: vec![],
            case_exact: false,
            mutability: Mutability::Immutable,
            returned: Returned::Default,
            uniqueness: super::super::attribute::Uniqueness::None,
            reference_types: vec![],
            sub_attributes: vec![],
        };
        let ce = AttributeDef {
            case_exact: true,
            ..ci.clone()
        };
        let (x, y) = (Value::from("Abc"), Value::from("aBC"));
        assert!(equivalent(&ci, &x, &y));
        assert!(!equivalent(&ce, &x, &y));
    }
}
