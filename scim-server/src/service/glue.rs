//! The seam to `scim-schema` for the pieces that crate is still growing (validation, projection,
//! PATCH application). Everything the service asks of the protocol model goes through these
//! functions, so moving each to the `scim_schema` implementation is a change in this file only.

use scim_schema::json::{find_key, get_ci, remove_ci};
use scim_schema::Error;
use serde_json::{Map, Value};

use crate::http::query::Projection;
use crate::store::{Doc, ResourceKind};

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

pub fn main_urn(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::User => USER_URN,
        ResourceKind::Group => GROUP_URN,
    }
}

/// Attributes the server owns: ignored when a client sends them (RFC 7643 §3.1 readOnly).
const READ_ONLY: [&str; 3] = ["id", "meta", "groups"];

/// Checks a create/replace document and returns it without read-only attributes.
pub fn validate_write(doc: Value, kind: ResourceKind) -> Result<Doc, Error> {
    let Value::Object(mut doc) = doc else {
        return Err(Error::InvalidSyntax(
            "The resource must be a JSON object.".into(),
        ));
    };
    if let Some(schemas) = get_ci(&doc, "schemas") {
        let urns = schemas
            .as_array()
            .ok_or_else(|| Error::InvalidValue("schemas must be an array of URNs.".into()))?;
        let known = |u: &Value| {
            u.as_str().is_some_and(|u| {
                u.eq_ignore_ascii_case(main_urn(kind))
                    || (kind == ResourceKind::User && u.eq_ignore_ascii_case(ENTERPRISE_URN))
            })
        };
        if let Some(bad) = urns.iter().find(|u| !known(u)) {
            return Err(Error::InvalidValue(format!(
                "Unknown schema {bad} for a {kind}."
            )));
        }
    }
    for k in READ_ONLY {
        remove_ci(&mut doc, k);
    }
    let required = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    match get_ci(&doc, required) {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(Error::InvalidValue(format!("{required} is required.")))
        }
        Some(_) => return Err(Error::InvalidValue(format!("{required} must be a string."))),
    }
    if let Some(active) = get_ci(&doc, "active") {
        if !active.is_boolean() && !active.is_null() {
            return Err(Error::InvalidValue("active must be a boolean.".into()));
        }
    }
    let mut urns = vec![Value::String(main_urn(kind).into())];
    if find_key(&doc, ENTERPRISE_URN).is_some() {
        urns.push(Value::String(ENTERPRISE_URN.into()));
    }
    remove_ci(&mut doc, "schemas");
    doc.insert("schemas".into(), Value::Array(urns));
    Ok(doc)
}

/// `attributes`/`excludedAttributes` over a response document; `password` (returned=never) is
/// always removed, `id`, `schemas` and `meta` (returned=always) always kept.
pub fn project(mut doc: Doc, p: &Projection) -> Doc {
    remove_ci(&mut doc, "password");
    let top = |a: &str| -> String {
        let a = a.rsplit_once(':').map(|(_, n)| n).unwrap_or(a);
        a.split('.').next().unwrap_or(a).to_ascii_lowercase()
    };
    if !p.attributes.is_empty() {
        let keep: Vec<String> = p.attributes.iter().map(|a| top(a)).collect();
        doc.retain(|k, _| {
            let k = k.to_ascii_lowercase();
            matches!(k.as_str(), "id" | "schemas" | "meta")
                || keep.contains(&k)
                || k.starts_with("urn:")
        });
    } else if !p.excluded.is_empty() {
        let drop: Vec<String> = p
            .excluded
            .iter()
            .map(|a| top(a))
            .filter(|a| !matches!(a.as_str(), "id" | "schemas" | "meta"))
            .collect();
        doc.retain(|k, _| !drop.contains(&k.to_ascii_lowercase()));
    }
    doc
}

/// One PATCH operation (RFC 7644 §3.5.2), op already lower-cased.
#[derive(Debug, Clone)]
pub struct PatchOp {
    pub op: String,
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// Parses a PatchOp request body.
pub fn parse_patch(body: &Value) -> Result<Vec<PatchOp>, Error> {
    let obj = body
        .as_object()
        .ok_or_else(|| Error::InvalidSyntax("A PatchOp must be a JSON object.".into()))?;
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::InvalidSyntax("A PatchOp needs an Operations array.".into()))?;
    ops.iter()
        .map(|o| {
            let o = o
                .as_object()
                .ok_or_else(|| Error::InvalidSyntax("Each operation must be an object.".into()))?;
            let op = get_ci(o, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            if !matches!(op.as_str(), "add" | "remove" | "replace") {
                return Err(Error::InvalidSyntax(format!("Unknown PATCH op {op:?}.")));
            }
            let path = get_ci(o, "path")
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|p| !p.is_empty());
            if op == "remove" && path.is_none() {
                return Err(Error::NoTarget("A remove operation needs a path.".into()));
            }
            Ok(PatchOp {
                op,
                path,
                value: get_ci(o, "value").cloned(),
            })
        })
        .collect()
}

