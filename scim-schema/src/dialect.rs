//! What real SCIM clients send, normalised to RFC 7644 — every client quirk lives here.
//!
//! The server picks a [`Dialect`] per request ([`Dialect::detect`] from the `User-Agent`, or a
//! per-client setting), then calls [`normalize_patch`] on PATCH bodies and [`normalize_resource`]
//! on POST/PUT bodies, passes [`Dialect::patch_options`] to [`crate::patch::apply_patch`] and
//! parses filters with [`Dialect::filter_syntax`].
//!
//! Real deployments do not announce themselves reliably (agents change, gateways rewrite them,
//! validators send their own), so the default, [`Dialect::Standard`], accepts every quirk that is
//! *unambiguous*: one no valid RFC 7644 request can be read as, so accepting it changes the
//! meaning of no valid request. Quirks that would change meaning are kept for the client that
//! needs them, detected by `User-Agent` or configured per client. [`Dialect::Strict`] is plain
//! RFC 7644, an explicit choice: every quirk below is rejected with the error the RFC prescribes.
//!
//! # Quirks and where they come from
//!
//! | # | quirk | clients | normalised to | default ([`Dialect::Standard`]) | Strict |
//! |---|---|---|---|---|---|
//! | 1 | capitalised `op`: `"Replace"`, `"Add"`, `"Remove"` | Entra ID (non-gallery `customappsso` job and many gallery apps; Microsoft's "Known issues ... SCIM 2.0 protocol compliance" page, fixed behind `aadOptscim062020`) | lower case | accepted: no RFC op differs from another only by case | `invalidSyntax` |
//! | 2 | booleans as strings, `"active": "False"` / `"True"` | Entra ID (same page: "PATCH ... active ... 'False'") | JSON booleans, for attributes whose schema type is boolean | accepted: a string is never a valid boolean | `invalidValue` |
//! | 3 | path-less `replace`/`add` whose value keys are paths: `{"name.givenName": "x", "emails[type eq \"work\"].value": "y", "urn:...:enterprise:2.0:User:employeeNumber": "1"}` | Entra ID with `aadOptscim062020` (same page, "PATCH ... with a single replace") | one operation per path-key | accepted: no attribute name contains `.`, `[` or `:` | `invalidValue` (unknown attribute) |
//! | 4 | `manager` as a plain string (`"value": "id"`) or as an array `[{"value": "id"}]` | Entra ID (single-valued complex reference attribute sent the way Graph exposes it) | `{"value": "id"}` (any single-valued complex attribute with a `value` sub-attribute) | accepted: a string or array is never a valid single complex value | `invalidValue` |
//! | 4b | `manager` set to `""` to clear it | Entra ID | `remove` of the attribute | Entra ID only: `""` could be meant as a value | `invalidValue` |
//! | 5 | `remove` with a `value` list instead of a filter: `{"op":"Remove","path":"members","value":[{"value":"id"}]}` | Entra ID ("Tutorial: Develop and plan provisioning for a SCIM endpoint", Update Group [Remove Members]) | `remove` with path `members[value eq "id" or ...]` | accepted: RFC `remove` takes no value | `invalidSyntax` (remove takes no value) |
//! | 6 | `add`/`replace` of `emails[type eq "work"].value` when no work email exists | Entra ID (sent for every user whose mail changes; see Microsoft Q&A "SCIM PATCH of Complex Multi-Valued Attribute Includes Filter and Sub Attribute in Path") | creates `{"type": "work", "value": ...}` ([`PatchOptions::create_on_filter_miss`]) | `add`: accepted (§3.5.2.1 has no `noTarget` for add); `replace`: Entra ID and Lenient only (§3.5.2.3 requires `noTarget`) | `noTarget` |
//! | 7 | `remove members[value eq "id"]` for a member already gone | Entra ID and Okta retry membership changes | success ([`PatchOptions::remove_unmatched_ok`]) | accepted: the requested end state holds, so a retry is not an error | `noTarget` |
//! | 8 | `{"op":"Add","path":"members","value":[{"$ref": null, "value":"id"}]}` | Entra ID (tutorial, Update Group [Add Members]) | RFC already; `$ref: null` is dropped as unassigned | same | same |
//! | 9 | `{"op":"replace","value":{"active":false}}` to deactivate | Okta ("SCIM 2.0 ... Update a specific User (PATCH)"; Okta deactivates users, never deletes them) | RFC already (path-less replace) | same | same |
//! | 10 | group rename `{"op":"replace","value":{"id":"<same id>","displayName":"new"}}` | Okta (Group Push, "Update a specific Group name") | RFC already: writing a readOnly attribute with its current value is a no-op in [`crate::patch`] | same | same |
//! | 11 | `add` on a single-valued attribute meaning replace | Entra ID | RFC already (§3.5.2.1: "the existing value is replaced") | same | same |
//! | 12 | POST/PUT bodies with `"active": "True"`, or a single object where an array is expected (`"emails": {...}`) | Entra ID (string booleans); assorted lenient clients | booleans; the single value wrapped in an array | accepted: neither is valid as sent | left to validation |
//! | 13 | path-less values naming `schemas`, `id`, `meta` with unchanged values | several clients echo the resource back | [`PatchOptions::ignore_read_only`] | Lenient only | `mutability` when changed |
//! | 14 | a schema URI scimhub does not serve in `schemas`, with no attributes under it: `http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group` | Entra ID (tutorial, Create Group) | dropped from `schemas` (never stored) | accepted: it carries no data | `invalidValue` from validation |
//! | 15 | a comparison on a value path's sub-attribute in a filter: `emails[type eq "work"].value eq "x"` | Entra ID (SCIM Validator, provisioning of users matched by email) | `emails[type eq "work" and value eq "x"]` ([`crate::filter::FilterSyntax::ValuePathSubAttr`]) | accepted: not RFC grammar | `invalidFilter` |
//! | 16 | a PATCH, SearchRequest or BulkRequest body without its message `schemas`, or (Search, Bulk) with members the message does not define | hand-written clients | accepted as that message, unknown members ignored | Lenient only: RFC 7643 §3 makes `schemas` REQUIRED, and an ignored misspelt member changes the request's meaning | `invalidSyntax` ([`check_request_message`]) |

