//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) driven by the `returned`
//! characteristic (RFC 7643 §7).
//!
//! [`project`] takes the resource by value and moves what is kept, so a group with many members is
//! not copied. The rules, per attribute (and, inside a complex attribute, per sub-attribute):
//!
//! * `returned: always` (`id`, and `schemas`, which is always kept) — returned whatever the
//!   parameters say; `excludedAttributes` cannot remove it.
//! * `returned: never` (`password`) — never returned, even when named.
//! * `returned: default` — returned unless excluded; when `attributes` is given, only if named
//!   (itself, a sub-attribute of it, or its whole extension by URN).
//! * `returned: request` — returned only when named in `attributes`.
//!
//! Naming a complex attribute (`name`) selects its sub-attributes by their own `returned`;
//! naming a sub-attribute (`name.givenName`, `emails.value`, `meta.lastModified`) selects only it
//! (plus `always` sub-attributes); values of a multi-valued complex attribute left empty by the
//! selection are dropped. Extension attributes may be named with their URN
//! (`urn:…:enterprise:2.0:User:employeeNumber`) or without it when the name is not also a core
//! attribute; the whole extension is named by its URN alone. Attributes the schema does not
//! define are treated as `returned: default`. `excludedAttributes` is applied after `attributes`
//! when both are given. Paths naming nothing in the schema are ignored, as RFC 7644 §3.4.2.5 does
//! not make them errors.

use serde_json::{Map, Value};

use crate::error::Error;
use crate::filter::parse::parse_attr_path;
use crate::filter::AttrPath;
use crate::name::eq_ci;
use crate::schema::attribute::{AttributeDef, Returned};
use crate::schema::ResourceSchema;

/// Parses the comma-separated value of `attributes` or `excludedAttributes`
/// (`userName,name.givenName,urn:…:enterprise:2.0:User:manager`). Whitespace around entries is
/// ignored; an empty parameter is an empty list; an empty entry or a bad path is
/// [`Error::InvalidPath`].
pub fn parse_attribute_list(param: &str) -> Result<Vec<AttrPath>, Error> {
    if param.trim().is_empty() {
        return Ok(Vec::new());
    }
    param
        .split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return Err(Error::InvalidPath("empty entry in attribute list".into()));
            }
            parse_attr_path(item)
        })
        .collect()
}

/// Where a requested path points, resolved against the resource type.
#[derive(Debug)]
enum Target<'p> {
    /// A whole extension (its URN alone).
    Extension(usize),
    /// An attribute of the main schema (or a common one) when `ext` is `None`, else of extension
    /// `ext`; `sub` is the sub-attribute named, if any.
    Attr {
        ext: Option<usize>,
        name: &'p str,
        sub: Option<&'p str>,
    },
}

fn resolve<'p>(path: &'p AttrPath, schema: &ResourceSchema) -> Option<Target<'p>> {
    let name = path.name.as_str();
    let sub = path.sub_attr.as_ref().map(|s| s.as_str());
    match &path.urn {
        Some(urn) => {
            let urn = urn.as_str();
            if schema.main.id.eq_str(urn) {
                return Some(Target::Attr {
                    ext: None,
                    name,
                    sub,
                });
            }
            if let Some(ext) = schema.extension_index(urn) {
                return Some(Target::Attr {
                    ext: Some(ext),
                    name,
                    sub,
                });
            }
            // A bare schema URN parses as `urn = "…:2.0"`, `name = "User"`.
            schema.extension_index_named_by(path).map(Target::Extension)
        }
        None => {
            if schema.main_attribute(name).is_some() {
                return Some(Target::Attr {
                    ext: None,
                    name,
                    sub,
                });
            }
            let ext = schema
                .extensions
                .iter()
                .position(|(s, _)| s.attribute(name).is_some());
            // Unknown names stay with the main schema so that undefined attributes can be named.
            Some(Target::Attr { ext, name, sub })
        }
    }
}

/// What the request says about one attribute.
#[derive(Debug, Default)]
struct Selection<'p> {
    /// Named in `attributes` as a whole (or via its whole extension).
    whole: bool,
    /// Sub-attributes named in `attributes`.
    subs: Vec<&'p str>,
    /// Excluded as a whole.
    excluded: bool,
    /// Sub-attributes excluded.
    excluded_subs: Vec<&'p str>,
}

struct Request<'p> {
    attributes: Vec<Target<'p>>,
    excluded: Vec<Target<'p>>,
    /// Whether `attributes` was given (then only named attributes are returned).
    restricted: bool,
}

impl<'p> Request<'p> {
    fn selection(&self, ext: Option<usize>, name: &str) -> Selection<'p> {
        let mut sel = Selection::default();
        for t in &self.attributes {
            match *t {
                Target::Extension(e) if Some(e) == ext => sel.whole = true,
                Target::Attr {
                    ext: te,
                    name: n,
                    sub,
                } if te == ext && eq_ci(n, name) => match sub {
                    Some(s) => sel.subs.push(s),
                    None => sel.whole = true,
                },
                _ => {}
            }
        }
        for t in &self.excluded {
            match *t {
                Target::Extension(e) if Some(e) == ext => sel.excluded = true,
                Target::Attr {
                    ext: te,
                    name: n,
                    sub,
                } if te == ext && eq_ci(n, name) => match sub {
                    Some(s) => sel.excluded_subs.push(s),
                    None => sel.excluded = true,
                },
                _ => {}
            }
        }
        sel
    }
}