/// "True"/"False" strings as booleans for `active` (what Entra sends).
fn fix_bool(name: &str, v: Value) -> Value {
    match (name.eq_ignore_ascii_case("active"), &v) {
        (true, Value::String(s)) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        (true, Value::String(s)) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => v,
    }
}

fn set_path(doc: &mut Doc, path: &str, value: Value, add: bool) -> Result<(), Error> {
    let (urn, rest) = match path.rfind(':') {
        Some(i) if path.to_ascii_lowercase().starts_with("urn:") => {
            (Some(&path[..i]), &path[i + 1..])
        }
        _ => (None, path),
    };
    if rest.contains('[') {
        return Err(Error::InvalidPath(format!(
            "Value filters in PATCH paths are not supported here: {path}"
        )));
    }
    let target: &mut Doc = match urn {
        Some(u) if !u.eq_ignore_ascii_case(USER_URN) && !u.eq_ignore_ascii_case(GROUP_URN) => {
            let key = find_key(doc, u).cloned().unwrap_or_else(|| u.to_string());
            let entry = doc.entry(key).or_insert_with(|| Value::Object(Map::new()));
            entry
                .as_object_mut()
                .ok_or_else(|| Error::InvalidValue(format!("{u} is not an object.")))?
        }
        _ => doc,
    };
    let mut parts = rest.splitn(2, '.');
    let name = parts.next().unwrap_or_default();
    let value = fix_bool(name, value);
    match parts.next() {
        None => {
            let key = find_key(target, name)
                .cloned()
                .unwrap_or_else(|| name.to_string());
            match (add, target.get_mut(&key), value) {
                (true, Some(Value::Array(existing)), Value::Array(new)) => existing.extend(new),
                (_, _, v) => {
                    target.insert(key, v);
                }
            }
        }
        Some(sub) => {
            let key = find_key(target, name)
                .cloned()
                .unwrap_or_else(|| name.to_string());
            let entry = target
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            let obj = entry
                .as_object_mut()
                .ok_or_else(|| Error::InvalidPath(format!("{name} is not complex.")))?;
            let sk = find_key(obj, sub)
                .cloned()
                .unwrap_or_else(|| sub.to_string());
            obj.insert(sk, value);
        }
    }
    Ok(())
}

/// Applies non-member operations to a document, all or nothing (the caller keeps the original).
pub fn apply_patch(mut doc: Doc, ops: &[PatchOp]) -> Result<Doc, Error> {
    for op in ops {
        match (op.op.as_str(), &op.path) {
            ("add" | "replace", None) => {
                let Some(Value::Object(values)) = &op.value else {
                    return Err(Error::InvalidValue(
                        "A path-less add/replace needs an object value.".into(),
                    ));
                };
                for (k, v) in values {
                    set_path(&mut doc, k, v.clone(), op.op == "add")?;
                }
            }
            ("add" | "replace", Some(path)) => {
                let value = op.value.clone().ok_or_else(|| {
                    Error::InvalidValue(format!("Operation on {path} needs a value."))
                })?;
                set_path(&mut doc, path, value, op.op == "add")?;
            }
            (_, Some(path)) => {
                if path.contains('[') {
                    return Err(Error::InvalidPath(format!(
                        "Value filters in PATCH paths are not supported here: {path}"
                    )));
                }
                match path.split_once('.') {
                    Some((a, sub)) => {
                        if let Some(Value::Object(o)) =
                            find_key(&doc, a).cloned().and_then(|k| doc.get_mut(&k))
                        {
                            remove_ci(o, sub);
                        }
                    }
                    None => {
                        remove_ci(&mut doc, path);
                    }
                }
            }
            _ => return Err(Error::NoTarget("A remove operation needs a path.".into())),
        }
    }
    for k in READ_ONLY {
        remove_ci(&mut doc, k);
    }
    Ok(doc)
}

/// The resolved schema of a resource type, from the registry when it knows the type, else a
/// bare one naming only the main schema (enough for the store's column push-down).
pub fn resource_schema(
    registry: &scim_schema::schema::SchemaRegistry,
    kind: ResourceKind,
) -> scim_schema::schema::ResourceSchema {
    use scim_schema::schema::{ResourceSchema, ResourceType, Schema};
    registry
        .resource_schema(kind.as_str())
        .unwrap_or_else(|| ResourceSchema {
            resource_type: ResourceType {
                id: kind.as_str().into(),
                name: kind.as_str().into(),
                endpoint: format!("/{}", kind.endpoint()),
                description: None,
                schema: main_urn(kind).into(),
                schema_extensions: vec![],
            },
            main: std::sync::Arc::new(Schema {
                id: main_urn(kind).into(),
                name: None,
                description: None,
                attributes: vec![],
            }),
            extensions: vec![],
        })
}

pub use scim_schema::filter::parse::{parse_attr_path, parse_filter};