use serde_json::{Map, Value};

use crate::error::Error;
use crate::filter::ast::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
use crate::filter::parse::{parse_patch_path, FilterSyntax};
use crate::json::get_ci;
use crate::message::{
    has_schema, PatchOpKind, PatchOpRequest, PatchOperation, RawPatchOperation, PATCH_OP,
};
use crate::patch::PatchOptions;
use crate::schema::{AttrType, AttributeDef, ResourceSchema};

/// How much of what a client sends is accepted beyond RFC 7644.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dialect {
    /// RFC 7644 as written: an explicit choice for operators who want the RFC only.
    Strict,
    /// RFC 7644 plus every unambiguous quirk (1–5, 6 for `add`, 7, 8, 12, 14, 15): what a
    /// client that does not announce itself gets.
    #[default]
    Standard,
    /// Microsoft Entra ID (formerly Azure AD) provisioning: the default plus 4b and 6.
    EntraId,
    /// Okta provisioning: the default (Okta needs nothing beyond it).
    Okta,
    /// Everything above, plus readOnly attributes in requests ignored (13) and PATCH bodies
    /// without `schemas` (16).
    Lenient,
}

impl Dialect {
    /// The dialect a `User-Agent` announces, [`Dialect::Standard`] when unknown or absent.
    ///
    /// * Okta sends `Okta SCIM Client 1.0.0` (Okta's SCIM 2.0 reference: "User-Agent: Okta SCIM Client").
    /// * Entra ID's provisioning service has announced itself as `Microsoft Azure AD SCIM provisioning`
    ///   (matched by "azure ad"), and older/newer agents spell "Azure Active Directory",
    ///   "AzureAD" or "Microsoft Entra"; any agent naming Azure AD, Entra or Microsoft is taken as
    ///   Entra ID.
    pub fn detect(user_agent: Option<&str>) -> Dialect {
        let Some(ua) = user_agent else {
            return Dialect::Standard;
        };
        let ua = ua.to_ascii_lowercase();
        if ua.contains("okta") {
            Dialect::Okta
        } else if [
            "azure ad",
            "azuread",
            "azure active directory",
            "entra",
            "microsoft",
            "aadprovisioning",
        ]
        .iter()
        .any(|needle| ua.contains(needle))
        {
            Dialect::EntraId
        } else {
            Dialect::Standard
        }
    }