/// Applies `attributes` and `excludedAttributes` to a resource (see the module documentation).
pub fn project(
    resource: Map<String, Value>,
    schema: &ResourceSchema,
    attributes: &[AttrPath],
    excluded: &[AttrPath],
) -> Map<String, Value> {
    let request = Request {
        attributes: attributes
            .iter()
            .filter_map(|p| resolve(p, schema))
            .collect(),
        excluded: excluded.iter().filter_map(|p| resolve(p, schema)).collect(),
        restricted: !attributes.is_empty(),
    };
    let mut out = Map::with_capacity(resource.len());
    for (key, value) in resource {
        if eq_ci(&key, "schemas") {
            out.insert(key, value);
            continue;
        }
        if let Some(idx) = schema.extension_index(&key) {
            let Value::Object(obj) = value else { continue };
            let ext = &schema.extensions[idx].0;
            let projected = project_object(obj, |n| ext.attribute(n), &request, Some(idx));
            if !projected.is_empty() {
                out.insert(key, Value::Object(projected));
            }
            continue;
        }
        if let Some(v) = project_attribute(schema.main_attribute(&key), &key, value, &request, None)
        {
            out.insert(key, v);
        }
    }
    out
}

fn project_object<'d>(
    obj: Map<String, Value>,
    lookup: impl Fn(&str) -> Option<&'d AttributeDef>,
    request: &Request<'_>,
    ext: Option<usize>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (key, value) in obj {
        if let Some(v) = project_attribute(lookup(&key), &key, value, request, ext) {
            out.insert(key, v);
        }
    }
    out
}

/// Projects one top-level attribute (of the main schema when `ext` is `None`).
fn project_attribute(
    def: Option<&AttributeDef>,
    key: &str,
    value: Value,
    request: &Request<'_>,
    ext: Option<usize>,
) -> Option<Value> {
    let returned = def.map_or(Returned::Default, |d| d.returned);
    let sel = request.selection(ext, key);
    match returned {
        Returned::Never => return None,
        Returned::Always => return Some(value),
        Returned::Request if !sel.whole && sel.subs.is_empty() => return None,
        Returned::Default | Returned::Request => {
            if request.restricted && !sel.whole && sel.subs.is_empty() {
                return None;
            }
            if sel.excluded {
                return None;
            }
        }
    }
    let Some(def) = def.filter(|d| !d.sub_attributes.is_empty()) else {
        return Some(value);
    };
    // Only named sub-attributes when some are named and the attribute as a whole is not.
    let only_named = !sel.whole && !sel.subs.is_empty();
    let keep_sub = |name: &str| -> bool {
        let sub_def = def.sub_attribute(name);
        let named = sel.subs.iter().any(|s| eq_ci(s, name));
        match sub_def.map_or(Returned::Default, |s| s.returned) {
            Returned::Never => false,
            Returned::Always => true,
            Returned::Request => named,
            Returned::Default => {
                (!only_named || named) && !sel.excluded_subs.iter().any(|s| eq_ci(s, name))
            }
        }
    };
    let filter_object = |obj: Map<String, Value>| -> Option<Value> {
        let kept: Map<String, Value> = obj.into_iter().filter(|(k, _)| keep_sub(k)).collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Object(obj) => filter_object(obj),
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|item| match item {
                    Value::Object(obj) => filter_object(obj),
                    other => Some(other),
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaRegistry;
    use serde_json::json;

    fn user() -> ResourceSchema {
        SchemaRegistry::core()
            .resource_schema("User")
            .unwrap_or_else(|| panic!("User"))
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object"),
        }
    }

    fn paths(s: &str) -> Vec<AttrPath> {
        parse_attribute_list(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_lists() {
        assert_eq!(paths(" userName , name.givenName ").len(), 2);
        assert!(paths("").is_empty());
        assert!(matches!(
            parse_attribute_list("userName,,name"),
            Err(Error::InvalidPath(_))
        ));
        assert!(matches!(
            parse_attribute_list("user name"),
            Err(Error::InvalidPath(_))
        ));
    }

    #[test]
    fn request_attributes_only_when_named() {
        let mut reg = SchemaRegistry::core();
        reg.load_schema_json(
            r#"{"id":"urn:x:ext","attributes":[{"name":"secretish","type":"string","returned":"request"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        reg.add_extension("User", "urn:x:ext", false)
            .unwrap_or_else(|e| panic!("{e}"));
        let schema = reg
            .resource_schema("User")
            .unwrap_or_else(|| panic!("User"));
        let r = obj(json!({"id": "1", "userName": "u", "urn:x:ext": {"secretish": "s"}}));
        let plain = project(r.clone(), &schema, &[], &[]);
        assert!(plain.get("urn:x:ext").is_none());
        let named = project(r, &schema, &paths("secretish"), &[]);
        assert_eq!(named.get("urn:x:ext"), Some(&json!({"secretish": "s"})));
        assert_eq!(named.get("userName"), None);
    }

    #[test]
    fn unknown_attributes_are_default() {
        let r = obj(json!({"id": "1", "custom": 1}));
        assert!(project(r.clone(), &user(), &[], &[]).contains_key("custom"));
        assert!(!project(r.clone(), &user(), &paths("userName"), &[]).contains_key("custom"));
        assert!(project(r, &user(), &paths("custom"), &[]).contains_key("custom"));
    }
}