    /// The [`PatchOptions`] this dialect needs (quirks 6, 7, 13).
    pub fn patch_options(self) -> PatchOptions {
        match self {
            Dialect::Strict => PatchOptions::default(),
            Dialect::Standard | Dialect::Okta => PatchOptions {
                create_on_filter_miss: false,
                create_on_add_filter_miss: true,
                remove_unmatched_ok: true,
                ignore_read_only: false,
            },
            Dialect::EntraId => PatchOptions {
                create_on_filter_miss: true,
                create_on_add_filter_miss: true,
                remove_unmatched_ok: true,
                ignore_read_only: false,
            },
            Dialect::Lenient => PatchOptions {
                create_on_filter_miss: true,
                create_on_add_filter_miss: true,
                remove_unmatched_ok: true,
                ignore_read_only: true,
            },
        }
    }

    /// The filter grammar this dialect accepts (quirk 15).
    pub fn filter_syntax(self) -> FilterSyntax {
        match self {
            Dialect::Strict => FilterSyntax::Rfc7644,
            _ => FilterSyntax::ValuePathSubAttr,
        }
    }

    /// Whether the unambiguous quirks are accepted (everything but [`Dialect::Strict`]).
    fn accepts_quirks(self) -> bool {
        self != Dialect::Strict
    }

    /// Quirk 4b: `""` for a single-valued complex attribute clears it.
    fn empty_string_clears(self) -> bool {
        matches!(self, Dialect::EntraId | Dialect::Lenient)
    }
}

/// Turns a received PatchOp body into typed operations, rewriting this dialect's quirks into RFC
/// form. Errors: `invalidSyntax` for a wrong message schema or an unknown `op`, `invalidPath` for
/// an unparsable path, `invalidValue` for values the quirks cannot make sense of.
pub fn normalize_patch(
    raw: PatchOpRequest,
    dialect: Dialect,
    schema: &ResourceSchema,
) -> Result<Vec<PatchOperation>, Error> {
    if !has_schema(&raw.schemas, PATCH_OP) && dialect != Dialect::Lenient {
        return Err(Error::InvalidSyntax(format!(
            "a PATCH request must have the schema {PATCH_OP}"
        )));
    }
    if raw.operations.is_empty() {
        return Err(Error::InvalidValue(
            "'Operations' must hold at least one operation".into(),
        ));
    }
    let mut out = Vec::with_capacity(raw.operations.len());
    for (i, op) in raw.operations.into_iter().enumerate() {
        let from = out.len();
        normalize_op(op, dialect, schema, &mut out).map_err(|e| e.in_operation(i))?;
        // One request operation may become several (quirk 3): errors must name the one sent.
        for op in &mut out[from..] {
            op.request_index = Some(i);
        }
    }
    Ok(out)
}

fn normalize_op(
    raw: RawPatchOperation,
    dialect: Dialect,
    schema: &ResourceSchema,
    out: &mut Vec<PatchOperation>,
) -> Result<(), Error> {
    // Quirk 1.
    let kind = if dialect.accepts_quirks() {
        PatchOpKind::parse_ci(raw.op.trim())
    } else {
        PatchOpKind::parse_strict(&raw.op)
    }
    .ok_or_else(|| {
        Error::InvalidSyntax(format!(
            "unknown PATCH op {:?}; expected add, remove or replace",
            raw.op
        ))
    })?;
    let path = match raw.path.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) => Some(parse_patch_path(p)?),
    };
    if !dialect.accepts_quirks() {
        out.push(PatchOperation::new(kind, path, raw.value));
        return Ok(());
    }
    match path {
        None => {
            let value = match raw.value {
                Some(Value::Object(m)) if kind != PatchOpKind::Remove => m,
                value => {
                    out.push(PatchOperation::new(kind, None, value));
                    return Ok(());
                }
            };
            // Quirk 3: split keys that are paths into operations of their own.
            let mut plain = Map::new();
            let mut with_path = Vec::new();
            let mut named = Named::default();
            for (k, v) in value {
                if is_plain_key(schema, &k) {
                    named.plain(schema, &k, &v)?;
                    let v = coerce_top_level(schema, &k, v);
                    plain.insert(k, v);
                } else {
                    let p = parse_patch_path(&k)?;
                    named.path(schema, &k, &p)?;
                    with_path.push((p, v));
                }
            }
            if !plain.is_empty() {
                out.push(PatchOperation::new(kind, None, Some(Value::Object(plain))));
            }
            for (p, v) in with_path {
                push_with_path(kind, p, Some(v), dialect, schema, out)?;
            }
            Ok(())
        }
        Some(p) => push_with_path(kind, p, raw.value, dialect, schema, out),
    }
}

/// The attributes a path-less value names, by definition: one named twice (in another case,
/// by its URN-qualified name or a dotted path beside its object, inside and outside its
/// extension object) is refused as POST refuses it, instead of one key silently winning once
/// the keys are split into operations of their own.
#[derive(Default)]
struct Named<'s>(Vec<&'s AttributeDef>);

impl<'s> Named<'s> {
    fn once(&mut self, def: &'s AttributeDef, key: &str) -> Result<(), Error> {
        if self.0.iter().any(|d| std::ptr::eq(*d, def)) {
            return Err(Error::InvalidSyntax(format!(
                "attribute '{key}' is given more than once"
            )));
        }
        self.0.push(def);
        Ok(())
    }

    /// A plain key: an attribute (with the sub-attributes its object value names), or an
    /// extension object (with the attributes inside it).
    fn plain(&mut self, schema: &'s ResourceSchema, key: &str, v: &Value) -> Result<(), Error> {
        if let Some(ext) = schema.extension(key) {
            if let Value::Object(inner) = v {
                for k2 in inner.keys() {
                    if let Some(d) = ext.attribute(k2) {
                        self.once(d, k2)?;
                    }
                }
            }
            return Ok(());
        }
        let Some((_, def)) = schema.top_level(None, key) else {
            return Ok(());
        };
        self.once(def, key)?;
        if let (false, Value::Object(inner)) = (def.multi_valued, v) {
            for k2 in inner.keys() {
                if let Some(d) = def.sub_attribute(k2) {
                    self.once(d, &format!("{key}.{k2}"))?;
                }
            }
        }
        Ok(())
    }

    /// A key that is a path without a filter (one with a filter names some values only).
    fn path(&mut self, schema: &'s ResourceSchema, key: &str, p: &PatchPath) -> Result<(), Error> {
        if p.value_filter.is_some() {
            return Ok(());
        }
        let urn = p.attr.urn.as_ref().map(|u| u.as_str());
        let Some((_, def)) = schema.top_level(urn, p.attr.name.as_str()) else {
            return Ok(());
        };
        match &p.attr.sub_attr {
            None => self.once(def, key),
            Some(sub) => match def.sub_attribute(sub.as_str()) {
                Some(d) => self.once(d, key),
                None => Ok(()),
            },
        }
    }
}

/// Whether a path-less value key is an attribute name or an extension URN (not a path).
fn is_plain_key(schema: &ResourceSchema, k: &str) -> bool {
    schema.is_extension_key(k) || k.eq_ignore_ascii_case("schemas") || !k.contains(['.', '[', ':'])
}

fn coerce_top_level(schema: &ResourceSchema, k: &str, v: Value) -> Value {
    if let Some(ext) = schema.extension(k) {
        return match v {
            Value::Object(mut m) => {
                for (k2, v2) in m.iter_mut() {
                    if let Some(d) = ext.attribute(k2) {
                        *v2 = coerce(d, std::mem::take(v2));
                    }
                }
                Value::Object(m)
            }
            other => other,
        };
    }
    match schema.top_level(None, k) {
        Some((_, def)) => coerce(def, v),
        None => v,
    }
}

/// An operation with a path, with quirks 2, 4 and 5 applied to its value.
fn push_with_path(
    kind: PatchOpKind,
    p: PatchPath,
    value: Option<Value>,
    dialect: Dialect,
    schema: &ResourceSchema,
    out: &mut Vec<PatchOperation>,
) -> Result<(), Error> {
    let top = schema
        .top_level(
            p.attr.urn.as_ref().map(|u| u.as_str()),
            p.attr.name.as_str(),
        )
        .map(|(_, d)| d);
    let Some(top) = top else {
        // A whole-extension path: its value is the extension object (quirks 2 and 4 inside it).
        let value = match schema.extension_index_named_by(&p.attr) {
            Some(idx) if p.value_filter.is_none() => {
                let urn = schema.extensions[idx].0.id.as_str();
                value.map(|v| coerce_top_level(schema, urn, v))
            }
            // Unknown attribute: let apply_patch judge it.
            _ => value,
        };
        out.push(PatchOperation::new(kind, Some(p), value));
        return Ok(());
    };
    let sub = p
        .attr
        .sub_attr
        .as_ref()
        .or(p.sub_attr.as_ref())
        .and_then(|s| top.sub_attribute(s.as_str()));
    let has_filter = p.value_filter.is_some();

    if kind == PatchOpKind::Remove {
        // Quirk 5.
        return match value {
            None | Some(Value::Null) => {
                out.push(PatchOperation::new(kind, Some(p), None));
                Ok(())
            }
            Some(v) if top.multi_valued && !has_filter && sub.is_none() => {
                // An empty list removes nothing.
                if let Some(f) = value_list_filter(top, v)? {
                    let p = PatchPath {
                        value_filter: Some(f),
                        sub_attr: None,
                        ..p
                    };
                    out.push(PatchOperation::new(kind, Some(p), None));
                }
                Ok(())
            }
            Some(_) => {
                out.push(PatchOperation::new(kind, Some(p), None));
                Ok(())
            }
        };
    }
    let value = value.map(|v| match (sub, has_filter) {
        (Some(s), _) => coerce(s, v),
        (None, true) => coerce_single(top, v),
        (None, false) => coerce(top, v),
    });
    // Quirk 4b: an empty string for a single-valued complex attribute (manager) clears it.
    if dialect.empty_string_clears()
        && !top.multi_valued
        && top.attr_type == AttrType::Complex
        && sub.is_none()
        && value.as_ref().is_some_and(|v| v.as_str() == Some(""))
    {
        out.push(PatchOperation::new(PatchOpKind::Remove, Some(p), None));
        return Ok(());
    }
    out.push(PatchOperation::new(kind, Some(p), value));
    Ok(())
}

/// `[{"value": "a"}, {"value": "b"}]` (or `["a", "b"]`) → `value eq "a" or value eq "b"`.
fn value_list_filter(def: &AttributeDef, v: Value) -> Result<Option<Filter>, Error> {
    let items = match v {
        Value::Array(items) => items,
        single => vec![single],
    };
    let mut clauses = Vec::with_capacity(items.len());
    for item in items {
        let id = match &item {
            Value::String(s) => s.clone(),
            Value::Object(m) => match get_ci(m, "value") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(Error::InvalidValue(format!(
                        "remove from '{}': each value needs a 'value'",
                        def.name
                    )))
                }
            },
            _ => {
                return Err(Error::InvalidValue(format!(
                    "remove from '{}': unsupported value",
                    def.name
                )))
            }
        };
        clauses.push(Filter::Compare {
            path: AttrPath::simple("value"),
            op: CompareOp::Eq,
            value: CompValue::Str(id),
        });
    }
    // Balanced: Entra may list thousands of members in one remove.
    Ok(Filter::any_of(clauses))
}

/// Quirks 2, 4 and 12 for one attribute's value, guided by its definition.
fn coerce(def: &AttributeDef, v: Value) -> Value {
    if def.multi_valued {
        match v {
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|i| coerce_single(def, i)).collect())
            }
            Value::Null => Value::Null,
            single => Value::Array(vec![coerce_single(def, single)]),
        }
    } else {
        coerce_single(def, v)
    }
}

fn coerce_single(def: &AttributeDef, v: Value) -> Value {
    match (def.attr_type, v) {
        (AttrType::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(s),
        },
        (AttrType::Complex, Value::Object(m)) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let v = match def.sub_attribute(&k) {
                        Some(s) => coerce(s, v),
                        None => v,
                    };
                    (k, v)
                })
                .collect(),
        ),
        (AttrType::Complex, Value::Array(mut items)) if !def.multi_valued && items.len() == 1 => {
            coerce_single(def, items.pop().unwrap_or(Value::Null))
        }
        (AttrType::Complex, v @ (Value::String(_) | Value::Number(_)))
            if def.sub_attribute("value").is_some() =>
        {
            if v.as_str() == Some("") {
                return v;
            }
            let mut m = Map::new();
            m.insert("value".to_owned(), v);
            Value::Object(m)
        }
        (_, v) => v,
    }
}

/// Checks the envelope of a SearchRequest or BulkRequest body (RFC 7644 §3.4.3, §3.7): its
/// `schemas` must list `urn`, and every member must be one of `known` (matched
/// case-insensitively, RFC 7643 §2.1). An unknown member is refused because the message would
/// otherwise mean something else than the client wrote: a misspelt `filter` lists the whole
/// directory, a misspelt `failOnErrors` or `version` drops a limit or a precondition. Lenient
/// only accepts both (quirk 16). Returns `invalidSyntax` naming what is wrong.
pub fn check_request_message(
    body: &Map<String, Value>,
    what: &str,
    urn: &str,
    known: &[&str],
    dialect: Dialect,
) -> Result<(), Error> {
    let schemas_keys = body
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("schemas"))
        .count();
    if schemas_keys > 1 {
        return Err(Error::InvalidSyntax(format!(
            "a {what} names \"schemas\" more than once (in different cases)"
        )));
    }
    if dialect == Dialect::Lenient {
        return Ok(());
    }
    let schemas = body
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("schemas"))
        .map(|(_, v)| v);
    let lists_urn = matches!(schemas, Some(Value::Array(items))
        if items.iter().any(|i| i.as_str().is_some_and(|u| u.eq_ignore_ascii_case(urn))));
    if !lists_urn {
        return Err(Error::InvalidSyntax(format!(
            "a {what} must have \"schemas\": [\"{urn}\"]"
        )));
    }
    check_members(body, what, known)
}

/// Refuses an object naming one member twice in different cases (`method` and `METHOD`): read
/// case-insensitively (RFC 7643 §2.1) they are one member given two values, and taking either
/// would silently drop the other.
pub fn check_case_duplicates(object: &Map<String, Value>, what: &str) -> Result<(), Error> {
    let keys: Vec<&String> = object.keys().collect();
    for (i, a) in keys.iter().enumerate() {
        if let Some(b) = keys[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a)) {
            let cut = |k: &str| k.chars().take(64).collect::<String>();
            return Err(Error::InvalidSyntax(format!(
                "a {what} names one member twice: {:?} and {:?}",
                cut(a),
                cut(b)
            )));
        }
    }
    Ok(())
}

/// Refuses a member of `object` that is not `schemas` or one of `known` (case-insensitively).
pub fn check_members(object: &Map<String, Value>, what: &str, known: &[&str]) -> Result<(), Error> {
    let unknown: Vec<&str> = object
        .keys()
        .filter(|k| {
            !k.eq_ignore_ascii_case("schemas") && !known.iter().any(|n| k.eq_ignore_ascii_case(n))
        })
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    // A few names, each cut short: the detail must not echo a megabyte of member names.
    let shown: Vec<String> = unknown
        .iter()
        .take(5)
        .map(|k| format!("{:?}", k.chars().take(64).collect::<String>()))
        .collect();
    Err(Error::InvalidSyntax(format!(
        "a {what} has no member {}; it takes {}",
        shown.join(", "),
        known.join(", ")
    )))
}

/// Normalises a POST/PUT body (quirks 2, 4, 12, 14). `Strict` returns it unchanged: validation
/// then reports what is wrong.
pub fn normalize_resource(
    doc: Map<String, Value>,
    dialect: Dialect,
    schema: &ResourceSchema,
) -> Result<Map<String, Value>, Error> {
    if !dialect.accepts_quirks() {
        return Ok(doc);
    }
    let carried: Vec<String> = doc
        .keys()
        .filter(|k| k.contains(':'))
        .map(|k| k.to_ascii_lowercase())
        .collect();
    // In place: rebuilding the map re-hashed every key of every request.
    let mut doc = doc;
    for (k, v) in doc.iter_mut() {
        let old = std::mem::take(v);
        *v = if k.eq_ignore_ascii_case("schemas") {
            drop_foreign_schema_uris(old, schema, &carried)
        } else {
            coerce_top_level(schema, k, old)
        };
    }
    Ok(doc)
}

/// Quirk 14: keeps in `schemas` the URIs this resource type serves, and any other that names
/// attributes in the body (validation then refuses it: data under an unknown schema is not
/// dropped silently).
fn drop_foreign_schema_uris(v: Value, schema: &ResourceSchema, carried: &[String]) -> Value {
    let Value::Array(urns) = v else {
        return v;
    };
    // Only *extra* URIs beside the resource's own core schema; a body that does not list its
    // core schema at all gets validation's message naming what it does list.
    let lists_core = urns
        .iter()
        .any(|u| u.as_str().is_some_and(|u| schema.main.id.eq_str(u)));
    if !lists_core {
        return Value::Array(urns);
    }
    Value::Array(
        urns.into_iter()
            .filter(|u| match u.as_str() {
                Some(urn) => {
                    schema.schema(urn).is_some() || carried.contains(&urn.to_ascii_lowercase())
                }
                None => true,
            })
            .collect(),
    )
}
